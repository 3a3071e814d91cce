//! JSON_MATCH(json, 'filter'): Pinot's filter over a JSON column, evaluated document by document
//! (Pinot answers it from a JSON index; Shoal has none, and reads each document instead).
//!
//! The semantics are the index's (pinot-segment-local MutableJsonIndexImpl.java): a document is
//! flattened into records (pinot-spi JsonUtils.flatten: nested keys joined with `.`, each element
//! of an array a record of its own, arrays of one object crossed with those of another), every
//! leaf a string; a predicate holds for a record, AND and OR combine predicates on the same
//! record, and the document matches when one of its records does. So
//! `'"$.a[*].x" = 1 AND "$.a[*].y" = 2'` needs one element with both.
//!
//! Predicates: `=`, `!=`/`<>`, `IN`, `NOT IN`, `<`, `<=`, `>`, `>=`, `BETWEEN`, `IS NOT NULL`,
//! `REGEXP_LIKE(key, 'regex')` (the whole value must match), and `IS NULL` (the document has no
//! such key; only as the whole filter, as in Pinot). Keys are `"$.a.b"`, `"$.a[0].b"`,
//! `"$.a[*].b"` or the legacy `"a.b"`. Anything else (NOT, functions, column references) is
//! refused with an error that says what is supported.

use crate::json::Json;
use crate::scalar::Call;
use arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::common::Result;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use regex::Regex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most records one document may flatten into (arrays crossed with arrays multiply).
const MAX_RECORDS: usize = 100_000;

/// One flattened record: key (`.a..b`, `.a.$index`) → leaf text.
type Record = BTreeMap<String, String>;

#[derive(Debug)]
enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Predicate(Predicate),
}

#[derive(Debug)]
struct Predicate {
    /// The flattened key, array indexes replaced by `.`.
    key: String,
    /// `[n]` in the key: (`.a.$index`, `n`) pairs the same record must hold.
    indexes: Vec<(String, String)>,
    test: Test,
}

#[derive(Debug)]
enum Test {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    NotNull,
    Regexp(Regex),
    /// Bounds with inclusiveness, compared as doubles when the literals are numbers, else as
    /// strings (MutableJsonIndexImpl's RANGE).
    Range {
        lower: Option<(String, bool)>,
        upper: Option<(String, bool)>,
        numeric: bool,
    },
}

/// The whole filter: IS NULL only at the top (Pinot flips the matching documents for it).
#[derive(Debug)]
enum TopFilter {
    IsNull(Predicate),
    Filter(Filter),
}

pub(crate) fn json_match(call: &Call) -> Result<ArrayRef> {
    let text = call.text(1)?;
    let filter = parse(&text).map_err(|e| call.error(format_args!("{e} (in {text:?})")))?;
    let docs = call.texts(0)?;
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs.iter() {
        // A null document is Pinot's default JSON value, the text `null`: no records.
        let records = match doc.and_then(Json::parse) {
            Some(json) => flatten(&json).map_err(|e| call.error(e))?,
            None => Vec::new(),
        };
        let matched = match &filter {
            TopFilter::IsNull(p) => !records.iter().any(|r| p.holds_key(r)),
            TopFilter::Filter(f) => {
                let mut any = false;
                for r in &records {
                    if f.holds(r).map_err(|e| call.error(e))? {
                        any = true;
                        break;
                    }
                }
                any
            }
        };
        out.push(Some(matched));
    }
    Ok(Arc::new(BooleanArray::from(out)))
}

fn unsupported(what: impl std::fmt::Display) -> String {
    format!(
        "JSON_MATCH does not support {what}: use \"key\" = 'v', !=, IN, NOT IN, <, <=, >, >=, BETWEEN, IS [NOT] NULL, REGEXP_LIKE(\"key\", 'regex'), AND, OR"
    )
}

fn parse(text: &str) -> std::result::Result<TopFilter, String> {
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("the filter does not parse: {e}"))?;
    if let Expr::IsNull(inner) = &expr {
        return Ok(TopFilter::IsNull(Predicate::new(inner, Test::NotNull)?));
    }
    Ok(TopFilter::Filter(filter(&expr)?))
}

