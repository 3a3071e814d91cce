//! Pinot dateTime formats: `EPOCH` with a unit and size, `TIMESTAMP`, and `SIMPLE_DATE_FORMAT`
//! with a Java date pattern (`yyyyMMdd`, `yyyy-MM-dd HH:mm:ss`, ...). Values are converted to and
//! from epoch milliseconds, in UTC or in a pattern's time zone.

use crate::zone::TimeZone;
use std::fmt;

/// A unit of time as Pinot names it (`java.util.concurrent.TimeUnit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Nanoseconds.
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes.
    Minutes,
    /// Hours.
    Hours,
    /// Days.
    Days,
}

impl TimeUnit {
    /// Every unit, for messages.
    pub const NAMES: &'static str = "NANOSECONDS, MICROSECONDS, MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS";

    /// Parses Pinot's name (case-insensitive).
    pub fn parse(name: &str) -> Option<TimeUnit> {
        Some(match name.trim().to_ascii_uppercase().as_str() {
            "NANOSECONDS" => TimeUnit::Nanoseconds,
            "MICROSECONDS" => TimeUnit::Microseconds,
            "MILLISECONDS" => TimeUnit::Milliseconds,
            "SECONDS" => TimeUnit::Seconds,
            "MINUTES" => TimeUnit::Minutes,
            "HOURS" => TimeUnit::Hours,
            "DAYS" => TimeUnit::Days,
            _ => return None,
        })
    }

    /// Pinot's name.
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Nanoseconds => "NANOSECONDS",
            TimeUnit::Microseconds => "MICROSECONDS",
            TimeUnit::Milliseconds => "MILLISECONDS",
            TimeUnit::Seconds => "SECONDS",
            TimeUnit::Minutes => "MINUTES",
            TimeUnit::Hours => "HOURS",
            TimeUnit::Days => "DAYS",
        }
    }

    /// Converts `value` in this unit to `to`, truncating toward zero as Java's
    /// `TimeUnit.convert` does; None when the result is outside i64 (where Java saturates).
    /// For many values, [`TimeUnit::rescale`] once and [`Rescale::apply`] each.
    pub fn convert(self, value: i64, to: TimeUnit) -> Option<i64> {
        self.rescale(to).apply(value)
    }

    /// The conversion from this unit to `to`, worked out once for many values.
    pub fn rescale(self, to: TimeUnit) -> Rescale {
        // Each unit is a whole number of every finer one, at most 8.64e13 nanoseconds in a day:
        // the factor fits i64.
        let (from, to) = (self.nanos(), to.nanos());
        if from >= to {
            Rescale { multiply: (from / to) as i64, divide: 1 }
        } else {
            Rescale { multiply: 1, divide: (to / from) as i64 }
        }
    }

    /// Nanoseconds in one unit.
    pub fn nanos(self) -> i128 {
        match self {
            TimeUnit::Nanoseconds => 1,
            TimeUnit::Microseconds => 1_000,
            TimeUnit::Milliseconds => 1_000_000,
            TimeUnit::Seconds => 1_000_000_000,
            TimeUnit::Minutes => 60_000_000_000,
            TimeUnit::Hours => 3_600_000_000_000,
            TimeUnit::Days => 86_400_000_000_000,
        }
    }
}

/// A conversion between two [`TimeUnit`]s ([`TimeUnit::rescale`]): a multiplication into a
/// finer unit or a division into a coarser one, in i64, without working out the factor per value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rescale {
    multiply: i64,
    divide: i64,
}

impl Rescale {
    /// `value` in the target unit, truncated toward zero as Java's `TimeUnit.convert` does;
    /// None when it is outside i64 (where Java saturates).
    #[inline]
    pub fn apply(self, value: i64) -> Option<i64> {
        if self.divide == 1 { value.checked_mul(self.multiply) } else { Some(value / self.divide) }
    }
}

