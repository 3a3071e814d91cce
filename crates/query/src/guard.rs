//! What keeps a query, and all queries together, within bounds: the depth of its expressions
//! (checked before parsing, without recursion), the size of values its functions may make
//! (also while planning folds constants), one memory pool shared by every query with a share
//! for each, and admission (so many run, so many wait, the rest are refused at once).

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An upper bound of the nesting depth of the expressions in `sql`, found from its tokens
/// alone (no recursion, so a hostile query cannot overflow the stack here): each open
/// parenthesis nests one level, and each operator in a run of operators at one level nests one
/// more, as a left-associative chain `1+1+...+1` does. A comma or a clause keyword ends a run.
/// None when the SQL does not even tokenize (the parser then says why).
pub(crate) fn expression_depth(sql: &str) -> Option<usize> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().ok()?;
    // Per open parenthesis level: operators in the current run there.
    let mut runs: Vec<usize> = vec![0];
    let mut depth = 0usize;
    let mut max = 0usize;
    for token in tokens {
        match token {
            Token::LParen | Token::LBracket => {
                runs.push(0);
                depth += 1;
            }
            Token::RParen | Token::RBracket if runs.len() > 1 => {
                let run = runs.pop().unwrap_or(0);
                depth = depth.saturating_sub(run + 1);
            }
            Token::Comma | Token::SemiColon => {
                let run = runs.last_mut().map(std::mem::take).unwrap_or(0);
                depth = depth.saturating_sub(run);
            }
            Token::Word(w) if ends_a_run(w.keyword) => {
                let run = runs.last_mut().map(std::mem::take).unwrap_or(0);
                depth = depth.saturating_sub(run);
            }
            t if is_operator(&t) => {
                if let Some(run) = runs.last_mut() {
                    *run += 1;
                }
                depth += 1;
            }
            _ => {}
        }
        max = max.max(depth);
    }
    Some(max)
}

fn ends_a_run(k: Keyword) -> bool {
    matches!(
        k,
        Keyword::SELECT
            | Keyword::FROM
            | Keyword::WHERE
            | Keyword::GROUP
            | Keyword::HAVING
            | Keyword::ORDER
            | Keyword::LIMIT
            | Keyword::OFFSET
            | Keyword::UNION
            | Keyword::JOIN
            | Keyword::ON
            | Keyword::WHEN
            | Keyword::THEN
            | Keyword::ELSE
            | Keyword::END
    )
}

fn is_operator(t: &Token) -> bool {
    match t {
        Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::Mod
        | Token::StringConcat
        | Token::Eq
        | Token::DoubleEq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Spaceship
        | Token::Ampersand
        | Token::Pipe
        | Token::Caret
        | Token::ShiftLeft
        | Token::ShiftRight
        | Token::DoubleColon
        | Token::Arrow
        | Token::LongArrow => true,
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::IN
                | Keyword::BETWEEN
                | Keyword::CASE
                | Keyword::CAST
        ),
        _ => false,
    }
}

/// Which arguments of a function decide the size of what it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cap {
    /// `repeat(text, n)`: text bytes × n.
    Repeat,
    /// `lpad(text, n, ...)`, `rpad`: n characters (up to 4 bytes each).
    Pad,
    /// `array_repeat(value, n)`: n elements.
    ArrayRepeat,
    /// `range(start, stop[, step])`, `generate_series`: (stop − start) / step elements.
    Range,
}

/// A built-in function that can make a value of any size from small arguments (`repeat('x',
/// 200000000)`), refusing to make one larger than `max_bytes` (elements count 8 bytes). The
/// check runs wherever the function runs, constant folding during planning included.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Capped {
    inner: Arc<ScalarUDF>,
    cap: Cap,
    max_bytes: usize,
}

/// The functions that can make huge values from small arguments, capped at `max_bytes` per
/// value; registered over DataFusion's own under the same names.
pub(crate) fn capped_functions(max_bytes: usize) -> Vec<ScalarUDF> {
    use datafusion::functions::{string, unicode};
    use datafusion::functions_nested::{range, repeat};
    [
        (string::repeat(), Cap::Repeat),
        (unicode::lpad(), Cap::Pad),
        (unicode::rpad(), Cap::Pad),
        (repeat::array_repeat_udf(), Cap::ArrayRepeat),
        (range::range_udf(), Cap::Range),
        (range::gen_series_udf(), Cap::Range),
    ]
    .into_iter()
    .map(|(inner, cap)| ScalarUDF::new_from_impl(Capped { inner, cap, max_bytes }))
    .collect()
}