fn filter(expr: &Expr) -> std::result::Result<Filter, String> {
    Ok(match expr {
        Expr::Nested(inner) => filter(inner)?,
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            Filter::And(vec![filter(left)?, filter(right)?])
        }
        Expr::BinaryOp { left, op: BinaryOperator::Or, right } => {
            Filter::Or(vec![filter(left)?, filter(right)?])
        }
        Expr::BinaryOp { left, op, right } => {
            let (key, value, op) = match (literal(right), literal(left)) {
                (Some(v), _) => (left, v, op.clone()),
                (None, Some(v)) => (right, v, flip(op)),
                _ => return Err(unsupported(format_args!("{expr}"))),
            };
            let numeric = value.1;
            let value = value.0;
            let test = match op {
                BinaryOperator::Eq => Test::Eq(value),
                BinaryOperator::NotEq => Test::NotEq(value),
                BinaryOperator::Lt => Test::Range { lower: None, upper: Some((value, false)), numeric },
                BinaryOperator::LtEq => Test::Range { lower: None, upper: Some((value, true)), numeric },
                BinaryOperator::Gt => Test::Range { lower: Some((value, false)), upper: None, numeric },
                BinaryOperator::GtEq => Test::Range { lower: Some((value, true)), upper: None, numeric },
                other => return Err(unsupported(format_args!("the operator {other}"))),
            };
            Filter::Predicate(Predicate::new(key, test)?)
        }
        Expr::InList { expr: key, list, negated } => {
            let values = list
                .iter()
                .map(|v| literal(v).map(|(v, _)| v).ok_or_else(|| unsupported(format_args!("the value {v}"))))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Filter::Predicate(Predicate::new(
                key,
                if *negated { Test::NotIn(values) } else { Test::In(values) },
            )?)
        }
        Expr::Between { expr: key, negated: false, low, high } => {
            let (Some((low, ln)), Some((high, hn))) = (literal(low), literal(high)) else {
                return Err(unsupported(format_args!("{expr}")));
            };
            let test = Test::Range { lower: Some((low, true)), upper: Some((high, true)), numeric: ln && hn };
            Filter::Predicate(Predicate::new(key, test)?)
        }
        Expr::IsNotNull(key) => Filter::Predicate(Predicate::new(key, Test::NotNull)?),
        Expr::IsNull(_) => return Err("IS NULL can only be the whole JSON_MATCH filter, as in Pinot".into()),
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("REGEXP_LIKE") => {
            let args: Vec<&Expr> = match &f.args {
                FunctionArguments::List(list) => list
                    .args
                    .iter()
                    .filter_map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let [key, pattern] = args.as_slice() else {
                return Err("use REGEXP_LIKE(\"key\", 'regex')".into());
            };
            let Some((pattern, false)) = literal(pattern) else {
                return Err("REGEXP_LIKE's pattern must be a text literal".into());
            };
            let regex = Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| format!("the regular expression {pattern:?} is not supported: {e}"))?;
            Filter::Predicate(Predicate::new(key, Test::Regexp(regex))?)
        }
        other => return Err(unsupported(other)),
    })
}

fn flip(op: &BinaryOperator) -> BinaryOperator {
    match op {
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        other => other.clone(),
    }
}

/// A literal as the text the index holds, and whether it is a number.
fn literal(expr: &Expr) -> Option<(String, bool)> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some((s.clone(), false)),
            Value::Number(n, _) => Some((n.clone(), true)),
            Value::Boolean(b) => Some((b.to_string(), false)),
            _ => None,
        },
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => match literal(expr) {
            Some((n, true)) => Some((format!("-{n}"), true)),
            _ => None,
        },
        _ => None,
    }
}

