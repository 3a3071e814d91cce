//! Pinot's JSON functions: JSON_EXTRACT_SCALAR, jsonPathString, jsonPathLong, jsonPathDouble
//! and jsonExtractKey (pinot-common JsonFunctions.java, pinot-core
//! JsonExtractScalarTransformFunction.java and JsonExtractKeyTransformFunction.java).
//!
//! Documents are read keeping their keys in document order, as Jackson does, so that keys,
//! wildcard matches and objects written back as text come out in the order Pinot gives. Paths are
//! the part of Jayway's JsonPath Pinot users write: `$`, `.key`, `['key']`, `[n]` (negative from
//! the end), `.*` and `[*]`; filters, slices, unions and deep scans (`..`) are refused with an
//! error naming the path.

use crate::scalar::Call;
use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, ListBuilder, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::ColumnarValue;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt::{self, Write};
use std::sync::Arc;

/// A JSON value whose objects keep their keys in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Json, D::Error> {
        struct JsonVisitor;
        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> std::result::Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<Json, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Json, E> {
                Ok(Json::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Json, E> {
                Ok(i64::try_from(v).map(Json::Int).unwrap_or(Json::UInt(v)))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Json, E> {
                Ok(Json::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Json, E> {
                Ok(Json::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Json, E> {
                Ok(Json::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Json, A::Error> {
                let mut fields: Vec<(String, Json)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    // A repeated key keeps its first place and its last value, as Jackson's tree.
                    match fields.iter_mut().find(|(key, _)| *key == k) {
                        Some(field) => field.1 = v,
                        None => fields.push((k, v)),
                    }
                }
                Ok(Json::Object(fields))
            }
        }
        deserializer.deserialize_any(JsonVisitor)
    }
}

impl Json {
    /// Parses a document; None when it is not JSON.
    pub(crate) fn parse(text: &str) -> Option<Json> {
        serde_json::from_str(text).ok()
    }

    /// [`Json::as_text`], taking the value.
    pub(crate) fn into_text(self) -> String {
        match self {
            Json::Str(s) => s,
            other => other.as_text(),
        }
    }

    /// The value as Jackson's `asText` gives a leaf (objects and arrays: their JSON text).
    pub(crate) fn as_text(&self) -> String {
        match self {
            Json::Str(s) => s.clone(),
            Json::Null => "null".to_string(),
            other => other.to_string(),
        }
    }
}

/// Compact JSON text, as Jackson's `objectToString` writes it (doubles as Java's
/// `Double.toString`: `1.0`, `1.0E10`).
impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Int(i) => write!(f, "{i}"),
            Json::UInt(u) => write!(f, "{u}"),
            Json::Float(v) => f.write_str(&java_double(*v)),
            Json::Str(s) => f.write_str(&serde_json::Value::String(s.clone()).to_string()),
            Json::Array(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Json::Object(fields) => {
                f.write_char('{')?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{}:{v}", serde_json::Value::String(k.clone()))?;
                }
                f.write_char('}')
            }
        }
    }
}

/// Java's `Double.toString`: plain between 10^-3 and 10^7 (always with a fraction digit),
/// otherwise `d.dddE±n`; the digits are the shortest that read back as the same double.
pub(crate) fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let a = v.abs();
    if (1e-3..1e7).contains(&a) {
        let s = format!("{v}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let sci = format!("{v:e}"); // e.g. 1.5e10, -2e-5
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let mantissa = if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
    format!("{mantissa}E{exp}")
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Key(String),
    Index(i64),
    Wildcard,
}

/// `jsonPathString(json, '$.a.b')` with a path of keys only, compiled once, for ingestion: the
/// transforms compute it while reading a chunk instead of through the function.
#[derive(Debug, Clone)]
pub struct JsonKeysPath {
    path: Path,
    keys: Vec<String>,
}

impl JsonKeysPath {
    /// The path when it names keys only (`$.user.id`); None for any other path.
    pub fn parse(text: &str) -> Option<JsonKeysPath> {
        let path = Path::parse(text).ok()?;
        let keys = path
            .steps
            .iter()
            .map(|s| match s {
                Step::Key(k) => Some(k.clone()),
                _ => None,
            })
            .collect::<Option<Vec<String>>>()?;
        (!keys.is_empty()).then_some(JsonKeysPath { path, keys })
    }

    /// What `jsonPathString(doc, path)` gives for the text `doc`; an error, as the function's,
    /// when it is not JSON.
    pub fn string_of(&self, doc: &str) -> std::result::Result<Option<String>, String> {
        match self.path.read_text(doc) {
            Some(found) => Ok(found.map(Json::into_text)),
            None => Err(format!("jsonPathString: {doc:?} is not JSON")),
        }
    }

    /// [`JsonKeysPath::string_of`] of text that is valid JSON (a record's nested value, which
    /// the decoder has read): found by scanning the bytes, nothing else built. Text that is not
    /// valid JSON gives an answer of no meaning, never a panic.
    pub fn string_of_valid(&self, doc: &str) -> Option<String> {
        let mut span = doc;
        for key in &self.keys {
            span = scan::field(span, key)?;
        }
        match span.as_bytes().first() {
            Some(b'"') if span.len() >= 2 && !span.contains('\\') => {
                Some(span[1..span.len() - 1].to_string())
            }
            Some(b'n') => None,
            _ => Json::parse(span).filter(|v| *v != Json::Null).map(Json::into_text),
        }
    }
}

/// Finding a field in JSON text that is known to be valid.
mod scan {
    fn ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    }

    /// The index after the string that starts at `i` (at most the end of the text).
    fn string(b: &[u8], mut i: usize) -> usize {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        b.len()
    }

    /// The index after the value that starts at `i`.
    fn value(b: &[u8], mut i: usize) -> usize {
        match b.get(i) {
            Some(b'"') => string(b, i),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while i < b.len() {
                    match b[i] {
                        b'"' => {
                            i = string(b, i);
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                return i + 1;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i
            }
            _ => {
                while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                i
            }
        }
    }

    /// The text of field `key` of the object `text` (the last, when the key repeats); None when
    /// `text` is no object or has no such field.
    pub(super) fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        let b = text.as_bytes();
        let mut i = ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i += 1;
        let mut found = None;
        loop {
            i = ws(b, i);
            if b.get(i) != Some(&b'"') {
                return found;
            }
            let start = i;
            i = string(b, i);
            let raw = &text[start..i];
            let same = if raw.contains('\\') || raw.len() < 2 {
                serde_json::from_str::<String>(raw).is_ok_and(|k| k == key)
            } else {
                &raw[1..raw.len() - 1] == key
            };
            i = (ws(b, i) + 1).min(b.len()); // the colon
            i = ws(b, i);
            let value_start = i;
            i = value(b, i);
            if same {
                found = Some(&text[value_start..i]);
            }
            i = ws(b, i);
            if b.get(i) == Some(&b',') {
                i += 1;
            } else {
                return found;
            }
        }
    }
}

/// Reads the value at a path of keys, skipping everything else.
struct KeysSeed<'a> {
    keys: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for KeysSeed<'_> {
    type Value = Option<Json>;
    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Option<Json>, D::Error> {
        if self.keys.is_empty() {
            return Json::deserialize(deserializer).map(Some);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeysSeed<'_> {
    type Value = Option<Json>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Option<Json>, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key_seed(KeyText)? {
            if key == self.keys[0] {
                found = map.next_value_seed(KeysSeed { keys: &self.keys[1..] })?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Option<Json>, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Option<Json>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Option<Json>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Option<Json>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Option<Json>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Option<Json>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> std::result::Result<Option<Json>, E> {
        Ok(None)
    }
}

/// A field name, borrowed when it has no escapes.
struct KeyText;

impl<'de> DeserializeSeed<'de> for KeyText {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyText {
    type Value = std::borrow::Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_string()))
    }
}

/// A parsed JsonPath.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path {
    pub(crate) steps: Vec<Step>,
}

impl Path {
    /// Parses `$.a.b[0]['c d'].*`; an error names the path and what is supported.
    pub(crate) fn parse(text: &str) -> std::result::Result<Path, String> {
        let unsupported = || {
            format!(
                "{text:?} is not a JSON path Shoal reads: use $, .key, ['key'], [n], .* and [*] (filters, slices, unions and .. are not supported)"
            )
        };
        let mut rest = text.trim().strip_prefix('$').ok_or_else(unsupported)?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if rest.starts_with("..") {
                return Err(unsupported());
            } else if let Some(r) = rest.strip_prefix("['").or_else(|| rest.strip_prefix("[\"")) {
                let quote = if rest.as_bytes()[1] == b'\'' { "']" } else { "\"]" };
                let end = r.find(quote).ok_or_else(unsupported)?;
                steps.push(Step::Key(r[..end].to_string()));
                rest = &r[end + 2..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(unsupported)?;
                let inside = r[..end].trim();
                steps.push(if inside == "*" {
                    Step::Wildcard
                } else {
                    Step::Index(inside.parse().map_err(|_| unsupported())?)
                });
                rest = &r[end + 1..];
            } else if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                match &r[..end] {
                    "" => return Err(unsupported()),
                    "*" => steps.push(Step::Wildcard),
                    key => steps.push(Step::Key(key.to_string())),
                }
                rest = &r[end..];
            } else {
                return Err(unsupported());
            }
        }
        Ok(Path { steps })
    }

    /// True when the path names one place (no wildcard): Jayway then returns the value itself,
    /// otherwise the list of every match.
    pub(crate) fn is_definite(&self) -> bool {
        !self.steps.contains(&Step::Wildcard)
    }

    /// Every match in document order, with its path as Jayway writes it (`$['a'][0]`).
    pub(crate) fn matches<'a>(&self, doc: &'a Json) -> Vec<(String, &'a Json)> {
        let mut at = vec![("$".to_string(), doc)];
        for step in &self.steps {
            let mut next = Vec::new();
            for (path, value) in at {
                match (step, value) {
                    (Step::Key(k), Json::Object(fields)) => {
                        if let Some((_, v)) = fields.iter().find(|(key, _)| key == k) {
                            next.push((format!("{path}['{k}']"), v));
                        }
                    }
                    (Step::Index(i), Json::Array(items)) => {
                        let n = items.len() as i64;
                        let i = if *i < 0 { n + i } else { *i };
                        if (0..n).contains(&i) {
                            next.push((format!("{path}[{i}]"), &items[i as usize]));
                        }
                    }
                    (Step::Wildcard, Json::Object(fields)) => {
                        next.extend(fields.iter().map(|(k, v)| (format!("{path}['{k}']"), v)));
                    }
                    (Step::Wildcard, Json::Array(items)) => {
                        next.extend(items.iter().enumerate().map(|(i, v)| (format!("{path}[{i}]"), v)));
                    }
                    _ => {}
                }
            }
            at = next;
        }
        at
    }

    /// [`Path::read`] of the document `text`; None when `text` is not JSON. A path of keys
    /// only (`$.user.id`) reads just what leads to its value, skipping the rest unbuilt (the
    /// last of a repeated key wins, as in the parsed tree).
    pub(crate) fn read_text(&self, text: &str) -> Option<Option<Json>> {
        let keys: Option<Vec<&str>> = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Key(k) => Some(k.as_str()),
                _ => None,
            })
            .collect();
        match keys {
            Some(keys) if !keys.is_empty() => {
                let mut de = serde_json::Deserializer::from_str(text);
                let found = KeysSeed { keys: &keys }.deserialize(&mut de).and_then(|f| de.end().map(|()| f));
                found.ok().map(|f| f.filter(|v| *v != Json::Null))
            }
            _ => Json::parse(text).map(|doc| self.read(&doc)),
        }
    }

    /// Every match in document order ([`Path::matches`] without writing the paths).
    fn values<'a>(&self, doc: &'a Json) -> Vec<&'a Json> {
        let mut at = vec![doc];
        for step in &self.steps {
            let mut next = Vec::new();
            for value in at {
                match (step, value) {
                    (Step::Key(k), Json::Object(fields)) => {
                        if let Some((_, v)) = fields.iter().find(|(key, _)| key == k) {
                            next.push(v);
                        }
                    }
                    (Step::Index(i), Json::Array(items)) => {
                        let n = items.len() as i64;
                        let i = if *i < 0 { n + i } else { *i };
                        if (0..n).contains(&i) {
                            next.push(&items[i as usize]);
                        }
                    }
                    (Step::Wildcard, Json::Object(fields)) => next.extend(fields.iter().map(|(_, v)| v)),
                    (Step::Wildcard, Json::Array(items)) => next.extend(items.iter()),
                    _ => {}
                }
            }
            at = next;
        }
        at
    }

    /// What Jayway's `read` gives with SUPPRESS_EXCEPTIONS: a definite path's value (None when
    /// missing or JSON null), or the array of an indefinite path's matches.
    pub(crate) fn read(&self, doc: &Json) -> Option<Json> {
        let found = self.values(doc);
        if self.is_definite() {
            found.into_iter().next().cloned().filter(|v| *v != Json::Null)
        } else {
            Some(Json::Array(found.into_iter().cloned().collect()))
        }
    }
}

