//! Pinot's table config JSON, read as Pinot writes it and turned into typed settings at the
//! edge. Validation reports every problem at once, each with its key path, and cross-checks
//! the config against its schema.

pub(crate) mod secrets;
pub mod stream;
pub mod units;

use serde_json::{Map, Value};
use shoal_segment::Schema;
use shoal_segment::datetime::TimeUnit;
use shoal_segment::problem::{JsonReader, Problem, Problems, type_name};
use shoal_segment::schema::FieldRole;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
pub use stream::{Decoder, StreamSettings};

/// `segmentsConfig`.
#[derive(Debug, Clone, Default)]
pub struct SegmentsConfig {
    /// `timeColumnName`: the dateTime column that time ranges and retention use.
    pub time_column: String,
    /// `retentionTimeUnit` × `retentionTimeValue`; None keeps segments forever.
    pub retention: Option<Duration>,
    /// `replicasPerPartition`, kept for round trips (one process has one replica).
    pub replicas_per_partition: Option<String>,
}

/// One `ingestionConfig.transformConfigs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformConfig {
    /// Column it fills.
    pub column_name: String,
    /// Pinot transform function text.
    pub transform_function: String,
}

/// `ingestionConfig.complexTypeConfig`: flattening of nested JSON objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplexTypeConfig {
    /// `fieldsToUnnest`: arrays to unnest into rows.
    pub fields_to_unnest: Vec<String>,
    /// `delimiter` between the parts of a flattened name (default `.`).
    pub delimiter: String,
    /// `collectionNotUnnestedToJson`: NONE, NON_PRIMITIVE (Pinot's default) or ALL.
    pub collection_not_unnested_to_json: String,
    /// `prefixesToRename`: a field starting with the prefix is renamed to the replacement
    /// followed by the rest of its name.
    pub prefixes_to_rename: Vec<(String, String)>,
}

/// `ingestionConfig`.
#[derive(Debug, Clone, Default)]
pub struct IngestionConfig {
    /// `transformConfigs`.
    pub transforms: Vec<TransformConfig>,
    /// `filterConfig.filterFunction`: rows for which it is true are dropped.
    pub filter_function: Option<String>,
    /// `complexTypeConfig`.
    pub complex_type: Option<ComplexTypeConfig>,
    /// `continueOnError`: a transform, filter or conversion that fails gives null (then the
    /// column's default) and the row is kept, counted incomplete; without it the record is
    /// dropped and counted.
    pub continue_on_error: bool,
    /// `rowTimeValueCheck`: drop rows whose time is outside 1971..2071 (Pinot's default: off).
    pub row_time_check: bool,
}

/// `upsertConfig` (pinot-spi `UpsertConfig`).
#[derive(Debug, Clone)]
pub struct UpsertConfig {
    /// `mode`: FULL or PARTIAL (Pinot's default, when an upsertConfig has no mode, is FULL).
    pub mode: String,
    /// `comparisonColumns` (or the older `comparisonColumn`); empty: the time column.
    pub comparison_columns: Vec<String>,
    /// `partialUpsertStrategies`: column to strategy.
    pub partial_strategies: Vec<(String, String)>,
    /// `defaultPartialUpsertStrategy` (OVERWRITE by default).
    pub default_partial_strategy: String,
    /// `deleteRecordColumn`.
    pub delete_record_column: Option<String>,
    /// `outOfOrderRecordColumn`.
    pub out_of_order_record_column: Option<String>,
    /// `dropOutOfOrderRecord`.
    pub drop_out_of_order: bool,
    /// `metadataTTL`, in the comparison column's units (0: off).
    pub metadata_ttl: f64,
    /// `deletedKeysTTL`, in the comparison column's units (0: off).
    pub deleted_keys_ttl: f64,
    /// `task.taskTypeConfigsMap.UpsertCompactionTask`: sealed segments rewritten without their
    /// superseded rows (None: never).
    pub compaction: Option<CompactionConfig>,
}

/// Pinot's UpsertCompactionTask settings (`UpsertCompactionTaskGenerator`): a sealed segment
/// whose newest row is older than `buffer` is rewritten with only its visible rows when at
/// least `threshold_percent` of its rows and `threshold_count` rows are superseded, and
/// dropped when none is visible.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionConfig {
    /// `invalidRecordsThresholdPercent` (default 0).
    pub threshold_percent: f64,
    /// `invalidRecordsThresholdCount` (default 1).
    pub threshold_count: u64,
    /// `bufferTimePeriod` (default 7d).
    pub buffer: std::time::Duration,
}

