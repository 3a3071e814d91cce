//! Pinot's time functions: DATETRUNC, DATETIMECONVERT, TODATETIME, FROMDATETIME, ago, now (epoch
//! ms), toEpoch*/fromEpoch* (plain, Rounded and Bucket), and the date parts YEAR, QUARTER,
//! MONTH, WEEK, DAYOFMONTH, DAYOFWEEK, DAYOFYEAR, HOUR, MINUTE, SECOND, MILLISECOND and
//! YEAROFWEEK, each in UTC or in a time zone (pinot-common DateTimeFunctions.java).

use crate::scalar::{Call, map_longs, map_longs_into, map_longs_or};
use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ReturnFieldArgs};
use shoal_segment::datetime::{DateTimeFormat, Granularity, TimeUnit, civil_from_days, days_from_civil};
use shoal_segment::mutable::now_ms;
use shoal_segment::zone::TimeZone;
use std::sync::Arc;

const DAY_MS: i64 = 86_400_000;

/// Epoch millis now.
pub(crate) fn now() -> i64 {
    now_ms()
}

/// The result type of DATETIMECONVERT: text for a SIMPLE_DATE_FORMAT output, else LONG.
pub(crate) fn convert_return_type(args: &ReturnFieldArgs) -> std::result::Result<DataType, String> {
    let out = crate::scalar::literal_string(args.scalar_arguments.get(2))
        .ok_or("the output format must be a literal")?;
    match DateTimeFormat::parse(&out) {
        Ok(DateTimeFormat::SimpleDate(_)) => Ok(DataType::Utf8),
        Ok(_) => Ok(DataType::Int64),
        Err(e) => Err(format!("output format: {e}")),
    }
}

/// DATETRUNC(unit, timeValue[, inputTimeUnit[, timeZone[, outputTimeUnit]]]) as in pinot-core
/// DateTruncTransformFunction.java: the value is converted to millis (truncated toward zero),
/// floored to the start of the unit in the time zone (Joda's `roundFloor` of the zone's
/// chronology, pinot-common DateTimeUtils.java), and converted to the output unit (by default the
/// input unit).
pub(crate) fn date_trunc(call: &Call) -> Result<Int64Array> {
    let unit = call.text(0)?;
    let trunc = Truncation::parse(&unit).ok_or_else(|| {
        call.error(format_args!(
            "unknown unit {unit:?}: use millisecond, second, minute, hour, day, week, month, quarter or year"
        ))
    })?;
    let time_unit = |i: usize, what: &str, default: TimeUnit| -> Result<TimeUnit> {
        if call.args.len() <= i {
            return Ok(default);
        }
        let text = call.text(i)?;
        TimeUnit::parse(&text).ok_or_else(|| {
            call.error(format_args!("unknown {what} {text:?}: use one of {}", TimeUnit::NAMES))
        })
    };
    let input = time_unit(2, "inputTimeUnit", TimeUnit::Milliseconds)?;
    let zone = call.zone(3)?;
    let output = time_unit(4, "outputTimeUnit", input)?;
    // The units' factors are worked out once, not per row.
    let (to_millis, from_millis) =
        (input.rescale(TimeUnit::Milliseconds), TimeUnit::Milliseconds.rescale(output));
    let one = |v: i64| -> Result<i64> {
        let ms = to_millis.apply(v).ok_or_else(|| {
            call.error(format_args!("timeValue {v} {} is out of range of epoch milliseconds", input.name()))
        })?;
        let start = trunc.apply_in(zone, ms).ok_or_else(|| {
            call.error(format_args!(
                "the start of the {unit} holding {ms} ms in {zone} is out of range of epoch milliseconds"
            ))
        })?;
        from_millis.apply(start).ok_or_else(|| {
            call.error(format_args!("{start} ms is out of range in outputTimeUnit {}", output.name()))
        })
    };
    // Each row the short way; `one` again only for a row out of range, for its message.
    let start = |v: i64| {
        to_millis.apply(v).and_then(|ms| trunc.apply_in(zone, ms)).and_then(|s| from_millis.apply(s))
    };
    map_longs_or::<Int64Type>(&call.longs(1)?, start, one)
}

