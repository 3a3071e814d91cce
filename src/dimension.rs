//! Pinot dimension tables ([`crate::Engine::create_dimension_table`]): an OFFLINE table config
//! with `isDimTable: true`, a schema with `primaryKeyColumns`, and a file the app names (JSON
//! lines, a JSON array, CSV or Parquet), loaded whole into memory for `LOOKUP` and for SQL.
//!
//! The definition is kept in the data directory (`dimensions/<name>/`: the config, the schema,
//! and the file's path) and the file is read again at every open and at every reload: the app
//! owns the file, Shoal keeps no copy.

use crate::error::{Error, io_error};
use datafusion::common::ScalarValue;
use serde_json::{Value, json};
use shoal_query::DimensionTable;
use shoal_segment::problem::{JsonReader, Problems};
use shoal_segment::{LayoutOptions, MutableSegment, RecordMeta, Schema, TableLayout};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The directory of dimension tables in the data directory.
pub(crate) const DIMENSIONS_DIR: &str = "dimensions";
/// The file naming the table's data file.
const SOURCE_FILE: &str = "source.json";

/// A dimension table's definition: what the app gave.
#[derive(Debug, Clone)]
pub(crate) struct Dimension {
    pub name: String,
    pub config: Value,
    pub schema: Value,
    pub file: PathBuf,
    layout: Arc<TableLayout>,
    primary_key: Vec<String>,
    error_on_duplicate: bool,
}

fn invalid(table: Vec<shoal_segment::Problem>, schema: Vec<shoal_segment::Problem>) -> Error {
    Error::Config(crate::config::ConfigError { table, schema })
}

impl Dimension {
    /// Checks a Pinot dimension table's config and schema.
    pub(crate) fn parse(config: &Value, schema: &Value, file: &Path) -> Result<Dimension, Error> {
        let mut problems = Problems::default();
        let (schema_parsed, schema_problems) = match Schema::from_json(schema) {
            Ok((s, p)) => (Some(s), p),
            Err(p) => (None, p),
        };
        let mut schema_problems = schema_problems;
        let r = JsonReader::of("", config, &mut problems);
        let name = r.as_ref().and_then(|r| r.required_string("tableName", &mut problems));
        let name = name.map(|n| n.strip_suffix("_OFFLINE").map(str::to_string).unwrap_or(n));
        if let Some(n) = &name
            && (n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            problems.error("tableName", format!("{n:?} must be letters, digits, '_' and '-'"));
        }
        let mut error_on_duplicate = false;
        if let Some(r) = &r {
            match r.string("tableType", &mut problems) {
                Some(t) if t.eq_ignore_ascii_case("OFFLINE") => {}
                Some(t) => problems
                    .error(r.path_of("tableType"), format!("{t:?}: a dimension table is an OFFLINE table")),
                None => {}
            }
            if r.bool("isDimTable", &mut problems) != Some(true) {
                problems.error(r.path_of("isDimTable"), "must be true for a dimension table");
            }
            if let Some(d) = r.object_field("dimensionTableConfig", &mut problems) {
                error_on_duplicate = d.bool("errorOnDuplicatePrimaryKey", &mut problems).unwrap_or(false);
            }
        }
        let mut primary_key = Vec::new();
        if let Some(s) = &schema_parsed {
            if s.primary_key_columns.is_empty() {
                schema_problems.error("primaryKeyColumns", "a dimension table needs its primary key columns");
            }
            for (i, column) in s.primary_key_columns.iter().enumerate() {
                match s.field(column) {
                    None => schema_problems
                        .error(format!("primaryKeyColumns[{i}]"), format!("{column:?} is not a column")),
                    Some(f) if !f.single_value => schema_problems.error(
                        format!("primaryKeyColumns[{i}]"),
                        format!("{column:?} is multi-value: a key column holds one value"),
                    ),
                    Some(_) => {}
                }
            }
            primary_key = s.primary_key_columns.clone();
            if let Some(n) = &name
                && &s.name != n
            {
                schema_problems.error("schemaName", format!("{:?} must be the table's name, {n:?}", s.name));
            }
        }
        if !problems.is_ok() || !schema_problems.is_ok() {
            return Err(invalid(problems.errors, schema_problems.errors));
        }
        let (Some(name), Some(parsed)) = (name, schema_parsed) else {
            return Err(invalid(problems.errors, schema_problems.errors));
        };
        let layout = Arc::new(TableLayout::new(Arc::new(parsed), &LayoutOptions::default()));
        Ok(Dimension {
            name,
            config: config.clone(),
            schema: schema.clone(),
            file: file.to_path_buf(),
            layout,
            primary_key,
            error_on_duplicate,
        })
    }