/// The Arrow type of a Pinot result type name.
pub(crate) fn pinot_type(name: &str) -> Option<DataType> {
    Some(match name.trim().to_ascii_uppercase().as_str() {
        "INT" | "INTEGER" => DataType::Int32,
        "LONG" => DataType::Int64,
        "FLOAT" => DataType::Float32,
        "DOUBLE" => DataType::Float64,
        "BOOLEAN" => DataType::Boolean,
        "STRING" | "JSON" | "BIG_DECIMAL" | "TIMESTAMP" => DataType::Utf8,
        _ => return None,
    })
}

fn path_arg(call: &Call, i: usize) -> Result<Path> {
    Path::parse(&call.text(i)?).map_err(|e| call.error(e))
}

/// JSON_EXTRACT_SCALAR(json, path, type[, default]): the value at the path as `ty`; a document
/// without it (or with what is not of the type) takes the default, or is an error.
pub(crate) fn json_extract_scalar(call: &Call, ty: &DataType) -> Result<ArrayRef> {
    let path_text = call.text(1)?;
    let path = path_arg(call, 1)?;
    let type_name = call.text(2)?;
    let default = match call.args.get(3) {
        None => None,
        Some(ColumnarValue::Scalar(s)) if s.is_null() => None,
        Some(ColumnarValue::Scalar(s)) => Some(
            s.cast_to(ty).map_err(|_| call.error(format_args!("the default {s} is not a {type_name}")))?,
        ),
        Some(_) => return Err(call.error("the default must be a literal")),
    };
    let text = call.texts(0)?;
    let extracted: StringArray =
        text.iter().map(|doc| doc.and_then(|t| path.read_text(t)).flatten().map(|v| v.as_text())).collect();
    let typed = cast(&extracted, ty).map_err(|e| call.error(e))?;
    Ok(match default {
        Some(default) => arrow::compute::kernels::zip::zip(
            &arrow::compute::is_not_null(&typed)?,
            &typed,
            &default.to_array_of_size(call.rows)?,
        )?,
        None if (0..text.len()).any(|i| text.is_valid(i) && typed.is_null(i)) => {
            return Err(call.error(format_args!(
                "the path {path_text} is missing or not a {type_name} in a document, and no default was given"
            )));
        }
        None => typed,
    })
}

