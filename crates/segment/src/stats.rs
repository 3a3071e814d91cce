//! Per-column statistics (min, max, null count) of segments, for pruning and status.

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array, DictionaryArray, Float32Array,
    Float64Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow::compute::{max, max_boolean, max_string, min, min_boolean, min_string};
use arrow::datatypes::{DataType as ArrowType, Int32Type};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A min or max value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatValue {
    /// INT, LONG, TIMESTAMP (epoch ms).
    Int(i64),
    /// FLOAT, DOUBLE (finite only).
    Float(f64),
    /// BOOLEAN.
    Bool(bool),
    /// STRING, JSON.
    Str(String),
    /// BIG_DECIMAL, the unscaled Decimal128 value as text.
    Decimal(String),
}

impl StatValue {
    fn cmp_same(&self, other: &StatValue) -> Option<Ordering> {
        match (self, other) {
            (StatValue::Int(a), StatValue::Int(b)) => Some(a.cmp(b)),
            // Arrow's order (-0.0 before 0.0), as its kernels compare.
            (StatValue::Float(a), StatValue::Float(b)) => Some(a.total_cmp(b)),
            (StatValue::Bool(a), StatValue::Bool(b)) => Some(a.cmp(b)),
            (StatValue::Str(a), StatValue::Str(b)) => Some(a.cmp(b)),
            (StatValue::Decimal(a), StatValue::Decimal(b)) => {
                Some(a.parse::<i128>().ok()?.cmp(&b.parse::<i128>().ok()?))
            }
            _ => None,
        }
    }
}

/// Statistics of one column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    /// Smallest value; None when unknown (all null, a list column, or not finite).
    pub min: Option<StatValue>,
    /// Largest value; None when unknown.
    pub max: Option<StatValue>,
    /// Null rows.
    pub null_count: u64,
    /// Some non-null value is not covered by `min` and `max` (a value that is not finite, a
    /// string longer than the longest kept, a list): the bounds are unknown, and stay unknown
    /// when merged with other parts. Absent (false) in files written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unbounded: bool,
    /// The sum of an INT or LONG column's values, as SQL's `SUM` adds them (INT widened to
    /// LONG, wrapping past LONG's range); 0 when every value is null, None for other types.
    /// Kept in memory for the batches a query takes whole into an aggregation; not written to
    /// files.
    #[serde(skip)]
    pub sum: Option<i64>,
}

/// Longest string kept as a min or max: a longer one makes the bound unknown.
const MAX_STAT_STRING: usize = 256;

impl ColumnStats {
    /// Statistics of one array.
    pub fn of(array: &ArrayRef) -> ColumnStats {
        // Logical: a dictionary's null values count too, not only its null keys.
        let null_count = array.logical_null_count() as u64;
        let (min, max) = match array.data_type() {
            ArrowType::Int32 => {
                let a: &Int32Array = array.as_primitive();
                (min(a).map(|v| StatValue::Int(v.into())), max(a).map(|v| StatValue::Int(v.into())))
            }
            ArrowType::Int64 => {
                let a: &Int64Array = array.as_primitive();
                (min(a).map(StatValue::Int), max(a).map(StatValue::Int))
            }
            ArrowType::Timestamp(_, _) => {
                let a: &TimestampMillisecondArray = array.as_primitive();
                (min(a).map(StatValue::Int), max(a).map(StatValue::Int))
            }
            ArrowType::Float32 => {
                let a: &Float32Array = array.as_primitive();
                (finite(min(a).map(f64::from)), finite(max(a).map(f64::from)))
            }
            ArrowType::Float64 => {
                let a: &Float64Array = array.as_primitive();
                (finite(min(a)), finite(max(a)))
            }
            ArrowType::Decimal128(_, _) => {
                let a: &Decimal128Array = array.as_primitive();
                (
                    min(a).map(|v| StatValue::Decimal(v.to_string())),
                    max(a).map(|v| StatValue::Decimal(v.to_string())),
                )
            }
            ArrowType::Boolean => {
                let a: &BooleanArray = array.as_boolean();
                (min_boolean(a).map(StatValue::Bool), max_boolean(a).map(StatValue::Bool))
            }
            ArrowType::Utf8 => {
                let a: &StringArray = array.as_string();
                (kept(min_string(a)), kept(max_string(a)))
            }
            ArrowType::Dictionary(key, value) if **key == ArrowType::Int32 && **value == ArrowType::Utf8 => {
                let (lo, hi) = dictionary_bounds(array.as_dictionary::<Int32Type>());
                (kept(lo), kept(hi))
            }
            ArrowType::Binary => {
                let _: &BinaryArray = array.as_binary();
                (None, None)
            }
            _ => (None, None),
        };
        // A bound left out while values exist is unknown, not "all null".
        let unbounded = null_count < array.len() as u64 && (min.is_none() || max.is_none());
        let (min, max) = if unbounded { (None, None) } else { (min, max) };
        ColumnStats { min, max, null_count, unbounded, sum: sum(array) }
    }