/// DATETIMECONVERT(value, inputFormat, outputFormat, granularity): the value read in the input
/// format, bucketed by the granularity, written in the output format (pinot-core
/// BaseDateTimeTransformer.java). A SIMPLE_DATE_FORMAT output is bucketed on the wall clock of its
/// time zone (the fields of the unit: second of the minute, hour of the day, day of the month);
/// an epoch output by the granularity's length since 1970.
pub(crate) fn date_time_convert(call: &Call) -> Result<ArrayRef> {
    let (input_text, output_text, granularity_text) = (call.text(1)?, call.text(2)?, call.text(3)?);
    let input =
        DateTimeFormat::parse(&input_text).map_err(|e| call.error(format_args!("input format: {e}")))?;
    let output =
        DateTimeFormat::parse(&output_text).map_err(|e| call.error(format_args!("output format: {e}")))?;
    let granularity =
        Granularity::parse(&granularity_text).map_err(|e| call.error(format_args!("granularity: {e}")))?;
    // A granularity under a millisecond leaves millis as they are (pinot-core
    // BaseDateTimeTransformer.java); otherwise millis are bucketed by its length, which is at
    // most u32::MAX days (3.7e17 ms).
    let step_ms = (granularity.unit.nanos() / 1_000_000 * i128::from(granularity.size)).max(1);
    let step_ms = i64::try_from(step_ms)
        .map_err(|_| call.error(format_args!("granularity {granularity_text:?} is too long")))?;
    let millis: Vec<Option<i64>> = match &input {
        DateTimeFormat::SimpleDate(p) => call
            .texts(0)?
            .iter()
            .map(|v| v.map(|s| p.try_parse_millis(s).map_err(|e| call.error(format_args!("input: {e}")))))
            .map(|v| v.transpose().map(Option::flatten))
            .collect::<Result<_>>()?,
        f => call
            .longs(0)?
            .iter()
            .map(|v| {
                v.map(|v| {
                    f.epoch_to_millis(v).ok_or_else(|| {
                        call.error(format_args!(
                            "{v} in the input format {input_text:?} is out of range of epoch milliseconds"
                        ))
                    })
                })
                .transpose()
            })
            .collect::<Result<_>>()?,
    };
    if let DateTimeFormat::SimpleDate(p) = &output {
        let zone = p.zone();
        let text = |m: i64| -> Result<String> {
            let out_of_range = || call.error(format_args!("{m} ms cannot be written in {zone}"));
            let local = truncate_wall_clock(zone.to_local(m).ok_or_else(out_of_range)?, granularity)
                .ok_or_else(out_of_range)?;
            let offset =
                zone.from_local(local).and_then(|utc| zone.offset_ms(utc)).ok_or_else(out_of_range)?;
            Ok(p.format_local(local, offset))
        };
        return Ok(Arc::new(
            millis.into_iter().map(|m| m.map(text).transpose()).collect::<Result<StringArray>>()?,
        ));
    }
    let bucket = |m: i64| {
        m.div_euclid(step_ms).checked_mul(step_ms).ok_or_else(|| {
            call.error(format_args!(
                "the bucket of granularity {granularity_text:?} holding {m} ms starts out of range of epoch milliseconds"
            ))
        })
    };
    Ok(Arc::new(
        millis
            .into_iter()
            .map(|m| {
                m.map(|m| {
                    let m = bucket(m)?;
                    output.epoch_value(m).ok_or_else(|| {
                        call.error(format_args!(
                            "{m} ms is out of range in the output format {output_text:?}"
                        ))
                    })
                })
                .transpose()
            })
            .collect::<Result<Int64Array>>()?,
    ))
}

