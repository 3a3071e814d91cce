//! Pinot's array scalar functions (pinot-common `ArrayFunctions`, `ArraysOverlapScalarFunction`,
//! `StringFunctions.split`): `arrayContainsString(tags, 'x')`, `arrayElementAtInt(a, 1)`,
//! `arrayToString(a, ',')`... Each takes a multi-value column (an Arrow list) or, as an
//! ingestion transform receives a record's array, the array's JSON text. The elements are
//! converted to the type the name ends with as Pinot converts them: text to a number parsed
//! after trimming, a double to an integer truncated, a null element an error (Pinot fails the
//! call), and any null argument gives null.

use crate::multivalue::json_items;
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, ListArray,
    StringArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::collections::HashSet;
use std::sync::Arc;

/// The element type a function's name ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Elem {
    Int,
    Long,
    Float,
    Double,
    String,
}

impl Elem {
    fn arrow(self) -> DataType {
        match self {
            Elem::Int => DataType::Int32,
            Elem::Long => DataType::Int64,
            Elem::Float => DataType::Float32,
            Elem::Double => DataType::Float64,
            Elem::String => DataType::Utf8,
        }
    }

    fn list(self) -> DataType {
        DataType::List(Arc::new(Field::new_list_field(self.arrow(), true)))
    }
}

/// What an array function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Reverse,
    Sort,
    Distinct,
    Union,
    Remove,
    Concat,
    PushBack,
    PushFront,
    Slice,
    IndexesOf,
    IndexOf,
    Contains,
    ElementAt,
    Sum,
    ToString,
    Overlap,
    Split,
    Generate,
    IntersectIndices,
}

impl Op {
    /// Argument counts allowed and how to call it.
    fn arity(self) -> (usize, usize, &'static str) {
        match self {
            Op::Reverse | Op::Sort | Op::Distinct | Op::Sum => (1, 1, "(array)"),
            Op::Union | Op::Concat | Op::Overlap | Op::IntersectIndices => (2, 2, "(array1, array2)"),
            Op::Remove | Op::PushBack | Op::PushFront | Op::IndexesOf | Op::IndexOf | Op::Contains => {
                (2, 2, "(array, value)")
            }
            Op::Slice => (3, 3, "(array, start, end)"),
            Op::ElementAt => (2, 2, "(array, position from 1)"),
            Op::ToString => (2, 3, "(array, delimiter[, nullString])"),
            Op::Split => (2, 3, "(text, delimiter[, limit])"),
            Op::Generate => (3, 3, "(start, end, increment)"),
        }
    }

    fn result(self, elem: Elem) -> DataType {
        match self {
            Op::IndexOf => DataType::Int32,
            Op::IndexesOf | Op::IntersectIndices => Elem::Int.list(),
            Op::Contains | Op::Overlap => DataType::Boolean,
            Op::ElementAt | Op::Sum => elem.arrow(),
            Op::ToString => DataType::Utf8,
            Op::Split => Elem::String.list(),
            _ => elem.list(),
        }
    }
}

/// The most values one call makes for one row (`arraySlice*`, `generate*Array`): a row's own
/// numbers must not be able to ask for more memory than the machine has.
const MAX_VALUES: i64 = 100_000;

/// One value of an array, or a value compared with one.
#[derive(Debug, Clone, PartialEq)]
enum V {
    I(i64),
    F(f64),
    S(Option<String>),
}

impl V {
    /// A key that is equal exactly when the values are (floats by their bits).
    fn key(&self) -> (u8, i64, Option<&str>) {
        match self {
            V::I(i) => (0, *i, None),
            V::F(f) => (1, f.to_bits() as i64, None),
            V::S(s) => (2, 0, s.as_deref()),
        }
    }
}

