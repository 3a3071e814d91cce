//! Time zones as Pinot reads them: IANA region names (`America/New_York`, any case), fixed
//! offsets (`+05:30`, `-08`, `UTC+2`, `GMT+0700`), the names of UTC, and Java's legacy short
//! ids (`PST`, `IST`). Offsets of regions come from the IANA database compiled into chrono-tz
//! (the crate arrow already uses for its timestamp time zones).
//!
//! Pinot reads zones three ways: `TimeZoneKey.getTimeZoneKey` (pinot-common TimeZoneKey.java,
//! for DATETRUNC), Joda's `DateTimeZone.forID` (pinot-common DateTimeFunctions.java and
//! DateTimePatternHandler.java), and `java.util.TimeZone.getTimeZone` (pinot-spi
//! DateTimeFormatPatternSpec.java, for `SIMPLE_DATE_FORMAT|pattern|zone` and `tz(zone)`). Shoal
//! accepts the union of what they accept, and an unknown zone is an error everywhere, where
//! `TimeZone.getTimeZone` would silently fall back to GMT.

use chrono::{Offset, TimeZone as _};
use chrono_tz::Tz;
use std::fmt;

/// A time zone: a fixed offset or an IANA region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeZone {
    /// A fixed offset from UTC in seconds (UTC is 0).
    Fixed(i32),
    /// A region of the IANA time zone database, whose offset changes over time.
    Region(Tz),
}

/// The furthest a fixed offset may be from UTC, as in `java.time.ZoneOffset` (±18:00).
const MAX_OFFSET_SECS: i32 = 18 * 3600;

