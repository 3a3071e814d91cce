//! `count(*)` without an array of ones per batch. DataFusion plans `count(*)` as `count(1)`
//! and an aggregation evaluates the literal into an array as long as each batch it reads: a
//! fresh allocation of 64 KiB, written and then freed, for every 8,192 rows counted (on a
//! time-range `count(*), sum(x)` a tenth of the query's time, as much as reading `x`). Here
//! each such argument becomes an array of the literal made once per query, and handed to every
//! batch as a slice of it (a reference count, no copy).

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{FieldRef, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateInputMode};
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

/// Rows of the array a repeated literal makes at first: the session's batch size.
const FIRST_ROWS: usize = 8_192;

/// Replaces the literal arguments of `count` (all of them, none null, not DISTINCT) in the
/// aggregations that read rows (partial and single ones) by [`RepeatedLiteral`]s. Other
/// aggregates are left alone: some read their literal arguments as literals when they are
/// created (a percentile's fraction).
#[derive(Debug, Default)]
pub(crate) struct CountLiteralOnce;

impl PhysicalOptimizerRule for CountLiteralOnce {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            if aggregate.mode().input_mode() != AggregateInputMode::Raw {
                return Ok(Transformed::no(node));
            }
            let mut changed = false;
            let exprs: Vec<Arc<AggregateFunctionExpr>> = aggregate
                .aggr_expr()
                .iter()
                .map(|e| match repeated(e) {
                    Some(new) => {
                        changed = true;
                        Arc::new(new)
                    }
                    None => Arc::clone(e),
                })
                .collect();
            if !changed {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(Arc::new(aggregate.with_new_aggr_exprs(exprs)) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "shoal_count_literal_once"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `e` with its literal arguments repeated, when it is a `count` of non-null literals.
fn repeated(e: &AggregateFunctionExpr) -> Option<AggregateFunctionExpr> {
    if e.fun().name() != "count" || e.is_distinct() {
        return None;
    }
    let args = e.expressions();
    if args.is_empty() {
        return None;
    }
    let mut new_args: Vec<Arc<dyn PhysicalExpr>> = Vec::with_capacity(args.len());
    for arg in &args {
        let literal = arg.downcast_ref::<Literal>()?;
        if literal.value().is_null() {
            return None;
        }
        let field = literal.return_field(&Schema::empty()).ok()?;
        new_args.push(Arc::new(RepeatedLiteral::new(literal.value().clone(), field)));
    }
    let order_bys = e.order_bys().iter().map(|s| Arc::clone(&s.expr)).collect();
    e.with_new_expressions(new_args, order_bys)
}

/// A literal that evaluates to an array: a slice of one array of the value, made at the first
/// batch and grown when a longer batch comes.
#[derive(Debug)]
pub(crate) struct RepeatedLiteral {
    value: ScalarValue,
    field: FieldRef,
    array: RwLock<Option<ArrayRef>>,
}

impl RepeatedLiteral {
    pub(crate) fn new(value: ScalarValue, field: FieldRef) -> RepeatedLiteral {
        RepeatedLiteral { value, field, array: RwLock::new(None) }
    }
}

impl PartialEq for RepeatedLiteral {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value && self.field == other.field
    }
}

impl Eq for RepeatedLiteral {}

impl Hash for RepeatedLiteral {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.value.hash(state);
        self.field.hash(state);
    }
}

impl fmt::Display for RepeatedLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As the literal it stands for: plans and EXPLAIN read the same.
        write!(f, "{}", self.value)
    }
}

impl PhysicalExpr for RepeatedLiteral {
    fn return_field(&self, _input_schema: &Schema) -> Result<FieldRef> {
        Ok(Arc::clone(&self.field))
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        if let Some(array) = self.array.read().unwrap_or_else(|p| p.into_inner()).as_ref()
            && array.len() >= rows
        {
            return Ok(ColumnarValue::Array(array.slice(0, rows)));
        }
        let array = self.value.to_array_of_size(rows.max(FIRST_ROWS))?;
        let slice = array.slice(0, rows);
        *self.array.write().unwrap_or_else(|p| p.into_inner()) = Some(array);
        Ok(ColumnarValue::Array(slice))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(self)
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field};

