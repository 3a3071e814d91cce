//! Read-only SQL over the registered tables, under time, memory and result-size limits.

use crate::guard;
use crate::provider::{ScanStats, ShoalTable, SnapshotSource};
use crate::rewrite::{canonicalize, rewrite};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DataFusionError;
use datafusion::common::TableReference;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use futures::StreamExt;
use shoal_functions::{aggregate_functions, scalar_functions};
use shoal_segment::TableLayout;
use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits every query runs under.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Longest a query may run (default 30 s).
    pub timeout: Duration,
    /// Memory a query's operators may hold (default 2 GiB).
    pub memory_limit: usize,
    /// Most rows a result may hold; more are cut and `partialResult` is set (default 100,000).
    pub max_result_rows: usize,
    /// Partitions DataFusion plans for (default: the number of cores).
    pub target_partitions: usize,
    /// Skip segments whose statistics rule out a query's filters (default true). A switch for
    /// benchmarks and diagnosis only: off, every segment is read, so the same query can be timed
    /// with and without pruning and its answers compared. Answers are the same either way.
    pub prune: bool,
    /// Memory all running queries together may hold (default 4 GiB): one pool every query's
    /// operators draw from; a query that needs more than is free fails with Pinot's 245.
    pub total_memory: usize,
    /// Most bytes a result may hold (default 64 MiB); more are cut and `partialResult` is set.
    pub max_result_bytes: usize,
    /// Most bytes one value may have when a function makes it from small arguments (`repeat`,
    /// `lpad`, `array_repeat`, `range`...; default 16 MiB), also while planning folds constants.
    pub max_value_bytes: usize,
    /// Deepest expression nesting accepted (default 400), counted from the SQL's tokens before
    /// it is parsed: a chain `1+1+...` counts each operator, nested parentheses each level.
    pub max_expression_depth: usize,
    /// Queries that run at once (default: twice the cores, at least 4).
    pub max_concurrent_queries: usize,
    /// Queries that may wait for one of those places (default 64); more are refused at once
    /// with Pinot's 429.
    pub max_queued_queries: usize,
    /// Most pairs of rows a join without a key (a cross or nested-loop join) may compare
    /// (default 1e9); a query past it is refused before it runs, with Pinot's 245.
    pub max_join_pairs: u64,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            timeout: Duration::from_secs(30),
            memory_limit: 2 << 30,
            max_result_rows: 100_000,
            target_partitions: cores(),
            prune: true,
            total_memory: 4 << 30,
            max_result_bytes: 64 << 20,
            max_value_bytes: 16 << 20,
            max_expression_depth: 400,
            max_concurrent_queries: (2 * cores()).max(4),
            max_queued_queries: 64,
            max_join_pairs: 1_000_000_000,
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// The stack of a thread that parses and plans a query: deep enough for the deepest expression
/// accepted (`max_expression_depth`), with DataFusion's and sqlparser's recursion guards
/// growing it further where they recurse.
const PLAN_STACK: usize = 64 << 20;

/// What kind of failure a query met, with Pinot's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The SQL does not parse, names what does not exist, or is not allowed (150).
    Validation,
    /// Execution failed, including the memory limit (200).
    Execution,
    /// The time limit passed (250).
    Timeout,
    /// The query needs more memory than it may have, or than is free (245).
    ResourceLimit,
    /// Too many queries run and wait already (429).
    Overloaded,
}

impl ErrorKind {
    /// Pinot's error code (pinot-spi `QueryErrorCode.java`: SQL_PARSING 150, QUERY_EXECUTION
    /// 200, EXECUTION_TIMEOUT 250, SERVER_RESOURCE_LIMIT_EXCEEDED 245, TOO_MANY_REQUESTS 429).
    pub fn pinot_code(self) -> i32 {
        match self {
            ErrorKind::Validation => 150,
            ErrorKind::Execution => 200,
            ErrorKind::Timeout => 250,
            ErrorKind::ResourceLimit => 245,
            ErrorKind::Overloaded => 429,
        }
    }
}

/// Why a query failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// The kind.
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
}

