//! Pinot's `LOOKUP` over in-memory dimension tables (pinot-core `LookupTransformFunction.java`,
//! `DimensionTableDataManager.java`):
//!
//! ```sql
//! LOOKUP('dimTable', 'dimColumn', 'dimJoinKey1', factExpr1 [, 'dimJoinKey2', factExpr2 ...])
//! ```
//!
//! answers, for each row, the value of `dimColumn` in the row of the dimension table whose
//! primary key equals the join values. The table, column and key names are string literals; the
//! keys must be the table's primary key columns, all of them, in order. A join value is
//! converted to its key column's type first (Pinot reads it as that type). A row without a
//! match, or with a NULL join value, gets the column's default null value (Pinot's
//! `FieldSpec.getDefaultNullValue`: `-2147483648` for INT, `"null"` for STRING...), and so does a
//! matched row whose value is NULL: Pinot stores a NULL as that default.
//!
//! A [`DimensionTable`] is built from record batches with its primary key and the defaults;
//! [`Dimensions`] holds the tables `LOOKUP` reads, by name; [`lookup_function`] is the function
//! over a registry, which [`crate::QueryEngine`] registers in every query's session.

use crate::engine::QueryError;
use arrow::array::{Array, ArrayRef, RecordBatch, Scalar, UInt32Array};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{CastOptions, can_cast_types, cast_with_options, concat_batches, is_not_null, take};
use arrow::datatypes::{DataType, Field, FieldRef, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

/// The function's name in SQL (matched without regard to case, as every function name is).
pub const LOOKUP: &str = "lookup";

/// How `LOOKUP` is called, for messages.
const USAGE: &str =
    "LOOKUP('dimTable', 'dimColumn', 'dimJoinKey1', factExpr1[, 'dimJoinKey2', factExpr2 ...])";

/// A dimension table: rows held in memory with a map from their primary key to the row, for
/// `LOOKUP` (Pinot's `FastLookupDimensionTable`).
///
/// - Duplicate primary keys: the later row wins, as in Pinot's `DimensionTableDataManager`,
///   which puts every row into its map in order (segments sorted by creation time) and keeps the
///   last one; Pinot fails the load only with `dimensionTableConfig.errorOnDuplicatePrimaryKey`,
///   which the engine checks when it loads a dimension table (`num_keys` against `num_rows`). Rows are in the order of `batches`, then of their rows.
/// - A row with a NULL in a primary key column is left out of the map: no join value matches it
///   (a NULL join value gets the default). Pinot never sees such a row: ingestion stores a NULL
///   as the column's default null value, which a caller wanting that must put in the batches.
/// - Every row stays in [`DimensionTable::batch`], duplicates and NULL keys included: that is
///   the table SQL can query.
pub struct DimensionTable {
    name: String,
    batch: RecordBatch,
    primary_key: Vec<String>,
    /// The primary key columns' positions in `batch`.
    key_columns: Vec<usize>,
    /// Each column's default null value, as given.
    defaults: Vec<ScalarValue>,
    /// The same, as one-row arrays of exactly the column's type.
    default_arrays: Vec<ArrayRef>,
    /// Encodes primary keys as bytes.
    converter: RowConverter,
    /// Encoded primary key → row in `batch`.
    index: HashMap<Box<[u8]>, u32>,
}

impl std::fmt::Debug for DimensionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DimensionTable")
            .field("name", &self.name)
            .field("primary_key", &self.primary_key)
            .field("rows", &self.batch.num_rows())
            .field("keys", &self.index.len())
            .finish_non_exhaustive()
    }
}

