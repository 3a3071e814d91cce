//! Pinot's `ingestionConfig` applied at ingest time, in Pinot's order (pinot-segment-local
//! `RecordTransformerUtils.getTransformers`): the complex-type restructuring
//! (`ComplexTypeTransformer`), the transform functions (`ExpressionTransformer`: the table
//! config's `transformConfigs` and the schema's own `transformFunction`s, dependencies first,
//! a value already in the record kept), then the filter (`FilterTransformer`: a record for which
//! it is true is dropped and counted as filtered). Type conversion, defaults and the time check
//! are the decoder's, after this.
//!
//! Every expression is parsed and checked once, when the table is defined; a chunk of records
//! is read into one Arrow batch of the fields the expressions need and each expression is
//! evaluated over the whole batch by DataFusion with the query functions (`shoal-functions`).
//! The rows then go to the decoder as JSON: the record's own bytes with the transformed columns
//! added, or, for tables that unnest or rename, the restructured row.

mod complex;
mod expr;

pub use expr::Expression;

use crate::config::IngestionConfig;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use shoal_segment::{
    DataType as PinotType, DropReason, Dropped, InputValue, Problem, RecordMeta, RecordTransform, RowResult,
    Schema, Transformed, TransformedRow, ValueChunk, ValueOutcome, ValueTransform, ValueWrite,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// One column's transform.
#[derive(Debug)]
struct ColumnTransform {
    column: String,
    expression: Expression,
    /// Written into the row for the decoder (a schema column); else an intermediate value
    /// that only later transforms read.
    in_schema: bool,
}

/// A physical expression, or why it could not be planned.
type Planned = Result<Arc<dyn PhysicalExpr>, String>;

/// A plan and, when it reads text as numbers, the columns to evaluate it over.
type Retried = (Arc<dyn PhysicalExpr>, Option<Vec<ArrayRef>>);

/// A table's ingestion transforms.
pub struct IngestTransform {
    complex: Option<complex::ComplexType>,
    /// Dependencies first.
    transforms: Vec<ColumnTransform>,
    filter: Option<Expression>,
    /// Every field the expressions read and every column they fill, in a fixed order.
    inputs: Vec<String>,
    /// Where a name not in the record is looked for inside nested objects (`a.b`).
    delimiter: Option<String>,
    continue_on_error: bool,
    /// The values computed while reading (`expr::Derived`): their input, and the input of the
    /// field they come from.
    derived: Vec<(usize, usize, expr::Derived)>,
    session: SessionContext,
    /// Each step's physical expression (a transform's, or the filter's after them) for the
    /// input types it was planned for.
    plans: Mutex<HashMap<(usize, Vec<DataType>), Planned>>,
}

impl std::fmt::Debug for IngestTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestTransform")
            .field("transforms", &self.transforms)
            .field("filter", &self.filter.as_ref().map(|e| &e.text))
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

/// The Arrow type a schema column's values have, for planning against it.
fn arrow_type(t: PinotType) -> DataType {
    match t {
        PinotType::Int => DataType::Int32,
        PinotType::Long | PinotType::Timestamp => DataType::Int64,
        PinotType::Float => DataType::Float32,
        PinotType::Double | PinotType::BigDecimal => DataType::Float64,
        PinotType::Boolean => DataType::Boolean,
        PinotType::Bytes => DataType::Binary,
        _ => DataType::Utf8,
    }
}

/// Whether a transform's result type can fill a column of type `column` (the decoder converts
/// it as Pinot's DataTypeTransformer would).
fn fits(result: &DataType, column: PinotType, single_value: bool) -> bool {
    let result = match result {
        DataType::List(f) | DataType::LargeList(f) if !single_value => f.data_type(),
        DataType::List(_) | DataType::LargeList(_) => {
            return matches!(column, PinotType::String | PinotType::Json);
        }
        t => t,
    };
    let numeric = result.is_numeric()
        || matches!(result, DataType::Timestamp(..) | DataType::Date32 | DataType::Date64);
    let text = matches!(result, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null);
    match column {
        PinotType::String | PinotType::Json => true,
        PinotType::Bytes => {
            text || matches!(result, DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
        }
        PinotType::Boolean => text || numeric || matches!(result, DataType::Boolean),
        _ => text || numeric || matches!(result, DataType::Boolean),
    }
}

impl IngestTransform {
    /// The transforms `ingestion` and `schema` ask for, checked: every expression parses, names
    /// known functions with the right arguments, reads fields that exist or that a transform
    /// makes, and gives a type its column can take. None when there is nothing to transform.
    /// Problems name their key path.
    pub fn new(
        ingestion: &IngestionConfig,
        schema: &Schema,
    ) -> Result<Option<IngestTransform>, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(Problem { path, message });
        // The table config's transforms, then the schema's own for other columns (Pinot's
        // ExpressionTransformer: the table config wins).
        let mut entries: Vec<(String, String, String)> = Vec::new();
        for (i, t) in ingestion.transforms.iter().enumerate() {
            let path = format!("ingestionConfig.transformConfigs[{i}]");
            if entries.iter().any(|(c, _, _)| *c == t.column_name) {
                problem(
                    format!("{path}.columnName"),
                    format!("a second transform for column {:?}: Pinot allows one", t.column_name),
                );
                continue;
            }
            entries.push((
                t.column_name.clone(),
                t.transform_function.clone(),
                format!("{path}.transformFunction"),
            ));
        }
        for field in &schema.fields {
            if let Some(text) = &field.transform_function
                && !entries.iter().any(|(c, _, _)| *c == field.name)
            {
                entries.push((
                    field.name.clone(),
                    text.clone(),
                    format!("schema field {:?} transformFunction", field.name),
                ));
            }
        }
        // A jsonPathString computed while reading must read the record's field: where a
        // transform makes that field, the expression is read with the function instead.
        let targets: BTreeSet<String> = entries.iter().map(|(c, _, _)| c.clone()).collect();
        let parse = |text: &str| {
            Expression::parse(text).and_then(|e| {
                if e.derived.iter().any(|d| targets.contains(&d.base)) {
                    Expression::parse_with(text, false)
                } else {
                    Ok(e)
                }
            })
        };
        let mut parsed: Vec<(String, Expression, String)> = Vec::new();
        for (column, text, path) in entries {
            match parse(&text) {
                Ok(e) if e.fields.contains(&column) => problem(
                    path,
                    format!(
                        "the transform for {column:?} reads {column:?} itself: a column cannot be made from its own value"
                    ),
                ),
                Ok(e) => parsed.push((column, e, path)),
                Err(e) => problem(path, e),
            }
        }
        let filter = match &ingestion.filter_function {
            Some(text) => match Expression::parse(text) {
                Ok(e) => Some(e),
                Err(e) => {
                    problem("ingestionConfig.filterConfig.filterFunction".into(), e);
                    None
                }
            },
            None => None,
        };
        // Dependencies first (Pinot's topological sort); a cycle is an error.
        let targets: BTreeMap<&str, usize> =
            parsed.iter().enumerate().map(|(i, (c, _, _))| (c.as_str(), i)).collect();
        let mut order: Vec<usize> = Vec::new();
        let mut state = vec![0u8; parsed.len()]; // 0 new, 1 visiting, 2 done
        fn visit(
            i: usize,
            parsed: &[(String, Expression, String)],
            targets: &BTreeMap<&str, usize>,
            state: &mut [u8],
            order: &mut Vec<usize>,
        ) -> Result<(), usize> {
            match state[i] {
                2 => return Ok(()),
                1 => return Err(i),
                _ => {}
            }
            state[i] = 1;
            for f in &parsed[i].1.fields {
                if let Some(&j) = targets.get(f.as_str()) {
                    visit(j, parsed, targets, state, order)?;
                }
            }
            state[i] = 2;
            order.push(i);
            Ok(())
        }
        for i in 0..parsed.len() {
            if let Err(j) = visit(i, &parsed, &targets, &mut state, &mut order) {
                problem(
                    parsed[j].2.clone(),
                    format!("the transforms form a cycle through column {:?}", parsed[j].0),
                );
                return Err(problems);
            }
        }
        // A destination is a schema column, or an intermediate value another expression reads.
        let read: BTreeSet<&str> = parsed
            .iter()
            .flat_map(|(_, e, _)| e.fields.iter())
            .chain(filter.iter().flat_map(|f| f.fields.iter()))
            .map(String::as_str)
            .collect();
        for (column, _, path) in &parsed {
            if schema.field(column).is_none() && !read.contains(column.as_str()) {
                problem(
                    path.replace(".transformFunction", ".columnName"),
                    format!("column {column:?} is not in the schema and no other transform reads it"),
                );
            }
        }
        let session = expr::session();
        // Plan each expression once with the types it will likely see: schema columns as the
        // schema types them, other fields as text, then as integers, then as doubles (the
        // record decides at run time). Unknown functions and wrong arguments fail all three.
        let mut known: BTreeMap<String, DataType> = BTreeMap::new();
        let sources: Vec<String> = {
            let mut names: Vec<String> = Vec::new();
            for (c, e, _) in order.iter().map(|&i| &parsed[i]) {
                for f in e.fields.iter().chain(std::iter::once(c)) {
                    if !names.contains(f) {
                        names.push(f.clone());
                    }
                }
            }
            for f in filter.iter().flat_map(|f| f.fields.iter()) {
                if !names.contains(f) {
                    names.push(f.clone());
                }
            }
            names
        };
        let made: BTreeSet<&str> = parsed.iter().map(|(c, _, _)| c.as_str()).collect();
        let check = |e: &Expression, known: &BTreeMap<String, DataType>| -> Result<DataType, String> {
            let mut last = String::new();
            for guess in [DataType::Utf8, DataType::Int64, DataType::Float64] {
                let fields: Vec<Field> = sources
                    .iter()
                    .map(|n| {
                        let t = known
                            .get(n)
                            .cloned()
                            .or_else(|| {
                                schema
                                    .field(n)
                                    .filter(|_| !made.contains(n.as_str()))
                                    .map(|f| arrow_type(f.data_type))
                            })
                            .unwrap_or_else(|| guess.clone());
                        Field::new(n, t, true)
                    })
                    .collect();
                let arrow: SchemaRef = Arc::new(ArrowSchema::new(fields));
                match e.plan(&session, &arrow).and_then(|p| p.data_type(&arrow).map_err(|e| e.to_string())) {
                    Ok(t) => return Ok(t),
                    Err(e) => {
                        if last.is_empty() {
                            last = e;
                        }
                    }
                }
            }
            Err(format!("{}: {}", e.text, e.readable(&last)))
        };
        let mut transforms = Vec::new();
        for &i in &order {
            let (column, e, path) = &parsed[i];
            match check(e, &known) {
                Err(message) => problem(path.clone(), message),
                Ok(t) => {
                    if let Some(field) = schema.field(column)
                        && !fits(&t, field.data_type, field.single_value)
                    {
                        problem(
                            path.clone(),
                            format!(
                                "gives {t}, which column {column:?} ({}) cannot hold",
                                field.data_type.name()
                            ),
                        );
                    }
                    known.insert(column.clone(), t);
                }
            }
            transforms.push(ColumnTransform {
                column: column.clone(),
                expression: e.clone(),
                in_schema: schema.field(column).is_some(),
            });
        }
        if let Some(f) = &filter {
            match check(f, &known) {
                Err(message) => problem("ingestionConfig.filterConfig.filterFunction".into(), message),
                // Pinot drops a row only on a boolean TRUE: a filter of another type would drop
                // rows nobody meant to (strcmp(kind, 'bot') alone is true for every non-bot).
                Ok(t) if !matches!(t, DataType::Boolean | DataType::Null) => problem(
                    "ingestionConfig.filterConfig.filterFunction".into(),
                    format!(
                        "{}: gives {t}, not a condition: a row is dropped when the filter is true",
                        f.text
                    ),
                ),
                Ok(_) => {}
            }
        }
        // A transform must give the same row when a record is read again after a restart.
        for (e, path) in parsed
            .iter()
            .map(|(_, e, p)| (e, p.as_str()))
            .chain(filter.iter().map(|f| (f, "ingestionConfig.filterConfig.filterFunction")))
        {
            if let Some(name) = e.changing_function(&session) {
                problem(
                    path.to_string(),
                    format!(
                        "{}: {name}() gives another value each time; a record read again after a restart must make the same row (Pinot refuses these in realtime tables too)",
                        e.text
                    ),
                );
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let keep: std::collections::HashSet<String> =
            schema.fields.iter().map(|f| f.name.clone()).chain(sources.iter().cloned()).collect();
        let complex = ingestion.complex_type.as_ref().and_then(|c| complex::ComplexType::new(c, keep));
        if transforms.is_empty() && filter.is_none() && complex.is_none() {
            return Ok(None);
        }
        let mut derived: Vec<(usize, usize, expr::Derived)> = Vec::new();
        for d in transforms.iter().map(|t| &t.expression).chain(filter.iter()).flat_map(|e| e.derived.iter())
        {
            let at = |name: &str| sources.iter().position(|n| n == name);
            if let (Some(i), Some(b)) = (at(&d.name), at(&d.base))
                && !derived.iter().any(|(j, _, _)| *j == i)
            {
                derived.push((i, b, d.clone()));
            }
        }
        Ok(Some(IngestTransform {
            complex,
            transforms,
            filter,
            derived,
            inputs: sources,
            delimiter: ingestion.complex_type.as_ref().map(|c| c.delimiter.clone()).filter(|d| !d.is_empty()),
            continue_on_error: ingestion.continue_on_error,
            session,
            plans: Mutex::new(HashMap::new()),
        }))
    }

    /// The expression of step `step` (a transform, or the filter after them), planned once for
    /// each set of input types it meets.
    fn plan(&self, step: usize, columns: &[ArrayRef]) -> Planned {
        let types: Vec<DataType> = columns.iter().map(|c| c.data_type().clone()).collect();
        let key = (step, types);
        let mut cache = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&key) {
            return p.clone();
        }
        let fields: Vec<Field> =
            self.inputs.iter().zip(&key.1).map(|(n, t)| Field::new(n, t.clone(), true)).collect();
        let schema: SchemaRef = Arc::new(ArrowSchema::new(fields));
        let planned = self.step(step).plan(&self.session, &schema);
        // A stream whose fields change type from chunk to chunk cannot grow this without bound.
        if cache.len() >= 1024 {
            cache.clear();
        }
        cache.insert(key, planned.clone());
        planned
    }

    /// The failures of derived inputs that step `step` reads, on rows not in `skip`, with the
    /// function's message.
    fn derived_errors(
        &self,
        step: usize,
        derived: &[(usize, usize, String)],
        skip: &dyn Fn(usize) -> bool,
    ) -> Vec<(usize, String)> {
        let reads = &self.step(step).fields;
        derived
            .iter()
            .filter(|(input, row, _)| reads.contains(&self.inputs[*input]) && !skip(*row))
            .map(|(_, row, e)| (*row, e.clone()))
            .collect()
    }

    /// Whether input `input` is a column a transform computes.
    fn computed(&self, input: usize) -> bool {
        self.transforms.iter().any(|t| t.column == self.inputs[input])
    }

    fn step(&self, step: usize) -> &Expression {
        match self.transforms.get(step) {
            Some(t) => &t.expression,
            None => self.filter.as_ref().expect("the filter is the step after the transforms"),
        }
    }

    /// The plan of step `step` over `columns`; when the step cannot take them, with the text
    /// columns it reads read as numbers ("12" for 12: Pinot converts a function's arguments to
    /// its parameter types), and then the columns to evaluate it over.
    fn plan_over(&self, step: usize, columns: &[ArrayRef]) -> Result<Retried, String> {
        let error = match self.plan(step, columns) {
            Ok(p) => return Ok((p, None)),
            Err(e) => e,
        };
        let reads = &self.step(step).fields;
        let mut changed = false;
        let numeric: Vec<ArrayRef> = columns
            .iter()
            .zip(&self.inputs)
            .map(|(c, name)| {
                if c.data_type() == &DataType::Utf8 && reads.contains(name) {
                    changed = true;
                    arrow::compute::cast(c, &DataType::Float64)
                        .unwrap_or_else(|_| arrow::array::new_null_array(&DataType::Float64, c.len()))
                } else {
                    Arc::clone(c)
                }
            })
            .collect();
        if !changed {
            return Err(error);
        }
        match self.plan(step, &numeric) {
            Ok(p) => Ok((p, Some(numeric))),
            Err(_) => Err(error),
        }
    }

    /// The value of field `name` in a record's top-level fields: the field itself, or with a
    /// delimiter, the value at that path inside nested objects. A value serde_json cannot read
    /// (a number past f64, a lone surrogate) makes the record unreadable, as it is to Pinot.
    fn lookup(
        &self,
        top: &HashMap<Cow<'_, str>, &RawValue>,
        name: &str,
    ) -> Result<Option<Value>, serde_json::Error> {
        if let Some(raw) = top.get(name) {
            return serde_json::from_str(raw.get()).map(Some);
        }
        let Some(delimiter) = self.delimiter.as_deref() else { return Ok(None) };
        let mut parts = name.split(delimiter);
        let Some(raw) = parts.next().and_then(|first| top.get(first)) else { return Ok(None) };
        let mut value: Value = serde_json::from_str(raw.get())?;
        for part in parts {
            match value.get_mut(part) {
                Some(v) => value = v.take(),
                None => return Ok(None),
            }
        }
        Ok(Some(value))
    }
}

/// How one row reaches the decoder.
enum Body {
    /// The record's own bytes, with the transformed columns added.
    Record,
    /// A restructured row (unnesting, renames).
    Row(Map<String, Value>),
}

/// The record's bytes with `extra` fields added before its closing brace. A field given twice
/// is read by the decoder as its last value, so a null in the record gives way.
fn splice(bytes: &[u8], extra: &[(&str, Value)]) -> Vec<u8> {
    let end = bytes.iter().rposition(|&b| b == b'}').unwrap_or(bytes.len());
    let body = &bytes[..end];
    let empty = body.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let mut out = Vec::with_capacity(bytes.len() + 32 * extra.len());
    out.extend_from_slice(body);
    for (i, (name, value)) in extra.iter().enumerate() {
        if !(empty && i == 0) {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name).expect("a string serializes");
        out.push(b':');
        serde_json::to_writer(&mut out, value).expect("a JSON value serializes");
    }
    out.push(b'}');
    out
}

fn failure(message: String) -> Dropped {
    Dropped { reason: DropReason::TransformFailed, message }
}

/// One row read for the transforms.
struct RowIn {
    record: usize,
    body: Body,
    /// The value of each input field.
    values: Vec<Option<Value>>,
    /// A rename was left undone (`continueOnError`).
    incomplete: bool,
}

/// What the transforms made of one row.
#[derive(Default)]
struct RowOut {
    filtered: bool,
    error: Option<String>,
    incomplete: bool,
}

/// What happens to a row's column a transform computed.
const KEEP: u8 = 0;
/// The record had no value: the computed one fills it.
const FILL: u8 = 1;
/// The record's nested value (an array, an object) gives way to the computed one, even null.
const REPLACE: u8 = 2;

/// What the transforms made of a group of rows.
struct GroupOut {
    rows: Vec<RowOut>,
    /// For each schema column a transform computes: its input index, the values computed and
    /// what each row does with its value (`KEEP`, `FILL`, `REPLACE`).
    writes: Vec<(usize, ArrayRef, Vec<u8>)>,
}

/// A value's nesting: 0 none, 1 an array, 2 an object.
fn nesting_of_text(text: &str) -> u8 {
    match text.as_bytes().first() {
        Some(b'[') => 1,
        Some(b'{') => 2,
        _ => 0,
    }
}

/// Whether `array` holds a value at each row (a column of the Null type holds none: Arrow's
/// NullArray has no validity buffer to say so).
fn validity(array: &ArrayRef) -> Vec<bool> {
    if array.data_type() == &DataType::Null {
        return vec![false; array.len()];
    }
    match array.nulls() {
        Some(nulls) => nulls.iter().collect(),
        None => vec![true; array.len()],
    }
}

/// The failures of derived inputs (input, row, message) of the rows in `members` (in
/// ascending order), by their index in the group.
fn group_errors(errors: &[(usize, usize, String)], members: &[usize]) -> Vec<(usize, usize, String)> {
    errors
        .iter()
        .filter_map(|(input, row, e)| members.binary_search(row).ok().map(|k| (*input, k, e.clone())))
        .collect()
}

/// The Arrow types of input values, by code.
const TYPES: [DataType; 5] =
    [DataType::Null, DataType::Int64, DataType::Float64, DataType::Boolean, DataType::Utf8];

/// The code (into [`TYPES`]) of the Arrow type a row's value gives its column: one row's own
/// value decides, so that a row transforms the same whatever other rows share its chunk (a
/// record read again after a restart makes the same rows).
fn input_type(v: &InputValue<'_>) -> u8 {
    match v {
        InputValue::Null => 0,
        InputValue::I64(_) => 1,
        InputValue::U64(_) | InputValue::F64(_) => 2,
        InputValue::Bool(_) => 3,
        InputValue::Str(_) | InputValue::Json(_) => 4,
    }
}

/// Rows grouped by the types of their values (`codes`, `width` per row), in order of first
/// appearance: each group runs as one batch.
fn groups(codes: &[u8], width: usize, rows: usize) -> Vec<(Vec<DataType>, Vec<usize>)> {
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    let mut out: Vec<(Vec<DataType>, Vec<usize>)> = Vec::new();
    for row in 0..rows {
        let key = &codes[row * width..(row + 1) * width];
        let g = *index.entry(key).or_insert_with(|| {
            out.push((key.iter().map(|&c| TYPES[c as usize].clone()).collect(), Vec::new()));
            out.len() - 1
        });
        out[g].1.push(row);
    }
    out
}

impl IngestTransform {
    /// Reads one record into the rows the transforms work on.
    fn read(&self, record: usize, bytes: &[u8]) -> Result<Vec<RowIn>, Dropped> {
        let values = |read: &dyn Fn(&str) -> Result<Option<Value>, serde_json::Error>| {
            self.inputs
                .iter()
                .map(|name| read(name).map(|v| v.filter(|v| !v.is_null())))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| shoal_segment::unreadable(&e, bytes))
        };
        match &self.complex {
            Some(complex) => {
                let object = match serde_json::from_slice::<Value>(bytes) {
                    Ok(Value::Object(object)) => object,
                    Ok(_) => return Err(shoal_segment::not_an_object()),
                    Err(e) => return Err(shoal_segment::unreadable(&e, bytes)),
                };
                let (rows, incomplete) = complex.apply(object, self.continue_on_error).map_err(failure)?;
                rows.into_iter()
                    .map(|row| {
                        let values = values(&|name| Ok(row.get(name).cloned()))?;
                        Ok(RowIn { record, body: Body::Row(row), values, incomplete })
                    })
                    .collect()
            }
            None => {
                let top = serde_json::from_slice::<HashMap<Cow<'_, str>, &RawValue>>(bytes).map_err(|e| {
                    match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                        // Valid JSON that is no object.
                        Ok(_) => shoal_segment::not_an_object(),
                        Err(_) => shoal_segment::unreadable(&e, bytes),
                    }
                })?;
                let values = values(&|name| self.lookup(&top, name))?;
                Ok(vec![RowIn { record, body: Body::Record, values, incomplete: false }])
            }
        }
    }

    /// Runs the transforms and the filter over `n` rows of input `columns`, each of one type.
    ///
    /// `nested[i]`, when not empty, says which rows hold a nested value in input `i` (1 an array,
    /// 2 an object): Pinot's ExpressionTransformer computes a column that holds one anyway and
    /// replaces it unless the result is of the same kind (an array for an array), and a failure
    /// there keeps the value without failing the row.
    ///
    /// `derived` are the rows (by index in the group) whose derived input failed, by input: a
    /// step that reads it fails there as the function would have.
    fn run(
        &self,
        mut columns: Vec<ArrayRef>,
        n: usize,
        nested: &[Vec<u8>],
        derived: &[(usize, usize, String)],
    ) -> GroupOut {
        let mut out: Vec<RowOut> = (0..n).map(|_| RowOut::default()).collect();
        let mut writes = Vec::new();
        let fail = |row: usize, error: String, out: &mut Vec<RowOut>| {
            if self.continue_on_error {
                out[row].incomplete = true;
            } else if out[row].error.is_none() {
                out[row].error = Some(error);
            }
        };
        for (step, t) in self.transforms.iter().enumerate() {
            let Some(index) = self.inputs.iter().position(|n| *n == t.column) else { continue };
            let existing = Arc::clone(&columns[index]);
            let nesting = |row: usize| nested.get(index).and_then(|v| v.get(row)).copied().unwrap_or(0);
            let had = validity(&existing);
            let (expr, over) = match self.plan_over(step, &columns) {
                Ok(planned) => planned,
                Err(e) => {
                    for row in (0..n).filter(|&r| !had[r]) {
                        fail(
                            row,
                            format!("transform for column {:?}: {}", t.column, t.expression.readable(&e)),
                            &mut out,
                        );
                    }
                    continue;
                }
            };
            let mut failed = vec![false; n];
            let result = match expr::batch(&self.inputs, over.unwrap_or_else(|| columns.clone()), n) {
                Ok(batch) => {
                    let (result, mut errors) =
                        expr::evaluate(&expr, &batch, &|row| had[row] && nesting(row) == 0);
                    errors.extend(self.derived_errors(step, derived, &|row| had[row] && nesting(row) == 0));
                    for (row, e) in errors {
                        failed[row] = true;
                        if nesting(row) == 0 {
                            fail(
                                row,
                                format!("transform for column {:?}: {}", t.column, t.expression.readable(&e)),
                                &mut out,
                            );
                        }
                    }
                    result
                }
                Err(e) => {
                    for row in (0..n).filter(|&r| !had[r]) {
                        fail(row, e.clone(), &mut out);
                    }
                    continue;
                }
            };
            // A value already in the record is kept (Pinot's ExpressionTransformer), unless it is
            // nested and the result is not of its kind.
            let has = validity(&result);
            let list = matches!(result.data_type(), DataType::List(_) | DataType::LargeList(_));
            let take: Vec<u8> = (0..n)
                .map(|r| match nesting(r) {
                    0 if !had[r] && has[r] => FILL,
                    0 => KEEP,
                    _ if failed[r] => KEEP,
                    1 if list && has[r] => KEEP,
                    _ => REPLACE,
                })
                .collect();
            let mask: arrow::array::BooleanArray =
                (0..n).map(|r| Some(had[r] && take[r] != REPLACE)).collect();
            if t.in_schema {
                writes.push((index, Arc::clone(&result), take));
            }
            let filled = arrow::compute::cast(&existing, result.data_type())
                .ok()
                .and_then(|kept| arrow::compute::kernels::zip::zip(&mask, &kept, &result).ok());
            columns[index] = filled.unwrap_or(result);
        }
        if self.filter.is_some() {
            let evaluated = self.plan_over(self.transforms.len(), &columns).and_then(|(expr, over)| {
                let batch: RecordBatch = expr::batch(&self.inputs, over.unwrap_or(columns), n)?;
                let (result, mut errors) = expr::evaluate(&expr, &batch, &|_| false);
                errors.extend(self.derived_errors(self.transforms.len(), derived, &|_| false));
                Ok((result, errors))
            });
            match evaluated {
                Ok((result, errors)) => {
                    for (row, e) in errors {
                        fail(row, format!("filter: {e}"), &mut out);
                    }
                    // Only TRUE drops a row; false and null keep it (Pinot's FilterTransformer).
                    if let Some(flags) = result.as_boolean_opt() {
                        for (row, o) in out.iter_mut().enumerate() {
                            o.filtered = flags.is_valid(row) && flags.value(row);
                        }
                    }
                }
                Err(e) => {
                    for row in 0..n {
                        fail(row, format!("filter: {e}"), &mut out);
                    }
                }
            }
        }
        GroupOut { rows: out, writes }
    }
}