/// The default argument `i` of a jsonPath* function, cast to `ty`.
fn default_arg(call: &Call, i: usize, ty: &DataType) -> Result<Option<ScalarValue>> {
    match call.args.get(i) {
        None => Ok(None),
        Some(ColumnarValue::Scalar(s)) => {
            s.cast_to(ty).map(Some).map_err(|_| call.error(format_args!("the default {s} is not a {ty}")))
        }
        Some(_) => Err(call.error("the default must be a literal")),
    }
}

/// jsonPathString(json, path[, default]) (JsonFunctions.java): a string leaf as it is, any other
/// value as its JSON text, an indefinite path as the JSON array of its matches. Without a default
/// a missing value is null and a document that is not JSON an error; with one, both give the
/// default (a null document too).
pub(crate) fn json_path_string(call: &Call) -> Result<ArrayRef> {
    let path = path_arg(call, 1)?;
    let default = default_arg(call, 2, &DataType::Utf8)?;
    let default = default.as_ref().map(|d| match d {
        ScalarValue::Utf8(v) => v.clone(),
        _ => None,
    });
    let docs = call.texts(0)?;
    let mut out = StringBuilder::new();
    for doc in docs.iter() {
        let value = match (doc, &default) {
            (None, None) => None,
            (None, Some(d)) => d.clone(),
            (Some(text), default) => match (path.read_text(text), default) {
                // A string is moved out, not copied.
                (Some(found), None) => found.map(Json::into_text),
                (Some(found), Some(d)) => found.map(Json::into_text).or_else(|| d.clone()),
                (None, Some(d)) => d.clone(),
                (None, None) => return Err(call.error(format_args!("{text:?} is not JSON"))),
            },
        };
        out.append_option(value);
    }
    Ok(Arc::new(out.finish()))
}