impl DimensionTable {
    /// A dimension table `name` of the rows of `batches` (which must share one schema; at least
    /// one batch, which may be empty, gives it), keyed by the columns `primary_key` (at least
    /// one, of single-value types). `defaults[i]` is column `i`'s default null value, of that
    /// column's type: what `LOOKUP` answers when no row matches. A typed NULL there makes the
    /// answer SQL's NULL instead, which Pinot never gives.
    ///
    /// Rows whose primary key repeats an earlier row's replace it (Pinot's default), and rows
    /// with a NULL key column are not looked up: see [`DimensionTable`].
    pub fn new(
        name: &str,
        batches: Vec<RecordBatch>,
        primary_key: Vec<String>,
        defaults: Vec<ScalarValue>,
    ) -> Result<DimensionTable, QueryError> {
        let invalid =
            |message: String| QueryError::validation(format!("dimension table {name:?}: {message}"));
        let Some(first) = batches.first() else {
            return Err(invalid("needs at least one batch (an empty one gives the schema)".into()));
        };
        let schema = first.schema();
        let same = |b: &RecordBatch| {
            b.num_columns() == schema.fields().len()
                && b.schema_ref()
                    .fields()
                    .iter()
                    .zip(schema.fields())
                    .all(|(a, f)| a.name() == f.name() && a.data_type() == f.data_type())
        };
        if let Some(i) = batches.iter().position(|b| !same(b)) {
            return Err(invalid(format!(
                "its batches do not share one schema: batch {} has {:?}, the first {:?}",
                i + 1,
                batches[i]
                    .schema_ref()
                    .fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>(),
                schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect::<Vec<_>>(),
            )));
        }
        let batch = concat_batches(&schema, &batches)
            .map_err(|e| invalid(format!("its batches do not share one schema: {e}")))?;
        let rows = u32::try_from(batch.num_rows()).map_err(|_| {
            invalid(format!("{} rows are more than a dimension table may hold", batch.num_rows()))
        })?;
        if primary_key.is_empty() {
            return Err(invalid("needs a primary key".into()));
        }
        let mut key_columns = Vec::with_capacity(primary_key.len());
        for key in &primary_key {
            let Ok(i) = schema.index_of(key) else {
                return Err(invalid(format!("primary key column {key:?} is not one of its columns")));
            };
            if key_columns.contains(&i) {
                return Err(invalid(format!("primary key column {key:?} is named twice")));
            }
            let t = schema.field(i).data_type();
            if t.is_nested() {
                return Err(invalid(format!(
                    "primary key column {key:?} is of type {t}, not a single-value type"
                )));
            }
            key_columns.push(i);
        }
        if defaults.len() != schema.fields().len() {
            return Err(invalid(format!(
                "{} default values given for its {} columns",
                defaults.len(),
                schema.fields().len()
            )));
        }
        let mut default_arrays = Vec::with_capacity(defaults.len());
        for (field, default) in schema.fields().iter().zip(&defaults) {
            let (want, got) = (field.data_type(), default.data_type());
            if !want.equals_datatype(&got) {
                return Err(invalid(format!(
                    "the default value of column {:?} is of type {got}, not the column's type {want}",
                    field.name()
                )));
            }
            let array = default
                .to_array_of_size(1)
                .and_then(|a| Ok(cast_with_options(&a, want, &CastOptions::default())?))
                .map_err(|e| invalid(format!("the default value of column {:?}: {e}", field.name())))?;
            default_arrays.push(array);
        }
        let fields =
            key_columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect();
        let converter =
            RowConverter::new(fields).map_err(|e| invalid(format!("cannot key its rows: {e}")))?;
        let keys: Vec<ArrayRef> = key_columns.iter().map(|&i| Arc::clone(batch.column(i))).collect();
        let encoded =
            converter.convert_columns(&keys).map_err(|e| invalid(format!("cannot key its rows: {e}")))?;
        let mut index = HashMap::with_capacity(batch.num_rows());
        for row in 0..rows {
            if keys.iter().any(|k| k.is_null(row as usize)) {
                continue;
            }
            // Later rows win, as in Pinot.
            index.insert(Box::from(encoded.row(row as usize).as_ref()), row);
        }
        Ok(DimensionTable {
            name: name.to_string(),
            batch,
            primary_key,
            key_columns,
            defaults,
            default_arrays,
            converter,
            index,
        })
    }