/// The wall-clock time `local` truncated to the granularity's field, as BaseDateTimeTransformer's
/// `_sdfDateTimeTruncate`: `size` milliseconds of the second, seconds of the minute, minutes of
/// the hour, hours of the day, days of the month counted from the 1st; finer units leave it
/// unchanged. None when the start is before i64::MIN ms.
fn truncate_wall_clock(local: i64, granularity: Granularity) -> Option<i64> {
    let size = i64::from(granularity.size);
    // Never later than `local`, and the period's start is at most a day earlier.
    let floor_in = |period: i64, unit: i64| {
        let start = local.div_euclid(period).checked_mul(period)?;
        start.checked_add((local - start) / unit / size * size * unit)
    };
    match granularity.unit {
        TimeUnit::Nanoseconds | TimeUnit::Microseconds => Some(local),
        TimeUnit::Milliseconds => floor_in(1_000, 1),
        TimeUnit::Seconds => floor_in(60_000, 1_000),
        TimeUnit::Minutes => floor_in(3_600_000, 60_000),
        TimeUnit::Hours => floor_in(DAY_MS, 3_600_000),
        TimeUnit::Days => {
            let (y, m, d) = civil_from_days(local.div_euclid(DAY_MS));
            (days_from_civil(y, m, 1) + (d - 1) / size * size).checked_mul(DAY_MS)
        }
    }
}

/// TODATETIME(millis, pattern[, timeZone]): the instant written in the pattern, on the wall clock
/// of the zone (pinot-common DateTimePatternHandler.java).
pub(crate) fn to_date_time(call: &Call) -> Result<ArrayRef> {
    let zone = call.zone(2)?;
    let pattern = call.pattern(1)?.with_zone(zone);
    let write = |v: i64| {
        pattern
            .try_format_millis(v)
            .ok_or_else(|| call.error(format_args!("{v} ms cannot be written in {zone}")))
    };
    Ok(Arc::new(map_longs_into::<_, StringArray>(&call.longs(0)?, write)?))
}

/// FROMDATETIME(text, pattern[, timeZone[, default]]): the text read in the pattern as wall-clock
/// time in the zone (a time in a daylight-saving gap moves forward, as
/// DateTimePatternHandler.java's fallback does); with a default, text that cannot be read gives
/// the default.
pub(crate) fn from_date_time(call: &Call) -> Result<ArrayRef> {
    let zone = call.zone(2)?;
    let pattern = call.pattern(1)?.with_zone(zone);
    let default = match call.args.get(3) {
        None => None,
        Some(_) => Some(call.integer(3)?),
    };
    let read = |s: &str| -> Result<Option<i64>> {
        match (pattern.try_parse_millis(s), default) {
            (Ok(Some(ms)), _) => Ok(Some(ms)),
            (_, Some(d)) => Ok(Some(d)),
            (Ok(None), None) => Ok(None),
            (Err(e), None) => Err(call.error(e)),
        }
    };
    Ok(Arc::new(
        call.texts(0)?
            .iter()
            .map(|v| v.map(read).transpose().map(Option::flatten))
            .collect::<Result<Int64Array>>()?,
    ))
}

/// ago(period): now minus an ISO-8601 duration.
pub(crate) fn ago(call: &Call) -> Result<ColumnarValue> {
    let period = call.text(0)?;
    let ms = iso_duration_ms(&period).map_err(|e| call.error(e))?;
    let at = now_ms().checked_sub(ms).ok_or_else(|| {
        call.error(format_args!("{period:?} before now is out of range of epoch milliseconds"))
    })?;
    Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(at))))
}

/// toEpochSeconds...: truncated toward zero, as Java's TimeUnit.MILLISECONDS.toSeconds
/// (pinot-common DateTimeFunctions.java); a division by a positive constant cannot overflow.
pub(crate) fn to_epoch(call: &Call, unit_ms: i64) -> Result<ArrayRef> {
    Ok(Arc::new(map_longs::<Int64Type>(&call.longs(0)?, |v| Ok(v / unit_ms))?))
}