/// jsonPathArray(json, path) (pinot-common JsonFunctions.java): the values the path finds, as
/// an array (a single value is an array of one, nothing is null); each value as Jackson's text
/// of it, an object or array as its JSON. Text that is not JSON is an error, as in Pinot.
pub(crate) fn json_path_array(call: &Call) -> Result<ArrayRef> {
    let path = path_arg(call, 1)?;
    let docs = call.texts(0)?;
    let mut out = arrow::array::ListBuilder::new(StringBuilder::new());
    for doc in docs.iter() {
        let Some(text) = doc else {
            out.append_null();
            continue;
        };
        let json = Json::parse(text).ok_or_else(|| call.error(format_args!("{text:?} is not JSON")))?;
        match path.read(&json) {
            None => out.append_null(),
            Some(Json::Array(items)) => {
                for item in items {
                    out.values().append_value(item.as_text());
                }
                out.append(true);
            }
            Some(one) => {
                out.values().append_value(one.as_text());
                out.append(true);
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

/// jsonPathLong(json, path[, default]): a number's `longValue` (a fraction is cut toward zero),
/// true/false as 1/0, a string read as a Java long; anything else, a missing value or a
/// document that is not JSON gives the default, Long.MIN_VALUE when none is given.
pub(crate) fn json_path_long(call: &Call) -> Result<ArrayRef> {
    let path = path_arg(call, 1)?;
    let default = match default_arg(call, 2, &DataType::Int64)? {
        Some(ScalarValue::Int64(d)) => d,
        _ => Some(i64::MIN),
    };
    let explicit_default = call.args.len() > 2;
    let docs = call.texts(0)?;
    let values: Int64Array = docs
        .iter()
        .map(|doc| match doc {
            None if explicit_default => default,
            None => None,
            Some(text) => path.read_text(text).flatten().and_then(|v| java_long(&v)).or(default),
        })
        .collect();
    Ok(Arc::new(values))
}

/// jsonPathDouble(json, path[, default]): as jsonPathLong, with doubles; NaN when no default is
/// given.
pub(crate) fn json_path_double(call: &Call) -> Result<ArrayRef> {
    let path = path_arg(call, 1)?;
    let default = match default_arg(call, 2, &DataType::Float64)? {
        Some(ScalarValue::Float64(d)) => d,
        _ => Some(f64::NAN),
    };
    let explicit_default = call.args.len() > 2;
    let docs = call.texts(0)?;
    let values: Float64Array = docs
        .iter()
        .map(|doc| match doc {
            None if explicit_default => default,
            None => None,
            Some(text) => path.read_text(text).flatten().and_then(|v| java_double_value(&v)).or(default),
        })
        .collect();
    Ok(Arc::new(values))
}

/// JsonFunctions.jsonValueToLong: `Number.longValue()`, Boolean 1/0, else `Long.parseLong`.
fn java_long(v: &Json) -> Option<i64> {
    match v {
        Json::Int(i) => Some(*i),
        // BigInteger.longValue keeps the low 64 bits.
        Json::UInt(u) => Some(*u as i64),
        // Java's (long) cast of a double: toward zero, saturating, NaN as 0 (Rust's `as` too).
        Json::Float(f) => Some(*f as i64),
        Json::Bool(b) => Some(i64::from(*b)),
        // Long.parseLong: an optional sign, then digits (Rust's parse reads the same).
        Json::Str(s) => s.parse().ok(),
        _ => None,
    }
}

/// JsonFunctions.jsonValueToDouble: `Number.doubleValue()`, Boolean 1/0, else
/// `Double.parseDouble` (which allows surrounding whitespace).
fn java_double_value(v: &Json) -> Option<f64> {
    match v {
        Json::Int(i) => Some(*i as f64),
        Json::UInt(u) => Some(*u as f64),
        Json::Float(f) => Some(*f),
        Json::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Json::Str(s) => {
            let t = s.trim();
            match t {
                "NaN" => Some(f64::NAN),
                "Infinity" | "+Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                _ if t
                    .chars()
                    .any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E' | 'd' | 'D' | 'f' | 'F')) =>
                {
                    None
                }
                _ => t.trim_end_matches(['d', 'D', 'f', 'F']).parse().ok(),
            }
        }
        _ => None,
    }
}

/// jsonExtractKey(json, path[, 'maxDepth=n;dotNotation=true']) (JsonFunctions.java,
/// JsonExtractKeyTransformFunction.java): the paths of the keys the path matches, as Jayway's
/// AS_PATH_LIST writes them (`$['a']['b']`) or in dot notation (`a.b`); `''`, `'$..**'` and
/// `'$..'` list every key at every depth.
pub(crate) fn json_extract_key(call: &Call) -> Result<ArrayRef> {
    let path_text = call.text(1)?;
    let all_keys = matches!(path_text.as_str(), "" | "$..**" | "$..");
    let path = if all_keys { None } else { Some(path_arg(call, 1)?) };
    let (max_depth, dot) = match call.args.get(2) {
        None => (usize::MAX, false),
        Some(_) => key_params(&call.text(2)?).map_err(|e| call.error(e))?,
    };
    let docs = call.texts(0)?;
    let mut out = ListBuilder::new(StringBuilder::new());
    for doc in docs.iter() {
        let Some(text) = doc else {
            out.append_null();
            continue;
        };
        let keys = match (&path, Json::parse(text)) {
            (_, _) if max_depth == 0 => Vec::new(),
            (None, Some(json)) => {
                let mut keys = Vec::new();
                all_key_paths(&json, if dot { "" } else { "$" }, dot, 1, max_depth, &mut keys);
                keys
            }
            // The recursive form returns no keys for what is not JSON.
            (None, None) => Vec::new(),
            (Some(_), None) => return Err(call.error(format_args!("{text:?} is not JSON"))),
            (Some(path), Some(json)) => path
                .matches(&json)
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| p.matches('[').count() <= max_depth)
                .map(|p| if dot { dot_notation(&p) } else { p })
                .collect(),
        };
        for key in keys {
            out.values().append_value(key);
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

/// JsonExtractFunctionParameters: `maxDepth=n;dotNotation=true`, keys in any case; a negative
/// depth is no limit.
fn key_params(text: &str) -> std::result::Result<(usize, bool), String> {
    let (mut depth, mut dot) = (usize::MAX, false);
    for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| format!("invalid parameter: {pair}"))?;
        match key.trim().to_ascii_uppercase().as_str() {
            "MAXDEPTH" => {
                let n: i32 =
                    value.trim().parse().map_err(|_| format!("maxDepth {value:?} is not an integer"))?;
                depth = usize::try_from(n).unwrap_or(usize::MAX);
            }
            "DOTNOTATION" => dot = value.trim().eq_ignore_ascii_case("true"),
            other => return Err(format!("invalid parameter key: {other}: use maxDepth or dotNotation")),
        }
    }
    Ok((depth, dot))
}

/// JsonFunctions.extractKeysFromNode: every key and index, depth first, in document order.
fn all_key_paths(node: &Json, at: &str, dot: bool, depth: usize, max: usize, out: &mut Vec<String>) {
    if depth > max {
        return;
    }
    let children: Vec<(String, &Json)> = match node {
        Json::Object(fields) => fields
            .iter()
            .map(|(k, v)| {
                let p = match (dot, at.is_empty()) {
                    (true, true) => k.clone(),
                    (true, false) => format!("{at}.{k}"),
                    (false, _) => format!("{at}['{k}']"),
                };
                (p, v)
            })
            .collect(),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let p = match (dot, at.is_empty()) {
                    (true, true) => i.to_string(),
                    (true, false) => format!("{at}.{i}"),
                    (false, _) => format!("{at}[{i}]"),
                };
                (p, v)
            })
            .collect(),
        _ => return,
    };
    for (path, child) in children {
        out.push(path.clone());
        if depth < max && matches!(child, Json::Object(_) | Json::Array(_)) {
            all_key_paths(child, &path, dot, depth + 1, max, out);
        }
    }
}

/// `$['a'][0]['b']` → `a.0.b` (JsonFunctions.convertToDotNotation).
fn dot_notation(path: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    while let Some(r) = rest.strip_prefix('[') {
        let (part, after) = if let Some(quoted) = r.strip_prefix('\'') {
            let end = quoted.find("']").unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 2..).unwrap_or(""))
        } else {
            let end = r.find(']').unwrap_or(r.len());
            (&r[..end], r.get(end + 1..).unwrap_or(""))
        };
        parts.push(part);
        rest = after;
    }
    parts.join(".")
}