    /// The name it was made with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its columns.
    pub fn schema(&self) -> SchemaRef {
        self.batch.schema()
    }

    /// Its primary key columns, in order.
    pub fn primary_key(&self) -> &[String] {
        &self.primary_key
    }

    /// Its rows, duplicate keys and NULL keys included.
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The distinct primary keys `LOOKUP` can find.
    pub fn num_keys(&self) -> usize {
        self.index.len()
    }

    /// All its rows in one batch (the table SQL can query).
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// Each column's default null value, in column order.
    pub fn defaults(&self) -> &[ScalarValue] {
        &self.defaults
    }

    /// `column`'s values for the rows whose primary key is `keys` (one array per primary key
    /// column, of equal lengths; each converted to its key column's type first), the column's
    /// default null value where none matches, a join value is NULL or the matched value is
    /// NULL. A join value that does not convert (`'abc'` for an INT key, a LONG beyond INT's
    /// range) is an error.
    pub fn lookup(&self, column: &str, keys: &[ArrayRef]) -> Result<ArrayRef, QueryError> {
        let index = self.batch.schema().index_of(column).map_err(|_| {
            QueryError::validation(format!("column {column:?} is not in dimension table {:?}", self.name))
        })?;
        self.lookup_column(index, keys).map_err(|message| QueryError {
            kind: crate::ErrorKind::Execution,
            message: format!("LOOKUP in {:?}: {message}", self.name),
        })
    }

    fn lookup_column(&self, column: usize, keys: &[ArrayRef]) -> Result<ArrayRef, String> {
        if keys.len() != self.key_columns.len() {
            return Err(format!(
                "{} join values given for the {} primary key columns {:?}",
                keys.len(),
                self.key_columns.len(),
                self.primary_key
            ));
        }
        let rows = keys.first().map_or(0, |k| k.len());
        if keys.iter().any(|k| k.len() != rows) {
            return Err("the join values are of different lengths".into());
        }
        // Pinot reads each join value as its key column's type (`transformToIntValuesSV`...).
        // Unlike Pinot, a value that does not convert is an error, not a wrapped number.
        let strict = CastOptions { safe: false, ..CastOptions::default() };
        let mut converted = Vec::with_capacity(keys.len());
        for (i, (key, &c)) in keys.iter().zip(&self.key_columns).enumerate() {
            let t = self.batch.schema_ref().field(c).data_type().clone();
            let array = if key.data_type() == &t {
                Arc::clone(key)
            } else {
                cast_with_options(key, &t, &strict).map_err(|e| {
                    format!(
                        "join value {} for {:?} cannot be converted to {t}: {e}",
                        i + 1,
                        self.primary_key[i]
                    )
                })?
            };
            converted.push(array);
        }
        let encoded = self.converter.convert_columns(&converted).map_err(|e| e.to_string())?;
        let found: UInt32Array = (0..rows)
            .map(|r| {
                if converted.iter().any(|k| k.is_null(r)) {
                    return None;
                }
                self.index.get(encoded.row(r).as_ref()).copied()
            })
            .collect();
        let values = take(self.batch.column(column), &found, None).map_err(|e| e.to_string())?;
        let default = &self.default_arrays[column];
        if values.logical_null_count() == 0 || default.is_null(0) {
            return Ok(values);
        }
        let present = is_not_null(&values).map_err(|e| e.to_string())?;
        zip(&present, &values, &Scalar::new(Arc::clone(default))).map_err(|e| e.to_string())
    }
}

/// The dimension tables `LOOKUP` reads, by name, shared by the engine and its `LOOKUP`
/// functions. Names match without regard to case, like every table name, and a lookup also
/// accepts the name with Pinot's `_OFFLINE` suffix (Pinot's `LOOKUP` reads `dimTable_OFFLINE`).
#[derive(Debug, Default)]
pub struct Dimensions {
    /// Lowercase name → (name as given, table).
    tables: RwLock<BTreeMap<String, (String, Arc<DimensionTable>)>>,
}