    /// Widens these statistics by another part of the same column.
    pub fn merge(&mut self, other: &ColumnStats) {
        self.null_count += other.null_count;
        self.sum = self.sum.zip(other.sum).map(|(a, b)| a.wrapping_add(b));
        self.unbounded |= other.unbounded;
        if self.unbounded {
            // One part's values lie outside any bound it could state: so do the whole's.
            (self.min, self.max) = (None, None);
            return;
        }
        // A part without bounds here holds only nulls.
        self.min = pick(self.min.take(), other.min.clone(), Ordering::Less);
        self.max = pick(self.max.take(), other.max.clone(), Ordering::Greater);
    }
}

/// The sum of an INT or LONG array, as [`ColumnStats::sum`] keeps it.
fn sum(array: &ArrayRef) -> Option<i64> {
    match array.data_type() {
        ArrowType::Int32 => {
            let a: &Int32Array = array.as_primitive();
            Some(match a.nulls().filter(|n| n.null_count() > 0) {
                // Widened before adding: an INT column's sum does not wrap at INT's range.
                None => a.values().iter().fold(0i64, |s, &v| s.wrapping_add(i64::from(v))),
                Some(_) => a.iter().flatten().fold(0i64, |s, v| s.wrapping_add(i64::from(v))),
            })
        }
        ArrowType::Int64 => {
            Some(arrow::compute::sum(array.as_primitive::<arrow::datatypes::Int64Type>()).unwrap_or(0))
        }
        _ => None,
    }
}

/// Merges per-column statistics of two parts of a segment. An empty `into` takes `from`.
pub fn merge_all(into: &mut Vec<ColumnStats>, from: &[ColumnStats], into_rows: usize) {
    if into_rows == 0 || into.is_empty() {
        *into = from.to_vec();
        return;
    }
    for (a, b) in into.iter_mut().zip(from) {
        a.merge(b);
    }
}

/// A string bound, unless it is longer than a bound is kept.
fn kept(s: Option<&str>) -> Option<StatValue> {
    s.filter(|s| s.len() <= MAX_STAT_STRING).map(|s| StatValue::Str(s.to_string()))
}

/// The least and greatest strings a dictionary array's rows use (a dictionary may hold values
/// no row uses: a slice's, or a sorted segment's).
fn dictionary_bounds(array: &DictionaryArray<Int32Type>) -> (Option<&str>, Option<&str>) {
    let Some(values) = array.values().as_string_opt::<i32>() else {
        return (None, None);
    };
    let valid = |k: i32| usize::try_from(k).ok().filter(|&k| k < values.len() && values.is_valid(k));
    if array.len() < values.len() {
        // Fewer rows than values (a slice of a file's batch, whose dictionary is the file's):
        // each row's value.
        return string_bounds(array.keys().iter().flatten().filter_map(valid).map(|k| values.value(k)));
    }
    let mut used = vec![false; values.len()];
    for k in array.keys().iter().flatten().filter_map(valid) {
        used[k] = true;
    }
    string_bounds(used.iter().enumerate().filter(|(_, u)| **u).map(|(i, _)| values.value(i)))
}

fn string_bounds<'a>(mut strings: impl Iterator<Item = &'a str>) -> (Option<&'a str>, Option<&'a str>) {
    let first = strings.next();
    strings.fold((first, first), |(lo, hi), v| (lo.map(|l| l.min(v)), hi.map(|h| h.max(v))))
}

fn finite(v: Option<f64>) -> Option<StatValue> {
    v.filter(|f| f.is_finite()).map(StatValue::Float)
}