/// fromEpochSeconds(v) = v × unit; fromEpochSecondsBucket(v, n) = v × n × unit
/// (DateTimeFunctions.java: `TimeUnit.SECONDS.toMillis(seconds * bucket)`).
pub(crate) fn from_epoch(call: &Call, unit_ms: i64, bucketed: bool) -> Result<ArrayRef> {
    let n = if bucketed { positive(call, 1, "bucket")? } else { 1 };
    let one = |v: i64| {
        v.checked_mul(n)
            .and_then(|v| v.checked_mul(unit_ms))
            .ok_or_else(|| call.error(format_args!("{v} is out of range of epoch milliseconds")))
    };
    Ok(Arc::new(map_longs::<Int64Type>(&call.longs(0)?, one)?))
}

/// toEpochSecondsRounded(millis, n) = toEpochSeconds(millis) / n × n and
/// toEpochSecondsBucket(millis, n) = toEpochSeconds(millis) / n, Java's division toward zero
/// (DateTimeFunctions.java).
pub(crate) fn to_epoch_rounded(call: &Call, unit_ms: i64, rounded: bool) -> Result<ArrayRef> {
    let n = positive(call, 1, if rounded { "roundToNearest" } else { "bucket" })?;
    let one = |v: i64| Ok(if rounded { v / unit_ms / n * n } else { v / unit_ms / n });
    Ok(Arc::new(map_longs::<Int64Type>(&call.longs(0)?, one)?))
}

/// The literal argument `i`, which must be a positive integer (Java divides by it: zero would
/// throw, a negative one is refused here as meaningless).
fn positive(call: &Call, i: usize, what: &str) -> Result<i64> {
    match call.integer(i)? {
        n if n > 0 => Ok(n),
        n => Err(call.error(format_args!("{what} must be a positive integer, not {n}"))),
    }
}