    /// Keeps the definition in `dir`, the source last (its presence marks a whole one).
    pub(crate) fn save(&self, dir: &Path) -> Result<(), Error> {
        shoal_segment::durable::create_dir(dir).map_err(|e| io_error(dir, e))?;
        crate::engine::write_private(&dir.join(crate::engine::TABLE_CONFIG_FILE), &self.config)?;
        crate::engine::write_private(&dir.join(crate::engine::SCHEMA_FILE), &self.schema)?;
        crate::engine::write_private(&dir.join(SOURCE_FILE), &json!({"file": self.file}))
    }

    /// Deletes the source file of the definition in `dir`, durably: what is left is no table.
    pub(crate) fn forget(dir: &Path) -> Result<(), Error> {
        let path = dir.join(SOURCE_FILE);
        std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        shoal_segment::durable::sync_dir(dir).map_err(|e| io_error(dir, e))
    }

    /// Reads a definition kept in `dir`; None when it is not whole (an interrupted create).
    pub(crate) fn load(dir: &Path) -> Result<Option<Dimension>, Error> {
        let read = |name: &str| -> Result<Value, Error> {
            let path = dir.join(name);
            let text = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
            serde_json::from_slice(&text).map_err(|e| Error::Corrupt { path, reason: e.to_string() })
        };
        if !dir.join(SOURCE_FILE).exists() {
            return Ok(None);
        }
        let source = read(SOURCE_FILE)?;
        let file = source["file"]
            .as_str()
            .ok_or_else(|| Error::Corrupt { path: dir.join(SOURCE_FILE), reason: "no \"file\"".into() })?;
        Dimension::parse(
            &read(crate::engine::TABLE_CONFIG_FILE)?,
            &read(crate::engine::SCHEMA_FILE)?,
            Path::new(file),
        )
        .map(Some)
    }

    /// Reads the file into a dimension table.
    pub(crate) async fn read(&self) -> Result<DimensionTable, Error> {
        let path = &self.file;
        let bad = |reason: String| Error::Corrupt { path: path.clone(), reason };
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let batches = match extension.as_str() {
            "json" | "jsonl" | "ndjson" => {
                let (path, layout) = (path.clone(), Arc::clone(&self.layout));
                tokio::task::spawn_blocking(move || decode_json(&path, layout))
                    .await
                    .map_err(|e| Error::Task(format!("reading a dimension file: {e}")))??
            }
            "csv" | "parquet" => self.read_columnar(&extension).await?,
            _ => {
                return Err(bad(format!(
                    "{extension:?} is not a dimension file type Shoal reads: .json (lines or an array), .jsonl, .ndjson, .csv or .parquet"
                )));
            }
        };
        let defaults = lookup_defaults(&self.layout)?;
        let table = DimensionTable::new(&self.name, batches, self.primary_key.clone(), defaults)
            .map_err(|e| bad(e.to_string()))?;
        if self.error_on_duplicate && table.num_keys() != table.num_rows() {
            return Err(bad(format!(
                "{} rows have a primary key an earlier row has (dimensionTableConfig.errorOnDuplicatePrimaryKey is true)",
                table.num_rows() - table.num_keys()
            )));
        }
        Ok(table)
    }

