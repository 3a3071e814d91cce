//! Validation problems with key paths, and a reader that walks Pinot's JSON collecting them.
//!
//! Pinot's configs are JSON whose values are often strings standing for numbers or booleans
//! (`"replicasPerPartition": "1"`). [`JsonReader`] reads typed fields from such JSON and records
//! every problem it meets, each with its key path, so that one validation pass reports all of
//! them instead of stopping at the first.

use serde_json::{Map, Value};
use std::fmt;

/// One thing wrong with a config or schema: where, and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `tableIndexConfig.streamConfigs.region` or `dimensionFieldSpecs[2].dataType`.
    pub path: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Problems found so far, plus warnings (accepted settings that have no effect yet).
#[derive(Debug, Default, Clone)]
pub struct Problems {
    /// Errors: the config cannot be used while any remains.
    pub errors: Vec<Problem>,
    /// Warnings: accepted, but worth telling the user.
    pub warnings: Vec<Problem>,
}

impl Problems {
    /// Records an error at `path`.
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem { path: path.into(), message: message.into() });
    }

    /// Records a warning at `path`.
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem { path: path.into(), message: message.into() });
    }

    /// True when no error was recorded.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// Moves the other problems into this one.
    pub fn extend(&mut self, other: Problems) {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }
}

/// Joins a parent path and a key: `join("a", "b") == "a.b"`, `join("", "b") == "b"`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

/// Names the JSON type of a value, for messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads typed fields of one JSON object, recording problems under the object's path.
pub struct JsonReader<'a> {
    path: String,
    object: &'a Map<String, Value>,
}

impl<'a> JsonReader<'a> {
    /// A reader over `object`, whose own key path is `path` (empty for the document root).
    pub fn new(path: impl Into<String>, object: &'a Map<String, Value>) -> Self {
        JsonReader { path: path.into(), object }
    }

    /// Reads `value` as an object, or records that it is not one.
    pub fn of(path: impl Into<String>, value: &'a Value, problems: &mut Problems) -> Option<Self> {
        let path = path.into();
        match value {
            Value::Object(object) => Some(JsonReader { path, object }),
            other => {
                problems.error(
                    if path.is_empty() { "(document)".to_string() } else { path },
                    format!("must be a JSON object, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// The key path of `key` inside this object.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// This object's own key path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw value of `key`, treating JSON null as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key).filter(|v| !v.is_null())
    }

    /// The underlying map.
    pub fn object(&self) -> &'a Map<String, Value> {
        self.object
    }

    /// A nested object, or None when absent; records a problem when present but not an object.
    pub fn object_field(&self, key: &str, problems: &mut Problems) -> Option<JsonReader<'a>> {
        let value = self.get(key)?;
        JsonReader::of(self.path_of(key), value, problems)
    }

    /// A required string field.
    pub fn required_string(&self, key: &str, problems: &mut Problems) -> Option<String> {
        match self.get(key) {
            None => {
                problems.error(self.path_of(key), "missing: a string is required");
                None
            }
            Some(_) => self.string(key, problems).filter(|s| {
                if s.trim().is_empty() {
                    problems.error(self.path_of(key), "must not be empty");
                    false
                } else {
                    true
                }
            }),
        }
    }

    /// An optional string field. A number or boolean is refused: Jackson would take `7` as the
    /// text "7", but a name, type or class written as a number is a mistake, not what the user
    /// meant. Keys that hold numbers read them with [`JsonReader::u64`].
    pub fn string(&self, key: &str, problems: &mut Problems) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                problems.error(self.path_of(key), format!("must be a string, found {}", type_name(other)));
                None
            }
        }
    }

    /// An optional boolean: `true`/`false`, or the strings `"true"`/`"false"` (any case).
    pub fn bool(&self, key: &str, problems: &mut Problems) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            other => {
                problems
                    .error(self.path_of(key), format!("must be true or false, found {}", describe(other)));
                None
            }
        }
    }

    /// An optional non-negative integer, from a JSON number or a numeric string.
    pub fn u64(&self, key: &str, problems: &mut Problems) -> Option<u64> {
        let value = self.get(key)?;
        let parsed = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            problems.error(
                self.path_of(key),
                format!("must be a non-negative integer, found {}", describe(value)),
            );
        }
        parsed
    }

    /// An optional array of strings.
    pub fn string_array(&self, key: &str, problems: &mut Problems) -> Option<Vec<String>> {
        let value = self.get(key)?;
        let Value::Array(items) = value else {
            problems
                .error(self.path_of(key), format!("must be an array of strings, found {}", type_name(value)));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                other => problems.error(
                    format!("{}[{i}]", self.path_of(key)),
                    format!("must be a string, found {}", type_name(other)),
                ),
            }
        }
        Some(out)
    }

    /// An optional array; each element is handed to `each` with its own path.
    pub fn array<T>(
        &self,
        key: &str,
        problems: &mut Problems,
        mut each: impl FnMut(String, &'a Value, &mut Problems) -> Option<T>,
    ) -> Vec<T> {
        let Some(value) = self.get(key) else { return Vec::new() };
        let Value::Array(items) = value else {
            problems.error(self.path_of(key), format!("must be an array, found {}", type_name(value)));
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| each(format!("{}[{i}]", self.path_of(key)), item, problems))
            .collect()
    }
}

/// A short description of a value for messages: its text when short, else its type.
pub fn describe(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 40 { text } else { type_name(value).to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_pinot_style_strings_and_records_every_problem() {
        let doc = json!({"a": "12", "b": "TRUE", "c": [1, "x"], "d": -3, "e": {"f": 1}, "g": 7});
        let mut problems = Problems::default();
        let r = JsonReader::of("", &doc, &mut problems).unwrap();
        assert_eq!(r.u64("a", &mut problems), Some(12));
        assert_eq!(r.bool("b", &mut problems), Some(true));
        assert_eq!(r.string_array("c", &mut problems), Some(vec!["x".to_string()]));
        assert_eq!(r.u64("d", &mut problems), None);
        assert!(r.required_string("zz", &mut problems).is_none());
        assert_eq!(r.string("g", &mut problems), None);
        assert_eq!(r.object_field("e", &mut problems).unwrap().path_of("f"), "e.f");
        let paths: Vec<_> = problems.errors.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["c[0]", "d", "zz", "g"]);
    }
}