impl Dimensions {
    /// No tables.
    pub fn new() -> Dimensions {
        Dimensions::default()
    }

    /// Holds `table` as `name`, replacing (and answering) one of that name in any case.
    pub fn insert(&self, name: &str, table: Arc<DimensionTable>) -> Option<Arc<DimensionTable>> {
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        tables.insert(name.to_lowercase(), (name.to_string(), table)).map(|(_, t)| t)
    }

    /// Removes the table `name` (in any case), answering it.
    pub fn remove(&self, name: &str) -> Option<Arc<DimensionTable>> {
        self.remove_entry(name).map(|(_, t)| t)
    }

    /// Removes the table `name` (in any case), answering its name as registered and the table.
    pub(crate) fn remove_entry(&self, name: &str) -> Option<(String, Arc<DimensionTable>)> {
        self.tables.write().unwrap_or_else(|p| p.into_inner()).remove(&name.to_lowercase())
    }

    /// The table `name` (in any case), or `name` without a trailing `_OFFLINE`.
    pub fn get(&self, name: &str) -> Option<Arc<DimensionTable>> {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        let lower = name.to_lowercase();
        tables
            .get(&lower)
            .or_else(|| lower.strip_suffix("_offline").and_then(|raw| tables.get(raw)))
            .map(|(_, t)| Arc::clone(t))
    }

    /// Whether a table is held as `name` (in any case; no `_OFFLINE` suffix is removed).
    pub fn contains(&self, name: &str) -> bool {
        self.tables.read().unwrap_or_else(|p| p.into_inner()).contains_key(&name.to_lowercase())
    }

    /// The tables' names, as registered.
    pub fn names(&self) -> Vec<String> {
        self.tables.read().unwrap_or_else(|p| p.into_inner()).values().map(|(n, _)| n.clone()).collect()
    }
}

/// Pinot's `LOOKUP` over the dimension tables of `dimensions`, to register in a DataFusion
/// session (`SessionContext::register_udf`); [`crate::QueryEngine`] registers it in its own.
/// Tables added to `dimensions` later are seen by the queries planned after.
///
/// ```
/// use arrow::array::{Int32Array, RecordBatch, StringArray};
/// use datafusion::common::ScalarValue;
/// use shoal_query::{DimensionTable, Dimensions, lookup_function};
/// use std::sync::Arc;
///
/// let teams = RecordBatch::try_from_iter([
///     ("teamID", Arc::new(Int32Array::from(vec![1, 2])) as _),
///     ("teamName", Arc::new(StringArray::from(vec!["Cubs", "Mets"])) as _),
/// ])
/// .unwrap();
/// let defaults = vec![ScalarValue::Int32(Some(i32::MIN)), ScalarValue::from("null")];
/// let table = DimensionTable::new("dimTeams", vec![teams], vec!["teamID".into()], defaults).unwrap();
/// let dimensions = Arc::new(Dimensions::new());
/// dimensions.insert("dimTeams", Arc::new(table));
///
/// let ctx = datafusion::prelude::SessionContext::new();
/// ctx.register_udf(lookup_function(dimensions));
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let sql = "SELECT LOOKUP('dimTeams', 'teamName', 'teamID', 2) AS a, \
///            LOOKUP('dimTeams', 'teamName', 'teamID', 3) AS b";
/// let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
/// let row = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
/// assert!(row.contains("| Mets | null |"), "{row}");
/// # });
/// ```
pub fn lookup_function(dimensions: Arc<Dimensions>) -> ScalarUDF {
    ScalarUDF::from(LookupFunction {
        dimensions,
        // Stable, not immutable: a reloaded table answers differently in later queries.
        signature: Signature::variadic_any(Volatility::Stable),
        aliases: vec!["look_up".to_string()],
    })
}