/// A field of the calendar, as Joda's `DateTime` reads it (ISO chronology).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DatePart {
    Year,
    YearOfWeek,
    Quarter,
    Month,
    Week,
    DayOfYear,
    DayOfMonth,
    DayOfWeek,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl DatePart {
    /// Every date part with Pinot's names for it (`@ScalarFunction(names = ...)`).
    pub(crate) const ALL: [(DatePart, &'static str, &'static [&'static str]); 12] = [
        (DatePart::Year, "YEAR", &[]),
        (DatePart::YearOfWeek, "YEAROFWEEK", &["yow"]),
        (DatePart::Quarter, "QUARTER", &[]),
        (DatePart::Month, "MONTH", &["monthOfYear"]),
        (DatePart::Week, "WEEK", &["weekOfYear"]),
        (DatePart::DayOfYear, "DAYOFYEAR", &["doy"]),
        (DatePart::DayOfMonth, "DAYOFMONTH", &["day"]),
        (DatePart::DayOfWeek, "DAYOFWEEK", &["dow"]),
        (DatePart::Hour, "HOUR", &[]),
        (DatePart::Minute, "MINUTE", &[]),
        (DatePart::Second, "SECOND", &[]),
        (DatePart::Millisecond, "MILLISECOND", &[]),
    ];

    /// This field of the wall-clock time `local` (millis since 1970-01-01T00:00 local).
    pub(crate) fn of(self, local: i64) -> i64 {
        let days = local.div_euclid(DAY_MS);
        let ms_of_day = local.rem_euclid(DAY_MS);
        let (year, month, day) = civil_from_days(days);
        // ISO weeks start on Monday (1) and week 1 holds the year's first Thursday.
        let weekday = (days + 3).rem_euclid(7) + 1;
        let iso_week = || {
            let thursday = days - (weekday - 1) + 3;
            let (week_year, _, _) = civil_from_days(thursday);
            (week_year, (thursday - days_from_civil(week_year, 1, 1)) / 7 + 1)
        };
        match self {
            DatePart::Year => year,
            DatePart::YearOfWeek => iso_week().0,
            DatePart::Quarter => (month - 1) / 3 + 1,
            DatePart::Month => month,
            DatePart::Week => iso_week().1,
            DatePart::DayOfYear => days - days_from_civil(year, 1, 1) + 1,
            DatePart::DayOfMonth => day,
            DatePart::DayOfWeek => weekday,
            DatePart::Hour => ms_of_day / 3_600_000,
            DatePart::Minute => ms_of_day / 60_000 % 60,
            DatePart::Second => ms_of_day / 1_000 % 60,
            DatePart::Millisecond => ms_of_day % 1_000,
        }
    }
}

/// YEAR(millis[, timeZone]) and the other date parts: `new DateTime(millis, zone).getYear()`
/// (DateTimeFunctions.java). TIMESTAMP arguments are read as their epoch millis.
pub(crate) fn date_part(call: &Call, part: DatePart) -> Result<ArrayRef> {
    let zone = call.zone(1)?;
    let one = |v: i64| -> Result<i32> {
        let local =
            zone.to_local(v).ok_or_else(|| call.error(format_args!("{v} ms cannot be read in {zone}")))?;
        // Every field of an i64 millisecond fits an i32 (years reach ±292 million).
        i32::try_from(part.of(local)).map_err(|_| call.error(format_args!("{v} ms is out of range")))
    };
    Ok(Arc::new(map_longs::<Int32Type>(&call.longs(0)?, one)?))
}

/// ISO-8601 durations, as Java's `Duration.parse` reads them for Pinot's `ago` (pinot-common
/// DateTimeFunctions.java): `PT1H`, `P1D`, `PT30M`, `P1DT12H`, `PT0.5S` (a fraction on seconds
/// only), plus weeks (`P1W`). Signs are not read. A duration past i64 milliseconds is an error,
/// where Java's `toMillis` throws too.
pub(crate) fn iso_duration_ms(text: &str) -> std::result::Result<i64, String> {
    let bad = || format!("{text:?} is not an ISO-8601 duration such as PT1H or P1D");
    let t = text.trim().to_ascii_uppercase();
    let mut rest = t.strip_prefix('P').ok_or_else(bad)?;
    let (mut in_time, mut date_parts, mut time_parts) = (false, 0, 0);
    let mut total = 0f64;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('T') {
            if in_time {
                return Err(bad());
            }
            in_time = true;
            rest = r;
            continue;
        }
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let number = &rest[..end];
        let n: f64 = number.parse().map_err(|_| bad())?;
        let unit = rest[end..].chars().next().ok_or_else(bad)?;
        if number.contains('.') && unit != 'S' {
            return Err(bad());
        }
        total += n * match (unit, in_time) {
            ('W', false) => 604_800_000.0,
            ('D', false) => 86_400_000.0,
            ('H', true) => 3_600_000.0,
            ('M', true) => 60_000.0,
            ('S', true) => 1_000.0,
            _ => return Err(bad()),
        };
        *(if in_time { &mut time_parts } else { &mut date_parts }) += 1;
        // The unit is one of the ASCII letters above: one byte.
        rest = &rest[end + 1..];
    }
    if date_parts + time_parts == 0 || (in_time && time_parts == 0) {
        return Err(bad());
    }
    // i64::MAX as f64 rounds up to 2^63, which is itself out of range.
    if total >= i64::MAX as f64 {
        return Err(format!("{text:?} is out of range: longer than i64 milliseconds"));
    }
    Ok(total as i64)
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Truncation {
    Fixed(i64),
    Week,
    Month,
    Quarter,
    Year,
}

impl Truncation {
    pub(crate) fn parse(unit: &str) -> Option<Truncation> {
        Some(match unit.trim().to_ascii_lowercase().as_str() {
            "millisecond" | "milliseconds" => Truncation::Fixed(1),
            "second" | "seconds" => Truncation::Fixed(1_000),
            "minute" | "minutes" => Truncation::Fixed(60_000),
            "hour" | "hours" => Truncation::Fixed(3_600_000),
            "day" | "days" => Truncation::Fixed(DAY_MS),
            "week" | "weeks" => Truncation::Week,
            "month" | "months" => Truncation::Month,
            "quarter" | "quarters" => Truncation::Quarter,
            "year" | "years" => Truncation::Year,
            _ => return None,
        })
    }

    /// Truncates epoch ms in `zone` as Joda's zoned `roundFloor` does (ZonedChronology): a unit
    /// under 12 hours is floored on the instant shifted by its offset; a day or longer on the
    /// wall clock, whose start is turned back into an instant near the original one.
    #[inline]
    pub(crate) fn apply_in(self, zone: TimeZone, ms: i64) -> Option<i64> {
        if zone.is_utc() {
            return self.apply(ms);
        }
        match self {
            Truncation::Fixed(step) if step < DAY_MS / 2 => {
                let offset = zone.offset_ms(ms)?;
                ms.checked_add(offset)?.div_euclid(step).checked_mul(step)?.checked_sub(offset)
            }
            _ => zone.from_local_near(self.apply(zone.to_local(ms)?)?, ms),
        }
    }

    /// Truncates epoch ms (UTC); weeks start on Monday, as in Pinot. None when the start is
    /// before i64::MIN ms (near i64::MIN every start but the millisecond's is).
    #[inline]
    pub(crate) fn apply(self, ms: i64) -> Option<i64> {
        match self {
            Truncation::Fixed(step) => ms.div_euclid(step).checked_mul(step),
            // 1970-01-01 was a Thursday: Monday-based week starts are 3 days earlier.
            Truncation::Week => {
                let day = ms.div_euclid(DAY_MS);
                (day - (day + 3).rem_euclid(7)).checked_mul(DAY_MS)
            }
            Truncation::Month | Truncation::Quarter | Truncation::Year => self.month_start(ms),
        }
    }

    /// The start of the month, quarter or year holding `ms` (out of the per-row loop's way).
    #[inline(never)]
    fn month_start(self, ms: i64) -> Option<i64> {
        // |day| < 2^47: the calendar arithmetic stays far inside i64.
        let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
        let month = match self {
            Truncation::Month => m,
            Truncation::Quarter => (m - 1) / 3 * 3 + 1,
            _ => 1,
        };
        days_from_civil(y, month, 1).checked_mul(DAY_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_by_calendar() {
        let ms = 1_706_704_496_789; // 2024-01-31T12:34:56.789Z, a Wednesday
        let at = |unit: &str, ms: i64| Truncation::parse(unit).unwrap().apply(ms);
        assert_eq!(at("hour", ms), Some(1_706_702_400_000));
        assert_eq!(at("day", ms), Some(1_706_659_200_000));
        assert_eq!(at("week", ms), Some(1_706_486_400_000)); // Monday 29th
        assert_eq!(at("month", ms), Some(1_704_067_200_000));
        assert_eq!(at("quarter", 1_715_000_000_000), Some(1_711_929_600_000)); // 2024-04-01
        assert_eq!(at("year", ms), Some(1_704_067_200_000));
        // i64::MIN ms is -292275055-05-16T16:47:04.192Z: every start but the millisecond's is
        // before it; i64::MAX's starts are all after i64::MIN.
        assert_eq!(at("millisecond", i64::MIN), Some(i64::MIN));
        for unit in ["second", "minute", "hour", "day", "week", "month", "quarter", "year"] {
            assert_eq!(at(unit, i64::MIN), None, "{unit}");
            assert!(at(unit, i64::MAX).is_some(), "{unit}");
        }
    }

    #[test]
    fn truncation_in_a_zone() {
        let at = |unit: &str, zone: &str, ms: i64| {
            Truncation::parse(unit).unwrap().apply_in(TimeZone::parse(zone).unwrap(), ms)
        };
        // 2024-01-31T12:34:56.789Z is 18:04:56.789 in Kolkata (+05:30): its hour starts at
        // 18:00 IST = 12:30Z, its day at 2024-01-31T00:00 IST = 2024-01-30T18:30Z.
        let ms = 1_706_704_496_789;
        assert_eq!(at("hour", "Asia/Kolkata", ms), Some(1_706_704_200_000));
        assert_eq!(at("day", "Asia/Kolkata", ms), Some(1_706_639_400_000));
        // In New York (-05:00) it is 07:34 on the 31st: the month began 2024-01-01T05:00Z.
        assert_eq!(at("month", "America/New_York", ms), Some(1_704_085_200_000));
        // 2024-03-10T12:00Z is 08:00 EDT; that day began at 00:00 EST = 05:00Z, 23 hours long.
        assert_eq!(at("day", "America/New_York", 1_710_072_000_000), Some(1_710_046_800_000));
    }

    #[test]
    fn date_parts_on_the_wall_clock() {
        // 2024-01-31T12:34:56.789Z, a Wednesday, day 31 of the year, in ISO week 5.
        let ms = 1_706_704_496_789;
        let parts: Vec<i64> = DatePart::ALL.iter().map(|(p, _, _)| p.of(ms)).collect();
        assert_eq!(parts, [2024, 2024, 1, 1, 5, 31, 31, 3, 12, 34, 56, 789]);
        // 2021-01-01 was a Friday in ISO week 53 of 2020.
        let new_year = 1_609_459_200_000;
        assert_eq!((DatePart::Week.of(new_year), DatePart::YearOfWeek.of(new_year)), (53, 2020));
        assert_eq!(DatePart::DayOfWeek.of(new_year), 5);
        // A leap year's 31 December is its 366th day.
        assert_eq!(DatePart::DayOfYear.of(1_735_603_200_000), 366);
    }

    #[test]
    fn wall_clock_truncation_by_granularity() {
        let g = |text: &str| Granularity::parse(text).unwrap();
        let ms = 1_706_704_496_789; // 2024-01-31T12:34:56.789
        assert_eq!(truncate_wall_clock(ms, g("15:MINUTES")), Some(1_706_704_200_000)); // 12:30
        assert_eq!(truncate_wall_clock(ms, g("5:HOURS")), Some(1_706_702_400_000 - 7_200_000)); // 10:00
        // Days are counted from the 1st: the 31st falls in the bucket of the 29th.
        assert_eq!(truncate_wall_clock(ms, g("7:DAYS")), Some(1_706_486_400_000));
        assert_eq!(truncate_wall_clock(ms, g("1:NANOSECONDS")), Some(ms));
        // The first of i64::MIN's month is before i64::MIN.
        assert_eq!(truncate_wall_clock(i64::MIN, g("1:DAYS")), None);
        assert_eq!(truncate_wall_clock(i64::MIN, g("1:SECONDS")), None);
    }

    #[test]
    fn iso_durations() {
        assert_eq!(iso_duration_ms("PT1H"), Ok(3_600_000));
        assert_eq!(iso_duration_ms("P1DT30M"), Ok(88_200_000));
        assert_eq!(iso_duration_ms("PT0.5S"), Ok(500));
        for bad in ["1H", "P", "PT", "P1DT", "PTT1H", "PT0.5H", "P1H", "PT1D", "P1\u{e9}", ""] {
            assert!(iso_duration_ms(bad).unwrap_err().contains("ISO-8601"), "{bad}");
        }
        // 106,751,991,167 days is just under i64::MAX ms; 106,751,991,168 is over.
        assert_eq!(iso_duration_ms("P106751991167D"), Ok(9_223_372_036_828_800_000));
        assert!(iso_duration_ms("P106751991168D").unwrap_err().contains("out of range"));
        assert!(iso_duration_ms(&format!("PT{}S", "9".repeat(400))).unwrap_err().contains("out of range"));
    }
}