fn pick(a: Option<StatValue>, b: Option<StatValue>, want: Ordering) -> Option<StatValue> {
    match (a, b) {
        (Some(a), Some(b)) => match a.cmp_same(&b) {
            Some(o) if o == want => Some(a),
            Some(_) => Some(b),
            None => None,
        },
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn computes_and_merges() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(5), None, Some(-2)]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![Some(9)]));
        let mut s = ColumnStats::of(&a);
        assert_eq!(
            s,
            ColumnStats {
                min: Some(StatValue::Int(-2)),
                max: Some(StatValue::Int(5)),
                null_count: 1,
                unbounded: false,
                sum: Some(3),
            }
        );
        s.merge(&ColumnStats::of(&b));
        assert_eq!(s.max, Some(StatValue::Int(9)));
        assert_eq!(s.sum, Some(12));
        // An INT column's sum is a LONG's: it goes past INT's range without wrapping.
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![i32::MAX, i32::MAX, 1]));
        assert_eq!(ColumnStats::of(&ints).sum, Some(2 * i64::from(i32::MAX) + 1));
        let some_null: ArrayRef = Arc::new(Int32Array::from(vec![Some(-4), None, Some(10)]));
        assert_eq!(ColumnStats::of(&some_null).sum, Some(6));
        // A LONG column's wraps, as SQL's SUM of LONG does here.
        let longs: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX, 2]));
        assert_eq!(ColumnStats::of(&longs).sum, Some(i64::MIN + 1));
        let all_null: ArrayRef = Arc::new(Int64Array::from(vec![None, None]));
        assert_eq!(ColumnStats::of(&all_null).sum, Some(0));
        // Other types have none, and a merge with a part that has none has none.
        let strings: ArrayRef = Arc::new(StringArray::from(vec!["b"]));
        assert_eq!(ColumnStats::of(&strings).sum, None);
        let mut t = ColumnStats::of(&b);
        t.merge(&ColumnStats::of(&strings));
        assert_eq!(t.sum, None);
        let strings: ArrayRef = Arc::new(StringArray::from(vec!["b", "a", "c"]));
        let s = ColumnStats::of(&strings);
        assert_eq!((s.min, s.max), (Some(StatValue::Str("a".into())), Some(StatValue::Str("c".into()))));
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![f64::NEG_INFINITY, 1.0]));
        assert_eq!(ColumnStats::of(&floats).min, None);
    }

    #[test]
    fn a_dictionary_column_is_bounded_by_the_values_its_rows_use() {
        let dictionary: DictionaryArray<Int32Type> =
            vec![Some("m"), None, Some("c"), Some("x"), Some("c")].into_iter().collect();
        // Rows 2..4 use "c" and "x"; the dictionary also holds "m", which they do not use.
        let array: ArrayRef = Arc::new(dictionary.slice(2, 3));
        let s = ColumnStats::of(&array);
        assert_eq!(s.min, Some(StatValue::Str("c".into())));
        assert_eq!(s.max, Some(StatValue::Str("x".into())));
        assert_eq!(s.null_count, 0);
        let all: ArrayRef = Arc::new(dictionary);
        let s = ColumnStats::of(&all);
        assert_eq!(
            (s.min, s.max, s.null_count),
            (Some(StatValue::Str("c".into())), Some(StatValue::Str("x".into())), 1)
        );
    }

    #[test]
    fn a_part_whose_values_lie_outside_its_bounds_leaves_the_whole_unbounded() {
        // Pinot's default for a missing DOUBLE is -Infinity: a part holding it has no min.
        let with_infinity: ArrayRef = Arc::new(Float64Array::from(vec![f64::NEG_INFINITY, 2.0]));
        let finite: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 3.0]));
        let all_null: ArrayRef = Arc::new(Float64Array::from(vec![None, None]));
        for (first, second) in [(&with_infinity, &finite), (&finite, &with_infinity)] {
            let mut s = ColumnStats::of(first);
            s.merge(&ColumnStats::of(second));
            assert!(s.unbounded);
            assert_eq!((s.min, s.max), (None, None), "not 1.0..3.0: -Infinity is below");
        }
        // A part of nulls only has no bounds and takes nothing away.
        let mut s = ColumnStats::of(&finite);
        s.merge(&ColumnStats::of(&all_null));
        assert_eq!(
            (s.min, s.max, s.null_count, s.unbounded),
            (Some(StatValue::Float(1.0)), Some(StatValue::Float(3.0)), 2, false)
        );
        // A string longer than the longest kept, beside short ones.
        let long: ArrayRef = Arc::new(StringArray::from(vec!["a".repeat(300), "b".into()]));
        let short: ArrayRef = Arc::new(StringArray::from(vec!["c", "d"]));
        let mut s = ColumnStats::of(&short);
        s.merge(&ColumnStats::of(&long));
        assert_eq!((s.min, s.max), (None, None));
        // -0.0 is below 0.0, as Arrow compares.
        let zero: ArrayRef = Arc::new(Float64Array::from(vec![0.0]));
        let negative_zero: ArrayRef = Arc::new(Float64Array::from(vec![-0.0]));
        let mut s = ColumnStats::of(&negative_zero);
        s.merge(&ColumnStats::of(&zero));
        assert!(matches!(s.min, Some(StatValue::Float(m)) if m.is_sign_negative()));
        // Files written before the flag read as bounded.
        let old: ColumnStats =
            serde_json::from_str(r#"{"min": {"int": 1}, "max": {"int": 2}, "null_count": 0}"#).unwrap();
        assert!(!old.unbounded);
        assert!(!serde_json::to_string(&old).unwrap().contains("unbounded"));
    }
}