/// The `format` of a dateTime field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateTimeFormat {
    /// A number of `size` × `unit` since the epoch.
    Epoch {
        /// Units per step (`5:MINUTES:EPOCH` counts 5-minute steps).
        size: u32,
        /// The unit.
        unit: TimeUnit,
    },
    /// Epoch milliseconds, or a `yyyy-MM-dd HH:mm:ss[.SSS]` / ISO-8601 string.
    Timestamp,
    /// Text in a Java date pattern, in the pattern's time zone (UTC unless one is given).
    SimpleDate(JavaDatePattern),
}

impl DateTimeFormat {
    /// Parses the colon form (`1:MILLISECONDS:EPOCH`, `1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd`,
    /// `1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd tz(America/Chicago)`, `1:MILLISECONDS:TIMESTAMP`) and
    /// the pipe form (`EPOCH|MILLISECONDS|1`, `SIMPLE_DATE_FORMAT|yyyy-MM-dd`,
    /// `SIMPLE_DATE_FORMAT|yyyy-MM-dd|America/Chicago`, `TIMESTAMP`), as pinot-spi
    /// DateTimeFormatSpec.java and DateTimeFormatPatternSpec.java do.
    pub fn parse(text: &str) -> Result<DateTimeFormat, String> {
        let text = text.trim();
        if text.contains('|') || !text.contains(':') {
            let mut parts = text.splitn(3, '|');
            let kind = parts.next().unwrap_or_default().trim().to_ascii_uppercase();
            return match kind.as_str() {
                "EPOCH" => {
                    let unit = parts.next().map(str::trim).unwrap_or("MILLISECONDS");
                    let unit = TimeUnit::parse(unit).ok_or_else(|| {
                        format!("unknown time unit {unit:?}: use one of {}", TimeUnit::NAMES)
                    })?;
                    let size = match parts.next() {
                        Some(s) => parse_size(s)?,
                        None => 1,
                    };
                    Ok(DateTimeFormat::Epoch { size, unit })
                }
                "TIMESTAMP" => Ok(DateTimeFormat::Timestamp),
                "SIMPLE_DATE_FORMAT" => {
                    let pattern = parts
                        .next()
                        .ok_or("SIMPLE_DATE_FORMAT needs a pattern, as in SIMPLE_DATE_FORMAT|yyyyMMdd")?;
                    let pattern = JavaDatePattern::parse(pattern)?;
                    Ok(DateTimeFormat::SimpleDate(match parts.next() {
                        Some(zone) => pattern.with_zone(TimeZone::parse(zone)?),
                        None => pattern,
                    }))
                }
                _ => Err(format!(
                    "unknown format {text:?}: use EPOCH|<unit>|<size>, TIMESTAMP, SIMPLE_DATE_FORMAT|<pattern>, \
                     or the colon form such as 1:MILLISECONDS:EPOCH"
                )),
            };
        }
        let mut parts = text.splitn(4, ':');
        let size = parse_size(parts.next().unwrap_or_default())?;
        let unit_text = parts.next().unwrap_or_default().trim();
        let unit = TimeUnit::parse(unit_text)
            .ok_or_else(|| format!("unknown time unit {unit_text:?}: use one of {}", TimeUnit::NAMES))?;
        let kind = parts.next().unwrap_or_default().trim().to_ascii_uppercase();
        match kind.as_str() {
            "EPOCH" => Ok(DateTimeFormat::Epoch { size, unit }),
            "TIMESTAMP" => Ok(DateTimeFormat::Timestamp),
            "SIMPLE_DATE_FORMAT" => {
                let pattern = parts
                    .next()
                    .ok_or("SIMPLE_DATE_FORMAT needs a pattern, as in 1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd")?;
                let (pattern, zone) = split_tz(pattern);
                let pattern = JavaDatePattern::parse(pattern)?;
                Ok(DateTimeFormat::SimpleDate(match zone {
                    Some(zone) => pattern.with_zone(TimeZone::parse(zone)?),
                    None => pattern,
                }))
            }
            _ => Err(format!(
                "unknown time format {kind:?}: use EPOCH, TIMESTAMP or SIMPLE_DATE_FORMAT (as in 1:MILLISECONDS:EPOCH)"
            )),
        }
    }