/// jsonFormat(value) / json_format (pinot-common JsonFunctions.java `jsonFormat`): the value as
/// JSON text. An object or array (which ingestion hands over as its JSON text) is written
/// compact; any other text is a JSON string.
pub(crate) fn json_format(call: &crate::scalar::Call) -> datafusion::common::Result<arrow::array::ArrayRef> {
    use arrow::datatypes::DataType;
    let text_input =
        matches!(call.arg(0)?.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let texts = call.texts(0)?;
    if !text_input {
        // A number or a boolean is its own JSON text (5 is 5, true is true).
        return Ok(std::sync::Arc::new(texts));
    }
    let out: arrow::array::StringArray = texts
        .iter()
        .map(|t| {
            t.map(|t| match serde_json::from_str::<serde_json::Value>(t) {
                Ok(v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => v.to_string(),
                _ => serde_json::Value::String(t.to_string()).to_string(),
            })
        })
        .collect();
    Ok(std::sync::Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_order_and_java_numbers() {
        let doc = Json::parse(r#"{"b": 1, "a": {"y": 2.50, "x": [true, null]}, "c": 1e10}"#).unwrap();
        assert_eq!(doc.to_string(), r#"{"b":1,"a":{"y":2.5,"x":[true,null]},"c":1.0E10}"#);
        assert_eq!(java_double(100.0), "100.0");
        assert_eq!(java_double(0.001), "0.001");
        assert_eq!(java_double(1.5e-5), "1.5E-5");
        assert_eq!(java_double(12345678.0), "1.2345678E7");
    }

    #[test]
    fn paths_as_jayway_reads_them() {
        let doc = Json::parse(r#"{"a": {"b": [10, {"c d": 7}]}, "k": "v"}"#).unwrap();
        let read = |p: &str| Path::parse(p).unwrap().read(&doc);
        assert_eq!(read("$.a.b[1]['c d']"), Some(Json::Int(7)));
        assert_eq!(read("$.a.b[-2]"), Some(Json::Int(10)));
        assert_eq!(read("$.missing"), None);
        assert_eq!(read("$.*").map(|v| v.to_string()), Some(r#"[{"b":[10,{"c d":7}]},"v"]"#.into()));
        let keys: Vec<String> =
            Path::parse("$.*").unwrap().matches(&doc).into_iter().map(|(p, _)| p).collect();
        assert_eq!(keys, ["$['a']", "$['k']"]);
        for bad in ["a.b", "$..a", "$[?(@.a)]", "$[0:2]", "$.a[x]"] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_at_every_depth() {
        // JsonFunctions.java's examples: jsonExtractKey('{"a": 1, "b": {"c": 2}}', '$..**').
        let doc = Json::parse(r#"{"a": 1, "b": {"c": 2}}"#).unwrap();
        let mut keys = Vec::new();
        all_key_paths(&doc, "$", false, 1, usize::MAX, &mut keys);
        assert_eq!(keys, ["$['a']", "$['b']", "$['b']['c']"]);
        let mut keys = Vec::new();
        all_key_paths(&doc, "", true, 1, 1, &mut keys);
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(dot_notation("$[0]['name']"), "0.name");
        assert_eq!(key_params("maxDepth=2; dotNotation=true"), Ok((2, true)));
        assert!(key_params("depth=2").is_err());
    }

    #[test]
    fn a_path_of_keys_reads_as_the_whole_tree_does() {
        for doc in [
            r#"{"a": {"b": 1, "c": [1, {"b": 2}]}, "x": "y"}"#,
            r#"{"a": {"b": 1}, "a": {"b": 3}}"#,
            r#"{"a": {"b": 1}, "a": 5}"#,
            r#"{"a": {"b": null}}"#,
            r#"{"a": {"b\u0021": 4, "b": {"z": [1, 2]}}}"#,
            r#"[{"a": 1}]"#,
            r#""text""#,
            r#"{"a": {"b": 1}"#,
            r#"{"a": {"b": 1}} trailing"#,
        ] {
            for path in ["$.a.b", "$.a", "$.x", "$.a.c"] {
                let p = Path::parse(path).unwrap();
                let whole = Json::parse(doc).map(|d| p.read(&d));
                assert_eq!(p.read_text(doc), whole, "{path} of {doc}");
            }
        }
    }

    #[test]
    fn a_keys_path_scanned_reads_as_the_function_does() {
        for doc in [
            r#"{"a": {"b": 1, "c": [1, {"b": 2}]}, "x": "y"}"#,
            r#"{"a": {"b": "t\"q"}, "a": {"b": "last"}}"#,
            r#"{"a": {"b": 1}, "a": 5}"#,
            r#"{"a": {"b": null}}"#,
            r#"{ "a" : { "b" : [ 1 , "]" , {"z": "}"} ] } }"#,
            r#"{"a": {"b\u0021": 4, "b": {"z": 2.50, "y": [true]}}}"#,
            r#"{"x": "{\"a\": 1}", "a": {"b": 1e3}}"#,
            r#"[{"a": 1}]"#,
            r#""text""#,
            r#"7"#,
        ] {
            for path in ["$.a.b", "$.a", "$.x", "$.a.c", "$.a.b.z"] {
                let p = JsonKeysPath::parse(path).unwrap();
                assert_eq!(p.string_of_valid(doc), p.string_of(doc).unwrap(), "{path} of {doc}");
            }
        }
        assert!(JsonKeysPath::parse("$.a[0]").is_none());
        assert!(JsonKeysPath::parse("$.*").is_none());
        assert!(JsonKeysPath::parse("$.a").unwrap().string_of("{not json").is_err());
        // Text that is not JSON never panics.
        let p = JsonKeysPath::parse("$.a.b").unwrap();
        for bad in [
            "{\"a",
            "{\"a\":",
            "{\"a\": \"",
            "{\"a\": {\"b\": \"\\",
            "{\"a\"}}}",
            "{\"",
            "}",
            "{\"a\": {\"b\": \"",
        ] {
            let _ = p.string_of_valid(bad);
        }
    }

    #[test]
    fn java_conversions() {
        assert_eq!(java_long(&Json::Float(-1.9)), Some(-1));
        assert_eq!(java_long(&Json::Str("+12".into())), Some(12));
        assert_eq!(java_long(&Json::Str("1.5".into())), None);
        assert_eq!(java_long(&Json::Bool(true)), Some(1));
        assert_eq!(java_double_value(&Json::Str(" 2.5 ".into())), Some(2.5));
        assert_eq!(java_double_value(&Json::Str("abc".into())), None);
        assert_eq!(java_double_value(&Json::Array(vec![])), None);
    }
}