fn read_compaction(r: &JsonReader<'_>, problems: &mut Problems) -> Option<CompactionConfig> {
    let task = r.object_field("task", problems)?;
    let types = task.object_field("taskTypeConfigsMap", problems)?;
    let c = types.object_field("UpsertCompactionTask", problems)?;
    // Task configs are a map of strings; numbers are taken as Jackson would read them.
    let text = |key: &str| match c.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let mut config = CompactionConfig {
        threshold_percent: 0.0,
        threshold_count: 1,
        buffer: std::time::Duration::from_secs(7 * 86_400),
    };
    if let Some(t) = text("invalidRecordsThresholdPercent") {
        match t.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => config.threshold_percent = p,
            _ => problems.error(
                c.path_of("invalidRecordsThresholdPercent"),
                format!("{t:?} is not a percentage from 0 to 100"),
            ),
        }
    }
    if let Some(t) = text("invalidRecordsThresholdCount") {
        match t.trim().parse::<u64>() {
            Ok(n) => config.threshold_count = n,
            _ => problems.error(c.path_of("invalidRecordsThresholdCount"), format!("{t:?} is not a count")),
        }
    }
    if let Some(t) = text("bufferTimePeriod") {
        match units::parse_duration(&t) {
            Ok(d) => config.buffer = d,
            Err(e) => problems.error(c.path_of("bufferTimePeriod"), e),
        }
    }
    Some(config)
}

/// `dedupConfig` (pinot-spi `DedupConfig`).
#[derive(Debug, Clone)]
pub struct DedupConfig {
    /// `metadataTTL`, in the dedup time column's units (0: off).
    pub metadata_ttl: f64,
    /// `dedupTimeColumn`; None: the time column.
    pub time_column: Option<String>,
}

/// Pinot's partial-upsert strategies (`UpsertConfig.Strategy`).
const STRATEGIES: [&str; 8] =
    ["OVERWRITE", "IGNORE", "INCREMENT", "APPEND", "UNION", "MAX", "MIN", "FORCE_OVERWRITE"];
/// Pinot's primary-key hash functions (`HashFunction`).
const HASH_FUNCTIONS: [&str; 6] = ["NONE", "MD5", "MURMUR3", "UUID", "XXHASH", "XXH128"];

/// A number field (`metadataTTL`); None when absent, a problem when not a number.
fn number_field(r: &JsonReader<'_>, key: &str, problems: &mut Problems) -> Option<f64> {
    match r.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(other) => {
            problems.error(r.path_of(key), format!("must be a number, found {}", type_name(other)));
            None
        }
    }
}

/// A value of `allowed`, upper-cased; a problem naming the choices otherwise.
fn one_of(r: &JsonReader<'_>, key: &str, allowed: &[&str], problems: &mut Problems) -> Option<String> {
    let value = r.string(key, problems)?.to_ascii_uppercase();
    if allowed.contains(&value.as_str()) {
        Some(value)
    } else {
        problems.error(r.path_of(key), format!("{value:?} is not one of {}", allowed.join(", ")));
        None
    }
}

fn read_upsert(u: &JsonReader<'_>, problems: &mut Problems) -> Option<UpsertConfig> {
    // pinot-spi UpsertConfig: `_mode = Mode.FULL` unless the config says otherwise.
    let mode = if u.get("mode").is_some_and(|m| !m.is_null()) {
        one_of(u, "mode", &["NONE", "FULL", "PARTIAL"], problems)?
    } else {
        "FULL".to_string()
    };
    let mut comparison_columns = u.string_array("comparisonColumns", problems).unwrap_or_default();
    comparison_columns.extend(u.string("comparisonColumn", problems));
    one_of(u, "hashFunction", &HASH_FUNCTIONS, problems);
    let mut partial_strategies = Vec::new();
    if let Some(strategies) = u.object_field("partialUpsertStrategies", problems) {
        for (column, strategy) in strategies.object() {
            match strategy.as_str().map(str::to_ascii_uppercase) {
                Some(s) if STRATEGIES.contains(&s.as_str()) => partial_strategies.push((column.clone(), s)),
                _ => problems.error(
                    strategies.path_of(column),
                    format!(
                        "{} is not a partial-upsert strategy: use one of {}",
                        strategy,
                        STRATEGIES.join(", ")
                    ),
                ),
            }
        }
    }
    let default_partial_strategy = if u.get("defaultPartialUpsertStrategy").is_some() {
        one_of(u, "defaultPartialUpsertStrategy", &STRATEGIES, problems).unwrap_or_else(|| "OVERWRITE".into())
    } else {
        "OVERWRITE".to_string()
    };
    if mode != "PARTIAL"
        && (!partial_strategies.is_empty() || u.get("defaultPartialUpsertStrategy").is_some())
    {
        problems.warn(
            u.path_of("partialUpsertStrategies"),
            format!("partial-upsert strategies apply only with mode PARTIAL, not {mode}"),
        );
    }
    let metadata_ttl = number_field(u, "metadataTTL", problems).unwrap_or(0.0);
    let deleted_keys_ttl = number_field(u, "deletedKeysTTL", problems).unwrap_or(0.0);
    for (key, ttl) in [("metadataTTL", metadata_ttl), ("deletedKeysTTL", deleted_keys_ttl)] {
        if !(ttl >= 0.0 && ttl.is_finite()) {
            problems.error(u.path_of(key), format!("{ttl} is not a duration: use 0 (off) or more"));
        }
    }
    let config = UpsertConfig {
        mode: mode.clone(),
        comparison_columns,
        partial_strategies,
        default_partial_strategy,
        delete_record_column: u.string("deleteRecordColumn", problems),
        out_of_order_record_column: u.string("outOfOrderRecordColumn", problems),
        drop_out_of_order: u.bool("dropOutOfOrderRecord", problems).unwrap_or(false),
        metadata_ttl,
        deleted_keys_ttl,
        compaction: None,
    };
    (mode != "NONE").then_some(config)
}