/// A value as read, before conversion to an element type.
enum Raw {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

fn raw_of_json(v: &serde_json::Value) -> Raw {
    match v {
        serde_json::Value::Null => Raw::Null,
        serde_json::Value::Bool(b) => Raw::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Raw::Int(i),
            None => Raw::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Raw::Text(s.clone()),
        other => Raw::Text(other.to_string()),
    }
}

fn raw_of_array(a: &dyn Array, i: usize) -> Result<Raw> {
    if a.is_null(i) {
        return Ok(Raw::Null);
    }
    Ok(match ScalarValue::try_from_array(a, i)? {
        ScalarValue::Boolean(Some(b)) => Raw::Bool(b),
        s @ (ScalarValue::Float16(_) | ScalarValue::Float32(_) | ScalarValue::Float64(_)) => {
            Raw::Float(s.cast_to(&DataType::Float64)?.to_string().parse().unwrap_or(f64::NAN))
        }
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Raw::Text(s)
        }
        s => match s.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(v))) => Raw::Int(v),
            _ => Raw::Text(s.to_string()),
        },
    })
}

/// Converts one value to `elem` as Pinot's PinotDataType does.
fn convert(raw: Raw, elem: Elem) -> std::result::Result<V, String> {
    let integer = |raw: Raw, bits32: bool| -> std::result::Result<i64, String> {
        let v = match raw {
            Raw::Int(i) => i,
            // Java's (int) and (long) of a double saturate, as Rust's `as` does.
            Raw::Float(f) if bits32 => return Ok(i64::from(f as i32)),
            Raw::Float(f) => f as i64,
            Raw::Text(s) => {
                let t = s.trim();
                if bits32 {
                    t.parse::<i32>().map(i64::from).map_err(|_| format!("{s:?} is not an INT"))?
                } else {
                    t.parse::<i64>().map_err(|_| format!("{s:?} is not a LONG"))?
                }
            }
            Raw::Bool(b) => return Err(format!("{b} is not a number")),
            Raw::Null => return Err("a null value".to_string()),
        };
        // Java's intValue() wraps.
        Ok(if bits32 { i64::from(v as i32) } else { v })
    };
    match elem {
        Elem::Int => integer(raw, true).map(V::I),
        Elem::Long => integer(raw, false).map(V::I),
        Elem::Float | Elem::Double => {
            let f = match raw {
                Raw::Int(i) => i as f64,
                Raw::Float(f) => f,
                Raw::Text(s) => s.trim().parse::<f64>().map_err(|_| format!("{s:?} is not a number"))?,
                Raw::Bool(b) => return Err(format!("{b} is not a number")),
                Raw::Null => return Err("a null value".to_string()),
            };
            Ok(V::F(if elem == Elem::Float { f64::from(f as f32) } else { f }))
        }
        Elem::String => Ok(V::S(match raw {
            Raw::Null => None,
            Raw::Int(i) => Some(i.to_string()),
            // Java's Double.toString: "1.0", "1.0E21".
            Raw::Float(f) => Some(crate::json::java_double(f)),
            Raw::Text(s) => Some(s),
            Raw::Bool(b) => Some(b.to_string()),
        })),
    }
}

/// One Pinot array function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayFn {
    name: String,
    aliases: Vec<String>,
    title: String,
    op: Op,
    elem: Elem,
    signature: Signature,
}