/// The `LOOKUP` function over one registry.
#[derive(Debug)]
struct LookupFunction {
    dimensions: Arc<Dimensions>,
    signature: Signature,
    /// Pinot's function names also match without underscores (`FunctionRegistry.canonicalize`).
    aliases: Vec<String>,
}

impl PartialEq for LookupFunction {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.dimensions, &other.dimensions)
    }
}

impl Eq for LookupFunction {}

impl Hash for LookupFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.dimensions), state);
    }
}

fn plan_error(message: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Plan(format!("LOOKUP: {message}"))
}

fn exec_error(message: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("LOOKUP: {message}"))
}

fn text(value: Option<&ScalarValue>) -> Option<&str> {
    match value {
        Some(
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
        ) => Some(s),
        _ => None,
    }
}

/// What one call names: its dimension table and the position of the column it looks up.
struct Resolved {
    table: Arc<DimensionTable>,
    column: usize,
}

impl LookupFunction {
    /// Checks the call (Pinot's `LookupTransformFunction.init`) given its literal arguments
    /// (None where an argument is no literal) and the types of its arguments.
    fn resolve(&self, literals: &[Option<&ScalarValue>], types: &[&DataType]) -> Result<Resolved> {
        let n = types.len();
        if n < 4 {
            return Err(plan_error(format!("at least 4 arguments are needed, got {n}: use {USAGE}")));
        }
        if !n.is_multiple_of(2) {
            return Err(plan_error(format!(
                "every join key needs a join value, got {n} arguments (an odd number): use {USAGE}"
            )));
        }
        let literal = |i: usize, what: &str| {
            text(literals.get(i).copied().flatten()).ok_or_else(|| {
                plan_error(format!("argument {} must be a string literal naming {what}: use {USAGE}", i + 1))
            })
        };
        let table_name = literal(0, "the dimension table")?;
        let column_name = literal(1, "the column to look up")?;
        let keys =
            (2..n).step_by(2).map(|i| literal(i, "a primary key column")).collect::<Result<Vec<_>>>()?;
        let Some(table) = self.dimensions.get(table_name) else {
            let known = self.dimensions.names();
            return Err(plan_error(format!(
                "dimension table does not exist: {table_name:?} (the dimension tables are {known:?})"
            )));
        };
        // Pinot: "Dimension table is not populated" when no row can be looked up.
        if table.num_keys() == 0 {
            return Err(plan_error(format!("dimension table is not populated: {table_name:?}")));
        }
        let schema = table.schema();
        let missing = |name: &str, what: &str| {
            let hint = schema
                .fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(name))
                .map(|f| format!(" (column names match case: did you mean {:?}?)", f.name()))
                .unwrap_or_default();
            plan_error(format!("{what} does not exist in dimension table {table_name:?}: {name:?}{hint}"))
        };
        // Column and key names match case, as in Pinot (`Schema.getFieldSpecFor`).
        let column = schema.index_of(column_name).map_err(|_| missing(column_name, "column"))?;
        for key in &keys {
            if schema.index_of(key).is_err() {
                return Err(missing(key, "primary key column"));
            }
        }
        if keys.iter().map(|k| k.to_string()).ne(table.primary_key().iter().cloned()) {
            return Err(plan_error(format!(
                "the join keys {keys:?} must be the dimension table's primary key columns, in order: {:?}",
                table.primary_key()
            )));
        }
        for (k, (key, &t)) in keys.iter().zip(types.iter().skip(3).step_by(2)).enumerate() {
            let want =
                schema.field_with_name(key).map_err(|_| missing(key, "primary key column"))?.data_type();
            if t.is_nested() {
                return Err(plan_error(format!(
                    "join value {} for {key:?} is of type {t}: it must be a single-value expression",
                    k + 1
                )));
            }
            if !can_cast_types(t, want) {
                return Err(plan_error(format!(
                    "join value {} for {key:?} is of type {t}, which does not convert to the key's type {want}",
                    k + 1
                )));
            }
        }
        Ok(Resolved { table, column })
    }
}