    /// Converts epoch milliseconds into this format's number (EPOCH); None for text formats and
    /// when the number is outside i64 (i64::MAX ms in nanoseconds).
    pub fn epoch_value(&self, millis: i64) -> Option<i64> {
        match self {
            DateTimeFormat::Epoch { size, unit } => {
                let step = unit.nanos() * i128::from(*size);
                i64::try_from((i128::from(millis) * 1_000_000).div_euclid(step)).ok()
            }
            DateTimeFormat::Timestamp => Some(millis),
            DateTimeFormat::SimpleDate(_) => None,
        }
    }

    /// Converts a number in this format to epoch milliseconds; None when out of range.
    pub fn epoch_to_millis(&self, value: i64) -> Option<i64> {
        match self {
            DateTimeFormat::Epoch { size, unit } => {
                let nanos = i128::from(value).checked_mul(unit.nanos() * i128::from(*size))?;
                i64::try_from(nanos.div_euclid(1_000_000)).ok()
            }
            DateTimeFormat::Timestamp => Some(value),
            DateTimeFormat::SimpleDate(p) => p.parse_number(value),
        }
    }
}

/// Splits `pattern tz(zone)` (DateTimeFormatPatternSpec.java's `^(.+)( tz[ ]*\((.+)\))[ ]*`)
/// into the pattern and the zone.
fn split_tz(text: &str) -> (&str, Option<&str>) {
    let trimmed = text.trim_end();
    if let Some(body) = trimmed.strip_suffix(')')
        && let Some(at) = body.rfind(" tz")
        && let Some(zone) = body[at + 3..].trim_start_matches(' ').strip_prefix('(')
        && at > 0
        && !zone.trim().is_empty()
    {
        return (body[..at].trim(), Some(zone.trim()));
    }
    (text, None)
}

fn parse_size(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("size {:?} must be a positive integer", text.trim())),
    }
}

/// A `size:UNIT` granularity such as `1:MILLISECONDS` or `15:MINUTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granularity {
    /// Units per step.
    pub size: u32,
    /// The unit.
    pub unit: TimeUnit,
}

impl Granularity {
    /// Parses `size:UNIT` (or `size|UNIT`).
    pub fn parse(text: &str) -> Result<Granularity, String> {
        let (size, unit) = text
            .split_once([':', '|'])
            .ok_or_else(|| format!("{text:?} is not size:UNIT, as in 1:MILLISECONDS"))?;
        let size = parse_size(size)?;
        let unit = TimeUnit::parse(unit)
            .ok_or_else(|| format!("unknown time unit {unit:?}: use one of {}", TimeUnit::NAMES))?;
        Ok(Granularity { size, unit })
    }
}

/// One piece of a Java date pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Year(usize),
    Month(usize),
    MonthName(usize),
    Day(usize),
    Hour24(usize),
    Hour12(usize),
    AmPm,
    Minute(usize),
    Second(usize),
    Fraction(usize),
    Offset(char, usize),
    Literal(String),
}

/// A parsed Java `SimpleDateFormat`/`DateTimeFormatter` pattern, read and written in a time
/// zone (UTC unless [`JavaDatePattern::with_zone`] says otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JavaDatePattern {
    text: String,
    tokens: Vec<Token>,
    zone: TimeZone,
}