    /// CSV (with a header row) or Parquet, read through DataFusion; each schema column is
    /// cast to its type, a missing column or a null value becoming its default.
    async fn read_columnar(&self, extension: &str) -> Result<Vec<arrow::array::RecordBatch>, Error> {
        use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
        let path = &self.file;
        let bad = |reason: String| Error::Corrupt { path: path.clone(), reason };
        let text = path.to_str().ok_or_else(|| bad("the path is not UTF-8".into()))?;
        if !path.is_file() {
            return Err(io_error(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        let ctx = SessionContext::new();
        let frame = if extension == "csv" {
            // Every column read as text (no guessing from the first rows: a key "007" stays
            // "007"), then cast to the schema's type.
            let header = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
            let header = header.lines().next().unwrap_or_default();
            let columns: Vec<arrow::datatypes::Field> = header
                .split(',')
                .map(|c| {
                    arrow::datatypes::Field::new(
                        c.trim().trim_matches('"'),
                        arrow::datatypes::DataType::Utf8,
                        true,
                    )
                })
                .collect();
            let text_schema = arrow::datatypes::Schema::new(columns);
            ctx.read_csv(
                text,
                CsvReadOptions::new().has_header(true).file_extension(".csv").schema(&text_schema),
            )
            .await
        } else {
            ctx.read_parquet(text, ParquetReadOptions::default().file_extension(".parquet")).await
        };
        let frame = frame.map_err(|e| bad(e.to_string()))?;
        for key in &self.primary_key {
            if frame.schema().field_with_unqualified_name(key).is_err() {
                return Err(bad(format!("the file has no column {key:?}, a primary key column")));
            }
        }
        let read = frame.collect().await.map_err(|e| bad(e.to_string()))?;
        let defaults = defaults(&self.layout)?;
        let strict = arrow::compute::CastOptions { safe: false, ..Default::default() };
        let target = Arc::clone(&self.layout.arrow);
        let mut out = Vec::with_capacity(read.len());
        for batch in read {
            let mut columns = Vec::with_capacity(target.fields().len());
            for (field, default) in target.fields().iter().zip(&defaults) {
                let default = default.to_array_of_size(batch.num_rows()).map_err(|e| bad(e.to_string()))?;
                let column = match batch.column_by_name(field.name()) {
                    None => default,
                    Some(c) => {
                        let cast = arrow::compute::cast_with_options(c, field.data_type(), &strict).map_err(
                            |e| {
                                bad(format!(
                                    "column {:?} cannot be read as {}: {e}",
                                    field.name(),
                                    field.data_type()
                                ))
                            },
                        )?;
                        if cast.null_count() == 0 {
                            cast
                        } else {
                            let valid = arrow::compute::is_not_null(&cast).map_err(|e| bad(e.to_string()))?;
                            arrow::compute::kernels::zip::zip(&valid, &cast, &default)
                                .map_err(|e| bad(e.to_string()))?
                        }
                    }
                };
                columns.push(column);
            }
            out.push(
                arrow::array::RecordBatch::try_new(Arc::clone(&target), columns)
                    .map_err(|e| bad(e.to_string()))?,
            );
        }
        if out.is_empty() {
            out.push(arrow::array::RecordBatch::new_empty(target));
        }
        Ok(out)
    }
}

/// JSON lines (or one JSON array of objects), through the same decoder as a stream's records.
fn decode_json(path: &Path, layout: Arc<TableLayout>) -> Result<Vec<arrow::array::RecordBatch>, Error> {
    let text = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let bad = |reason: String| Error::Corrupt { path: path.to_path_buf(), reason };
    let records: Vec<Vec<u8>> = if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let items: Vec<Value> = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        items.iter().map(|v| serde_json::to_vec(v).expect("a JSON value serialises")).collect()
    } else {
        text.split(|b| *b == b'\n')
            .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
            .map(<[u8]>::to_vec)
            .collect()
    };
    let segment = MutableSegment::new(Arc::clone(&layout));
    let meta = RecordMeta { partition_key: "", sequence_number: "0", arrival_millis: 0 };
    segment.append(records.iter().map(|r| (r.as_slice(), meta)));
    let drops = segment.drops();
    let dropped: u64 = drops.counts.values().sum();
    if dropped > 0 {
        // A dimension table is small and whole: a bad line is an error to fix, not a row to lose.
        let sample = drops.samples.values().flatten().next().map(|s| s.message.clone()).unwrap_or_default();
        return Err(bad(format!("{dropped} of {} records cannot be read, e.g.: {sample}", records.len())));
    }
    let mut batches = segment.snapshot().batches;
    if batches.is_empty() {
        batches.push(arrow::array::RecordBatch::new_empty(Arc::clone(&layout.arrow)));
    }
    Ok(batches)
}

/// Each column's default null value: what a record without the column decodes to.
fn defaults(layout: &Arc<TableLayout>) -> Result<Vec<ScalarValue>, Error> {
    let segment = MutableSegment::new(Arc::clone(layout));
    let meta = RecordMeta { partition_key: "", sequence_number: "0", arrival_millis: 0 };
    segment.append([(&b"{}"[..], meta)]);
    let snapshot = segment.snapshot();
    let row = snapshot.batches.iter().find(|b| b.num_rows() > 0).ok_or_else(|| {
        Error::Task(
            "the schema's default values cannot be decoded (a record without fields was refused)".into(),
        )
    })?;
    row.columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0).map_err(|e| Error::Task(e.to_string())))
        .collect()
}

/// What Pinot's `LOOKUP` answers on a miss (`LookupTransformFunction`): the column's default
/// null value, except that a multi-value column answers an empty array and a FLOAT or DOUBLE
/// column its default's `intValue()` (`-Infinity` becomes `-2147483648.0`, as Pinot's
/// `_nullDoubleValue` does).
fn lookup_defaults(layout: &Arc<TableLayout>) -> Result<Vec<ScalarValue>, Error> {
    defaults(layout)?
        .into_iter()
        .map(|value| {
            Ok(match value {
                ScalarValue::List(list) => {
                    let item = match arrow::array::Array::data_type(list.as_ref()) {
                        arrow::datatypes::DataType::List(f) => f.data_type().clone(),
                        other => other.clone(),
                    };
                    ScalarValue::List(ScalarValue::new_list_nullable(&[], &item))
                }
                ScalarValue::Float64(Some(v)) => ScalarValue::Float64(Some(f64::from(v as i32))),
                ScalarValue::Float32(Some(v)) => ScalarValue::Float32(Some(v as i32 as f32)),
                other => other,
            })
        })
        .collect()
}