impl ScalarUDFImpl for LookupFunction {
    fn name(&self) -> &str {
        LOOKUP
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Err(DataFusionError::Internal("LOOKUP: the result type comes from return_field_from_args".into()))
    }

    /// The looked-up column's type, after checking the call against its dimension table.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<&DataType> = args.arg_fields.iter().map(|f| f.data_type()).collect();
        let resolved = self.resolve(args.scalar_arguments, &types)?;
        let field = resolved.table.schema().field(resolved.column).clone();
        Ok(Arc::new(Field::new(LOOKUP, field.data_type().clone(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let literals: Vec<Option<&ScalarValue>> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let types: Vec<&DataType> = args.arg_fields.iter().map(|f| f.data_type()).collect();
        // The table is read again: it may have been reloaded since the query was planned.
        let Resolved { table, column } = self
            .resolve(&literals, &types)
            .map_err(|e| DataFusionError::Execution(e.message().into_owned()))?;
        let returned = args.return_field.data_type();
        if table.schema().field(column).data_type() != returned {
            return Err(exec_error(format!(
                "dimension table {:?} was reloaded with other types while the query ran",
                table.name()
            )));
        }
        let joins = args.args.iter().skip(3).step_by(2);
        let all_scalar = joins.clone().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let keys = joins.map(|a| a.to_array(rows)).collect::<Result<Vec<_>>>()?;
        let values = table.lookup_column(column, &keys).map_err(exec_error)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&values, 0)?))
        } else {
            Ok(ColumnarValue::Array(values))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array, Int32Array, Int64Array, StringArray};

    fn strings(a: &ArrayRef) -> Vec<Option<&str>> {
        a.as_string::<i32>().iter().collect()
    }

