//! One ingestion expression (a transform function or the filter): Pinot's SQL text parsed once
//! into an AST with Pinot's spellings rewritten (`shoal_query::rewrite`, the same rewrites as
//! queries) and every field name quoted as written, planned into a DataFusion physical
//! expression for the types a chunk of records has, and evaluated over the whole chunk.

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringBuilder, new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Expr, Ident, SelectItem, SetExpr, Statement, visit_expressions_mut};
use serde_json::Value;
use shoal_segment::InputValue;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

/// A parsed ingestion expression.
#[derive(Debug, Clone)]
pub struct Expression {
    /// The text as configured.
    pub text: String,
    /// DataFusion SQL for it: Pinot's spellings rewritten, field names quoted.
    sql: String,
    /// The fields it reads, in order of first use.
    pub fields: Vec<String>,
    /// The values it reads that the transforms compute while reading (`jsonPathString` of a
    /// field over a path of keys).
    pub(crate) derived: Vec<Derived>,
}

/// `jsonPathString(base, 'path')` with a path of keys, read as a field named `name`.
#[derive(Debug, Clone)]
pub(crate) struct Derived {
    /// The field name the expression reads instead (it cannot clash with a record's: it holds
    /// a control character).
    pub(crate) name: String,
    /// The field the document comes from.
    pub(crate) base: String,
    pub(crate) path: shoal_functions::JsonKeysPath,
}

impl Derived {
    fn of(e: &Expr) -> Option<Derived> {
        use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments, Value};
        let Expr::Function(f) = e else { return None };
        if !f.name.to_string().eq_ignore_ascii_case("jsonpathstring")
            || f.over.is_some()
            || f.filter.is_some()
            || !f.within_group.is_empty()
        {
            return None;
        }
        let FunctionArguments::List(list) = &f.args else { return None };
        if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
            return None;
        }
        let [
            FunctionArg::Unnamed(FunctionArgExpr::Expr(base)),
            FunctionArg::Unnamed(FunctionArgExpr::Expr(path)),
        ] = list.args.as_slice()
        else {
            return None;
        };
        let base = match base {
            Expr::Identifier(id) => id.value.clone(),
            Expr::CompoundIdentifier(parts) => {
                parts.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join(".")
            }
            _ => return None,
        };
        let Expr::Value(v) = path else { return None };
        let Value::SingleQuotedString(text) = &v.value else { return None };
        let path = shoal_functions::JsonKeysPath::parse(text)?;
        Some(Derived { name: format!("{base}\u{1}{text}"), base, path })
    }

    /// The value for a row whose `base` field holds `value`: jsonPathString's, or its error.
    pub(crate) fn value(&self, value: &shoal_segment::InputValue<'_>) -> Result<Option<String>, String> {
        use shoal_segment::InputValue;
        match value {
            InputValue::Null => Ok(None),
            // A nested value the decoder has read is valid JSON.
            InputValue::Json(text) => Ok(self.path.string_of_valid(text)),
            InputValue::Str(text) => self.path.string_of(text),
            // A number or a boolean is a document with no fields.
            _ => Ok(None),
        }
    }
}

impl Expression {
    /// Parses Pinot's expression text. Groovy is refused: Shoal runs no scripts (Pinot also
    /// refuses it unless `controller.disable.ingestion.groovy` is false).
    pub fn parse(text: &str) -> Result<Expression, String> {
        Expression::parse_with(text, true)
    }