fn read_dedup(d: &JsonReader<'_>, problems: &mut Problems) -> Option<DedupConfig> {
    one_of(d, "hashFunction", &HASH_FUNCTIONS, problems);
    let metadata_ttl = number_field(d, "metadataTTL", problems).unwrap_or(0.0);
    if !(metadata_ttl >= 0.0 && metadata_ttl.is_finite()) {
        problems.error(
            d.path_of("metadataTTL"),
            format!("{metadata_ttl} is not a duration: use 0 (off) or more"),
        );
    }
    let config = DedupConfig { metadata_ttl, time_column: d.string("dedupTimeColumn", problems) };
    // pinot-spi DedupConfig: `_dedupEnabled = true` unless the config says otherwise.
    d.bool("dedupEnabled", problems).unwrap_or(true).then_some(config)
}

/// A Pinot REALTIME table config, typed.
#[derive(Debug, Clone)]
pub struct TableConfig {
    /// The table's name, without Pinot's `_REALTIME` suffix.
    pub name: String,
    /// The stream settings.
    pub stream: StreamSettings,
    /// `segmentsConfig`.
    pub segments: SegmentsConfig,
    /// `tableIndexConfig.sortedColumn` (Pinot takes the first of the list).
    pub sorted_column: Option<String>,
    /// Columns stored without a dictionary: `tableIndexConfig.noDictionaryColumns`, and the
    /// `fieldConfigList` entries with `"encodingType": "RAW"`. Every other single-value STRING
    /// dimension is dictionary-encoded, as Pinot does by default.
    pub no_dictionary_columns: Vec<String>,
    /// `ingestionConfig`.
    pub ingestion: IngestionConfig,
    /// `upsertConfig`, when its mode is not NONE.
    pub upsert: Option<UpsertConfig>,
    /// `dedupConfig`, when `dedupEnabled`.
    pub dedup: Option<DedupConfig>,
    /// `tierConfigs`: a sealed segment whose newest row is older than this keeps only its
    /// deep-store copy (the cold tier); None keeps every segment on local disk.
    pub cold_after: Option<Duration>,
    /// `metadata`, kept as given (secret values masked, see `secrets.rs`).
    pub metadata: Map<String, Value>,
    /// The whole document with secret values replaced by `***`, at any depth (unknown keys are
    /// kept).
    masked: Value,
    /// The document as given, secrets included: only for persisting it.
    original: Sensitive,
}

/// JSON that may hold secrets: it never prints itself.
#[derive(Clone)]
struct Sensitive(Arc<Value>);

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<table config JSON, not shown: it may hold secrets>")
    }
}