    fn teams(rows: &[(Option<i32>, &str)]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("teamID", Arc::new(Int32Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())) as ArrayRef),
            (
                "teamName",
                Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    fn defaults() -> Vec<ScalarValue> {
        vec![ScalarValue::Int32(Some(i32::MIN)), ScalarValue::from("null")]
    }

    fn keys(values: &[Option<i32>]) -> Vec<ArrayRef> {
        vec![Arc::new(Int32Array::from(values.to_vec()))]
    }

    #[test]
    fn later_duplicate_wins_and_null_keys_are_left_out() {
        let first = teams(&[(Some(1), "Cubs"), (Some(2), "Mets"), (None, "Nobody")]);
        let second = teams(&[(Some(1), "Cubbies")]);
        let t = DimensionTable::new("dim", vec![first, second], vec!["teamID".into()], defaults()).unwrap();
        assert_eq!(t.num_rows(), 4);
        assert_eq!(t.num_keys(), 2);
        let got = t.lookup("teamName", &keys(&[Some(1), Some(2), Some(3), None])).unwrap();
        assert_eq!(strings(&got), [Some("Cubbies"), Some("Mets"), Some("null"), Some("null")]);
        let ids = t.lookup("teamID", &keys(&[Some(2), Some(9)])).unwrap();
        assert_eq!(ids.as_primitive::<arrow::datatypes::Int32Type>().values(), &[2, i32::MIN]);
    }

    #[test]
    fn join_values_are_converted_to_the_key_type() {
        let t =
            DimensionTable::new("dim", vec![teams(&[(Some(7), "Sox")])], vec!["teamID".into()], defaults())
                .unwrap();
        let long: ArrayRef = Arc::new(Int64Array::from(vec![7, 8]));
        assert_eq!(strings(&t.lookup("teamName", &[long]).unwrap()), [Some("Sox"), Some("null")]);
        let text: ArrayRef = Arc::new(StringArray::from(vec!["7"]));
        assert_eq!(strings(&t.lookup("teamName", &[text]).unwrap()), [Some("Sox")]);
        let double: ArrayRef = Arc::new(Float64Array::from(vec![7.9]));
        assert_eq!(strings(&t.lookup("teamName", &[double]).unwrap()), [Some("Sox")]);
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["seven"]));
        let e = t.lookup("teamName", &[bad]).unwrap_err();
        assert!(e.message.contains("cannot be converted to Int32"), "{e}");
        let far: ArrayRef = Arc::new(Int64Array::from(vec![1 << 40]));
        assert!(t.lookup("teamName", &[far]).is_err());
    }

    #[test]
    fn a_null_value_in_a_matched_row_is_the_default() {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
            ("n", Arc::new(Int64Array::from(vec![None])) as ArrayRef),
        ])
        .unwrap();
        let t = DimensionTable::new(
            "d",
            vec![batch],
            vec!["id".into()],
            vec![ScalarValue::Int32(Some(i32::MIN)), ScalarValue::Int64(Some(i64::MIN))],
        )
        .unwrap();
        let got = t.lookup("n", &keys(&[Some(1)])).unwrap();
        assert_eq!(got.as_primitive::<arrow::datatypes::Int64Type>().values(), &[i64::MIN]);
        assert_eq!(got.null_count(), 0);
    }

    #[test]
    fn a_typed_null_default_answers_null() {
        let t = DimensionTable::new(
            "d",
            vec![teams(&[(Some(1), "Cubs")])],
            vec!["teamID".into()],
            vec![ScalarValue::Int32(None), ScalarValue::Utf8(None)],
        )
        .unwrap();
        assert_eq!(strings(&t.lookup("teamName", &keys(&[Some(1), Some(2)])).unwrap()), [Some("Cubs"), None]);
    }

    #[test]
    fn bad_tables_are_refused() {
        let err = |batches, pk: &[&str], defaults| {
            DimensionTable::new("d", batches, pk.iter().map(|s| s.to_string()).collect(), defaults)
                .unwrap_err()
                .message
        };
        let b = || vec![teams(&[(Some(1), "Cubs")])];
        assert!(err(vec![], &["teamID"], defaults()).contains("at least one batch"));
        assert!(err(b(), &[], defaults()).contains("needs a primary key"));
        assert!(err(b(), &["teamid"], defaults()).contains("\"teamid\" is not one of its columns"));
        assert!(err(b(), &["teamID", "teamID"], defaults()).contains("named twice"));
        assert!(
            err(b(), &["teamID"], vec![ScalarValue::Int32(Some(0))])
                .contains("1 default values given for its 2")
        );
        let wrong = vec![ScalarValue::Int64(Some(0)), ScalarValue::from("null")];
        assert!(err(b(), &["teamID"], wrong).contains("is of type Int64, not the column's type Int32"));
        let other =
            RecordBatch::try_from_iter([("x", Arc::new(Int32Array::from(vec![1])) as ArrayRef)]).unwrap();
        assert!(err(vec![teams(&[]), other], &["teamID"], defaults()).contains("do not share one schema"));
    }

    #[test]
    fn registry_names_match_without_case_and_with_offline() {
        let d = Dimensions::new();
        let t = Arc::new(
            DimensionTable::new("dimTeams", vec![teams(&[])], vec!["teamID".into()], defaults()).unwrap(),
        );
        assert!(d.insert("dimTeams", Arc::clone(&t)).is_none());
        assert!(d.get("DIMTEAMS").is_some());
        assert!(d.get("dimTeams_OFFLINE").is_some());
        assert!(d.get("dimTeams_REALTIME").is_none());
        assert!(d.insert("DimTeams", t).is_some());
        assert_eq!(d.names(), ["DimTeams"]);
        assert!(d.remove("dimteams").is_some());
        assert!(d.get("dimTeams").is_none());
    }
}