/// Rows read from whole records (restructured), as the value transforms read a chunk.
struct RowsChunk<'a> {
    rows: &'a [RowIn],
}

impl ValueChunk for RowsChunk<'_> {
    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn value(&self, row: usize, input: usize) -> InputValue<'_> {
        match &self.rows[row].values[input] {
            None | Some(Value::Null) => InputValue::Null,
            Some(Value::Bool(b)) => InputValue::Bool(*b),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => InputValue::I64(i),
                (None, Some(u)) => InputValue::U64(u),
                _ => InputValue::F64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Some(Value::String(s)) => InputValue::Str(s),
            // An object or an array, as the JSON text a function receives.
            Some(nested) => InputValue::Json(Cow::Owned(nested.to_string())),
        }
    }
}

impl RecordTransform for IngestTransform {
    fn apply(&self, records: &[(&[u8], RecordMeta<'_>)]) -> Transformed {
        let mut transformed = Transformed::default();
        let mut rows: Vec<RowIn> = Vec::new();
        for (record, (bytes, _)) in records.iter().enumerate() {
            match self.read(record, bytes) {
                Ok(read) => rows.extend(read),
                Err(dropped) => transformed.failed.push((record, dropped)),
            }
        }
        // The same computation as a chunk read in one pass; only the rows' JSON differs.
        let computed = ValueTransform::apply(self, &RowsChunk { rows: &rows });
        // A record with a failed row is dropped whole, as Pinot drops the message.
        let mut failed: BTreeMap<usize, String> = BTreeMap::new();
        for (row, result) in rows.iter().zip(&computed.rows) {
            if let RowResult::Failed(e) = result {
                failed.entry(row.record).or_insert_with(|| e.clone());
            }
        }
        for (record, message) in failed.iter() {
            transformed.failed.push((*record, failure(message.clone())));
        }
        transformed.failed.sort_by_key(|(r, _)| *r);
        let mut writes = computed.writes.as_slice();
        for (r, (row, result)) in rows.into_iter().zip(&computed.rows).enumerate() {
            let (mine, rest) = writes.split_at(writes.iter().take_while(|w| w.row == r).count());
            writes = rest;
            let incomplete = match result {
                _ if failed.contains_key(&row.record) => continue,
                RowResult::Filtered => {
                    transformed.filtered += 1;
                    continue;
                }
                RowResult::Keep { incomplete } => *incomplete,
                RowResult::Failed(_) => continue,
            };
            let extra: Vec<(&str, Value)> = mine
                .iter()
                .map(|w| {
                    (self.inputs[w.input].as_str(), expr::json_value(&computed.arrays[w.array], w.index))
                })
                .collect();
            let json = match row.body {
                Body::Record if extra.is_empty() => None,
                Body::Record => Some(splice(records[row.record].0, &extra)),
                Body::Row(mut map) => {
                    for (name, value) in extra {
                        map.insert(name.to_string(), value);
                    }
                    Some(serde_json::to_vec(&Value::Object(map)).expect("a JSON object serializes"))
                }
            };
            transformed.rows.push(TransformedRow {
                record: row.record,
                json,
                incomplete: row.incomplete || incomplete,
            });
        }
        transformed
    }

    fn values(&self) -> Option<&dyn ValueTransform> {
        // Restructuring (unnesting, renames) needs whole records.
        self.complex.is_none().then_some(self as &dyn ValueTransform)
    }
}

impl ValueTransform for IngestTransform {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn apply(&self, chunk: &dyn ValueChunk) -> ValueOutcome {
        let (rows, width) = (chunk.rows(), self.inputs.len());
        // Derived values, computed from their fields first.
        let mut derived_errors: Vec<(usize, usize, String)> = Vec::new();
        let computed: Vec<Vec<Option<String>>> = self
            .derived
            .iter()
            .map(|(input, base, d)| {
                (0..rows)
                    .map(|row| match d.value(&chunk.value(row, *base)) {
                        Ok(v) => v,
                        Err(e) => {
                            derived_errors.push((*input, row, e));
                            None
                        }
                    })
                    .collect()
            })
            .collect();
        // Each value read once, row by row.
        let mut values = Vec::with_capacity(rows * width);
        for row in 0..rows {
            values.extend((0..width).map(|i| chunk.value(row, i)));
        }
        for ((input, _, _), column) in self.derived.iter().zip(&computed) {
            for (row, v) in column.iter().enumerate() {
                values[row * width + input] = v.as_deref().map_or(InputValue::Null, InputValue::Str);
            }
        }
        let codes: Vec<u8> = values.iter().map(input_type).collect();
        let mut outcome =
            ValueOutcome { rows: vec![RowResult::Keep { incomplete: false }; rows], ..Default::default() };
        let groups = groups(&codes, width, rows);
        let interleaved = groups.len() > 1;
        for (types, members) in groups {
            let columns: Vec<ArrayRef> = types
                .iter()
                .enumerate()
                .map(|(i, t)| expr::input_column(&values, width, &members, i, t))
                .collect();
            let nested: Vec<Vec<u8>> = (0..width)
                .map(|i| {
                    if !self.computed(i) {
                        return Vec::new();
                    }
                    members
                        .iter()
                        .map(|&r| match &values[r * width + i] {
                            InputValue::Json(text) => nesting_of_text(text),
                            _ => 0,
                        })
                        .collect()
                })
                .collect();
            let errors = group_errors(&derived_errors, &members);
            let group = self.run(columns, members.len(), &nested, &errors);
            for (&row, o) in members.iter().zip(&group.rows) {
                outcome.rows[row] = match (&o.error, o.filtered) {
                    (Some(e), _) => RowResult::Failed(e.clone()),
                    (None, true) => RowResult::Filtered,
                    (None, false) => RowResult::Keep { incomplete: o.incomplete },
                };
            }
            // Row by row, so that the writes come in row order.
            outcome.writes.reserve(members.len() * group.writes.len());
            let first = outcome.arrays.len();
            for (k, &row) in members.iter().enumerate() {
                for (j, (input, _, take)) in group.writes.iter().enumerate() {
                    if take[k] != KEEP {
                        let replace = take[k] == REPLACE;
                        outcome.writes.push(ValueWrite {
                            row,
                            input: *input,
                            array: first + j,
                            index: k,
                            replace,
                        });
                    }
                }
            }
            outcome.arrays.extend(group.writes.into_iter().map(|(_, result, _)| result));
        }
        // Groups interleave rows.
        if interleaved {
            outcome.writes.sort_by_key(|w| w.row);
        }
        outcome
    }
}

#[cfg(test)]
mod tests;