/// Every array function, under Pinot's names.
pub(crate) fn functions() -> Vec<ScalarUDF> {
    use Elem::{Double, Float, Int, Long, String as Text};
    let mut out: Vec<(std::string::String, Op, Elem, Vec<&str>)> = Vec::new();
    let mut add = |name: &str, op: Op, elems: &[Elem]| {
        for &e in elems {
            let suffix = match e {
                Int => "Int",
                Long => "Long",
                Float => "Float",
                Double => "Double",
                Text => "String",
            };
            out.push((format!("{name}{suffix}"), op, e, Vec::new()));
        }
    };
    add("arrayReverse", Op::Reverse, &[Int, Text]);
    add("arraySort", Op::Sort, &[Int, Text]);
    add("arrayIndexOf", Op::IndexOf, &[Int, Text]);
    add("arrayIndexesOf", Op::IndexesOf, &[Int, Long, Float, Double, Text]);
    add("arrayContains", Op::Contains, &[Int, Text]);
    add("arraySlice", Op::Slice, &[Int, Long, Text]);
    add("arrayDistinct", Op::Distinct, &[Int, Text]);
    add("arrayRemove", Op::Remove, &[Int, Text]);
    add("arrayUnion", Op::Union, &[Int, Text]);
    add("arrayConcat", Op::Concat, &[Int, Long, Float, Double, Text]);
    add("arrayPushBack", Op::PushBack, &[Int, Long, Float, Double, Text]);
    add("arrayPushFront", Op::PushFront, &[Int, Long, Float, Double, Text]);
    add("arrayElementAt", Op::ElementAt, &[Int, Long, Float, Double, Text]);
    add("arraySum", Op::Sum, &[Int, Long]);
    for (name, e) in [("generateIntArray", Int), ("generateLongArray", Long), ("generateFloatArray", Float)] {
        out.push((name.to_string(), Op::Generate, e, Vec::new()));
    }
    out.push(("generateDoubleArray".to_string(), Op::Generate, Double, Vec::new()));
    out.push(("intersectIndices".to_string(), Op::IntersectIndices, Int, Vec::new()));
    out.push(("arrayToString".to_string(), Op::ToString, Text, Vec::new()));
    out.push(("ARRAYS_OVERLAP".to_string(), Op::Overlap, Text, vec!["arraysOverlap"]));
    out.push(("split".to_string(), Op::Split, Text, vec!["stringToArray"]));
    out.into_iter()
        .map(|(title, op, elem, aliases)| {
            let name = title.to_ascii_lowercase();
            // Pinot finds a function with or without underscores (array_contains_string).
            let mut aliases: Vec<std::string::String> =
                aliases.iter().map(|a| a.to_ascii_lowercase()).collect();
            let snake = snake_case(&title);
            if !title.contains('_') && snake != name && !aliases.contains(&snake) {
                aliases.push(snake);
            }
            ScalarUDF::from(ArrayFn {
                name,
                aliases,
                title,
                op,
                elem,
                // Any arguments, dictionaries decoded (`coerce_types`).
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.char_indices() {
        if c.is_ascii_uppercase() && i > 0 && !name[..i].ends_with('_') {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out.replace("__", "_")
}

/// Reads argument values row by row.
struct Args<'a> {
    f: &'a ArrayFn,
    arrays: Vec<ArrayRef>,
}

impl Args<'_> {
    fn error(&self, message: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!("{}: {message}", self.f.title))
    }

    fn null(&self, row: usize) -> bool {
        self.arrays.iter().any(|a| a.is_null(row))
    }

    /// Argument `i` at `row` as an array of the function's elements.
    fn array(&self, i: usize, row: usize, elem: Elem) -> Result<Vec<V>> {
        let a = &self.arrays[i];
        let raws: Vec<Raw> = match a.data_type() {
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
                let values = match a.data_type() {
                    DataType::List(_) => a.as_list::<i32>().value(row),
                    DataType::LargeList(_) => a.as_list::<i64>().value(row),
                    _ => a.as_fixed_size_list().value(row),
                };
                (0..values.len()).map(|j| raw_of_array(values.as_ref(), j)).collect::<Result<_>>()?
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let text = match raw_of_array(a.as_ref(), row)? {
                    Raw::Text(t) => t,
                    _ => return Err(self.error(format_args!("argument {} is not an array", i + 1))),
                };
                json_items(&text)
                    .ok_or_else(|| self.error(format_args!("argument {}: {text:?} is not an array", i + 1)))?
                    .iter()
                    .map(raw_of_json)
                    .collect()
            }
            other => return Err(self.error(format_args!("argument {} must be an array, not {other}", i + 1))),
        };
        raws.into_iter()
            .map(|r| convert(r, elem).map_err(|e| self.error(format_args!("argument {}: {e}", i + 1))))
            .collect()
    }

    fn value(&self, i: usize, row: usize, elem: Elem) -> Result<V> {
        convert(raw_of_array(self.arrays[i].as_ref(), row)?, elem)
            .map_err(|e| self.error(format_args!("argument {}: {e}", i + 1)))
    }

    fn int(&self, i: usize, row: usize) -> Result<i64> {
        match self.value(i, row, Elem::Long)? {
            V::I(v) => Ok(v),
            _ => Err(self.error(format_args!("argument {} is not an integer", i + 1))),
        }
    }

    fn text(&self, i: usize, row: usize) -> Result<String> {
        match self.value(i, row, Elem::String)? {
            V::S(Some(s)) => Ok(s),
            _ => Err(self.error(format_args!("argument {} is not text", i + 1))),
        }
    }
}

/// What one row gives.
enum Out {
    Null,
    List(Vec<V>),
    One(V),
    Bool(bool),
}

impl ArrayFn {
    fn row(&self, args: &Args<'_>, row: usize) -> Result<Out> {
        let elem = self.elem;
        if args.null(row) {
            return Ok(Out::Null);
        }
        let first = || args.array(0, row, elem);
        Ok(match self.op {
            Op::Reverse => Out::List(first()?.into_iter().rev().collect()),
            Op::Sort => {
                let mut a = first()?;
                a.sort_by(|x, y| match (x, y) {
                    (V::I(a), V::I(b)) => a.cmp(b),
                    (V::F(a), V::F(b)) => a.total_cmp(b),
                    // Java's String.compareTo: by UTF-16 code unit.
                    (V::S(a), V::S(b)) => a
                        .as_deref()
                        .map(|s| s.encode_utf16())
                        .into_iter()
                        .flatten()
                        .cmp(b.as_deref().map(|s| s.encode_utf16()).into_iter().flatten()),
                    _ => std::cmp::Ordering::Equal,
                });
                Out::List(a)
            }
            Op::Distinct => Out::List(distinct(first()?)),
            Op::Union => {
                let mut a = first()?;
                a.extend(args.array(1, row, elem)?);
                Out::List(distinct(a))
            }
            Op::Concat => {
                let mut a = first()?;
                a.extend(args.array(1, row, elem)?);
                Out::List(a)
            }
            Op::Remove => {
                let mut a = first()?;
                let v = args.value(1, row, elem)?;
                if let Some(p) = a.iter().position(|x| x.key() == v.key()) {
                    a.remove(p);
                }
                Out::List(a)
            }
            Op::PushBack => {
                let mut a = first()?;
                a.push(args.value(1, row, elem)?);
                Out::List(a)
            }
            Op::PushFront => {
                let mut a = first()?;
                a.insert(0, args.value(1, row, elem)?);
                Out::List(a)
            }
            Op::Slice => {
                // Java's Arrays.copyOfRange: from 0, end excluded, padded past the end.
                let a = first()?;
                let (start, end) = (args.int(1, row)?, args.int(2, row)?);
                if start < 0 || start > a.len() as i64 {
                    return Err(args.error(format_args!("start {start} is outside the array")));
                }
                if start > end {
                    return Err(args.error(format_args!("start {start} is after end {end}")));
                }
                if end - start > MAX_VALUES {
                    return Err(args.error(format_args!("a slice of {} values is too long", end - start)));
                }
                let pad = if elem == Elem::String { V::S(None) } else { V::I(0) };
                Out::List(
                    (start..end).map(|i| a.get(i as usize).cloned().unwrap_or_else(|| pad.clone())).collect(),
                )
            }
            Op::IndexesOf => {
                let a = first()?;
                let v = args.value(1, row, elem)?;
                Out::List(
                    a.iter()
                        .enumerate()
                        .filter(|(_, x)| x.key() == v.key())
                        .map(|(i, _)| V::I(i as i64))
                        .collect(),
                )
            }
            Op::IndexOf => {
                let a = first()?;
                let v = args.value(1, row, elem)?;
                Out::One(V::I(a.iter().position(|x| x.key() == v.key()).map_or(-1, |p| p as i64)))
            }
            Op::Contains => {
                let a = first()?;
                let v = args.value(1, row, elem)?;
                Out::Bool(a.iter().any(|x| x.key() == v.key()))
            }
            Op::ElementAt => {
                // From 1; out of range gives Pinot's placeholder (0 or "").
                let a = first()?;
                let i = args.int(1, row)?;
                let placeholder = match elem {
                    Elem::String => V::S(Some(String::new())),
                    Elem::Float | Elem::Double => V::F(0.0),
                    _ => V::I(0),
                };
                Out::One(if i > 0 && i <= a.len() as i64 { a[i as usize - 1].clone() } else { placeholder })
            }
            Op::Sum => {
                let a = first()?;
                let sum = a.iter().fold(0i64, |s, v| match v {
                    V::I(i) if elem == Elem::Int => i64::from((s as i32).wrapping_add(*i as i32)),
                    V::I(i) => s.wrapping_add(*i),
                    _ => s,
                });
                Out::One(V::I(sum))
            }
            Op::ToString => {
                let a = args.array(0, row, Elem::String)?;
                let delimiter = args.text(1, row)?;
                if args.arrays.len() == 3 {
                    let null_string = args.text(2, row)?;
                    if a.is_empty() {
                        return Ok(Out::One(V::S(Some(String::new()))));
                    }
                    let parts: Vec<&str> = a
                        .iter()
                        .map(|v| match v {
                            V::S(Some(s)) if !s.is_empty() => s.as_str(),
                            _ => null_string.as_str(),
                        })
                        .collect();
                    Out::One(V::S(Some(parts.join(&delimiter))))
                } else {
                    let parts: Vec<&str> = a
                        .iter()
                        .map(|v| match v {
                            V::S(Some(s)) => s.as_str(),
                            _ => "null",
                        })
                        .collect();
                    Out::One(V::S(Some(parts.join(&delimiter))))
                }
            }
            Op::Overlap => {
                let a = args.array(0, row, Elem::String)?;
                let b = args.array(1, row, Elem::String)?;
                let set: HashSet<_> = a.iter().map(V::key).collect();
                Out::Bool(b.iter().any(|v| set.contains(&v.key())))
            }
            Op::Split => {
                // StringUtils.splitByWholeSeparator: no empty tokens; a limit keeps the rest whole.
                let text = args.text(0, row)?;
                let separator = args.text(1, row)?;
                let limit = if args.arrays.len() == 3 { args.int(2, row)? } else { 0 };
                Out::List(split(&text, &separator, limit).into_iter().map(|s| V::S(Some(s))).collect())
            }
            Op::Generate => {
                let (start, end, step) = match elem {
                    Elem::Int | Elem::Long => {
                        let (s, e, i) = (args.int(0, row)?, args.int(1, row)?, args.int(2, row)?);
                        (s as f64, e as f64, i as f64)
                    }
                    _ => {
                        let f = |i| match args.value(i, row, Elem::Double) {
                            Ok(V::F(f)) => Ok(f),
                            Ok(_) => Err(args.error("not a number")),
                            Err(e) => Err(e),
                        };
                        (f(0)?, f(1)?, f(2)?)
                    }
                };
                if step == 0.0 {
                    return Err(args.error("the increment is 0"));
                }
                let size = ((end - start) / step).trunc() + 1.0;
                if !(0.0..=MAX_VALUES as f64).contains(&size) {
                    return Err(args.error(format_args!("cannot make an array of {size} values")));
                }
                let (first, by) = match elem {
                    Elem::Int | Elem::Long => (args.int(0, row)?, args.int(2, row)?),
                    _ => (0, 0),
                };
                Out::List(
                    (0..size as i64)
                        .map(|k| match elem {
                            // Exact in i64, wrapping as Java's arithmetic does.
                            Elem::Int | Elem::Long => V::I(first.wrapping_add(k.wrapping_mul(by))),
                            Elem::Float => V::F(f64::from((start + k as f64 * step) as f32)),
                            _ => V::F(start + k as f64 * step),
                        })
                        .collect(),
                )
            }
            Op::IntersectIndices => {
                // Pinot's loop as written: the second list moves on only at a match.
                let (a, b) = (first()?, args.array(1, row, elem)?);
                let (mut i, mut j, mut out) = (0, 0, Vec::new());
                while i < a.len() && j < b.len() {
                    if a[i] == b[j] {
                        out.push(a[i].clone());
                        j += 1;
                    }
                    i += 1;
                }
                Out::List(out)
            }
        })
    }
}

/// First occurrences, in order.
fn distinct(values: Vec<V>) -> Vec<V> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for v in values {
        let key = match &v {
            V::I(i) => (0u8, *i, None),
            V::F(f) => (1, f.to_bits() as i64, None),
            V::S(s) => (2, 0, s.clone()),
        };
        if seen.insert(key) {
            out.push(v);
        }
    }
    out
}

/// Apache commons `StringUtils.splitByWholeSeparator(text, separator, limit)`: an empty separator
/// splits on whitespace; empty tokens are skipped; with a positive limit the last token keeps
/// the rest of the text.
fn split(text: &str, separator: &str, limit: i64) -> Vec<String> {
    // The length of the separator at `pos`, if one starts there.
    let at = |pos: usize| -> Option<usize> {
        let rest = &text[pos..];
        if separator.is_empty() {
            rest.chars().next().filter(|c| c.is_whitespace()).map(char::len_utf8)
        } else {
            rest.starts_with(separator).then_some(separator.len())
        }
    };
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        if let Some(n) = at(pos) {
            pos += n;
            continue;
        }
        if limit > 0 && out.len() as i64 == limit - 1 {
            out.push(text[pos..].to_string());
            break;
        }
        let mut end = pos;
        while end < text.len() && at(end).is_none() {
            end += text[end..].chars().next().map_or(1, char::len_utf8);
        }
        out.push(text[pos..end].to_string());
        pos = end;
    }
    out
}

