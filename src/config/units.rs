//! Pinot's duration and size strings: `6h`, `30m`, `1d2h`, `500ms`, plain milliseconds;
//! `200M`, `1.5G`, `512K`, plain bytes.

use std::time::Duration;

/// Parses a Pinot period (`6h`, `30m`, `1d`, `1d12h30m`, `10s`, `250ms`) or plain milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let invalid =
        || format!("{t:?} is not a duration: use a period such as 6h, 30m, 1d, 10s, 250ms, or milliseconds");
    if t.is_empty() {
        return Err(invalid());
    }
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    let lower = t.to_ascii_lowercase();
    let mut rest = lower.strip_prefix("pt").or_else(|| lower.strip_prefix('p')).unwrap_or(&lower);
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms: f64 = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        let ms = number * unit_ms;
        if !ms.is_finite() || ms > 1e15 {
            return Err(invalid());
        }
        total += ms.round() as u128;
    }
    Ok(Duration::from_millis(u64::try_from(total).map_err(|_| invalid())?))
}

/// Writes a duration the way Pinot reads it: the largest whole unit, else milliseconds.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms > 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    ms.to_string()
}

/// Parses a size: `200M`, `1.5G`, `512K`, `200MB`, `1T`, or plain bytes. Units are powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let invalid =
        || format!("{t:?} is not a size: use bytes or a number with K, M, G or T, such as 200M or 1.5G");
    let upper = t.to_ascii_uppercase();
    let body = upper.strip_suffix('B').unwrap_or(&upper);
    let (number, factor) = match body.chars().last() {
        Some('K') => (&body[..body.len() - 1], 1u64 << 10),
        Some('M') => (&body[..body.len() - 1], 1 << 20),
        Some('G') => (&body[..body.len() - 1], 1 << 30),
        Some('T') => (&body[..body.len() - 1], 1 << 40),
        _ => (body, 1),
    };
    let value: f64 = number.trim().parse().map_err(|_| invalid())?;
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes.round() as u64)
}

/// Writes a size in the largest unit that divides it (`200M`), else bytes.
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes > 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1d12h").unwrap(), Duration::from_secs(129_600));
        assert_eq!(parse_duration("30000").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("PT1H").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        for bad in ["", "6x", "h", "-5", "6 hours", "1e400h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(6 * 3600)), "6h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("200M").unwrap(), 200 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        for bad in ["", "M", "-1M", "12Q", "abc"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(200 << 20), "200M");
        assert_eq!(format_size(1000), "1000");
    }
}