impl Predicate {
    /// The key of `expr` (`"$.a[0].b"` → `.a..b` and `.a.$index` = `0`), as
    /// MutableJsonIndexImpl.getKeyAndFlattenedDocIds rewrites it.
    fn new(expr: &Expr, test: Test) -> std::result::Result<Predicate, String> {
        let name = match expr {
            Expr::Identifier(id) => id.value.clone(),
            Expr::CompoundIdentifier(parts) => {
                parts.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join(".")
            }
            other => {
                return Err(unsupported(format_args!(
                    "{other} as a key: put the JSON path in double quotes"
                )));
            }
        };
        let mut key = match name.strip_prefix('$') {
            Some(rest) => rest.to_string(),
            None => format!(".{name}"),
        };
        let mut indexes = Vec::new();
        while let Some(open) = key.find('[') {
            let close = key[open..]
                .find(']')
                .map(|c| open + c)
                .ok_or_else(|| format!("missing ] in the key {name:?}"))?;
            let index = key[open + 1..close].trim().to_string();
            let (left, right) = (key[..open].to_string(), key[close + 1..].to_string());
            if index != "*" {
                if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "the array index {index:?} in {name:?} is not supported: use [n] or [*]"
                    ));
                }
                indexes.push((format!("{left}.$index"), index));
            }
            key = format!("{left}.{right}");
        }
        Ok(Predicate { key, indexes, test })
    }

    /// True when the record has the key (and its indexes).
    fn holds_key(&self, record: &Record) -> bool {
        record.contains_key(&self.key) && self.indexes.iter().all(|(k, v)| record.get(k) == Some(v))
    }

    fn holds(&self, record: &Record) -> std::result::Result<bool, String> {
        if !self.indexes.iter().all(|(k, v)| record.get(k) == Some(v)) {
            return Ok(false);
        }
        let Some(value) = record.get(&self.key) else { return Ok(false) };
        Ok(match &self.test {
            Test::Eq(v) => value == v,
            Test::NotEq(v) => value != v,
            Test::In(vs) => vs.contains(value),
            Test::NotIn(vs) => !vs.contains(value),
            Test::NotNull => true,
            Test::Regexp(r) => r.is_match(value),
            Test::Range { lower, upper, numeric: true } => {
                // DOUBLE.convert: Double.parseDouble, which fails the query on a non-number.
                let number = |s: &str| {
                    s.trim().parse::<f64>().map_err(|_| format!("{s:?} under {} is not a number", self.key))
                };
                let v = number(value)?;
                let lower_ok = match lower {
                    Some((l, inclusive)) => {
                        let l = number(l)?;
                        if *inclusive { v >= l } else { v > l }
                    }
                    None => true,
                };
                let upper_ok = match upper {
                    Some((u, inclusive)) => {
                        let u = number(u)?;
                        if *inclusive { v <= u } else { v < u }
                    }
                    None => true,
                };
                lower_ok && upper_ok
            }
            Test::Range { lower, upper, numeric: false } => {
                let v = value.as_str();
                lower.as_ref().is_none_or(|(l, inc)| if *inc { v >= l.as_str() } else { v > l.as_str() })
                    && upper
                        .as_ref()
                        .is_none_or(|(u, inc)| if *inc { v <= u.as_str() } else { v < u.as_str() })
            }
        })
    }
}

impl Filter {
    fn holds(&self, record: &Record) -> std::result::Result<bool, String> {
        Ok(match self {
            Filter::Predicate(p) => p.holds(record)?,
            Filter::And(fs) => {
                for f in fs {
                    if !f.holds(record)? {
                        return Ok(false);
                    }
                }
                true
            }
            Filter::Or(fs) => {
                for f in fs {
                    if f.holds(record)? {
                        return Ok(true);
                    }
                }
                false
            }
        })
    }
}