/// Java's `ZoneId.SHORT_IDS`, which `TimeZone.getTimeZone` (and so Pinot's `tz(...)` in a
/// SIMPLE_DATE_FORMAT) also reads.
const SHORT_IDS: [(&str, &str); 28] = [
    ("ACT", "Australia/Darwin"),
    ("AET", "Australia/Sydney"),
    ("AGT", "America/Argentina/Buenos_Aires"),
    ("ART", "Africa/Cairo"),
    ("AST", "America/Anchorage"),
    ("BET", "America/Sao_Paulo"),
    ("BST", "Asia/Dhaka"),
    ("CAT", "Africa/Harare"),
    ("CNT", "America/St_Johns"),
    ("CST", "America/Chicago"),
    ("CTT", "Asia/Shanghai"),
    ("EAT", "Africa/Addis_Ababa"),
    ("ECT", "Europe/Paris"),
    ("IET", "America/Indiana/Indianapolis"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("MIT", "Pacific/Apia"),
    ("NET", "Asia/Yerevan"),
    ("NST", "Pacific/Auckland"),
    ("PLT", "Asia/Karachi"),
    ("PNT", "America/Phoenix"),
    ("PRT", "America/Puerto_Rico"),
    ("PST", "America/Los_Angeles"),
    ("SST", "Pacific/Guadalcanal"),
    ("VST", "Asia/Ho_Chi_Minh"),
    ("EST", "-05:00"),
    ("MST", "-07:00"),
    ("HST", "-10:00"),
];

impl TimeZone {
    /// UTC.
    pub const UTC: TimeZone = TimeZone::Fixed(0);

    /// Reads a zone name or offset; an error names what is accepted.
    pub fn parse(text: &str) -> Result<TimeZone, String> {
        let text = text.trim();
        let unknown = || {
            format!(
                "unknown time zone {text:?}: use an IANA name such as America/New_York, an offset such as +05:30, or UTC"
            )
        };
        if text.is_empty() {
            return Err(unknown());
        }
        let lower = text.to_ascii_lowercase();
        // The names of UTC (pinot-common TimeZoneKey.java isUtcEquivalentName).
        let bare = lower.strip_prefix("etc/").unwrap_or(&lower);
        if matches!(bare, "utc" | "z" | "ut" | "uct" | "gmt" | "gmt0" | "greenwich" | "universal" | "zulu") {
            return Ok(TimeZone::UTC);
        }
        // Offsets, bare or after UTC/GMT/UT (TimeZoneKey.normalizeZoneId; Etc/GMT+5, whose sign
        // is the other way round, is a region below).
        let offset_text = ["utc", "gmt", "ut"]
            .iter()
            .find_map(|p| lower.strip_prefix(p).filter(|r| r.starts_with(['+', '-'])))
            .unwrap_or(&lower);
        if offset_text.starts_with(['+', '-']) {
            return parse_offset(offset_text).map(TimeZone::Fixed).ok_or_else(unknown);
        }
        if let Some((_, id)) = SHORT_IDS.iter().find(|(short, _)| short.eq_ignore_ascii_case(text)) {
            return TimeZone::parse(id);
        }
        chrono_tz::TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(text))
            .map(|tz| TimeZone::Region(*tz))
            .ok_or_else(unknown)
    }

    /// True for UTC (and any zero offset).
    pub fn is_utc(&self) -> bool {
        *self == TimeZone::UTC
    }

    /// The offset from UTC in milliseconds at the instant `utc_ms`; None when a region's offset
    /// is asked for an instant outside the years chrono can represent (±262,000), where
    /// no zone rule means anything.
    pub fn offset_ms(&self, utc_ms: i64) -> Option<i64> {
        match self {
            TimeZone::Fixed(secs) => Some(i64::from(*secs) * 1000),
            TimeZone::Region(tz) => {
                let at = chrono::DateTime::from_timestamp_millis(utc_ms)?;
                let offset = tz.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc();
                Some(i64::from(offset) * 1000)
            }
        }
    }

    /// The wall-clock time at `utc_ms`, as millis since 1970-01-01T00:00 local.
    pub fn to_local(&self, utc_ms: i64) -> Option<i64> {
        utc_ms.checked_add(self.offset_ms(utc_ms)?)
    }

    /// The instant of the wall-clock time `local_ms`, as Joda's parser resolves it: in an
    /// overlap (clocks set back) the earlier instant; in a gap (clocks set forward) the time is
    /// shifted forward by the gap, as pinot-common DateTimePatternHandler.java's DST fallback
    /// (`convertLocalToUTC(local, false)`) does.
    pub fn from_local(&self, local_ms: i64) -> Option<i64> {
        let TimeZone::Region(_) = self else {
            return local_ms.checked_sub(self.offset_ms(0)?);
        };
        // Zone transitions are months apart: at most one lies within the ±18 h around the
        // instants that can show `local_ms`.
        let window = i64::from(MAX_OFFSET_SECS) * 1000;
        let before = self.offset_ms(local_ms.checked_sub(window)?)?;
        let after = self.offset_ms(local_ms.checked_add(window)?)?;
        let valid = |o: i64| -> Option<bool> {
            let utc = local_ms.checked_sub(o)?;
            Some(self.offset_ms(utc)? == o)
        };
        let offset = match (valid(before)?, valid(after)?) {
            (true, true) => before.max(after),
            (true, false) => before,
            (false, true) => after,
            // A gap: the offset in force before it (the smaller one).
            (false, false) => before.min(after),
        };
        local_ms.checked_sub(offset)
    }

    /// The instant of the wall-clock time `local_ms` near the instant `original_ms`, as Joda's
    /// `convertLocalToUTC(local, false, original)` (the rounding of date fields in a zone,
    /// DATETRUNC in pinot-common DateTimeUtils.java): the original instant's offset when it
    /// gives back `local_ms`, else as [`TimeZone::from_local`].
    pub fn from_local_near(&self, local_ms: i64, original_ms: i64) -> Option<i64> {
        let offset = self.offset_ms(original_ms)?;
        let utc = local_ms.checked_sub(offset)?;
        if self.offset_ms(utc)? == offset {
            return Some(utc);
        }
        self.from_local(local_ms)
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeZone::Fixed(0) => f.write_str("UTC"),
            TimeZone::Fixed(secs) => {
                let sign = if *secs < 0 { '-' } else { '+' };
                let a = secs.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", a / 3600, a / 60 % 60)
            }
            TimeZone::Region(tz) => f.write_str(tz.name()),
        }
    }
}