impl fmt::Display for JavaDatePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JavaDatePattern {
    /// Parses a pattern; letters it does not know are an error naming them.
    pub fn parse(pattern: &str) -> Result<JavaDatePattern, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                let mut literal = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("pattern {pattern:?} has an unclosed quote")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            literal.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            literal.push(ch);
                            i += 1;
                        }
                    }
                }
                if literal.is_empty() {
                    literal.push('\'');
                }
                tokens.push(Token::Literal(literal));
                continue;
            }
            if !c.is_ascii_alphabetic() {
                tokens.push(Token::Literal(c.to_string()));
                i += 1;
                continue;
            }
            let mut n = 1;
            while chars.get(i + n) == Some(&c) {
                n += 1;
            }
            tokens.push(match c {
                // java.time's appendFraction takes at most 9 digits (nanoseconds).
                'S' if n > 9 => {
                    return Err(format!(
                        "pattern {pattern:?} has {n} S: a fraction of a second has at most 9 digits"
                    ));
                }
                'y' | 'u' | 'Y' => Token::Year(n),
                'M' | 'L' if n >= 3 => Token::MonthName(n),
                'M' | 'L' => Token::Month(n),
                'd' => Token::Day(n),
                'H' => Token::Hour24(n),
                'h' => Token::Hour12(n),
                'a' => Token::AmPm,
                'm' => Token::Minute(n),
                's' => Token::Second(n),
                'S' => Token::Fraction(n),
                'Z' | 'X' | 'x' => Token::Offset(c, n),
                other => {
                    return Err(format!(
                        "pattern letter {other:?} in {pattern:?} is not supported: use y, M, d, H, h, a, m, s, S, Z, X and quoted literals"
                    ));
                }
            });
            i += n;
        }
        if !tokens.iter().any(|t| matches!(t, Token::Year(_))) {
            return Err(format!("pattern {pattern:?} has no year (y)"));
        }
        Ok(JavaDatePattern { text: pattern.to_string(), tokens, zone: TimeZone::UTC })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The same pattern read and written in `zone`: text without an offset is wall-clock time
    /// there (Joda's `DateTimeFormatter.withZone`).
    pub fn with_zone(mut self, zone: TimeZone) -> JavaDatePattern {
        self.zone = zone;
        self
    }

    /// The zone the pattern reads and writes in.
    pub fn zone(&self) -> TimeZone {
        self.zone
    }

    /// A numeric value such as 20240131 for `yyyyMMdd`, read as text.
    fn parse_number(&self, value: i64) -> Option<i64> {
        self.parse_millis(&value.to_string())
    }

    /// Parses text in this pattern to epoch milliseconds; None when it does not match or its
    /// time is outside the range of epoch milliseconds.
    pub fn parse_millis(&self, text: &str) -> Option<i64> {
        self.try_parse_millis(text).ok().flatten()
    }

    /// Parses text in this pattern to epoch milliseconds: `Ok(None)` when it does not match, an
    /// error when it matches a time outside the range of epoch milliseconds (about 292 million
    /// years either side of 1970). Text without an offset is wall-clock time in the pattern's
    /// zone (a time in a daylight-saving gap moves forward, an ambiguous one is the earlier).
    pub fn try_parse_millis(&self, text: &str) -> Result<Option<i64>, String> {
        let out_of_range = || format!("{text:?} in {:?} is out of range of epoch milliseconds", self.text);
        let Some(fields) = self.fields(text) else { return Ok(None) };
        let Fields { year, month, day, hour, minute, second, nanos, offset_minutes } = fields;
        if year.abs() > MAX_YEAR {
            return Err(out_of_range());
        }
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
        let local = secs.checked_mul(1000).and_then(|ms| ms.checked_add(nanos / 1_000_000));
        let utc = match offset_minutes {
            Some(offset) => local.and_then(|ms| ms.checked_sub(offset * 60_000)),
            None => local.and_then(|ms| self.zone.from_local(ms)),
        };
        utc.map(Some).ok_or_else(out_of_range)
    }

    /// The fields of `text` in this pattern, checked to be a valid date and time; None when it
    /// does not match.
    fn fields(&self, text: &str) -> Option<Fields> {
        let bytes = text.trim().as_bytes();
        let mut pos = 0;
        let (mut year, mut month, mut day) = (1970i64, 1i64, 1i64);
        let (mut hour, mut minute, mut second, mut nanos) = (0i64, 0i64, 0i64, 0i64);
        let mut pm: Option<bool> = None;
        let mut offset_minutes = None;
        for (index, token) in self.tokens.iter().enumerate() {
            // A fixed-width field when the next token is also a number (yyyyMMdd), else greedy.
            let next_is_number = matches!(
                self.tokens.get(index + 1),
                Some(t) if !matches!(t, Token::Literal(_) | Token::AmPm | Token::Offset(..) | Token::MonthName(_))
            );
            let width =
                |n: usize, max: usize| if next_is_number { n.max(if n == 1 { 1 } else { n }) } else { max };
            match token {
                Token::Literal(lit) => {
                    let lit = lit.as_bytes();
                    if bytes.get(pos..pos + lit.len())? != lit {
                        return None;
                    }
                    pos += lit.len();
                }
                Token::Year(n) => {
                    let (v, used) = digits(&bytes[pos..], if *n == 2 { 2 } else { width(*n, 9) })?;
                    year = if *n == 2 && used == 2 { 2000 + v } else { v };
                    pos += used;
                }
                Token::Month(n) => (month, pos) = number(bytes, pos, width(*n, 2))?,
                Token::MonthName(_) => {
                    // Compared as bytes: the text may cut a multi-byte character where a name ends.
                    let rest = &bytes[pos..];
                    let starts = |prefix: &[u8]| {
                        rest.get(..prefix.len()).is_some_and(|r| r.eq_ignore_ascii_case(prefix))
                    };
                    let (m, used) = MONTHS.iter().enumerate().find_map(|(i, name)| {
                        if starts(name.as_bytes()) {
                            Some((i as i64 + 1, name.len()))
                        } else if starts(&name.as_bytes()[..3]) {
                            Some((i as i64 + 1, 3))
                        } else {
                            None
                        }
                    })?;
                    month = m;
                    pos += used;
                }
                Token::Day(n) => (day, pos) = number(bytes, pos, width(*n, 2))?,
                Token::Hour24(n) | Token::Hour12(n) => (hour, pos) = number(bytes, pos, width(*n, 2))?,
                Token::Minute(n) => (minute, pos) = number(bytes, pos, width(*n, 2))?,
                Token::Second(n) => (second, pos) = number(bytes, pos, width(*n, 2))?,
                Token::Fraction(n) => {
                    let (v, used) = digits(&bytes[pos..], if next_is_number { *n } else { 9 })?;
                    nanos = v * 10i64.pow(9 - used as u32);
                    pos += used;
                }
                Token::AmPm => {
                    let rest = bytes.get(pos..pos + 2)?;
                    pm = Some(match rest.to_ascii_uppercase().as_slice() {
                        b"AM" => false,
                        b"PM" => true,
                        _ => return None,
                    });
                    pos += 2;
                }
                Token::Offset(letter, _) => {
                    let rest = &bytes[pos..];
                    if rest.first() == Some(&b'Z') && *letter != 'x' {
                        offset_minutes = Some(0);
                        pos += 1;
                    } else {
                        let sign = match rest.first()? {
                            b'+' => 1,
                            b'-' => -1,
                            _ => return None,
                        };
                        let (h, used_h) = digits(&rest[1..], 2)?;
                        let mut used = 1 + used_h;
                        let mut m = 0;
                        if rest.get(used) == Some(&b':') {
                            used += 1;
                        }
                        if let Some((mm, used_m)) = digits(&rest[used..], 2) {
                            m = mm;
                            used += used_m;
                        }
                        offset_minutes = Some(sign * (h * 60 + m));
                        pos += used;
                    }
                }
            }
        }
        if pos != bytes.len() {
            return None;
        }
        if let Some(pm) = pm {
            if !(1..=12).contains(&hour) {
                return None;
            }
            hour = (hour % 12) + if pm { 12 } else { 0 };
        }
        if !(1..=12).contains(&month)
            || !(1..=days_in_month(year, month)).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        Some(Fields { year, month, day, hour, minute, second, nanos, offset_minutes })
    }

    /// Formats epoch milliseconds in this pattern, as wall-clock time in its zone; None when
    /// the zone's offset cannot be known that far from 1970 (a region, past ±262,000 years).
    pub fn try_format_millis(&self, millis: i64) -> Option<String> {
        let offset = self.zone.offset_ms(millis)?;
        Some(self.format_local(millis.checked_add(offset)?, offset))
    }

    /// Formats epoch milliseconds in this pattern, as wall-clock time in its zone (in UTC when
    /// the zone's offset cannot be known that far from 1970).
    pub fn format_millis(&self, millis: i64) -> String {
        self.try_format_millis(millis).unwrap_or_else(|| self.format_local(millis, 0))
    }

    /// Formats the wall-clock time `local` (millis since 1970-01-01T00:00 local), whose offset
    /// from UTC is `offset_ms`.
    pub fn format_local(&self, local: i64, offset_ms: i64) -> String {
        let millis = local;
        let secs = millis.div_euclid(1000);
        let ms = millis.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let (hour, minute, second) = (sod / 3600, sod / 60 % 60, sod % 60);
        let mut out = String::with_capacity(self.text.len() + 4);
        for token in &self.tokens {
            match token {
                Token::Literal(l) => out.push_str(l),
                Token::Year(2) => push_num(&mut out, year.rem_euclid(100), 2),
                Token::Year(n) => push_num(&mut out, year, *n),
                Token::Month(n) => push_num(&mut out, month, *n),
                Token::MonthName(n) => {
                    let name = MONTHS[(month - 1) as usize];
                    out.push_str(if *n == 3 { &name[..3] } else { name });
                }
                Token::Day(n) => push_num(&mut out, day, *n),
                Token::Hour24(n) => push_num(&mut out, hour, *n),
                Token::Hour12(n) => push_num(&mut out, if hour % 12 == 0 { 12 } else { hour % 12 }, *n),
                Token::AmPm => out.push_str(if hour < 12 { "AM" } else { "PM" }),
                Token::Minute(n) => push_num(&mut out, minute, *n),
                Token::Second(n) => push_num(&mut out, second, *n),
                Token::Fraction(n) => {
                    let text = format!("{ms:03}000000");
                    out.push_str(&text[..(*n).min(9)]);
                }
                Token::Offset(letter, n) => push_offset(&mut out, *letter, *n, offset_ms, self.zone),
            }
        }
        out
    }
}