fn build(rows: Vec<Out>, t: &DataType) -> Result<ArrayRef> {
    let scalar = |v: Option<&V>, t: &DataType| -> ScalarValue {
        match (v, t) {
            (Some(V::I(i)), DataType::Int32) => ScalarValue::Int32(Some(*i as i32)),
            (Some(V::I(i)), DataType::Int64) => ScalarValue::Int64(Some(*i)),
            (Some(V::I(i)), DataType::Float32) => ScalarValue::Float32(Some(*i as f32)),
            (Some(V::I(i)), DataType::Float64) => ScalarValue::Float64(Some(*i as f64)),
            (Some(V::F(f)), DataType::Float32) => ScalarValue::Float32(Some(*f as f32)),
            (Some(V::F(f)), DataType::Float64) => ScalarValue::Float64(Some(*f)),
            (Some(V::S(s)), DataType::Utf8) => ScalarValue::Utf8(s.clone()),
            _ => ScalarValue::try_from(t).unwrap_or(ScalarValue::Null),
        }
    };
    Ok(match t {
        DataType::List(field) => {
            let element = field.data_type();
            let mut offsets = vec![0i32];
            let mut values: Vec<ScalarValue> = Vec::new();
            let mut valid = Vec::with_capacity(rows.len());
            for r in &rows {
                if let Out::List(items) = r {
                    values.extend(items.iter().map(|v| scalar(Some(v), element)));
                    valid.push(true);
                } else {
                    valid.push(false);
                }
                offsets.push(values.len() as i32);
            }
            let values = if values.is_empty() {
                arrow::array::new_empty_array(element)
            } else {
                ScalarValue::iter_to_array(values)?
            };
            Arc::new(ListArray::try_new(
                Arc::clone(field),
                OffsetBuffer::new(offsets.into()),
                values,
                Some(valid.into()),
            )?)
        }
        DataType::Boolean => Arc::new(
            rows.iter().map(|r| if let Out::Bool(b) = r { Some(*b) } else { None }).collect::<BooleanArray>(),
        ),
        DataType::Int32 => Arc::new(
            rows.iter()
                .map(|r| if let Out::One(V::I(i)) = r { Some(*i as i32) } else { None })
                .collect::<Int32Array>(),
        ),
        DataType::Int64 => Arc::new(
            rows.iter()
                .map(|r| if let Out::One(V::I(i)) = r { Some(*i) } else { None })
                .collect::<Int64Array>(),
        ),
        DataType::Float32 => Arc::new(
            rows.iter()
                .map(|r| if let Out::One(V::F(f)) = r { Some(*f as f32) } else { None })
                .collect::<Float32Array>(),
        ),
        DataType::Float64 => Arc::new(
            rows.iter()
                .map(|r| if let Out::One(V::F(f)) = r { Some(*f) } else { None })
                .collect::<Float64Array>(),
        ),
        _ => Arc::new(
            rows.iter()
                .map(|r| if let Out::One(V::S(s)) = r { s.clone() } else { None })
                .collect::<StringArray>(),
        ),
    })
}