impl QueryError {
    fn validation(message: impl Into<String>) -> Self {
        QueryError { kind: ErrorKind::Validation, message: message.into() }
    }

    fn from_datafusion(e: DataFusionError) -> Self {
        let kind = match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => ErrorKind::Validation,
            DataFusionError::ResourcesExhausted(_) => ErrorKind::ResourceLimit,
            _ => ErrorKind::Execution,
        };
        QueryError { kind, message: e.strip_backtrace() }
    }
}

/// A finished query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The result's schema.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// What the scans touched.
    pub stats: ScanStats,
    /// True when rows were cut at the result limits (rows or bytes).
    pub truncated: bool,
}

/// A query whose rows arrive as a stream.
pub struct QueryStream {
    /// The rows.
    pub stream: SendableRecordBatchStream,
    stats: Arc<Mutex<ScanStats>>,
    /// The query's place among those running, given back when the stream is dropped.
    _admitted: OwnedSemaphorePermit,
}

impl QueryStream {
    /// What the scans touched (complete once planning is done, which it is).
    pub fn stats(&self) -> ScanStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Debug, Clone)]
struct Registered {
    layout: Arc<TableLayout>,
    source: Arc<dyn SnapshotSource>,
}

/// Runs read-only SQL over the registered tables.
#[derive(Debug)]
pub struct QueryEngine {
    tables: RwLock<BTreeMap<String, Registered>>,
    options: QueryOptions,
    /// The memory every query draws from.
    memory: Arc<dyn MemoryPool>,
    /// Places for running queries.
    running: Arc<Semaphore>,
    /// Queries waiting for a place.
    waiting: AtomicUsize,
}

impl Default for QueryEngine {
    fn default() -> Self {
        QueryEngine::new(QueryOptions::default())
    }
}

impl QueryEngine {
    /// An engine with `options`.
    pub fn new(options: QueryOptions) -> QueryEngine {
        QueryEngine {
            tables: RwLock::default(),
            memory: Arc::new(GreedyMemoryPool::new(options.total_memory.max(1))),
            running: Arc::new(Semaphore::new(options.max_concurrent_queries.max(1))),
            waiting: AtomicUsize::new(0),
            options,
        }
    }

    /// Queries running now.
    pub fn running_queries(&self) -> usize {
        self.options.max_concurrent_queries.max(1) - self.running.available_permits()
    }