/// The furthest year from 0 that epoch milliseconds reach (i64 ms is ±292,278,994 years from
/// 1970); a parsed year beyond it is out of range before any calendar arithmetic.
const MAX_YEAR: i64 = 292_278_994;

/// A parsed date and time, each field in its range.
struct Fields {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    nanos: i64,
    /// The offset the text gives, if it gives one.
    offset_minutes: Option<i64>,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// An offset as Joda prints `Z` (`+0530`), `ZZ` (`+05:30`) and `ZZZ` (the zone's id), and
/// java.time prints `X` (`Z` at zero, else `+05`/`+0530`), `XX` (`+0530`), `XXX` (`+05:30`)
/// and `x`... (the same, with `+00` for zero).
fn push_offset(out: &mut String, letter: char, n: usize, offset_ms: i64, zone: TimeZone) {
    use std::fmt::Write;
    let secs = offset_ms / 1000;
    let sign = if secs < 0 { '-' } else { '+' };
    let (h, m) = (secs.abs() / 3600, secs.abs() / 60 % 60);
    let _ = match (letter, n) {
        ('Z', 1) => write!(out, "{sign}{h:02}{m:02}"),
        ('Z', 2) => write!(out, "{sign}{h:02}:{m:02}"),
        ('Z', _) => write!(out, "{zone}"),
        ('X', _) if secs == 0 => write!(out, "Z"),
        (_, 1) if m == 0 => write!(out, "{sign}{h:02}"),
        (_, 1 | 2) => write!(out, "{sign}{h:02}{m:02}"),
        _ => write!(out, "{sign}{h:02}:{m:02}"),
    };
}

fn push_num(out: &mut String, value: i64, width: usize) {
    use std::fmt::Write;
    let _ = write!(out, "{value:0width$}");
}

fn number(bytes: &[u8], pos: usize, max: usize) -> Option<(i64, usize)> {
    let (v, used) = digits(bytes.get(pos..)?, max)?;
    Some((v, pos + used))
}

/// Reads 1..=max ASCII digits; a number past i64 reads as i64::MAX, which every field's range
/// check refuses.
fn digits(bytes: &[u8], max: usize) -> Option<(i64, usize)> {
    let mut value: i64 = 0;
    let mut used = 0;
    while used < max && used < bytes.len() && bytes[used].is_ascii_digit() {
        value = value.saturating_mul(10).saturating_add(i64::from(bytes[used] - b'0'));
        used += 1;
    }
    (used > 0).then_some((value, used))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_conversion_truncates_toward_zero_and_refuses_overflow_as_in_i128() {
        use TimeUnit::*;
        let units = [Nanoseconds, Microseconds, Milliseconds, Seconds, Minutes, Hours, Days];
        let values = [0, 1, -1, 999, -999, 1_001, -1_001, 86_399_999, -86_400_001, 1_706_704_496_789];
        let extremes = [i64::MAX, i64::MIN, i64::MAX / 1_000, i64::MIN / 1_000 - 1];
        for from in units {
            for to in units {
                for v in values.into_iter().chain(extremes) {
                    let wide = i64::try_from(i128::from(v) * from.nanos() / to.nanos()).ok();
                    assert_eq!(from.convert(v, to), wide, "{v} {from:?} -> {to:?}");
                }
            }
        }
    }

    #[test]
    fn parses_both_format_spellings() {
        assert_eq!(
            DateTimeFormat::parse("1:MILLISECONDS:EPOCH").unwrap(),
            DateTimeFormat::Epoch { size: 1, unit: TimeUnit::Milliseconds }
        );
        assert_eq!(
            DateTimeFormat::parse("EPOCH|SECONDS|5").unwrap(),
            DateTimeFormat::Epoch { size: 5, unit: TimeUnit::Seconds }
        );
        assert_eq!(DateTimeFormat::parse("1:MILLISECONDS:TIMESTAMP").unwrap(), DateTimeFormat::Timestamp);
        assert_eq!(DateTimeFormat::parse("TIMESTAMP").unwrap(), DateTimeFormat::Timestamp);
        assert!(matches!(
            DateTimeFormat::parse("1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd").unwrap(),
            DateTimeFormat::SimpleDate(_)
        ));
        assert!(matches!(
            DateTimeFormat::parse("SIMPLE_DATE_FORMAT|yyyy-MM-dd HH:mm:ss").unwrap(),
            DateTimeFormat::SimpleDate(_)
        ));
        assert!(DateTimeFormat::parse("1:FORTNIGHTS:EPOCH").is_err());
        assert!(DateTimeFormat::parse("1:DAYS:SIMPLE_DATE_FORMAT:yyyyQQ").is_err());
        assert!(DateTimeFormat::parse("0:DAYS:EPOCH").is_err());
    }

    #[test]
    fn java_patterns_round_trip() {
        let p = JavaDatePattern::parse("yyyyMMdd").unwrap();
        assert_eq!(p.parse_millis("20240131"), Some(1_706_659_200_000));
        assert_eq!(p.format_millis(1_706_659_200_000), "20240131");
        let p = JavaDatePattern::parse("yyyy-MM-dd HH:mm:ss").unwrap();
        assert_eq!(p.parse_millis("2024-01-31 12:34:56"), Some(1_706_704_496_000));
        assert_eq!(p.format_millis(1_706_704_496_000), "2024-01-31 12:34:56");
        assert_eq!(p.parse_millis("2024-02-30 00:00:00"), None);
        let p = JavaDatePattern::parse("yyyy-MM-dd'T'HH:mm:ss.SSSXXX").unwrap();
        assert_eq!(p.parse_millis("2024-01-31T12:34:56.789+01:00"), Some(1_706_700_896_789));
        let p = JavaDatePattern::parse("dd/MMM/yyyy hh:mm a").unwrap();
        assert_eq!(p.parse_millis("31/Jan/2024 12:34 PM"), Some(1_706_704_440_000));
        assert_eq!(p.format_millis(1_706_704_440_000), "31/Jan/2024 12:34 PM");
        for days in [-800_000, -1, 0, 59, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn patterns_refuse_what_they_cannot_hold() {
        // Ten fraction digits: more than nanoseconds.
        assert!(JavaDatePattern::parse("yyyySSSSSSSSSS").is_err());
        let p = JavaDatePattern::parse("yyyySSSSSSSSSMM").unwrap();
        assert_eq!(p.parse_millis("197012345678901"), Some(123));
        // A year past the range of epoch milliseconds is an error, not a wrapped number.
        let p = JavaDatePattern::parse("yyyyyyyyyyyyyyyyyyyyMM").unwrap();
        assert!(p.try_parse_millis("9999999999999999999901").is_err());
        let p = JavaDatePattern::parse("yyyy-MM").unwrap();
        assert!(p.try_parse_millis("292278995-01").is_err());
        assert_eq!(p.try_parse_millis("292278995-13"), Ok(None));
        // i64::MAX ms is 292278994-08-17T07:12:55.807Z.
        let p = JavaDatePattern::parse("yyyy-MM-dd HH:mm:ss.SSS").unwrap();
        assert_eq!(p.try_parse_millis("292278994-08-17 07:12:55.807"), Ok(Some(i64::MAX)));
        assert!(p.try_parse_millis("292278994-08-17 07:12:55.808").is_err());
        // A month name cut inside a multi-byte character does not match.
        let p = JavaDatePattern::parse("yyyy MMM").unwrap();
        assert_eq!(p.parse_millis("2024 Ma\u{e9}"), None);
        assert_eq!(p.parse_millis("2024 Janu\u{e9}"), None);
    }

    #[test]
    fn units_convert_as_java_does() {
        assert_eq!(TimeUnit::Days.convert(1, TimeUnit::Milliseconds), Some(86_400_000));
        assert_eq!(TimeUnit::Milliseconds.convert(-1_500, TimeUnit::Seconds), Some(-1));
        assert_eq!(TimeUnit::Days.convert(i64::MAX, TimeUnit::Milliseconds), None);
        assert_eq!(TimeUnit::Nanoseconds.convert(i64::MIN, TimeUnit::Days), Some(-106_751));
        let f = DateTimeFormat::parse("1:NANOSECONDS:EPOCH").unwrap();
        assert_eq!(f.epoch_value(i64::MAX), None);
        assert_eq!(f.epoch_value(-1), Some(-1_000_000));
    }

    #[test]
    fn epoch_units_convert() {
        let f = DateTimeFormat::parse("5:MINUTES:EPOCH").unwrap();
        assert_eq!(f.epoch_to_millis(2), Some(600_000));
        assert_eq!(f.epoch_value(600_000), Some(2));
        let f = DateTimeFormat::parse("1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd").unwrap();
        assert_eq!(f.epoch_to_millis(19700102), Some(86_400_000));
    }
}