impl ScalarUDFImpl for ArrayFn {
    fn name(&self) -> &str {
        &self.name
    }
    fn aliases(&self) -> &[String] {
        &self.aliases
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(crate::without_dictionaries(arg_types))
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.op.result(self.elem))
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let (lo, hi, usage) = self.op.arity();
        let n = args.arg_fields.len();
        if n < lo || n > hi {
            return plan_err!("{}: wrong number of arguments: use {}{usage}", self.title, self.title);
        }
        Ok(Arc::new(Field::new(&self.name, self.op.result(self.elem), true)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<Result<Vec<_>>>()?;
        let reader = Args { f: self, arrays };
        let out = (0..rows).map(|row| self.row(&reader, row)).collect::<Result<Vec<_>>>()?;
        let values: usize = out.iter().map(|o| if let Out::List(v) = o { v.len() } else { 0 }).sum();
        if values > 10 * MAX_VALUES as usize {
            return Err(
                reader.error(format_args!("the call makes {values} values, more than {}", 10 * MAX_VALUES))
            );
        }
        Ok(ColumnarValue::Array(build(out, &self.op.result(self.elem))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_follows_commons_lang() {
        assert_eq!(split("a,,b,c", ",", 0), ["a", "b", "c"]);
        assert_eq!(split("a, b  c", "", 0), ["a,", "b", "c"]);
        assert_eq!(split("a::b::c::d", "::", 2), ["a", "b::c::d"]);
        assert_eq!(split("a,,b,c", ",", 2), ["a", "b,c"]);
        assert_eq!(split("", ",", 0), Vec::<String>::new());
    }

    #[test]
    fn names_have_pinots_underscore_spellings() {
        let names: Vec<Vec<String>> = functions()
            .iter()
            .map(|f| f.aliases().iter().cloned().chain([f.name().to_string()]).collect())
            .collect();
        assert!(names.iter().any(|n| n.contains(&"array_contains_string".to_string())));
        assert!(names.iter().any(|n| n.contains(&"arrayelementatint".to_string())));
        assert!(names.iter().any(|n| n.contains(&"stringtoarray".to_string())));
    }
}