/// pinot-spi JsonUtils.flatten with the default index config: null leaves and empty arrays and
/// objects add nothing; each array element is a record with `.$index`; an object's arrays are
/// crossed with one another.
fn flatten(json: &Json) -> std::result::Result<Vec<Record>, String> {
    let too_many = || format!("a document flattens into more than {MAX_RECORDS} records");
    Ok(match json {
        Json::Null => Vec::new(),
        Json::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                for child in flatten(item)? {
                    let mut r: Record = child.into_iter().map(|(k, v)| (format!(".{k}"), v)).collect();
                    r.insert(".$index".into(), i.to_string());
                    out.push(r);
                    if out.len() > MAX_RECORDS {
                        return Err(too_many());
                    }
                }
            }
            out
        }
        Json::Object(fields) => {
            let mut flat = Record::new();
            let mut nested: Vec<Vec<Record>> = Vec::new();
            for (field, value) in fields {
                let prefix = format!(".{field}");
                let children = flatten(value)?;
                let prefixed = |r: Record| -> Record {
                    r.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect()
                };
                match children.len() {
                    0 => {}
                    1 => flat.extend(prefixed(children.into_iter().next().unwrap_or_default())),
                    _ => nested.push(children.into_iter().map(prefixed).collect()),
                }
            }
            let mut out = vec![flat];
            for records in nested {
                if out.len().saturating_mul(records.len()) > MAX_RECORDS {
                    return Err(too_many());
                }
                out = out
                    .iter()
                    .flat_map(|base| {
                        records.iter().map(move |r| {
                            let mut merged = base.clone();
                            merged.extend(r.clone());
                            merged
                        })
                    })
                    .collect();
            }
            if out.len() == 1 && out[0].is_empty() {
                return Ok(Vec::new());
            }
            out
        }
        leaf => vec![Record::from([(String::new(), leaf.as_text())])],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(filter: &str, doc: &str) -> bool {
        let records = flatten(&Json::parse(doc).unwrap()).unwrap();
        match parse(filter).unwrap() {
            TopFilter::IsNull(p) => !records.iter().any(|r| p.holds_key(r)),
            TopFilter::Filter(f) => records.iter().any(|r| f.holds(r).unwrap()),
        }
    }

    #[test]
    fn flattens_as_pinot_json_utils() {
        // The example in JsonUtils.java's comment.
        let doc = r#"{"name": "adam", "addresses": [{"country": "us", "street": "main st", "number": 1},
                                                    {"country": "ca", "street": "second st", "number": 2}]}"#;
        let records = flatten(&Json::parse(doc).unwrap()).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1][".name"], "adam");
        assert_eq!(records[1][".addresses.$index"], "1");
        assert_eq!(records[1][".addresses..country"], "ca");
        assert_eq!(records[1][".addresses..number"], "2");
    }

    #[test]
    fn filters_from_pinot_docs() {
        let doc = r#"{"name": "adam", "age": 30, "addresses": [{"country": "us", "number": 1}, {"country": "ca", "number": 2}]}"#;
        assert!(matches(r#""$.name" = 'adam'"#, doc));
        assert!(!matches(r#""$.name" = 'bob'"#, doc));
        assert!(matches(r#""name" = 'adam'"#, doc));
        assert!(matches(r#""$.name" IN ('bob', 'adam')"#, doc));
        assert!(matches(r#""$.name" != 'bob'"#, doc));
        assert!(matches(r#""$.addresses[*].country" = 'ca'"#, doc));
        assert!(matches(r#""$.addresses[0].country" = 'us'"#, doc));
        assert!(!matches(r#""$.addresses[0].country" = 'ca'"#, doc));
        // Both conditions must hold on one element.
        assert!(matches(r#""$.addresses[*].country" = 'ca' AND "$.addresses[*].number" = 2"#, doc));
        assert!(!matches(r#""$.addresses[*].country" = 'ca' AND "$.addresses[*].number" = 1"#, doc));
        assert!(matches(r#""$.addresses[*].number" BETWEEN 2 AND 5"#, doc));
        assert!(matches(r#""$.age" > 20 AND "$.age" <= 30"#, doc));
        assert!(matches(r#"REGEXP_LIKE("$.name", 'ad.*')"#, doc));
        assert!(!matches(r#"REGEXP_LIKE("$.name", 'da')"#, doc));
        assert!(matches(r#""$.phone" IS NULL"#, doc));
        assert!(!matches(r#""$.name" IS NULL"#, doc));
        assert!(matches(r#""$.name" IS NOT NULL"#, doc));
        for bad in
            [r#"NOT "$.a" = 1"#, r#""$.a" = "$.b""#, r#""$.a" LIKE 'x%'"#, r#""$.a" = 1 AND "$.b" IS NULL"#]
        {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