    /// [`Expression::parse`], computing a whole-expression `jsonPathString` over a path of keys
    /// while reading when `derive` is true.
    pub(crate) fn parse_with(text: &str, derive: bool) -> Result<Expression, String> {
        let trimmed = text.trim();
        if trimmed.starts_with("Groovy") {
            return Err("Groovy functions are refused: Shoal runs no scripts (Pinot disables them too, \
                 controller.disable.ingestion.groovy); write the expression with Pinot's built-in functions"
                .to_string());
        }
        if trimmed.is_empty() {
            return Err("the expression is empty".to_string());
        }
        let mut statements = DFParser::parse_sql(&format!("SELECT {trimmed}"))
            .map_err(|e| format!("not an expression: {e}"))?;
        let (Some(DfStatement::Statement(statement)), true) = (statements.pop_front(), statements.is_empty())
        else {
            return Err("not one expression".to_string());
        };
        let mut statement = *statement;
        shoal_query::rewrite::rewrite(&mut statement, &HashSet::new())?;
        let Statement::Query(query) = &mut statement else { return Err("not an expression".to_string()) };
        let SetExpr::Select(select) = query.body.as_mut() else {
            return Err("not one expression".to_string());
        };
        let single = select.from.is_empty()
            && select.selection.is_none()
            && select.having.is_none()
            && query.limit_clause.is_none()
            && query.order_by.is_none()
            && select.projection.len() == 1;
        let Some(SelectItem::UnnamedExpr(expr)) = select.projection.first_mut().filter(|_| single) else {
            return Err("not one expression (a comma, FROM, WHERE or an alias?)".to_string());
        };
        // A transform that is just jsonPathString(field, '$.a.b') over a path of keys becomes a
        // field the transforms compute themselves while reading a chunk (`Derived`): the same
        // value and the same errors, without the function reading every document a second time.
        // Only the whole expression: inside CASE, AND or COALESCE the function may not run for
        // every row, and its errors must not fail rows it would not have read.
        let mut derived = Vec::new();
        if derive && let Some(d) = Derived::of(expr) {
            *expr = Expr::Identifier(Ident::new(d.name.clone()));
            derived.push(d);
        }
        let mut fields = Vec::new();
        let _ = visit_expressions_mut(expr, |e| {
            let name = match e {
                Expr::Identifier(id) => Some(id.value.clone()),
                // `a.b` names the flattened field "a.b".
                Expr::CompoundIdentifier(parts) => {
                    Some(parts.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join("."))
                }
                _ => None,
            };
            if let Some(name) = name {
                if !fields.contains(&name) {
                    fields.push(name.clone());
                }
                *e = Expr::Identifier(Ident::with_quote('"', name));
            }
            ControlFlow::<()>::Continue(())
        });
        // The field a derived value comes from is read too.
        for d in &derived {
            if !fields.contains(&d.base) {
                fields.push(d.base.clone());
            }
        }
        Ok(Expression { text: text.to_string(), sql: expr.to_string(), fields, derived })
    }

    /// `message` with each derived field written as the call it stands for.
    pub(crate) fn readable(&self, message: &str) -> String {
        let mut out = message.to_string();
        for d in &self.derived {
            let path = d.name.split_once('\u{1}').map_or("", |(_, p)| p);
            out = out.replace(&d.name, &format!("jsonPathString({}, '{path}')", d.base));
        }
        out
    }