    fn batch(rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![7; rows]))]).unwrap()
    }

    #[test]
    fn a_repeated_literal_hands_every_batch_a_slice_of_one_array() {
        let value = ScalarValue::Int64(Some(1));
        let field = Arc::new(Field::new("lit", DataType::Int64, false));
        let literal = RepeatedLiteral::new(value, field);
        let values = |rows| match literal.evaluate(&batch(rows)).unwrap() {
            ColumnarValue::Array(a) => a,
            ColumnarValue::Scalar(s) => panic!("a scalar {s}, not an array"),
        };
        let first = values(100);
        let second = values(8_192);
        let third = values(3);
        assert_eq!((first.len(), second.len(), third.len()), (100, 8_192, 3));
        let data = |a: &ArrayRef| a.as_any().downcast_ref::<Int64Array>().unwrap().values().as_ptr();
        assert_eq!(data(&first), data(&second), "the second batch's ones are the first's");
        assert_eq!(data(&first), data(&third));
        assert!(second.as_any().downcast_ref::<Int64Array>().unwrap().values().iter().all(|&v| v == 1));
        // A longer batch than any before gets a longer array, of the same value.
        let long = values(20_000);
        assert_eq!(long.len(), 20_000);
        assert_eq!(long.null_count(), 0);
        assert!(long.as_any().downcast_ref::<Int64Array>().unwrap().values().iter().all(|&v| v == 1));
    }

    /// Each argument of each row-reading aggregation's aggregates, and whether it is a
    /// repeated literal.
    pub(crate) fn count_arguments(plan: &Arc<dyn ExecutionPlan>) -> Vec<(String, bool)> {
        let mut found = Vec::new();
        let _ = plan.apply(|node| {
            if let Some(a) = node.downcast_ref::<AggregateExec>()
                && a.mode().input_mode() == AggregateInputMode::Raw
            {
                for e in a.aggr_expr() {
                    for arg in e.expressions() {
                        found.push((e.name().to_string(), arg.downcast_ref::<RepeatedLiteral>().is_some()));
                    }
                }
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        });
        found
    }

    #[tokio::test]
    async fn counts_of_literals_repeat_one_array_and_answer_as_before() {
        use datafusion::execution::session_state::SessionStateBuilder;
        use datafusion::prelude::{SessionConfig, SessionContext};
        let state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_batch_size(1_000).with_target_partitions(2))
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(CountLiteralOnce))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.sql(
            "CREATE TABLE t AS SELECT value % 3 AS k, CASE WHEN value % 4 = 0 THEN NULL ELSE value END AS x \
             FROM generate_series(1, 10000)",
        )
        .await
        .unwrap();
        let sql = "SELECT k, count(*) AS n, count(1) AS ones, count(x) AS xs, count(DISTINCT 1) AS d, \
                   count(NULL) AS nulls, sum(x) AS s FROM t GROUP BY k ORDER BY k";
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let args = count_arguments(&plan);
        let repeated: Vec<&str> = args.iter().filter(|(_, r)| *r).map(|(n, _)| n.as_str()).collect();
        // count(*) and count(1) are one aggregate in DataFusion's plan.
        assert_eq!(repeated, ["count(Int64(1))"], "{args:?}");
        let batches = df.collect().await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        // Per k: 3,333 or 3,334 rows, of which those divisible by 4 have no x (sums worked out in Python).
        let expected = "\
+---+------+------+------+---+-------+----------+
| k | n    | ones | xs   | d | nulls | s        |
+---+------+------+------+---+-------+----------+
| 0 | 3333 | 3333 | 2500 | 1 | 0     | 12500001 |
| 1 | 3334 | 3334 | 2500 | 1 | 0     | 12499999 |
| 2 | 3333 | 3333 | 2500 | 1 | 0     | 12500000 |
+---+------+------+------+---+-------+----------+";
        assert_eq!(text, expected);
        // Without a GROUP BY, over every batch.
        let df = ctx.sql("SELECT count(*) AS n, count(x) AS xs FROM t WHERE k <> 1").await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        assert!(count_arguments(&plan).iter().any(|(n, r)| n == "count(Int64(1))" && *r));
        let batches = df.collect().await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(text.contains("| 6666 | 5000 |"), "{text}");
    }
}
