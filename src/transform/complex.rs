//! `complexTypeConfig`'s restructuring of a record, as pinot-segment-local
//! `ComplexTypeTransformer.java` does it: nested objects flattened into `a<delim>b` fields
//! (the original object stays), the arrays named in `fieldsToUnnest` (parents before children:
//! the list is sorted) turned into one row per element with the element's fields as
//! `array<delim>key`, other collections written as JSON text as `collectionNotUnnestedToJson`
//! says (NON_PRIMITIVE: when the first element is an object or an array), and
//! `prefixesToRename` applied to every row.
//!
//! Plain flattening by the delimiter needs none of this: the decoder follows nested objects to
//! the schema's `a.b` columns itself. This runs only for tables that unnest or rename.

use crate::config::ComplexTypeConfig;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// The most rows one record may unnest into; a record that would make more is dropped and
/// counted (its copies could exhaust memory: one 1 MB record of 50,000 elements).
pub(crate) const MAX_ROWS_PER_RECORD: usize = 10_000;

/// When a collection that is not unnested becomes JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonMode {
    None,
    NonPrimitive,
    All,
}

/// A table's complex-type restructuring.
#[derive(Debug)]
pub(crate) struct ComplexType {
    delimiter: String,
    /// Sorted: a parent array is unnested before its children.
    unnest: Vec<String>,
    json: JsonMode,
    renames: Vec<(String, String)>,
    /// The fields whose nested objects are kept whole (schema columns and fields the
    /// expressions read); every other object lives on only as its flattened fields, so that
    /// unnesting does not copy it into every row.
    keep: HashSet<String>,
}

impl ComplexType {
    /// The restructuring `config` asks for; None when it only flattens (the decoder's job).
    /// `keep` names the fields read whole: schema columns and the expressions' fields.
    pub(crate) fn new(config: &ComplexTypeConfig, keep: HashSet<String>) -> Option<ComplexType> {
        if config.fields_to_unnest.is_empty() && config.prefixes_to_rename.is_empty() {
            return None;
        }
        let mut unnest = config.fields_to_unnest.clone();
        unnest.sort();
        let json = match config.collection_not_unnested_to_json.as_str() {
            "NONE" => JsonMode::None,
            "ALL" => JsonMode::All,
            _ => JsonMode::NonPrimitive,
        };
        Some(ComplexType {
            delimiter: config.delimiter.clone(),
            unnest,
            json,
            renames: config.prefixes_to_rename.clone(),
            keep,
        })
    }