    /// The first function the expression calls whose value changes from call to call (`now`,
    /// `ago`, `random`), read from the text: the functions' own volatility says.
    pub(crate) fn changing_function(&self, ctx: &SessionContext) -> Option<String> {
        use datafusion::logical_expr::Volatility;
        let statement = DFParser::parse_sql(&format!("SELECT {}", self.sql)).ok()?;
        let mut found = None;
        for s in statement {
            if let DfStatement::Statement(s) = s {
                let _ = datafusion::sql::sqlparser::ast::visit_expressions(&s, |e| {
                    if let Expr::Function(f) = e {
                        let name = f.name.to_string().to_lowercase();
                        let volatility = datafusion::execution::FunctionRegistry::udf(ctx, &name)
                            .ok()
                            .map(|u| u.signature().volatility);
                        if matches!(volatility, Some(Volatility::Volatile | Volatility::Stable))
                            && found.is_none()
                        {
                            found = Some(name);
                        }
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        }
        found
    }

    /// The physical expression for inputs of `schema`.
    pub(crate) fn plan(
        &self,
        ctx: &SessionContext,
        schema: &SchemaRef,
    ) -> Result<Arc<dyn PhysicalExpr>, String> {
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| e.to_string())?;
        let logical = ctx.parse_sql_expr(&self.sql, &df_schema).map_err(clean)?;
        ctx.create_physical_expr(logical, &df_schema).map_err(clean)
    }
}

/// DataFusion's error text without its nested "Error during planning:" prefixes.
fn clean(e: datafusion::error::DataFusionError) -> String {
    let text = e.to_string();
    text.replace("Error during planning: ", "").replace("Execution error: ", "")
}

/// A session that knows Pinot's functions.
pub(crate) fn session() -> SessionContext {
    let ctx = SessionContext::new();
    for f in shoal_functions::scalar_functions() {
        ctx.register_udf(f);
    }
    ctx
}

/// Evaluates `expr` on every row of `batch`. When the whole batch fails, each row is tried
/// alone: the rows that fail come back with their errors (and null in the result), except
/// rows in `skip`, whose result is not needed (their column already has a value).
pub(crate) fn evaluate(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    skip: &dyn Fn(usize) -> bool,
) -> (ArrayRef, Vec<(usize, String)>) {
    let rows = batch.num_rows();
    let whole = expr.evaluate(batch).and_then(|v| v.into_array(rows));
    if let Ok(array) = whole {
        return (array, Vec::new());
    }
    let mut parts: Vec<Option<ArrayRef>> = Vec::with_capacity(rows);
    let mut failed = Vec::new();
    let mut data_type = None;
    for row in 0..rows {
        if skip(row) {
            parts.push(None);
            continue;
        }
        let one = batch.slice(row, 1);
        match expr.evaluate(&one).and_then(|v| v.into_array(1)) {
            Ok(a) => {
                data_type.get_or_insert_with(|| a.data_type().clone());
                parts.push(Some(a));
            }
            Err(e) => {
                failed.push((row, clean(e)));
                parts.push(None);
            }
        }
    }
    let data_type = data_type.unwrap_or(DataType::Utf8);
    let arrays: Vec<ArrayRef> = parts
        .into_iter()
        .map(|p| match p {
            Some(a) if a.data_type() == &data_type => a,
            Some(a) => arrow::compute::cast(&a, &data_type).unwrap_or_else(|_| new_null_array(&data_type, 1)),
            None => new_null_array(&data_type, 1),
        })
        .collect();
    let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
    let array = if refs.is_empty() {
        new_null_array(&data_type, 0)
    } else {
        arrow::compute::concat(&refs).unwrap_or_else(|_| new_null_array(&data_type, rows))
    };
    (array, failed)
}

/// The Arrow column of input `input` of rows `rows` of `values` (`width` inputs a row), of type
/// `t`, the type every one of these values has (`input_type`).
pub(crate) fn input_column(
    values: &[InputValue<'_>],
    width: usize,
    rows: &[usize],
    input: usize,
    t: &DataType,
) -> ArrayRef {
    let values = rows.iter().map(|&r| values[r * width + input].clone());
    match t {
        DataType::Int64 => Arc::new(
            values.map(|v| if let InputValue::I64(x) = v { Some(x) } else { None }).collect::<Int64Array>(),
        ),
        DataType::Float64 => Arc::new(
            values
                .map(|v| match v {
                    InputValue::F64(x) => Some(x),
                    InputValue::U64(x) => Some(x as f64),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        DataType::Boolean => Arc::new(
            values
                .map(|v| if let InputValue::Bool(x) = v { Some(x) } else { None })
                .collect::<BooleanArray>(),
        ),
        DataType::Utf8 => {
            let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
            for v in values {
                match v {
                    InputValue::Str(s) => b.append_value(s),
                    InputValue::Json(s) => b.append_value(s),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        other => new_null_array(other, rows.len()),
    }
}

/// A batch of `columns` named `names`.
pub(crate) fn batch(names: &[String], columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch, String> {
    let fields: Vec<Field> =
        names.iter().zip(&columns).map(|(n, c)| Field::new(n, c.data_type().clone(), true)).collect();
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
        .map_err(|e| e.to_string())
}

/// One value of a result column as JSON, for the row handed to the decoder.
pub(crate) fn json_value(array: &ArrayRef, row: usize) -> Value {
    use arrow::array::AsArray;
    use arrow::datatypes::*;
    if array.is_null(row) {
        return Value::Null;
    }
    let number = |f: f64| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null);
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Value::from(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::from(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::from(array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::from(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::from(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => number(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => number(array.as_primitive::<Float64Type>().value(row)),
        // A TIMESTAMP as epoch milliseconds.
        DataType::Timestamp(_, _) => {
            arrow::compute::cast(&array.slice(row, 1), &DataType::Timestamp(TimeUnit::Millisecond, None))
                .and_then(|t| arrow::compute::cast(&t, &DataType::Int64))
                .map(|v| Value::from(v.as_primitive::<Int64Type>().value(0)))
                .unwrap_or(Value::Null)
        }
        DataType::List(_) | DataType::LargeList(_) => {
            let list = match arrow::compute::cast(
                &array.slice(row, 1),
                &DataType::List(Arc::new(Field::new_list_field(
                    match array.data_type() {
                        DataType::List(f) | DataType::LargeList(f) => f.data_type().clone(),
                        _ => DataType::Utf8,
                    },
                    true,
                ))),
            ) {
                Ok(l) => l,
                Err(_) => return Value::Null,
            };
            let values = list.as_list::<i32>().value(0);
            Value::Array((0..values.len()).map(|i| json_value(&values, i)).collect())
        }
        _ => match arrow::compute::cast(&array.slice(row, 1), &DataType::Utf8) {
            Ok(text) => Value::String(text.as_string::<i32>().value(0).to_string()),
            Err(_) => Value::Null,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_as_written_and_pinot_spellings_rewritten() {
        // A path of keys is read while the chunk is read: a derived field, and its source.
        let e = Expression::parse("jsonPathString(payload, '$.user.id')").unwrap();
        assert_eq!(e.fields, ["payload\u{1}$.user.id", "payload"]);
        assert_eq!(e.derived.len(), 1);
        assert_eq!(
            e.readable("bad \"payload\u{1}$.user.id\""),
            "bad \"jsonPathString(payload, '$.user.id')\""
        );
        // Not a path of keys, not the whole expression, not asked: the function itself.
        for text in [
            "jsonPathString(payload, '$.tags[0]')",
            "upper(jsonPathString(payload, '$.a'))",
            "CASE WHEN kind = 'x' THEN jsonPathString(payload, '$.a') END",
            "jsonPathString(jsonPathString(payload, '$.a'), '$.b')",
        ] {
            let e = Expression::parse(text).unwrap();
            assert!(e.derived.is_empty() && e.fields.iter().all(|f| !f.contains('\u{1}')), "{text}");
        }
        assert!(Expression::parse_with("jsonPathString(payload, '$.a')", false).unwrap().derived.is_empty());
        let e = Expression::parse("toEpochHours(fromEpochSeconds(tsSec)) + group.size").unwrap();
        assert_eq!(e.fields, ["tsSec", "group.size"]);
        assert!(e.sql.contains("\"tsSec\"") && e.sql.contains("\"group.size\""), "{}", e.sql);
        let e = Expression::parse("SUBSTR(city, 0, 2)").unwrap();
        assert!(e.sql.starts_with("substr("), "{}", e.sql);
    }

    #[test]
    fn groovy_and_statements_are_refused() {
        assert!(Expression::parse("Groovy({a + b}, a, b)").unwrap_err().contains("Groovy"));
        assert!(Expression::parse("a FROM t").is_err());
        assert!(Expression::parse("1; DROP TABLE t").is_err());
        assert!(Expression::parse("a, b").is_err());
        assert!(Expression::parse("").is_err());
    }

    #[test]
    fn nested_values_are_their_json_text() {
        let values = [InputValue::Json(r#"{"a":1}"#.into()), InputValue::Null];
        let a = input_column(&values, 1, &[0, 1], 0, &DataType::Utf8);
        assert_eq!(json_value(&a, 0), Value::from(r#"{"a":1}"#));
        assert!(a.is_null(1));
    }
}