    /// Queries waiting for a place to run.
    pub fn waiting_queries(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Takes a place among the running queries, waiting until `deadline` in the bounded queue;
    /// refused at once when the queue is full.
    async fn admit(&self, deadline: tokio::time::Instant) -> Result<OwnedSemaphorePermit, QueryError> {
        if let Ok(permit) = Arc::clone(&self.running).try_acquire_owned() {
            return Ok(permit);
        }
        let overloaded = || QueryError {
            kind: ErrorKind::Overloaded,
            message: format!(
                "too many queries: {} run and {} wait already; try again later",
                self.options.max_concurrent_queries, self.options.max_queued_queries
            ),
        };
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.options.max_queued_queries {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(overloaded());
        }
        let waited = tokio::time::timeout_at(deadline, Arc::clone(&self.running).acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(overloaded()),
            Err(_) => Err(QueryError {
                kind: ErrorKind::Timeout,
                message: format!("the query waited {:?} for a place to run", self.options.timeout),
            }),
        }
    }

    /// The limits.
    pub fn options(&self) -> &QueryOptions {
        &self.options
    }

    /// Makes a table queryable as `name` and `name_REALTIME`.
    pub fn register(&self, name: &str, layout: Arc<TableLayout>, source: Arc<dyn SnapshotSource>) {
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        tables.insert(name.to_string(), Registered { layout, source });
    }

    /// Removes a table.
    pub fn deregister(&self, name: &str) {
        self.tables.write().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// Plans `sql` and starts it; refuses anything but reads.
    pub async fn stream(&self, sql: &str) -> Result<QueryStream, QueryError> {
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        self.stream_until(sql, deadline).await
    }

    async fn stream_until(
        &self,
        sql: &str,
        deadline: tokio::time::Instant,
    ) -> Result<QueryStream, QueryError> {
        let depth_limit = self.options.max_expression_depth;
        if let Some(depth) = guard::expression_depth(sql)
            && depth > depth_limit
        {
            return Err(QueryError::validation(format!(
                "the query's expressions nest {depth} deep, deeper than the {depth_limit} allowed"
            )));
        }
        let admitted = self.admit(deadline).await?;
        let stats = Arc::new(Mutex::new(ScanStats::default()));
        let ctx = self.context(&stats)?;
        let (names, multi_value) = self.known_names();
        // Parsing and planning recurse over the query and fold its constants: they run on a
        // thread of their own with a deep stack, and the caller waits for them only until the
        // deadline.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Handle::current();
        let max_join_pairs = self.options.max_join_pairs;
        let sql = sql.to_string();
        std::thread::Builder::new()
            .name("shoal-plan".into())
            .stack_size(PLAN_STACK)
            .spawn(move || {
                let planned = plan_and_start(ctx, &sql, &names, &multi_value, max_join_pairs);
                let _ = tx.send(runtime.block_on(planned));
            })
            .map_err(|e| QueryError {
                kind: ErrorKind::ResourceLimit,
                message: format!("cannot start a thread to plan the query: {e}"),
            })?;
        let planned = tokio::time::timeout_at(deadline, rx).await.map_err(|_| QueryError {
            kind: ErrorKind::Timeout,
            message: format!("planning the query took longer than {:?}", self.options.timeout),
        })?;
        let stream = planned.map_err(|_| QueryError {
            kind: ErrorKind::Execution,
            message: "planning the query failed".into(),
        })??;
        Ok(QueryStream { stream, stats, _admitted: admitted })
    }

    /// Runs `sql` to the end (or the limits) and gathers the rows. The rows are gathered in
    /// a task of their own, so that the time limit is kept even while an operator computes a
    /// large batch without yielding (the task is aborted at its next yield).
    pub async fn execute(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        let timed_out = || QueryError {
            kind: ErrorKind::Timeout,
            message: format!("the query did not finish within {:?}", self.options.timeout),
        };
        let query = tokio::time::timeout_at(deadline, self.stream_until(sql, deadline))
            .await
            .map_err(|_| timed_out())??;
        let QueryStream { mut stream, stats, _admitted } = query;
        let schema = stream.schema();
        let (max_rows, max_bytes) = (self.options.max_result_rows, self.options.max_result_bytes);
        let gather = tokio::spawn(async move {
            let _admitted = _admitted;
            let mut batches = Vec::new();
            let (mut rows, mut bytes) = (0, 0);
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(QueryError::from_datafusion)?;
                let room = max_rows - rows;
                let size = batch.get_array_memory_size();
                if batch.num_rows() > room || bytes + size > max_bytes {
                    // Cut at the row limit, and at the byte limit (rows kept whole).
                    let per_row = size / batch.num_rows().max(1);
                    let fit = (max_bytes - bytes.min(max_bytes)).checked_div(per_row).unwrap_or(room);
                    batches.push(batch.slice(0, room.min(fit)));
                    return Ok((batches, true));
                }
                rows += batch.num_rows();
                bytes += size;
                batches.push(batch);
            }
            Ok::<_, QueryError>((batches, false))
        });
        let abort = gather.abort_handle();
        let (batches, truncated) = match tokio::time::timeout_at(deadline, gather).await {
            Err(_) => {
                abort.abort();
                return Err(timed_out());
            }
            Ok(Err(join)) => {
                return Err(QueryError {
                    kind: ErrorKind::Execution,
                    message: format!("the query failed: {join}"),
                });
            }
            Ok(Ok(result)) => result?,
        };
        let stats = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(QueryResult { schema, batches, stats, truncated })
    }

    /// Lowercase spelling → spelling of every table (both names) and column, and the lowercase
    /// names of the multi-value columns.
    fn known_names(&self) -> (HashMap<String, String>, HashSet<String>) {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        let mut names = HashMap::new();
        let mut multi_value = HashSet::new();
        for (name, t) in tables.iter() {
            for field in t.layout.arrow.fields() {
                names.insert(field.name().to_lowercase(), field.name().clone());
                if matches!(field.data_type(), DataType::List(_) | DataType::LargeList(_)) {
                    multi_value.insert(field.name().to_lowercase());
                }
            }
            for alias in [name.clone(), format!("{name}_REALTIME")] {
                names.insert(alias.to_lowercase(), alias);
            }
        }
        (names, multi_value)
    }

    fn context(&self, stats: &Arc<Mutex<ScanStats>>) -> Result<SessionContext, QueryError> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(self.options.target_partitions.max(1));
        // Names keep their case; `canonicalize` matches them without regard to case.
        config.options_mut().sql_parser.enable_ident_normalization = false;
        let pool = guard::QueryPool::new(Arc::clone(&self.memory), self.options.memory_limit);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .map_err(QueryError::from_datafusion)?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(guard::YieldEverywhere))
            .build();
        let ctx = SessionContext::new_with_state(state);
        for f in scalar_functions().into_iter().chain(guard::capped_functions(self.options.max_value_bytes)) {
            ctx.register_udf(f);
        }
        for f in aggregate_functions() {
            ctx.register_udaf(f);
        }
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        for (name, t) in tables.iter() {
            for alias in [name.clone(), format!("{name}_REALTIME")] {
                let provider =
                    ShoalTable::new(Arc::clone(&t.layout), Arc::clone(&t.source), Arc::clone(stats))
                        .with_pruning(self.options.prune);
                ctx.register_table(TableReference::bare(alias.as_str()), Arc::new(provider))
                    .map_err(QueryError::from_datafusion)?;
            }
        }
        Ok(ctx)
    }
}