/// The largest integer an argument holds (a scalar, or the largest of an array's values).
fn max_int(arg: &ColumnarValue) -> Option<i128> {
    match arg {
        ColumnarValue::Scalar(s) => scalar_int(s),
        ColumnarValue::Array(a) => {
            let a = arrow::compute::cast(a, &DataType::Int64).ok()?;
            arrow::compute::max(a.as_primitive::<arrow::datatypes::Int64Type>()).map(i128::from)
        }
    }
}

fn scalar_int(s: &ScalarValue) -> Option<i128> {
    if s.is_null() {
        return None;
    }
    s.cast_to(&DataType::Int64).ok().and_then(|v| match v {
        ScalarValue::Int64(Some(n)) => Some(i128::from(n)),
        _ => None,
    })
}

/// The longest text an argument holds, in bytes.
fn max_text_bytes(arg: &ColumnarValue) -> usize {
    match arg {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t)) | ScalarValue::Utf8View(Some(t)) => {
                t.len()
            }
            _ => 0,
        },
        ColumnarValue::Array(a) => {
            let Ok(a) = arrow::compute::cast(a, &DataType::Utf8) else { return 0 };
            let texts = a.as_string::<i32>();
            (0..texts.len()).filter(|i| texts.is_valid(*i)).map(|i| texts.value(i).len()).max().unwrap_or(0)
        }
    }
}

impl Capped {
    /// The bytes the call would make at most, from its arguments.
    fn bytes(&self, args: &[ColumnarValue]) -> i128 {
        let arg = |i: usize| args.get(i);
        match self.cap {
            Cap::Repeat => {
                let n = arg(1).and_then(max_int).unwrap_or(0).max(0);
                n.saturating_mul(arg(0).map_or(0, max_text_bytes) as i128)
            }
            Cap::Pad => arg(1).and_then(max_int).unwrap_or(0).max(0).saturating_mul(4),
            Cap::ArrayRepeat => arg(1).and_then(max_int).unwrap_or(0).max(0).saturating_mul(8),
            Cap::Range => {
                let (start, stop, step) = match args.len() {
                    1 => (Some(0), arg(0).and_then(max_int), Some(1)),
                    2 => (arg(0).and_then(max_int), arg(1).and_then(max_int), Some(1)),
                    _ => (arg(0).and_then(max_int), arg(1).and_then(max_int), arg(2).and_then(max_int)),
                };
                match (start, stop, step) {
                    (Some(a), Some(b), Some(s)) if s != 0 => {
                        ((b - a) / s).abs().saturating_add(1).saturating_mul(8)
                    }
                    _ => 0,
                }
            }
        }
    }

    fn check(&self, args: &[ColumnarValue]) -> Result<()> {
        let bytes = self.bytes(args);
        if bytes > self.max_bytes as i128 {
            return exec_err!(
                "{}(...) would make a value of about {bytes} bytes, over the limit of {} bytes a value may have",
                self.inner.name(),
                self.max_bytes
            );
        }
        Ok(())
    }
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args.args)?;
        self.inner.invoke_with_args(args)
    }
}

/// One query's share of the engine's memory pool: it may hold at most `limit` bytes, and only
/// what the shared pool still has free. The shared pool is what bounds all queries together.
#[derive(Debug)]
pub(crate) struct QueryPool {
    shared: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
}