/// `+H`, `+HH`, `+HHMM` or `+HH:MM` (or `-`), at most 18:00 from UTC, in seconds.
fn parse_offset(text: &str) -> Option<i32> {
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let digits = &text[1..];
    let (h, m) = match (digits.len(), digits.find(':')) {
        (1 | 2, None) => (digits, "0"),
        (4, None) => digits.split_at(2),
        (4 | 5, Some(colon @ (1 | 2))) => (&digits[..colon], &digits[colon + 1..]),
        _ => return None,
    };
    if !(h.bytes().all(|b| b.is_ascii_digit()) && m.bytes().all(|b| b.is_ascii_digit())) || m.len() > 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    let secs = h * 3600 + m * 60;
    (m < 60 && secs <= MAX_OFFSET_SECS).then_some(sign * secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_offsets() {
        for utc in ["UTC", "utc", "Etc/UTC", "GMT", "Z", "Zulu", "+00:00", "UTC+0"] {
            assert_eq!(TimeZone::parse(utc), Ok(TimeZone::UTC), "{utc}");
        }
        assert_eq!(TimeZone::parse("+05:30"), Ok(TimeZone::Fixed(19_800)));
        assert_eq!(TimeZone::parse("-08"), Ok(TimeZone::Fixed(-28_800)));
        assert_eq!(TimeZone::parse("GMT+0700"), Ok(TimeZone::Fixed(25_200)));
        assert_eq!(TimeZone::parse("UTC-3"), Ok(TimeZone::Fixed(-10_800)));
        assert_eq!(TimeZone::parse("america/new_york"), Ok(TimeZone::Region(Tz::America__New_York)));
        assert_eq!(TimeZone::parse("PST"), Ok(TimeZone::Region(Tz::America__Los_Angeles)));
        assert_eq!(TimeZone::parse("EST"), Ok(TimeZone::Fixed(-18_000)));
        // Etc/GMT+5 is five hours behind UTC (the POSIX sign).
        let etc = TimeZone::parse("Etc/GMT+5").unwrap();
        assert_eq!(etc.offset_ms(0), Some(-18_000_000));
        for bad in ["", "Mars/Olympus", "+25:00", "+05:60", "+5:3", "UTC+", "+123"] {
            assert!(TimeZone::parse(bad).unwrap_err().contains("unknown time zone"), "{bad}");
        }
        assert_eq!(TimeZone::parse("Asia/Kolkata").unwrap().to_string(), "Asia/Kolkata");
        assert_eq!(TimeZone::Fixed(-34_200).to_string(), "-09:30");
    }

    #[test]
    fn wall_clock_across_daylight_saving() {
        let ny = TimeZone::parse("America/New_York").unwrap();
        // 2024-03-10 07:00Z is when New York sets clocks forward from 02:00 EST to 03:00 EDT.
        let change = 1_710_054_000_000;
        assert_eq!(ny.offset_ms(change - 1), Some(-5 * 3_600_000));
        assert_eq!(ny.offset_ms(change), Some(-4 * 3_600_000));
        // 02:30 local does not exist: shifted forward to 03:30 EDT, 07:30Z.
        let local_0230 = change - 5 * 3_600_000 + 30 * 60_000;
        assert_eq!(ny.from_local(local_0230), Some(change + 30 * 60_000));
        // 2024-11-03 06:00Z clocks go back from 02:00 EDT to 01:00 EST: 01:30 local happens twice,
        // the earlier (EDT, 05:30Z) is taken.
        let back = 1_730_613_600_000;
        let local_0130 = back - 4 * 3_600_000 - 30 * 60_000;
        assert_eq!(ny.from_local(local_0130), Some(back - 30 * 60_000));
        // Near an instant in the later hour, that hour's offset is kept.
        assert_eq!(ny.from_local_near(local_0130, back + 45 * 60_000), Some(back + 30 * 60_000));
        // Berlin's gap (2024-03-31 01:00Z): 02:30 local becomes 03:30 CEST, 01:30Z.
        let berlin = TimeZone::parse("Europe/Berlin").unwrap();
        let change = 1_711_846_800_000;
        assert_eq!(berlin.from_local(change + 3_600_000 + 30 * 60_000), Some(change + 30 * 60_000));
    }
}