/// Every problem found in a table config and its schema.
#[derive(Debug, Clone, Default)]
pub struct ConfigError {
    /// Problems in the table config (paths from its root).
    pub table: Vec<Problem>,
    /// Problems in the schema (paths from its root).
    pub schema: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.table.len() + self.schema.len();
        write!(f, "{n} problem{} found", if n == 1 { "" } else { "s" })?;
        for p in &self.table {
            write!(f, "\n  table config: {p}")?;
        }
        for p in &self.schema {
            write!(f, "\n  schema: {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A table config and its schema, both valid and consistent with each other.
#[derive(Debug, Clone)]
pub struct TableDefinition {
    /// The table config.
    pub config: TableConfig,
    /// The schema.
    pub schema: Arc<Schema>,
    /// Accepted settings worth a word to the user.
    pub warnings: Vec<Problem>,
    /// The ingestion transforms (`ingestionConfig` and the schema's `transformFunction`s),
    /// parsed and checked; None when there is nothing to transform.
    pub transform: Option<Arc<crate::transform::IngestTransform>>,
}

impl TableDefinition {
    /// Validates a table config and a schema together, reporting every problem in both.
    pub fn from_json(table: &Value, schema: &Value) -> Result<TableDefinition, ConfigError> {
        let mut schema_problems = Problems::default();
        let parsed_schema = match Schema::from_json(schema) {
            Ok((s, p)) => {
                schema_problems.extend(p);
                Some(s)
            }
            Err(p) => {
                schema_problems.extend(p);
                None
            }
        };
        let mut problems = Problems::default();
        let (config, refs) = TableConfig::read(table, &mut problems);
        if let Some(schema) = &parsed_schema {
            refs.check_against(schema, &mut problems);
        }
        let transform = match (&config, &parsed_schema) {
            (Some(config), Some(schema)) => {
                match crate::transform::IngestTransform::new(&config.ingestion, schema) {
                    Ok(t) => t.map(Arc::new),
                    Err(found) => {
                        for p in found {
                            problems.error(p.path, p.message);
                        }
                        None
                    }
                }
            }
            _ => None,
        };
        match (config, parsed_schema) {
            (Some(config), Some(schema)) if problems.is_ok() && schema_problems.is_ok() => {
                let mut warnings = problems.warnings;
                warnings.extend(schema_problems.warnings);
                Ok(TableDefinition { config, schema: Arc::new(schema), warnings, transform })
            }
            _ => Err(ConfigError { table: problems.errors, schema: schema_problems.errors }),
        }
    }

    /// Same as [`TableDefinition::from_json`], from JSON text.
    pub fn from_json_str(table: &str, schema: &str) -> Result<TableDefinition, ConfigError> {
        let parse = |text: &str| {
            serde_json::from_str::<Value>(text).map_err(|e| {
                vec![Problem { path: "(document)".into(), message: format!("not valid JSON: {e}") }]
            })
        };
        match (parse(table), parse(schema)) {
            (Ok(t), Ok(s)) => Self::from_json(&t, &s),
            (t, s) => {
                let schema = match s {
                    Ok(s) => Schema::from_json(&s).err().map(|p| p.errors).unwrap_or_default(),
                    Err(e) => e,
                };
                Err(ConfigError { table: t.err().unwrap_or_default(), schema })
            }
        }
    }
}

impl TableConfig {
    /// Reads the config; the references to schema columns come back even when the config as a
    /// whole is invalid, so that the cross-checks report their problems in the same pass.
    fn read(doc: &Value, problems: &mut Problems) -> (Option<TableConfig>, SchemaRefs) {
        let Some(r) = JsonReader::of("", doc, problems) else { return (None, SchemaRefs::default()) };
        let raw_name = r.required_string("tableName", problems);
        let name = raw_name.as_deref().map(|n| n.strip_suffix("_REALTIME").unwrap_or(n).to_string());
        if let Some(n) = &name
            && !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            problems.error("tableName", format!("{n:?} may hold only letters, digits, '_' and '-'"));
        }
        if name.as_deref() == Some("") {
            // `_REALTIME` alone names no table: its files would land in `tables/` itself.
            problems.error(
                "tableName",
                format!(
                    "{:?} names no table: give it a name before `_REALTIME`",
                    raw_name.as_deref().unwrap_or_default()
                ),
            );
        }
        match r.string("tableType", problems) {
            None if r.get("tableType").is_none() => {
                problems.error("tableType", "missing: must be \"REALTIME\"")
            }
            Some(t) if !t.eq_ignore_ascii_case("REALTIME") => problems.error(
                "tableType",
                format!("{t:?} is not supported: Shoal serves REALTIME tables fed by Kinesis"),
            ),
            _ => {}
        }

        let segments = read_segments(&r, problems);
        // Kept as given and not used (one process serves one replica), but a wrong type is a
        // mistake Pinot would refuse too.
        r.object_field("tenants", problems);
        let index = r.object_field("tableIndexConfig", problems);
        if let Some(i) = &index {
            i.string("loadMode", problems);
        }
        let sorted_column = index.as_ref().and_then(|i| match i.get("sortedColumn") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Array(_)) => {
                let columns = i.string_array("sortedColumn", problems).unwrap_or_default();
                if columns.len() > 1 {
                    problems.error(i.path_of("sortedColumn"), "at most one sorted column is supported");
                }
                columns.into_iter().next()
            }
            Some(other) => {
                problems.error(
                    i.path_of("sortedColumn"),
                    format!("must be a column name or a list of one, found {other}"),
                );
                None
            }
            None => None,
        });

        let no_dictionary_columns = read_no_dictionary(&r, index.as_ref(), problems);

        let ingestion_reader = r.object_field("ingestionConfig", problems);
        let ingestion = ingestion_reader.as_ref().map(|i| read_ingestion(i, problems)).unwrap_or_default();

        // The stream map: the older place, or the newer streamConfigMaps list (not both).
        let old = index.as_ref().and_then(|i| i.object_field("streamConfigs", problems));
        let new = ingestion_reader
            .as_ref()
            .and_then(|i| i.object_field("streamIngestionConfig", problems))
            .and_then(|s| {
                let maps = s.array("streamConfigMaps", problems, |path, item, problems| {
                    JsonReader::of(path, item, problems)
                });
                if maps.len() > 1 {
                    problems.error(s.path_of("streamConfigMaps"), "only one stream per table is supported");
                }
                if maps.is_empty() && s.get("streamConfigMaps").is_some() {
                    problems.error(
                        s.path_of("streamConfigMaps"),
                        "is empty: it needs one map of stream settings",
                    );
                }
                maps.into_iter().next()
            });
        let stream_map = match (old, new) {
            (Some(_), Some(n)) => {
                problems.error(
                    "tableIndexConfig.streamConfigs",
                    "must not be set together with ingestionConfig.streamIngestionConfig.streamConfigMaps: keep one",
                );
                Some(n)
            }
            (Some(o), None) => Some(o),
            (None, Some(n)) => Some(n),
            (None, None) => {
                // Reported at the first missing key of the path; a value of the wrong type on
                // the way was reported where it stands.
                let missing = match &index {
                    _ if r.get("tableIndexConfig").is_none() => Some("tableIndexConfig"),
                    Some(i) if i.get("streamConfigs").is_none() => Some("tableIndexConfig.streamConfigs"),
                    _ => None,
                };
                if let Some(path) = missing
                    && !has_stream_config_maps(doc)
                {
                    problems.error(
                        path,
                        "missing: a REALTIME table needs its stream settings in tableIndexConfig.streamConfigs or in ingestionConfig.streamIngestionConfig.streamConfigMaps",
                    );
                }
                None
            }
        };
        let stream = stream_map.and_then(|m| {
            StreamSettings::parse(m.path(), m.object(), name.as_deref().unwrap_or("table"), problems)
        });

        let mut upsert = r.object_field("upsertConfig", problems).and_then(|u| read_upsert(&u, problems));
        if let Some(u) = &mut upsert {
            u.compaction = read_compaction(&r, problems);
        }
        let dedup = r.object_field("dedupConfig", problems).and_then(|d| read_dedup(&d, problems));
        if upsert.is_some() && dedup.is_some() {
            problems.error("dedupConfig", "a table has upsert or dedup, not both (Pinot refuses both too)");
        }
        if (upsert.is_some() || dedup.is_some()) && sorted_column.is_some() {
            problems.warn(
                "tableIndexConfig.sortedColumn",
                "rows of an upsert or dedup table stay in ingest order: its key map names rows by position, so sortedColumn is not applied",
            );
        }
        let cold_after = read_tiers(&r, problems);
        if cold_after.is_some() && (upsert.is_some() || dedup.is_some()) {
            problems.error(
                "tierConfigs",
                "an upsert or dedup table keeps every segment on local disk: its key map reads their rows",
            );
        }
        // Masking keeps every object and list, so the shape checks below see the document's.
        let masked = secrets::mask(doc);
        let metadata = match masked.get("metadata").filter(|v| !v.is_null()) {
            Some(Value::Object(m)) => {
                // Pinot's customConfigs is a Map<String, String>.
                match m.get("customConfigs") {
                    None | Some(Value::Null | Value::Object(_)) => {}
                    Some(other) => problems.error(
                        "metadata.customConfigs",
                        format!("must be an object of strings, found {}", type_name(other)),
                    ),
                }
                if let Some(Value::Object(custom)) = m.get("customConfigs") {
                    for (key, value) in custom {
                        if value.is_array() || value.is_object() {
                            problems.error(
                                format!("metadata.customConfigs.{key}"),
                                format!("must be a string, found {}", type_name(value)),
                            );
                        }
                    }
                }
                // A null is an absent key, as Jackson reads it.
                m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            Some(other) => {
                problems.error("metadata", format!("must be an object, found {}", type_name(other)));
                Map::new()
            }
            None => Map::new(),
        };

        let refs = SchemaRefs {
            table_names: raw_name.iter().cloned().chain(name.iter().cloned()).collect(),
            time_column: segments.as_ref().map(|s| s.time_column.clone()),
            sorted_column: sorted_column.clone(),
            no_dictionary_columns: no_dictionary_columns.clone(),
            upsert: upsert.clone(),
            dedup: dedup.clone(),
        };
        let config = match (name, stream, segments) {
            (Some(name), Some(stream), Some(segments)) => Some(TableConfig {
                name,
                stream,
                segments,
                sorted_column,
                no_dictionary_columns: no_dictionary_columns.into_iter().map(|(_, c)| c).collect(),
                ingestion,
                upsert,
                dedup,
                cold_after,
                metadata,
                masked,
                original: Sensitive(Arc::new(doc.clone())),
            }),
            _ => None,
        };
        (config, refs)
    }

    /// The config as Pinot JSON, with the stream map normalised (every setting with its
    /// effective value) and every secret as `***`.
    pub fn normalised_json(&self) -> Value {
        let mut doc = self.masked.clone();
        if let Some(slot) = pointer_mut(&mut doc, &self.stream.path) {
            *slot = Value::Object(self.stream.normalised());
        }
        doc
    }

    /// The config as given, with every secret value as `***` (unknown keys kept).
    pub fn masked_json(&self) -> &Value {
        &self.masked
    }

    /// The config as given, secrets included: for persisting it next to the table's data.
    pub fn original_json(&self) -> &Value {
        &self.original.0
    }
}

/// The schema columns a table config names, for the cross-checks.
#[derive(Default)]
struct SchemaRefs {
    table_names: Vec<String>,
    time_column: Option<String>,
    sorted_column: Option<String>,
    /// Each with its key path.
    no_dictionary_columns: Vec<(String, String)>,
    upsert: Option<UpsertConfig>,
    dedup: Option<DedupConfig>,
}

impl SchemaRefs {
    fn check_against(&self, schema: &Schema, problems: &mut Problems) {
        if let Some(name) = self.table_names.last()
            && !self.table_names.contains(&schema.name)
        {
            problems.error(
                "tableName",
                format!(
                    "{name:?} does not match the schema's schemaName {:?}: they must be the same",
                    schema.name
                ),
            );
        }
        if let Some(time) = &self.time_column {
            match schema.field(time) {
                None => problems.error(
                    "segmentsConfig.timeColumnName",
                    format!("column {time:?} is not in schema {:?}: name one of its dateTimeFieldSpecs", schema.name),
                ),
                Some(f) if f.role != FieldRole::DateTime => problems.error(
                    "segmentsConfig.timeColumnName",
                    format!("column {time:?} is not a dateTime field: move it to dateTimeFieldSpecs with a format and granularity"),
                ),
                Some(_) => {}
            }
        }
        if let Some(sorted) = &self.sorted_column {
            match schema.field(sorted) {
                None => problems.error(
                    "tableIndexConfig.sortedColumn",
                    format!("column {sorted:?} is not in the schema"),
                ),
                Some(f) if !f.single_value => problems.error(
                    "tableIndexConfig.sortedColumn",
                    format!("column {sorted:?} is multi-value and cannot be sorted on"),
                ),
                Some(_) => {}
            }
        }
        for (path, column) in &self.no_dictionary_columns {
            if schema.field(column).is_none() {
                problems.error(path.clone(), format!("column {column:?} is not in the schema"));
            }
        }
        if let Some(u) = &self.upsert {
            check_upsert(u, self.time_column.as_deref(), schema, problems);
        }
        if let Some(d) = &self.dedup {
            if schema.primary_key_columns.is_empty() {
                problems.error("dedupConfig", "dedup needs primaryKeyColumns in the schema");
            }
            if let Some(c) = &d.time_column {
                match schema.field(c) {
                    None => problems
                        .error("dedupConfig.dedupTimeColumn", format!("column {c:?} is not in the schema")),
                    Some(f) if !f.single_value || !orderable(f.data_type) => problems.error(
                        "dedupConfig.dedupTimeColumn",
                        format!("column {c:?} must be a single-value number or timestamp"),
                    ),
                    Some(f) if d.metadata_ttl > 0.0 && f.data_type == shoal_segment::DataType::BigDecimal => {
                        problems.error(
                            "dedupConfig.metadataTTL",
                            format!("column {c:?} is a BIG_DECIMAL: a TTL needs an INT, LONG, FLOAT, DOUBLE or TIMESTAMP time"),
                        )
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// The columns stored without a dictionary, each with its key path:
/// `tableIndexConfig.noDictionaryColumns`, and `fieldConfigList` entries whose `encodingType`
/// is `RAW` (an entry saying `DICTIONARY` takes its column out of noDictionaryColumns, as in
/// Pinot, where the field config wins).
fn read_no_dictionary(
    r: &JsonReader<'_>,
    index: Option<&JsonReader<'_>>,
    problems: &mut Problems,
) -> Vec<(String, String)> {
    let mut columns: Vec<(String, String)> = Vec::new();
    if let Some(i) = index {
        let path = i.path_of("noDictionaryColumns");
        let listed = i.string_array("noDictionaryColumns", problems).unwrap_or_default();
        columns.extend(listed.into_iter().enumerate().map(|(n, c)| (format!("{path}[{n}]"), c)));
    }
    let encodings = r.array("fieldConfigList", problems, |path, item, problems| {
        let entry = JsonReader::of(path.clone(), item, problems)?;
        let name = entry.required_string("name", problems)?;
        let encoding = entry.string("encodingType", problems)?;
        match encoding.to_ascii_uppercase().as_str() {
            "RAW" => Some((entry.path_of("name"), name, true)),
            "DICTIONARY" => Some((entry.path_of("name"), name, false)),
            _ => {
                problems.error(
                    entry.path_of("encodingType"),
                    format!("{encoding:?} is not an encoding: use \"DICTIONARY\" or \"RAW\""),
                );
                None
            }
        }
    });
    for (path, name, raw) in encodings {
        columns.retain(|(_, c)| *c != name);
        if raw {
            columns.push((path, name));
        }
    }
    columns
}

/// Whether values of `t` order (numbers and timestamps), as TTLs and comparisons need.
fn orderable(t: shoal_segment::DataType) -> bool {
    use shoal_segment::DataType as T;
    matches!(t, T::Int | T::Long | T::Float | T::Double | T::BigDecimal | T::Timestamp)
}

/// pinot-segment-local TableConfigUtils.validateUpsertAndDedupConfig and the upsert managers'
/// own checks, with Shoal's key paths.
fn check_upsert(u: &UpsertConfig, time_column: Option<&str>, schema: &Schema, problems: &mut Problems) {
    use shoal_segment::DataType as T;
    if schema.primary_key_columns.is_empty() {
        problems.error("upsertConfig", "upsert needs primaryKeyColumns in the schema");
    }
    let comparison: Vec<String> = if u.comparison_columns.is_empty() {
        time_column.map(str::to_string).into_iter().collect()
    } else {
        u.comparison_columns.clone()
    };
    for (i, c) in u.comparison_columns.iter().enumerate() {
        let path = format!("upsertConfig.comparisonColumns[{i}]");
        match schema.field(c) {
            None => problems.error(path, format!("column {c:?} is not in the schema")),
            Some(f) if !f.single_value || matches!(f.data_type, T::Json | T::Bytes | T::Boolean) => problems
                .error(
                    path,
                    format!(
                        "column {c:?} cannot order versions: use a single-value number, timestamp or string"
                    ),
                ),
            Some(_) => {}
        }
        if schema.primary_key_columns.contains(c) {
            problems.error(
                format!("upsertConfig.comparisonColumns[{i}]"),
                format!("column {c:?} is a primary key column"),
            );
        }
    }
    if (u.metadata_ttl > 0.0 || u.deleted_keys_ttl > 0.0)
        && (comparison.len() != 1
            || !schema
                .field(&comparison[0])
                .is_some_and(|f| orderable(f.data_type) && f.data_type != T::BigDecimal))
    {
        problems.error(
            if u.metadata_ttl > 0.0 { "upsertConfig.metadataTTL" } else { "upsertConfig.deletedKeysTTL" },
            "a TTL needs exactly one comparison column, a number or a timestamp",
        );
    }
    if u.deleted_keys_ttl > 0.0 && u.delete_record_column.is_none() {
        problems.error("upsertConfig.deletedKeysTTL", "deletedKeysTTL needs deleteRecordColumn");
    }
    for (key, column) in [
        ("deleteRecordColumn", &u.delete_record_column),
        ("outOfOrderRecordColumn", &u.out_of_order_record_column),
    ] {
        let Some(c) = column else { continue };
        match schema.field(c) {
            None => {
                problems.error(format!("upsertConfig.{key}"), format!("column {c:?} is not in the schema"))
            }
            // Pinot: a delete column is a single-value BOOLEAN, STRING or number; the
            // out-of-order column a single-value BOOLEAN.
            Some(f)
                if !f.single_value
                    || (key == "outOfOrderRecordColumn" && f.data_type != T::Boolean)
                    || matches!(f.data_type, T::Json | T::Bytes | T::Timestamp) =>
            {
                problems.error(
                    format!("upsertConfig.{key}"),
                    format!(
                        "column {c:?} must be a single-value {}",
                        if key == "deleteRecordColumn" { "BOOLEAN, STRING or number" } else { "BOOLEAN" }
                    ),
                )
            }
            Some(_) => {}
        }
    }
    if u.drop_out_of_order && u.out_of_order_record_column.is_some() {
        problems.error(
            "upsertConfig.dropOutOfOrderRecord",
            "dropOutOfOrderRecord and outOfOrderRecordColumn cannot both be set: a dropped record has no row to mark",
        );
    }
    for (column, strategy) in &u.partial_strategies {
        let path = format!("upsertConfig.partialUpsertStrategies.{column}");
        let Some(f) = schema.field(column) else {
            problems.error(path, format!("column {column:?} is not in the schema"));
            continue;
        };
        if schema.primary_key_columns.contains(column) || comparison.contains(column) {
            problems.error(
                path,
                format!("column {column:?} is a primary key or comparison column: it is never merged"),
            );
            continue;
        }
        // Pinot checks INCREMENT (a number that is no dateTime field), APPEND and UNION (multi-value);
        // MAX and MIN compare whatever the column holds.
        let numeric = matches!(f.data_type, T::Int | T::Long | T::Float | T::Double | T::BigDecimal)
            && f.role != shoal_segment::FieldRole::DateTime;
        match strategy.as_str() {
            "INCREMENT" if !numeric || !f.single_value => problems.error(
                path,
                format!("INCREMENT needs a single-value number column, and {column:?} is not one"),
            ),
            "APPEND" | "UNION" if f.single_value => problems
                .error(path, format!("{strategy} needs a multi-value column, and {column:?} is not one")),
            _ => {}
        }
    }
}

/// `tierConfigs`: Pinot moves a segment older than `segmentAge` to the servers of a tier.
/// One Shoal process has one server, so its one tier is the deep store
/// (`"storageType": "deep_store"`): such a segment is dropped from local disk once uploaded,
/// and queries read it from the deep store.
fn read_tiers(r: &JsonReader<'_>, problems: &mut Problems) -> Option<Duration> {
    let tiers = r.array("tierConfigs", problems, |path, item, problems| {
        let t = JsonReader::of(path, item, problems)?;
        let storage = t.required_string("storageType", problems)?;
        if !matches!(storage.to_ascii_lowercase().replace('-', "_").as_str(), "deep_store" | "deepstore") {
            problems.warn(
                t.path_of("storageType"),
                format!("{storage:?} tiers move segments between Pinot servers, and one Shoal process is one server: not applied (Shoal's tier is \"deep_store\")"),
            );
            return None;
        }
        match t.string("segmentSelectorType", problems) {
            None => {}
            Some(k) if k.eq_ignore_ascii_case("time") => {}
            Some(k) => {
                problems.error(t.path_of("segmentSelectorType"), format!("{k:?} is not supported: use \"time\""));
                return None;
            }
        }
        let age = t.required_string("segmentAge", problems)?;
        match units::parse_duration(&age) {
            Ok(d) if d > Duration::ZERO => Some(d),
            Ok(_) => {
                problems.error(t.path_of("segmentAge"), "must be more than 0");
                None
            }
            Err(e) => {
                problems.error(t.path_of("segmentAge"), e);
                None
            }
        }
    });
    if tiers.len() > 1 {
        problems.error("tierConfigs", "at most one deep_store tier is supported");
    }
    tiers.into_iter().next()
}

fn read_segments(r: &JsonReader<'_>, problems: &mut Problems) -> Option<SegmentsConfig> {
    let Some(s) = r.object_field("segmentsConfig", problems) else {
        if r.get("segmentsConfig").is_none() {
            problems.error(
                "segmentsConfig",
                "missing: a REALTIME table needs its time column in segmentsConfig.timeColumnName",
            );
        }
        return None;
    };
    let time_column = s.required_string("timeColumnName", problems);
    let unit = s.string("retentionTimeUnit", problems);
    let value = s.u64("retentionTimeValue", problems);
    let retention = match (unit, value) {
        (None, None) => None,
        (Some(u), Some(v)) => match TimeUnit::parse(&u) {
            Some(unit)
                if matches!(
                    unit,
                    TimeUnit::Days
                        | TimeUnit::Hours
                        | TimeUnit::Minutes
                        | TimeUnit::Seconds
                        | TimeUnit::Milliseconds
                ) =>
            {
                if v == 0 {
                    problems.error(s.path_of("retentionTimeValue"), "must be more than 0");
                }
                Some(Duration::from_millis((unit.nanos() / 1_000_000) as u64 * v))
            }
            _ => {
                problems.error(
                    s.path_of("retentionTimeUnit"),
                    format!("{u:?} is not one of DAYS, HOURS, MINUTES, SECONDS, MILLISECONDS"),
                );
                None
            }
        },
        (Some(_), None) if s.get("retentionTimeValue").is_none() => {
            problems.error(
                s.path_of("retentionTimeValue"),
                "missing: retentionTimeUnit is set, so a number is needed",
            );
            None
        }
        (None, Some(_)) => {
            problems.error(
                s.path_of("retentionTimeUnit"),
                "missing: retentionTimeValue is set, so a unit such as DAYS is needed",
            );
            None
        }
        _ => None,
    };
    Some(SegmentsConfig {
        time_column: time_column?,
        retention,
        // Pinot keeps it as text and reads it with Integer.parseInt, so `1` and `"1"` are one.
        replicas_per_partition: s.u64("replicasPerPartition", problems).map(|n| n.to_string()),
    })
}

fn read_ingestion(i: &JsonReader<'_>, problems: &mut Problems) -> IngestionConfig {
    let transforms = i.array("transformConfigs", problems, |path, item, problems| {
        let t = JsonReader::of(path, item, problems)?;
        let column_name = t.required_string("columnName", problems);
        let transform_function = t.required_string("transformFunction", problems);
        Some(TransformConfig { column_name: column_name?, transform_function: transform_function? })
    });
    if i.get("aggregationConfigs").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
        problems.warn(
            i.path_of("aggregationConfigs"),
            "aggregations at ingest are not applied yet: every record is kept as its own row",
        );
    }
    let filter_function = i
        .object_field("filterConfig", problems)
        .and_then(|f| f.string("filterFunction", problems))
        .filter(|f| !f.trim().is_empty());
    let complex_type = i.object_field("complexTypeConfig", problems).map(|c| {
        let mode =
            c.string("collectionNotUnnestedToJson", problems).unwrap_or_else(|| "NON_PRIMITIVE".to_string());
        if !["NONE", "NON_PRIMITIVE", "ALL"].contains(&mode.as_str()) {
            problems.error(
                c.path_of("collectionNotUnnestedToJson"),
                format!("{mode:?} is not a mode: use NONE, NON_PRIMITIVE or ALL"),
            );
        }
        let prefixes_to_rename = c
            .object_field("prefixesToRename", problems)
            .map(|p| {
                p.object()
                    .iter()
                    .filter_map(|(prefix, value)| match value.as_str() {
                        Some(to) => Some((prefix.to_string(), to.to_string())),
                        None => {
                            problems.error(p.path_of(prefix), "must be the replacement text");
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        ComplexTypeConfig {
            fields_to_unnest: c.string_array("fieldsToUnnest", problems).unwrap_or_default(),
            delimiter: c.string("delimiter", problems).unwrap_or_else(|| ".".to_string()),
            collection_not_unnested_to_json: mode,
            prefixes_to_rename,
        }
    });
    IngestionConfig {
        transforms,
        filter_function,
        complex_type,
        continue_on_error: i.bool("continueOnError", problems).unwrap_or(false),
        row_time_check: i.bool("rowTimeValueCheck", problems).unwrap_or(false),
    }
}

/// True when the document has the newer stream settings list, whatever its shape.
fn has_stream_config_maps(doc: &Value) -> bool {
    doc.pointer("/ingestionConfig/streamIngestionConfig/streamConfigMaps").is_some_and(|v| !v.is_null())
}

/// `a.b[0].c` → the value at that path (keys may themselves hold dots: the stream path only
/// has the two known shapes, so it is matched literally).
fn pointer_mut<'a>(doc: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    match path {
        "tableIndexConfig.streamConfigs" => doc.get_mut("tableIndexConfig")?.get_mut("streamConfigs"),
        "ingestionConfig.streamIngestionConfig.streamConfigMaps[0]" => doc
            .get_mut("ingestionConfig")?
            .get_mut("streamIngestionConfig")?
            .get_mut("streamConfigMaps")?
            .get_mut(0),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