impl QueryPool {
    pub(crate) fn new(shared: Arc<dyn MemoryPool>, limit: usize) -> QueryPool {
        QueryPool { shared, limit, used: AtomicUsize::new(0) }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a query's share ({} of {} bytes) of {}", self.reserved(), self.limit, self.shared)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "shoal-query"
    }
    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }
    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }
    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::Relaxed);
    }
    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        self.used.fetch_sub(shrink.min(self.used.load(Ordering::Relaxed)), Ordering::Relaxed);
    }
    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let used = self.used.load(Ordering::Relaxed);
        if used.saturating_add(additional) > self.limit {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the query needs more than its memory limit of {} bytes ({used} held, {additional} more asked)",
                self.limit
            )));
        }
        self.shared.try_grow(reservation, additional).map_err(|_| {
            DataFusionError::ResourcesExhausted(format!(
                "the server's memory for queries is in use ({} of {} bytes held by running queries): {additional} more bytes are not free",
                self.shared.reserved(),
                match self.shared.memory_limit() {
                    MemoryLimit::Finite(n) => n.to_string(),
                    _ => "unbounded".into(),
                }
            ))
        })?;
        self.used.fetch_add(additional, Ordering::Relaxed);
        Ok(())
    }
    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_chains_and_parentheses_not_lists() {
        let chain = |n: usize| format!("SELECT {}", vec!["1"; n].join("+"));
        assert_eq!(expression_depth(&chain(100)), Some(99));
        let nested = format!("SELECT {}1{}", "(".repeat(3000), ")".repeat(3000));
        assert_eq!(expression_depth(&nested), Some(3000));
        // Long flat lists and many short expressions are shallow.
        let list = format!("SELECT count(*) FROM t WHERE x IN ({})", vec!["1"; 5000].join(","));
        assert!(expression_depth(&list).unwrap() < 5, "{:?}", expression_depth(&list));
        let columns = format!("SELECT {} FROM t", vec!["a + b"; 2000].join(", "));
        assert!(expression_depth(&columns).unwrap() < 5);
        let clauses = "SELECT a + 1 FROM t WHERE b = 2 AND c > 3 GROUP BY a ORDER BY a LIMIT 10";
        assert!(expression_depth(clauses).unwrap() <= 4);
        assert_eq!(expression_depth("SELECT 'unterminated"), None);
    }
}

/// A physical optimizer rule that makes every operator of a plan give way to the scheduler
/// now and then: each one's output stream takes from tokio's cooperative budget, so a task
/// that polls a long pipeline yields every so many batches. DataFusion makes only the leaves
/// cooperative; a join that produces batch after batch from memory (a cross join) would
/// otherwise hold its thread until it ends, past its time limit (its task is aborted only at
/// a yield) and in the way of every other query on that thread.
#[derive(Debug, Default)]
pub(crate) struct YieldEverywhere;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for YieldEverywhere {
    fn optimize(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::physical_plan::coop::CooperativeExec;
        plan.transform_up(|node| {
            if node.children().is_empty() || node.is::<CooperativeExec>() {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(Arc::new(CooperativeExec::new(node)) as _))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "shoal_yield_everywhere"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Refuses a plan whose nested-loop or cross joins would compare more than `max_pairs` pairs
/// of rows. Such a join can scan for hours inside one step without producing a row, where no
/// time limit can stop it (a task is cancelled only between steps); Pinot's single-stage engine
/// has no joins at all. The pairs are the product of the joined inputs' row counts as the plan
/// knows them (exactly, from in-memory segments); an input whose count is unknown is not
/// limited.
pub(crate) fn check_join_pairs(
    plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    max_pairs: u64,
) -> Result<()> {
    use datafusion::physical_plan::{StatisticsArgs, StatisticsContext};
    let statistics = StatisticsContext::new();
    let args = StatisticsArgs::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(node) = stack.pop() {
        let children = node.children();
        if matches!(node.name(), "NestedLoopJoinExec" | "CrossJoinExec") && children.len() == 2 {
            let rows = |child: &Arc<dyn datafusion::physical_plan::ExecutionPlan>| {
                statistics
                    .compute(child.as_ref(), &args)
                    .ok()
                    .and_then(|s| s.num_rows.get_value().map(|n| *n as u128))
            };
            if let (Some(left), Some(right)) = (rows(children[0]), rows(children[1])) {
                let pairs = left * right;
                if pairs > u128::from(max_pairs) {
                    return Err(DataFusionError::ResourcesExhausted(format!(
                        "the query joins {left} rows with {right} rows without a key: {pairs} pairs to compare, over the limit of {max_pairs}"
                    )));
                }
            }
        }
        stack.extend(children.into_iter().cloned());
    }
    Ok(())
}