/// Parses `sql`, rewrites Pinot's spellings, refuses anything but reads, plans and starts it.
async fn plan_and_start(
    ctx: SessionContext,
    sql: &str,
    names: &HashMap<String, String>,
    multi_value: &HashSet<String>,
    max_join_pairs: u64,
) -> Result<SendableRecordBatchStream, QueryError> {
    let mut statements =
        DFParser::parse_sql(sql).map_err(|e| QueryError::validation(format!("SQL parse error: {e}")))?;
    if statements.len() != 1 {
        return Err(QueryError::validation(format!(
            "expected one SQL statement, found {}",
            statements.len()
        )));
    }
    let Some(mut statement) = statements.pop_front() else {
        return Err(QueryError::validation("expected one SQL statement"));
    };
    match &mut statement {
        DfStatement::Statement(s) => {
            rewrite(s, multi_value).map_err(QueryError::validation)?;
            canonicalize(s, names);
        }
        DfStatement::Explain(e) => {
            if let DfStatement::Statement(s) = e.statement.as_mut() {
                rewrite(s, multi_value).map_err(QueryError::validation)?;
                canonicalize(s, names);
            }
        }
        DfStatement::CreateExternalTable(_) => {
            return Err(QueryError::validation(
                "CREATE EXTERNAL TABLE is not allowed: Shoal's SQL is read-only",
            ));
        }
        DfStatement::CopyTo(_) => {
            return Err(QueryError::validation("COPY is not allowed: Shoal's SQL is read-only"));
        }
        _ => {}
    }
    let plan = ctx.state().statement_to_plan(statement).await.map_err(QueryError::from_datafusion)?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| QueryError::validation(format!("{} (Shoal's SQL is read-only)", e.strip_backtrace())))?;
    let frame = ctx.execute_logical_plan(plan).await.map_err(QueryError::from_datafusion)?;
    let task = frame.task_ctx();
    let physical = frame.create_physical_plan().await.map_err(QueryError::from_datafusion)?;
    guard::check_join_pairs(&physical, max_join_pairs).map_err(QueryError::from_datafusion)?;
    datafusion::physical_plan::execute_stream(physical, Arc::new(task)).map_err(QueryError::from_datafusion)
}