    /// The rows `record` becomes, and whether a rename was left undone (`continue_on_error`:
    /// the row is kept, incomplete; without it a name conflict is an error).
    pub(crate) fn apply(
        &self,
        mut record: Map<String, Value>,
        continue_on_error: bool,
    ) -> Result<(Vec<Map<String, Value>>, bool), String> {
        let keys: Vec<String> = record.keys().cloned().collect();
        for key in keys {
            let Some(value) = record.get(&key).cloned() else { continue };
            self.flatten_field(&mut record, &key, value);
            if record.get(&key).is_some_and(Value::is_object) && !self.keep.contains(&key) {
                record.remove(&key);
            }
        }
        let mut rows = vec![record];
        for field in &self.unnest {
            let mut next = Vec::with_capacity(rows.len());
            for mut row in rows {
                match row.get(field) {
                    Some(Value::Array(items)) if !items.is_empty() => {
                        if next.len() + items.len() > MAX_ROWS_PER_RECORD {
                            return Err(format!(
                                "unnesting {field} makes more than {MAX_ROWS_PER_RECORD} rows from one record"
                            ));
                        }
                        let items = items.clone();
                        row.remove(field);
                        for item in items {
                            let mut copy = row.clone();
                            match item {
                                Value::Object(fields) => {
                                    for (k, v) in fields {
                                        copy.insert(format!("{field}{}{k}", self.delimiter), v);
                                    }
                                }
                                primitive => {
                                    copy.insert(field.clone(), primitive);
                                }
                            }
                            next.push(copy);
                        }
                    }
                    // An empty array, or none: the row as it is.
                    _ => next.push(row),
                }
            }
            rows = next;
        }
        let mut incomplete = false;
        if !self.renames.is_empty() {
            for row in &mut rows {
                match self.rename(row) {
                    Ok(()) => {}
                    Err(_) if continue_on_error => incomplete = true,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((rows, incomplete))
    }

    /// Flattens one top-level field of the record into it.
    fn flatten_field(&self, record: &mut Map<String, Value>, name: &str, value: Value) {
        match value {
            Value::Object(fields) => {
                for (k, v) in fields {
                    let path = format!("{name}{}{k}", self.delimiter);
                    // A nested object is kept whole only where it is read whole.
                    if !v.is_object() || self.keep.contains(&path) {
                        record.insert(path.clone(), v.clone());
                    }
                    self.flatten_field(record, &path, v);
                }
            }
            Value::Array(mut items) => {
                if self.unnest.iter().any(|u| u == name) {
                    for item in &mut items {
                        if let Value::Object(element) = item {
                            self.flatten_element(name, element);
                        }
                    }
                    record.insert(name.to_string(), Value::Array(items));
                } else if self.to_json(&items) {
                    record.insert(name.to_string(), Value::String(Value::Array(items).to_string()));
                }
            }
            _ => {}
        }
    }

    /// Flattens the fields of one element of an array to unnest, in place (`path` is the
    /// array's flattened name): nested objects become `k<delim>k2` keys of the element, nested
    /// arrays to unnest are flattened the same way, other arrays become JSON text per mode.
    fn flatten_element(&self, path: &str, element: &mut Map<String, Value>) {
        let keys: Vec<String> = element.keys().cloned().collect();
        for key in keys {
            let Some(value) = element.get(&key).cloned() else { continue };
            let full = format!("{path}{}{key}", self.delimiter);
            match value {
                Value::Object(fields) => {
                    element.remove(&key);
                    let mut nested = Map::new();
                    for (k, v) in fields {
                        nested.insert(format!("{key}{}{k}", self.delimiter), v);
                    }
                    self.flatten_element(path, &mut nested);
                    element.extend(nested);
                }
                Value::Array(mut items) => {
                    if self.unnest.contains(&full) {
                        for item in &mut items {
                            if let Value::Object(inner) = item {
                                self.flatten_element(&full, inner);
                            }
                        }
                        element.insert(key, Value::Array(items));
                    } else if self.to_json(&items) {
                        element.insert(key, Value::String(Value::Array(items).to_string()));
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether a collection that is not unnested becomes JSON text (Pinot looks at the first
    /// element only).
    fn to_json(&self, items: &[Value]) -> bool {
        match self.json {
            JsonMode::None => false,
            JsonMode::All => true,
            JsonMode::NonPrimitive => matches!(items.first(), Some(Value::Object(_) | Value::Array(_))),
        }
    }

    /// `prefixesToRename`: the first prefix a field starts with renames it; a name that would
    /// be empty or is taken is an error (Pinot's "Name conflict after attempting to rename").
    fn rename(&self, row: &mut Map<String, Value>) -> Result<(), String> {
        let keys: Vec<String> = row.keys().cloned().collect();
        for key in keys {
            let Some((prefix, to)) = self.renames.iter().find(|(p, _)| key.starts_with(p.as_str())) else {
                continue;
            };
            let renamed = format!("{to}{}", &key[prefix.len()..]);
            if renamed.is_empty() || row.get(&renamed).is_some_and(|v| !v.is_null()) {
                return Err(format!("Name conflict after attempting to rename field {key} to {renamed}"));
            }
            if let Some(v) = row.remove(&key) {
                row.insert(renamed, v);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn complex(unnest: &[&str], mode: &str, renames: &[(&str, &str)]) -> ComplexType {
        ComplexType::new(
            &ComplexTypeConfig {
                fields_to_unnest: unnest.iter().map(|s| s.to_string()).collect(),
                delimiter: ".".into(),
                collection_not_unnested_to_json: mode.into(),
                prefixes_to_rename: renames.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            },
            HashSet::new(),
        )
        .unwrap()
    }

    fn rows(c: &ComplexType, record: Value) -> Vec<Value> {
        let Value::Object(m) = record else { panic!() };
        c.apply(m, false).unwrap().0.into_iter().map(Value::Object).collect()
    }

    #[test]
    fn nested_arrays_unnest_as_pinots_test_does() {
        // pinot-segment-local ComplexTypeTransformerTest.testUnnestCollection.
        let input =
            json!({"array": [{"a": "v1", "array2": [{"b": "v3"}, {"b": "v4"}]}, {"a": "v2", "array2": []}]});
        let out = rows(&complex(&["array", "array.array2"], "NON_PRIMITIVE", &[]), input.clone());
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["array.a"], "v1");
        assert_eq!(out[0]["array.array2.b"], "v3");
        assert_eq!(out[1]["array.a"], "v1");
        assert_eq!(out[1]["array.array2.b"], "v4");
        assert_eq!(out[2]["array.a"], "v2");
        assert!(out[2].get("array.array2.b").is_none());
        // Only the parent unnested: the child array of objects becomes JSON text.
        let out = rows(&complex(&["array"], "NON_PRIMITIVE", &[]), input);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["array.a"], "v1");
        assert_eq!(out[0]["array.array2"], r#"[{"b":"v3"},{"b":"v4"}]"#);
        assert_eq!(out[1]["array.a"], "v2");
    }

    #[test]
    fn primitives_unnest_and_other_fields_repeat() {
        // ComplexTypeTransformerTest: {"a":"value","b":"another","array":["x","y"]}.
        let out = rows(
            &complex(&["array"], "NON_PRIMITIVE", &[]),
            json!({"a": "value", "b": "another", "array": ["x", "y"]}),
        );
        assert_eq!(out.len(), 2);
        assert_eq!((out[0]["array"].clone(), out[1]["array"].clone()), (json!("x"), json!("y")));
        assert!(out.iter().all(|r| r["a"] == "value" && r["b"] == "another"));
    }

    #[test]
    fn prefixes_rename_and_conflicts_fail() {
        // ComplexTypeTransformerTest.testPrefixesToRename2.
        let c = complex(&["unused"], "NON_PRIMITIVE", &[("info.", ""), ("class_teacher", "teacher")]);
        let out = rows(
            &c,
            json!({"name": "Jane", "info": {"id": "100", "address": {"city": "SF", "state": "CA"}}, "class_teacher": {"name": "Max"}}),
        );
        assert_eq!(out[0]["id"], "100");
        assert_eq!(out[0]["address.state"], "CA");
        assert_eq!(out[0]["teacher.name"], "Max");
        let Value::Object(m) = json!({"a": 1, "x_a": 2}) else { panic!() };
        let c = complex(&[], "NON_PRIMITIVE", &[("x_", "")]);
        let err = c.apply(m.clone(), false).unwrap_err();
        assert!(err.contains("Name conflict"), "{err}");
        // continueOnError: kept as it is, incomplete.
        let (rows, incomplete) = c.apply(m, true).unwrap();
        assert!(incomplete && rows[0]["x_a"] == 2 && rows[0]["a"] == 1);
    }

    #[test]
    fn collections_become_json_text_by_mode() {
        let record = json!({"nums": [1, 2], "objs": [{"k": 1}]});
        let out = rows(&complex(&["unused"], "NON_PRIMITIVE", &[]), record.clone());
        assert_eq!(out[0]["nums"], json!([1, 2]));
        assert_eq!(out[0]["objs"], r#"[{"k":1}]"#);
        let out = rows(&complex(&["unused"], "ALL", &[]), record.clone());
        assert_eq!(out[0]["nums"], "[1,2]");
        let out = rows(&complex(&["unused"], "NONE", &[]), record);
        assert_eq!(out[0]["objs"], json!([{"k": 1}]));
    }
}

#[cfg(test)]
mod limits {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_record_cannot_unnest_past_the_cap_nor_copy_unread_objects() {
        let c = ComplexType::new(
            &ComplexTypeConfig {
                fields_to_unnest: vec!["a".into(), "b".into()],
                delimiter: ".".into(),
                collection_not_unnested_to_json: "NON_PRIMITIVE".into(),
                prefixes_to_rename: Vec::new(),
            },
            HashSet::new(),
        )
        .unwrap();
        // 200 x 200 = 40,000 rows: more than the cap.
        let many: Vec<i32> = (0..200).collect();
        let Value::Object(m) = json!({"a": many, "b": many}) else { panic!() };
        let err = c.apply(m, false).unwrap_err();
        assert!(err.contains("more than 10000 rows"), "{err}");
        // A nested object nobody reads whole is not copied into the rows: its fields are.
        let Value::Object(m) = json!({"a": [1, 2], "big": {"x": {"y": "z"}}}) else { panic!() };
        let (rows, _) = c.apply(m, false).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(
            rows.iter().all(|r| r.get("big").is_none() && r.get("big.x").is_none() && r["big.x.y"] == "z"),
            "{rows:?}"
        );
    }
}
