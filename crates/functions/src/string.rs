//! Pinot's string functions that DataFusion has under the same names with other semantics, or
//! lacks: SUBSTR (0-based, end exclusive), SUBSTRING (1-based, with a length) and REGEXP_EXTRACT.
//!
//! Indexes count characters (Unicode scalar values), where Java counts UTF-16 units: the two
//! agree on every text without characters outside the Basic Multilingual Plane (emoji).

use crate::scalar::Call;
use arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::common::Result;
use regex::Regex;
use std::sync::Arc;

/// commons-lang `StringUtils.substring(str, start)`: a negative start counts from the end.
fn from(chars: &[char], start: i64) -> String {
    let len = chars.len() as i64;
    let start = if start < 0 { (len + start).max(0) } else { start };
    if start > len { String::new() } else { chars[start as usize..].iter().collect() }
}

/// commons-lang `StringUtils.substring(str, start, end)`: negative indexes count from the end,
/// the end is clamped to the length, and a start past the end gives "".
fn between(chars: &[char], start: i64, end: i64) -> String {
    let len = chars.len() as i64;
    let end = if end < 0 { len.saturating_add(end) } else { end }.min(len);
    let start = if start < 0 { len.saturating_add(start) } else { start };
    if start > end {
        return String::new();
    }
    let (start, end) = (start.max(0), end.max(0));
    chars[start as usize..end as usize].iter().collect()
}

/// Applies `f` to each row's text and integer arguments (columns or literals).
fn per_row(call: &Call, f: impl Fn(&[char], &[i64]) -> String) -> Result<ArrayRef> {
    let text = call.texts(0)?;
    let numbers = (1..call.args.len()).map(|i| call.longs(i)).collect::<Result<Vec<_>>>()?;
    let mut out = StringBuilder::new();
    let mut args = Vec::with_capacity(numbers.len());
    for row in 0..text.len() {
        args.clear();
        for n in &numbers {
            if n.is_null(row) {
                break;
            }
            args.push(n.value(row));
        }
        if text.is_null(row) || args.len() < numbers.len() {
            out.append_null();
            continue;
        }
        let chars: Vec<char> = text.value(row).chars().collect();
        out.append_value(f(&chars, &args));
    }
    Ok(Arc::new(out.finish()))
}

/// SUBSTR(text, beginIndex[, endIndex]) (pinot-common StringFunctions.java `substr`): from the
/// 0-based begin to the exclusive end; an end of -1 means to the end of the text.
pub(crate) fn substr(call: &Call) -> Result<ArrayRef> {
    per_row(call, |chars, args| match args {
        [begin] | [begin, -1] => from(chars, *begin),
        [begin, end] => between(chars, *begin, *end),
        _ => String::new(),
    })
}

/// SUBSTRING(text, start[, length]) (StringFunctions.java `substring`): 1-based, `length`
/// characters from `start`.
pub(crate) fn substring(call: &Call) -> Result<ArrayRef> {
    per_row(call, |chars, args| match args {
        [start] => from(chars, start.saturating_sub(1)),
        [start, length] => {
            let begin = start.saturating_sub(1);
            between(chars, begin, begin.saturating_add(*length))
        }
        _ => String::new(),
    })
}

/// REGEXP_EXTRACT(text, regexp[, group[, default]]) (pinot-core
/// RegexpExtractTransformFunction.java): the group (0: the whole match) of the first match, the
/// default ("" unless given) when nothing matches or the pattern has fewer groups. The pattern
/// is read by Rust's regex crate, which has no look-around or back-references: such a pattern
/// is an error.
pub(crate) fn regexp_extract(call: &Call) -> Result<ArrayRef> {
    let pattern = call.text(1)?;
    let regex = Regex::new(&pattern)
        .map_err(|e| call.error(format_args!("the regular expression {pattern:?} is not supported: {e}")))?;
    let group = match call.args.get(2) {
        None => 0,
        Some(_) => match call.integer(2)? {
            g if g >= 0 => g as usize,
            g => return Err(call.error(format_args!("the group must be a non-negative integer, not {g}"))),
        },
    };
    let default = if call.args.len() > 3 { call.text(3)? } else { String::new() };
    let groups = regex.captures_len() - 1;
    let text = call.texts(0)?;
    let mut out = StringBuilder::new();
    for value in text.iter() {
        match value {
            None => out.append_null(),
            Some(v) => match regex.captures(v) {
                // Java's Matcher.group gives null for a group that took no part in the match.
                Some(c) if groups >= group => out.append_option(c.get(group).map(|m| m.as_str())),
                _ => out.append_value(&default),
            },
        }
    }
    Ok(Arc::new(out.finish()))
}

/// STRCMP(a, b) (pinot-common StringFunctions.java `strcmp`, Java's `String.compareTo`): the
/// difference of the first UTF-16 units that differ, else of the lengths; 0 when equal.
pub(crate) fn strcmp(call: &Call) -> Result<ArrayRef> {
    let (a, b) = (call.texts(0)?, call.texts(1)?);
    let out: arrow::array::Int32Array = (0..a.len())
        .map(|row| {
            if a.is_null(row) || b.is_null(row) {
                return None;
            }
            // Java's String.compareTo, by UTF-16 code unit, without copying either text.
            let (mut x, mut y) = (a.value(row).encode_utf16(), b.value(row).encode_utf16());
            loop {
                match (x.next(), y.next()) {
                    (Some(p), Some(q)) if p != q => return Some(i32::from(p) - i32::from(q)),
                    (Some(_), Some(_)) => {}
                    (Some(_), None) => return Some(1 + x.count() as i32),
                    (None, Some(_)) => return Some(-1 - y.count() as i32),
                    (None, None) => return Some(0),
                }
            }
        })
        .collect();
    Ok(Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn commons_lang_substring() {
        // StringUtils.substring's documented examples.
        let abc = chars("abc");
        assert_eq!(from(&abc, 0), "abc");
        assert_eq!(from(&abc, 2), "c");
        assert_eq!(from(&abc, 4), "");
        assert_eq!(from(&abc, -2), "bc");
        assert_eq!(from(&abc, -4), "abc");
        assert_eq!(between(&abc, 0, 2), "ab");
        assert_eq!(between(&abc, 2, 0), "");
        assert_eq!(between(&abc, 2, 4), "c");
        assert_eq!(between(&abc, 4, 6), "");
        assert_eq!(between(&abc, 2, 2), "");
        assert_eq!(between(&abc, -2, -1), "b");
        assert_eq!(between(&abc, -4, 2), "ab");
        assert_eq!(between(&chars("h\u{e9}llo"), 1, 3), "\u{e9}l");
    }
}
