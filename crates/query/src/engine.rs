//! Read-only SQL over the registered tables, under time, memory and result-size limits.

use crate::dialect::{self, PinotOptions, RequestOptions, ResultShape};
use crate::guard;
use crate::lookup::{DimensionTable, Dimensions, lookup_function};
use crate::provider::{ScanRecorder, ScanStats, ShoalTable, SnapshotSource, UpsertView};
use crate::rewrite::{canonicalize, rewrite};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use datafusion::common::alias::AliasGenerator;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{DataFusionError, SchemaError, TableReference};
use datafusion::datasource::{DefaultTableSource, MemTable, provider_as_source};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::{FunctionRegistry, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{LogicalPlan, ScalarUDF};
use datafusion::optimizer::OptimizerConfig;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SQLOptions, SessionConfig};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;
use shoal_functions::{aggregate_functions, scalar_functions};
use shoal_segment::TableLayout;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits every query runs under.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueryOptions {
    /// Longest a query may run (default 30 s).
    pub timeout: Duration,
    /// Memory a query's operators may hold (default 2 GiB).
    pub memory_limit: usize,
    /// Most rows a result may hold; more are cut and `partialResult` is set (default 100,000).
    pub max_result_rows: usize,
    /// The cores a query is planned for (default: the machine's): its scans are cut into
    /// partitions by their rows, up to 32 a core, and its repartitioned operators (a GROUP BY's
    /// final aggregation, a join) into 8 hash partitions a core.
    pub target_partitions: usize,
    /// Use statistics (default true): skip segments and batches whose statistics rule out a
    /// query's filters, and take into a `count`, `sum`, `min` or `max` without GROUP BY the
    /// batches every row of which passes, from their statistics. A switch for benchmarks and
    /// diagnosis only: off, every row is read, so the same query can be timed with and without
    /// statistics and its answers compared. Answers are the same either way.
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
    /// with Pinot's 211 (ServerOutOfCapacity).
    pub max_queued_queries: usize,
    /// Most pairs of rows a join without a key (a cross or nested-loop join) may compare
    /// (default 1e9); a query past it is refused before it runs, with Pinot's 245.
    pub max_join_pairs: u64,
    /// The LIMIT a query without one gets (default none: every row). Pinot's broker gives 10
    /// (`pinot.broker.default.query.limit`); the server sets that.
    pub default_limit: Option<usize>,
}

/// Builder methods: `QueryOptions::default().with_…(…)`, so that a setting added later breaks no caller.
impl QueryOptions {
    /// Sets [`QueryOptions::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`QueryOptions::memory_limit`].
    pub fn with_memory_limit(mut self, memory_limit: usize) -> Self {
        self.memory_limit = memory_limit;
        self
    }

    /// Sets [`QueryOptions::max_result_rows`].
    pub fn with_max_result_rows(mut self, max_result_rows: usize) -> Self {
        self.max_result_rows = max_result_rows;
        self
    }

    /// Sets [`QueryOptions::target_partitions`].
    pub fn with_target_partitions(mut self, target_partitions: usize) -> Self {
        self.target_partitions = target_partitions;
        self
    }

    /// Sets [`QueryOptions::prune`].
    pub fn with_prune(mut self, prune: bool) -> Self {
        self.prune = prune;
        self
    }

    /// Sets [`QueryOptions::total_memory`].
    pub fn with_total_memory(mut self, total_memory: usize) -> Self {
        self.total_memory = total_memory;
        self
    }

    /// Sets [`QueryOptions::max_result_bytes`].
    pub fn with_max_result_bytes(mut self, max_result_bytes: usize) -> Self {
        self.max_result_bytes = max_result_bytes;
        self
    }

    /// Sets [`QueryOptions::max_value_bytes`].
    pub fn with_max_value_bytes(mut self, max_value_bytes: usize) -> Self {
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// Sets [`QueryOptions::max_expression_depth`].
    pub fn with_max_expression_depth(mut self, max_expression_depth: usize) -> Self {
        self.max_expression_depth = max_expression_depth;
        self
    }

    /// Sets [`QueryOptions::max_concurrent_queries`].
    pub fn with_max_concurrent_queries(mut self, max_concurrent_queries: usize) -> Self {
        self.max_concurrent_queries = max_concurrent_queries;
        self
    }

    /// Sets [`QueryOptions::max_queued_queries`].
    pub fn with_max_queued_queries(mut self, max_queued_queries: usize) -> Self {
        self.max_queued_queries = max_queued_queries;
        self
    }

    /// Sets [`QueryOptions::max_join_pairs`].
    pub fn with_max_join_pairs(mut self, max_join_pairs: u64) -> Self {
        self.max_join_pairs = max_join_pairs;
        self
    }

    /// Sets [`QueryOptions::default_limit`].
    pub fn with_default_limit(mut self, default_limit: Option<usize>) -> Self {
        self.default_limit = default_limit;
        self
    }
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
            default_limit: None,
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

/// Rows a partial aggregation reads before it checks whether it reduces its input: one batch.
const SKIP_PROBE_ROWS: usize = 8_192;

/// Planning threads kept between queries: starting and ending a thread maps and unmaps its
/// 64 MiB stack (with a TLB shootdown on every core), a large part of a short query's cost.
static PLANNERS: Planners = Planners { idle: Mutex::new(Vec::new()) };

/// Planning threads left idle at most; more are started while queries plan at once, and end
/// when they are done. Few: an idle thread keeps the stack pages its deepest plan touched.
const IDLE_PLANNERS: usize = 2;

/// Hash partitions per core of a query's repartitioned operators (a GROUP BY's final
/// aggregation, a join): more than the cores, so that a high-cardinality GROUP BY or DISTINCT
/// builds several hash tables small enough for the CPU's caches, not one large table per core
/// that misses them on every probe (DISTINCTCOUNT over 1M users in 10.5M rows: 454 ms with 1
/// a core, 265 ms with 8; BENCHMARKS.md, "Partitions").
const HASH_PARTITIONS_PER_CORE: usize = 8;

type PlanJob = Box<dyn FnOnce() + Send>;

/// Threads with deep stacks that plan queries, each waiting on its own channel while idle.
struct Planners {
    idle: Mutex<Vec<std::sync::mpsc::Sender<PlanJob>>>,
}

impl Planners {
    /// Runs `job` on an idle planning thread, or on a new one.
    fn run(&'static self, mut job: PlanJob) -> std::io::Result<()> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(thread) = idle else { break };
            match thread.send(job) {
                Ok(()) => return Ok(()),
                // That thread is gone (it panicked): the job goes to another.
                Err(returned) => job = returned.0,
            }
        }
        let (tx, rx) = std::sync::mpsc::channel::<PlanJob>();
        std::thread::Builder::new().name("shoal-plan".into()).stack_size(PLAN_STACK).spawn(move || {
            job();
            loop {
                {
                    let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                    if idle.len() >= IDLE_PLANNERS {
                        return;
                    }
                    idle.push(tx.clone());
                }
                match rx.recv() {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        })?;
        Ok(())
    }
}

/// What kind of failure a query met, with Pinot's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The SQL or its options do not parse, or the statement is not allowed (150).
    Validation,
    /// The query names a table that does not exist (190).
    TableNotFound,
    /// The query names a column its tables do not have (710).
    UnknownColumn,
    /// Execution failed (200).
    Execution,
    /// The time limit passed while the query ran (250).
    Timeout,
    /// The time limit passed while the query waited for a place to run (240).
    SchedulingTimeout,
    /// The query needs more memory than it may have, or than is free (245).
    ResourceLimit,
    /// Too many queries run and wait already (211).
    Overloaded,
    /// The query was cancelled before it finished: the server is stopping (503).
    Cancelled,
}

impl ErrorKind {
    /// Pinot's error code (pinot-spi `QueryErrorCode.java`: SQL_PARSING 150,
    /// TABLE_DOES_NOT_EXIST 190, UNKNOWN_COLUMN 710, QUERY_EXECUTION 200, EXECUTION_TIMEOUT 250,
    /// QUERY_SCHEDULING_TIMEOUT 240, SERVER_RESOURCE_LIMIT_EXCEEDED 245, SERVER_OUT_OF_CAPACITY
    /// 211, QUERY_CANCELLATION 503). A full admission queue is Pinot's 211, what its server's
    /// scheduler answers when its queue is full (pinot-core `PriorityScheduler.java`,
    /// `QueryScheduler.outOfCapacity`); Pinot's 429 is the broker's per-table query quota,
    /// which Shoal has not.
    pub fn pinot_code(self) -> i32 {
        match self {
            ErrorKind::Validation => 150,
            ErrorKind::TableNotFound => 190,
            ErrorKind::UnknownColumn => 710,
            ErrorKind::Execution => 200,
            ErrorKind::Timeout => 250,
            ErrorKind::SchedulingTimeout => 240,
            ErrorKind::ResourceLimit => 245,
            ErrorKind::Overloaded => 211,
            ErrorKind::Cancelled => 503,
        }
    }

    /// Pinot's name for the code, which starts its messages (`QueryErrorCode.getDefaultMessage`;
    /// pinot-common `BrokerResponseNative.java` writes `name: detail`).
    pub fn pinot_name(self) -> &'static str {
        match self {
            ErrorKind::Validation => "SQLParsingError",
            ErrorKind::TableNotFound => "TableDoesNotExistError",
            ErrorKind::UnknownColumn => "UnknownColumnError",
            ErrorKind::Execution => "QueryExecutionError",
            ErrorKind::Timeout => "ExecutionTimeoutError",
            ErrorKind::SchedulingTimeout => "QuerySchedulingTimeoutError",
            ErrorKind::ResourceLimit => "ServerResourceLimitExceededError",
            ErrorKind::Overloaded => "ServerOutOfCapacity",
            ErrorKind::Cancelled => "QueryCancellationError",
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
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        QueryError { kind: ErrorKind::Validation, message: message.into() }
    }

    fn from_datafusion(e: DataFusionError) -> Self {
        let message = e.strip_backtrace();
        match e.find_root() {
            // pinot-broker BaseSingleStageBrokerRequestHandler.java: "Unknown columnName '...'
            // found in the query".
            DataFusionError::SchemaError(inner, _)
                if matches!(inner.as_ref(), SchemaError::FieldNotFound { .. }) =>
            {
                let SchemaError::FieldNotFound { field, .. } = inner.as_ref() else { unreachable!() };
                QueryError {
                    kind: ErrorKind::UnknownColumn,
                    message: format!("Unknown columnName '{}' found in the query ({message})", field.name()),
                }
            }
            DataFusionError::Plan(m) if missing_table(m).is_some() => QueryError {
                kind: ErrorKind::TableNotFound,
                message: format!("table '{}' does not exist", missing_table(m).unwrap_or_default()),
            },
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError { kind: ErrorKind::Validation, message },
            DataFusionError::ResourcesExhausted(_) => QueryError { kind: ErrorKind::ResourceLimit, message },
            _ => QueryError { kind: ErrorKind::Execution, message },
        }
    }
}

/// The table named by DataFusion's "table 'x' not found" (datafusion `session_state.rs`).
fn missing_table(message: &str) -> Option<&str> {
    let name = message.strip_prefix("table '")?.strip_suffix("' not found")?;
    // Only a table name: a quoted path such as `FROM '/etc/passwd'` is refused as SQL.
    let bare = name.strip_prefix("datafusion.public.").unwrap_or(name);
    (!bare.is_empty() && bare.chars().all(|c| c.is_alphanumeric() || c == '_')).then_some(bare)
}

/// A finished query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The result's schema, with Pinot's column names and types.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// What the scans touched.
    pub stats: ScanStats,
    /// True when rows were cut at the result limits (rows or bytes).
    pub truncated: bool,
    /// The query options it ran with.
    pub options: PinotOptions,
    /// The tables it read (Pinot's `tablesQueried`): names without `_REALTIME`.
    pub tables: Vec<String>,
    /// With the `trace` option: what each phase took and the plan with its operators' metrics,
    /// as a JSON document.
    pub trace: Option<String>,
}

/// A query whose rows arrive as a stream.
pub struct QueryStream {
    /// The rows, with Pinot's column names and types.
    pub stream: SendableRecordBatchStream,
    recorder: Arc<ScanRecorder>,
    /// The query options it runs with.
    pub options: PinotOptions,
    /// The tables it reads.
    pub tables: Vec<String>,
    plan: Arc<dyn ExecutionPlan>,
    /// When it was handed over, and what parsing and planning took.
    phases: Phases,
    /// The query's place among those running, given back when the stream is dropped.
    _admitted: OwnedSemaphorePermit,
}

impl QueryStream {
    /// What the scans touched (complete once the stream has ended).
    pub fn stats(&self) -> ScanStats {
        self.recorder.stats()
    }
}

#[derive(Debug, Clone, Copy)]
struct Phases {
    parse: Duration,
    /// Waiting for a place to run.
    queued: Duration,
    plan: Duration,
    /// The optimised logical plan came from the engine's cache of plans.
    plan_cached: bool,
    /// When execution began.
    started: Instant,
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
    /// An app's own tables, queryable beside Shoal's.
    external: RwLock<BTreeMap<String, Arc<dyn TableProvider>>>,
    /// The dimension tables `LOOKUP` reads; each is also among `external`, under its name.
    dimensions: Arc<Dimensions>,
    options: QueryOptions,
    /// The memory every query draws from.
    memory: Arc<dyn MemoryPool>,
    /// Places for running queries.
    running: Arc<Semaphore>,
    /// Queries waiting for a place.
    waiting: AtomicUsize,
    /// What queries plan with, built once for the tables registered ([`Shared`]); None after
    /// a change to them, until the next query.
    shared: Mutex<Option<Arc<Shared>>>,
    /// The session's object stores and caches, kept across rebuilds; each query runs with
    /// its own memory pool beside them.
    runtime: Arc<RuntimeEnv>,
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
            external: RwLock::default(),
            dimensions: Arc::default(),
            memory: Arc::new(GreedyMemoryPool::new(options.total_memory.max(1))),
            running: Arc::new(Semaphore::new(options.max_concurrent_queries.max(1))),
            waiting: AtomicUsize::new(0),
            shared: Mutex::new(None),
            runtime: Arc::new(RuntimeEnv::default()),
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
    async fn admit(
        &self,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<OwnedSemaphorePermit, QueryError> {
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
            // A place that came free only after the deadline (the timer fired late on a busy
            // machine) is as late as no place: the query waited all of its time.
            Ok(Ok(permit)) if tokio::time::Instant::now() < deadline => Ok(permit),
            Ok(Err(_)) => Err(overloaded()),
            // pinot-core ServerQueryExecutorV1Impl.java: a query that waited in the scheduler for
            // all of its time is QUERY_SCHEDULING_TIMEOUT.
            Ok(Ok(_)) | Err(_) => Err(QueryError {
                kind: ErrorKind::SchedulingTimeout,
                message: format!(
                    "Query scheduling took longer than the query timeout of {} ms: {} queries ran meanwhile",
                    timeout.as_millis(),
                    self.options.max_concurrent_queries
                ),
            }),
        }
    }

    /// The limits.
    pub fn options(&self) -> &QueryOptions {
        &self.options
    }

    /// Makes a table queryable as `name` and `name_REALTIME`.
    pub fn register(&self, name: &str, layout: Arc<TableLayout>, source: Arc<dyn SnapshotSource>) {
        self.tables
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Registered { layout, source });
        self.changed();
    }

    /// Removes a table.
    pub fn deregister(&self, name: &str) {
        self.tables.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        self.changed();
    }

    /// After a change to the tables (with their locks released: [`QueryEngine::shared`] takes
    /// them under its own): the next query plans with a [`Shared`] built anew. The old one goes
    /// now, not at the next query: it holds the tables' sources, and a removed table's files
    /// (and its data directory's lock) must not outlive its removal.
    fn changed(&self) {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Makes an app's own table (any DataFusion `TableProvider`) queryable as `name`, beside
    /// the realtime tables. A name a realtime table has (or its `_REALTIME` alias) is refused,
    /// as is one registered already.
    pub fn register_external(&self, name: &str, provider: Arc<dyn TableProvider>) -> Result<(), QueryError> {
        self.add_external(name, provider, None)
    }

    /// Adds an app's table, and with `dimension` makes it a dimension table too, which may
    /// replace a dimension table of that name (in any case). Both are changed under the lock
    /// of `external`, so a query sees both or neither.
    fn add_external(
        &self,
        name: &str,
        provider: Arc<dyn TableProvider>,
        dimension: Option<Arc<DimensionTable>>,
    ) -> Result<(), QueryError> {
        let lower = name.to_lowercase();
        let taken = self
            .tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .any(|t| t.to_lowercase() == lower || format!("{t}_realtime").to_lowercase() == lower);
        let mut external = self.external.write().unwrap_or_else(|p| p.into_inner());
        let existing = external.keys().find(|t| t.to_lowercase() == lower).cloned();
        let replaces = dimension.is_some() && self.dimensions.contains(name);
        if taken || (existing.is_some() && !replaces) {
            return Err(QueryError::validation(format!("a table named {name:?} exists already")));
        }
        if name.is_empty() || name.contains(['.', '"', '`']) {
            return Err(QueryError::validation(format!("{name:?} is not a table name")));
        }
        if let Some(existing) = existing {
            external.remove(&existing);
        }
        external.insert(name.to_string(), provider);
        if let Some(table) = dimension {
            self.dimensions.insert(name, table);
        }
        drop(external);
        self.changed();
        Ok(())
    }

    /// Removes an app's table; false when none had the name. A dimension table of that name
    /// is removed from `LOOKUP` too.
    pub fn deregister_external(&self, name: &str) -> bool {
        let mut external = self.external.write().unwrap_or_else(|p| p.into_inner());
        let removed = external.remove(name).is_some();
        if removed && self.dimensions.contains(name) {
            self.dimensions.remove(name);
        }
        drop(external);
        self.changed();
        removed
    }

    /// Makes `table` a dimension table that Pinot's `LOOKUP('name', ...)` reads (also as
    /// `'name_OFFLINE'`), and a table SQL can query as `name` (over its rows, duplicate keys
    /// included), beside the realtime tables and the app's own. A dimension table of that name
    /// (in any case) is replaced: that is how one is reloaded, and queries planned before go
    /// on with the old one. Any other table of that name is refused, as in
    /// [`QueryEngine::register_external`].
    pub fn register_dimension(&self, name: &str, table: Arc<DimensionTable>) -> Result<(), QueryError> {
        let provider = MemTable::try_new(table.schema(), vec![vec![table.batch().clone()]])
            .map_err(QueryError::from_datafusion)?;
        self.add_external(name, Arc::new(provider), Some(table))
    }

    /// Removes the dimension table `name` (in any case) from `LOOKUP` and from the tables SQL
    /// can query; false when there was none.
    pub fn deregister_dimension(&self, name: &str) -> bool {
        let mut external = self.external.write().unwrap_or_else(|p| p.into_inner());
        let Some((registered, _)) = self.dimensions.remove_entry(name) else { return false };
        external.remove(&registered);
        drop(external);
        self.changed();
        true
    }

    /// The dimension tables `LOOKUP` reads. A table inserted here directly is read by
    /// `LOOKUP` only; [`QueryEngine::register_dimension`] also makes it a table SQL can query.
    pub fn dimensions(&self) -> &Arc<Dimensions> {
        &self.dimensions
    }

    /// This engine's `LOOKUP`, for an app's own DataFusion session: it reads the dimension
    /// tables registered here, as they are when a query is planned.
    pub fn lookup_udf(&self) -> ScalarUDF {
        lookup_function(Arc::clone(&self.dimensions))
    }

    /// Whether an app's table has the name (in any case).
    pub fn has_external(&self, name: &str) -> bool {
        let lower = name.to_lowercase();
        self.external.read().unwrap_or_else(|p| p.into_inner()).keys().any(|t| t.to_lowercase() == lower)
    }

    /// Plans `sql` and starts it; refuses anything but reads.
    pub async fn stream(&self, sql: &str) -> Result<QueryStream, QueryError> {
        self.stream_with(sql, &RequestOptions::default()).await
    }

    /// Plans `sql` with the options of its request and starts it; refuses anything but reads.
    pub async fn stream_with(&self, sql: &str, request: &RequestOptions) -> Result<QueryStream, QueryError> {
        let prepared = self.prepare(sql, request)?;
        let (deadline, timeout) = (prepared.deadline, prepared.timeout);
        let mut query = tokio::time::timeout_at(deadline, self.start(prepared))
            .await
            .map_err(|_| timed_out(timeout))??;
        let shape = std::mem::take(&mut query.shape);
        let schema = shape.schema(&query.stream.stream.schema());
        let shaped = Arc::clone(&schema);
        let rows = std::mem::replace(
            &mut query.stream.stream,
            Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), futures::stream::empty())),
        );
        query.stream.stream = Box::pin(RecordBatchStreamAdapter::new(
            schema,
            rows.map(move |b| b.and_then(|b| shape.apply(b, &shaped).map_err(DataFusionError::from))),
        ));
        Ok(query.stream)
    }

    /// Parses `sql` and its options, and the deadline they give: the query's `timeoutMs` up to
    /// the engine's time limit, which caps it.
    fn prepare(&self, sql: &str, request: &RequestOptions) -> Result<Prepared, QueryError> {
        let now = tokio::time::Instant::now();
        let depth_limit = self.options.max_expression_depth;
        if let Some(depth) = guard::expression_depth(sql)
            && depth > depth_limit
        {
            return Err(QueryError::validation(format!(
                "the query's expressions nest {depth} deep, deeper than the {depth_limit} allowed"
            )));
        }
        // sqlparser's recursion guard grows the stack where it recurses, and the depth checked
        // above bounds how far.
        let parsed = dialect::parse(sql, request)?;
        let timeout = parsed.options.timeout.unwrap_or(self.options.timeout).min(self.options.timeout);
        Ok(Prepared { parsed, deadline: now + timeout, timeout, parse: now.elapsed() })
    }

    /// Admits the query, plans it and starts it.
    async fn start(&self, prepared: Prepared) -> Result<Started, QueryError> {
        let Prepared { parsed, deadline, timeout, parse } = prepared;
        let queued = Instant::now();
        let admitted = self.admit(deadline, timeout).await?;
        let queued = queued.elapsed();
        let planning_started = Instant::now();
        let recorder = Arc::new(ScanRecorder::default());
        let view = UpsertView::from_options(&parsed.options.values);
        let shared = self.shared()?;
        let session = if plans_alone(&parsed.statement) {
            Session::Own(Box::new(self.context(&recorder, view)?))
        } else {
            let runtime = self.query_runtime()?;
            Session::Shared { shared: Arc::clone(&shared), recorder: Arc::clone(&recorder), view, runtime }
        };
        // Planning recurses over the query and folds its constants: it runs on a thread of its
        // own with a deep stack, and the caller waits for it only until the deadline.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Handle::current();
        let planning = Planning {
            statement: parsed.statement,
            known: shared,
            max_join_pairs: self.options.max_join_pairs,
            default_limit: self.options.default_limit,
        };
        PLANNERS
            .run(Box::new(move || {
                let _ = tx.send(runtime.block_on(plan_and_start(session, planning)));
            }))
            .map_err(|e| QueryError {
                kind: ErrorKind::ResourceLimit,
                message: format!("cannot start a thread to plan the query: {e}"),
            })?;
        let planned = tokio::time::timeout_at(deadline, rx).await.map_err(|_| QueryError {
            kind: ErrorKind::Timeout,
            message: format!("planning the query took longer than {timeout:?}"),
        })?;
        let planned = planned.map_err(|_| QueryError {
            kind: ErrorKind::Execution,
            message: "planning the query failed".into(),
        })??;
        let phases = Phases {
            parse,
            queued,
            plan: planning_started.elapsed(),
            plan_cached: planned.cached,
            started: Instant::now(),
        };
        Ok(Started {
            stream: QueryStream {
                stream: planned.stream,
                recorder,
                options: parsed.options,
                tables: planned.tables,
                plan: planned.plan,
                phases,
                _admitted: admitted,
            },
            shape: planned.shape,
        })
    }

    /// Runs `sql` to the end (or the limits) and gathers the rows.
    pub async fn execute(&self, sql: &str) -> Result<QueryResult, QueryError> {
        self.execute_with(sql, &RequestOptions::default()).await
    }

    /// Runs `sql` with the options of its request (Pinot's `queryOptions` and `trace`) to the
    /// end (or the limits) and gathers the rows. The rows are gathered in a task of their own,
    /// so that the time limit is kept even while an operator computes a large batch without
    /// yielding (the task is aborted at its next yield).
    pub async fn execute_with(&self, sql: &str, request: &RequestOptions) -> Result<QueryResult, QueryError> {
        let prepared = self.prepare(sql, request)?;
        let (deadline, timeout) = (prepared.deadline, prepared.timeout);
        let started = tokio::time::timeout_at(deadline, self.start(prepared))
            .await
            .map_err(|_| timed_out(timeout))??;
        let Started { stream: query, shape } = started;
        let QueryStream { mut stream, recorder, options, tables, plan, phases, _admitted } = query;
        let schema = shape.schema(&stream.schema());
        let (max_rows, max_bytes) = (self.options.max_result_rows, self.options.max_result_bytes);
        let shaped = Arc::clone(&schema);
        let gather = tokio::spawn(async move {
            let _admitted = _admitted;
            let mut batches = Vec::new();
            let (mut rows, mut bytes) = (0, 0);
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(QueryError::from_datafusion)?;
                let batch = shape.apply(batch, &shaped).map_err(|e| QueryError {
                    kind: ErrorKind::Execution,
                    message: format!("cannot convert the result to Pinot's types: {e}"),
                })?;
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
                return Err(timed_out(timeout));
            }
            Ok(Err(join)) if join.is_cancelled() => {
                return Err(QueryError {
                    kind: ErrorKind::Cancelled,
                    message: "the query was cancelled: the server is stopping".into(),
                });
            }
            Ok(Err(join)) => {
                return Err(QueryError {
                    kind: ErrorKind::Execution,
                    message: format!("the query failed: {join}"),
                });
            }
            Ok(Ok(result)) => result?,
        };
        let stats = recorder.stats();
        let trace = options.trace.then(|| trace(&phases, &plan, &stats));
        Ok(QueryResult { schema, batches, stats, truncated, options, tables, trace })
    }

    /// What queries plan with now: the one built for the tables as they are, or a new one.
    /// Built under the lock, so that queries arriving together build it once.
    fn shared(&self) -> Result<Arc<Shared>, QueryError> {
        let mut slot = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = slot.as_ref() {
            return Ok(Arc::clone(shared));
        }
        let (names, multi_value) = self.known_names();
        let tables: Vec<String> =
            self.tables.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        let mut owned = Vec::new();
        let mut state = |round_robin: bool| -> Result<SessionState, QueryError> {
            let mut state = self.session_state(Arc::clone(&self.runtime))?;
            state.config_mut().options_mut().optimizer.enable_round_robin_repartition = round_robin;
            self.register_tables(&mut state, |layout, source| {
                let table: Arc<dyn TableProvider> = Arc::new(self.table(layout, source));
                owned.push(Arc::clone(&table));
                table
            })?;
            Ok(state)
        };
        let (shoal_only, mixed) = (state(false)?, state(true)?);
        let plans = Mutex::default();
        let shared = Arc::new(Shared { shoal_only, mixed, owned, names, multi_value, tables, plans });
        *slot = Some(Arc::clone(&shared));
        Ok(shared)
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
        for (name, provider) in self.external.read().unwrap_or_else(|p| p.into_inner()).iter() {
            for field in provider.schema().fields() {
                names.entry(field.name().to_lowercase()).or_insert_with(|| field.name().clone());
            }
            names.insert(name.to_lowercase(), name.clone());
        }
        (names, multi_value)
    }

    /// The engine's runtime with a memory pool of the query's own: its share of the engine's
    /// memory, capped at the per-query limit.
    fn query_runtime(&self) -> Result<Arc<RuntimeEnv>, QueryError> {
        let pool = guard::QueryPool::new(Arc::clone(&self.memory), self.options.memory_limit);
        RuntimeEnvBuilder::from_runtime_env(&self.runtime)
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .map_err(QueryError::from_datafusion)
    }

    /// A session of its own for one query (an EXPLAIN, or a statement that calls a table
    /// function): Shoal's functions and every table registered, the tables recording into
    /// `recorder`, with the query's own memory pool.
    fn context(&self, recorder: &Arc<ScanRecorder>, view: UpsertView) -> Result<SessionState, QueryError> {
        let mut state = self.session_state(self.query_runtime()?)?;
        self.register_tables(&mut state, |layout, source| {
            Arc::new(self.table(layout, source).for_query(Arc::clone(recorder), view))
        })?;
        Ok(state)
    }

    /// One of Shoal's tables as the engine's options set it up, recording nothing yet.
    fn table(&self, layout: &Arc<TableLayout>, source: &Arc<dyn SnapshotSource>) -> ShoalTable {
        ShoalTable::unrecorded(Arc::clone(layout), Arc::clone(source))
            .with_pruning(self.options.prune)
            .with_scan_cores(self.options.target_partitions)
    }

    /// A session with Shoal's functions and its planning rules, and no tables yet. A
    /// `SessionState`, not a `SessionContext`: each `SessionContext::state()` clones the
    /// function registries.
    fn session_state(&self, runtime: Arc<RuntimeEnv>) -> Result<SessionState, QueryError> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(self.options.target_partitions.max(1) * HASH_PARTITIONS_PER_CORE);
        // Names keep their case; `canonicalize` matches them without regard to case.
        config.options_mut().sql_parser.enable_ident_normalization = false;
        // A partial aggregation whose first batch finds nearly as many groups as rows (a
        // GROUP BY or DISTINCT over a high-cardinality key: users, sessions, ids) hands its
        // rows on to the final one at once, instead of building a hash table of 100,000 rows
        // that reduces nothing first (DataFusion's default probe).
        config.options_mut().execution.skip_partial_aggregation_probe_rows_threshold = SKIP_PROBE_ROWS;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::from_statistics::AggregateFromStatistics))
            .with_physical_optimizer_rule(Arc::new(crate::dictionary_group::DictionaryGroup))
            .with_physical_optimizer_rule(Arc::new(crate::literal::CountLiteralOnce))
            .with_physical_optimizer_rule(Arc::new(guard::YieldEverywhere))
            .build();
        let udfs = scalar_functions()
            .into_iter()
            .chain(guard::capped_functions(self.options.max_value_bytes))
            .chain([self.lookup_udf()]);
        for f in udfs {
            state.register_udf(Arc::new(f)).map_err(QueryError::from_datafusion)?;
        }
        for f in aggregate_functions() {
            state.register_udaf(Arc::new(f)).map_err(QueryError::from_datafusion)?;
        }
        Ok(state)
    }

    /// Registers the app's tables and Shoal's, each of these (under its name and its
    /// `_REALTIME` alias) as `provider` makes it.
    fn register_tables(
        &self,
        state: &mut SessionState,
        mut provider: impl FnMut(&Arc<TableLayout>, &Arc<dyn SnapshotSource>) -> Arc<dyn TableProvider>,
    ) -> Result<(), QueryError> {
        let register =
            |state: &SessionState, name: &str, provider: Arc<dyn TableProvider>| -> Result<(), QueryError> {
                let reference = TableReference::bare(name);
                let schema = state.schema_for_ref(reference.clone()).map_err(QueryError::from_datafusion)?;
                schema
                    .register_table(reference.table().to_string(), provider)
                    .map_err(QueryError::from_datafusion)?;
                Ok(())
            };
        for (name, provider) in self.external.read().unwrap_or_else(|p| p.into_inner()).iter() {
            register(state, name, Arc::clone(provider))?;
        }
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        for (name, t) in tables.iter() {
            for alias in [name.clone(), format!("{name}_REALTIME")] {
                register(state, &alias, provider(&t.layout, &t.source))?;
            }
        }
        Ok(())
    }
}

/// A parsed query with its deadline.
struct Prepared {
    parsed: dialect::ParsedQuery,
    deadline: tokio::time::Instant,
    /// The query's time limit: its `timeoutMs` up to the engine's.
    timeout: Duration,
    /// What parsing took.
    parse: Duration,
}

/// A started query and how its result columns are reshaped.
struct Started {
    stream: QueryStream,
    shape: ResultShape,
}

/// What every query of an engine plans with while its tables stay as they are: DataFusion's
/// session state, built once (its hundreds of functions, its catalog and its rules were a
/// sixth of a short query's time, and up to a third run cold, when each query built its own),
/// and the names the SQL is matched against. A query brings its own memory pool, start time
/// and scan recorder.
#[derive(Debug)]
struct Shared {
    /// Plans the queries that read only Shoal's tables: their scans cut themselves into
    /// partitions by their rows, so DataFusion's round robin stays off.
    shoal_only: SessionState,
    /// Plans the queries that read any other table (an app's, a dimension table,
    /// information_schema), which the round robin spreads, as in an app's own session.
    mixed: SessionState,
    /// The providers of Shoal's tables in both catalogs: a query's scans of these record into
    /// its recorder.
    owned: Vec<Arc<dyn TableProvider>>,
    /// Lowercase spelling → spelling of every table and column.
    names: HashMap<String, String>,
    /// The lowercase names of the multi-value columns.
    multi_value: HashSet<String>,
    /// The registered tables.
    tables: Vec<String>,
    /// Optimised logical plans by their statement's text (after Pinot's dialect is rewritten),
    /// for the statements a dashboard sends again and again: at most [`CACHED_PLANS`]. Kept
    /// with the session they were planned in, so a change of tables drops them.
    plans: Mutex<HashMap<String, Arc<CachedPlan>>>,
}

/// Most plans an engine's cache holds; a full cache is emptied.
const CACHED_PLANS: usize = 256;

/// A statement's optimised logical plan, before its scans are scoped to a query.
#[derive(Debug)]
struct CachedPlan {
    plan: LogicalPlan,
    /// The registered tables it reads, and whether it reads any other.
    read: Vec<String>,
    others: bool,
}

impl Shared {
    /// The cached plan of `key`.
    fn cached(&self, key: &str) -> Option<Arc<CachedPlan>> {
        self.plans.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    /// Keeps `plan` for `key`.
    fn cache(&self, key: String, plan: Arc<CachedPlan>) {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if plans.len() >= CACHED_PLANS {
            plans.clear();
        }
        plans.insert(key, plan);
    }

    /// Whether `provider` is one of Shoal's tables as the engine registered it.
    fn owns(&self, provider: &Arc<dyn TableProvider>) -> bool {
        self.owned.iter().any(|p| std::ptr::addr_eq(Arc::as_ptr(p), Arc::as_ptr(provider)))
    }

    /// `plan` with its scans of Shoal's tables recording into `recorder` and reading `view`.
    fn scoped(
        &self,
        plan: LogicalPlan,
        recorder: &Arc<ScanRecorder>,
        view: UpsertView,
    ) -> Result<LogicalPlan, DataFusionError> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::TableScan(mut scan) = node else { return Ok(Transformed::no(node)) };
            let Some(source) = scan.source.as_ref().downcast_ref::<DefaultTableSource>() else {
                return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
            };
            let provider = &source.table_provider;
            let Some(table) = provider.as_ref().downcast_ref::<ShoalTable>().filter(|_| self.owns(provider))
            else {
                return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
            };
            scan.source = provider_as_source(Arc::new(table.for_query(Arc::clone(recorder), view)));
            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
        })
        .map(|t| t.data)
    }
}

/// The session a query plans in.
enum Session {
    /// The engine's [`Shared`] one, with what is the query's own.
    Shared { shared: Arc<Shared>, recorder: Arc<ScanRecorder>, view: UpsertView, runtime: Arc<RuntimeEnv> },
    /// One of its own ([`plans_alone`]), boxed: a session state is large.
    Own(Box<SessionState>),
}

/// Whether `statement` plans in a session of its own: an EXPLAIN, whose plans DataFusion's
/// session records rule by rule, and a statement that calls a table function, whose
/// arguments are folded (`now()` to the query's start) while the SQL becomes a plan.
fn plans_alone(statement: &DfStatement) -> bool {
    use datafusion::sql::sqlparser::ast::{TableFactor, Visit, Visitor};
    use std::ops::ControlFlow;
    struct TableFunctions;
    impl Visitor for TableFunctions {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            match factor {
                TableFactor::Table { args: Some(_), .. } | TableFactor::Function { .. } => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    match statement {
        DfStatement::Statement(s) => s.visit(&mut TableFunctions).is_break(),
        _ => true,
    }
}

/// The optimizer's view of one query planned in a [`Shared`] session: the session's options
/// and functions, the query's start time (`now()`, `current_date` fold to it) and its own
/// alias names.
struct QueryStart<'a> {
    state: &'a SessionState,
    start: DateTime<Utc>,
    aliases: Arc<AliasGenerator>,
}

impl OptimizerConfig for QueryStart<'_> {
    fn query_execution_start_time(&self) -> Option<DateTime<Utc>> {
        Some(self.start)
    }

    fn alias_generator(&self) -> &Arc<AliasGenerator> {
        &self.aliases
    }

    fn options(&self) -> Arc<ConfigOptions> {
        Arc::clone(self.state.config_options())
    }

    fn function_registry(&self) -> Option<&dyn FunctionRegistry> {
        Some(self.state)
    }
}

/// What planning needs, moved to the planning thread.
struct Planning {
    statement: DfStatement,
    /// The names of the tables and columns the SQL is matched against.
    known: Arc<Shared>,
    max_join_pairs: u64,
    default_limit: Option<usize>,
}

/// A planned and started query.
struct Planned {
    stream: SendableRecordBatchStream,
    plan: Arc<dyn ExecutionPlan>,
    shape: ResultShape,
    tables: Vec<String>,
    /// Its optimised logical plan came from the cache.
    cached: bool,
}

fn timed_out(timeout: Duration) -> QueryError {
    QueryError { kind: ErrorKind::Timeout, message: format!("the query did not finish within {timeout:?}") }
}

/// The `trace` option's answer: what each phase took and the physical plan with its operators'
/// metrics (rows, time), as JSON. Pinot's servers answer a per-operator timing list
/// (pinot-core `TraceContext.java`); Shoal's operators are DataFusion's, so their own metrics.
fn trace(phases: &Phases, plan: &Arc<dyn ExecutionPlan>, stats: &ScanStats) -> String {
    let plan = datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan.as_ref())
        .indent(true)
        .to_string();
    serde_json::json!({
        "parseMs": phases.parse.as_secs_f64() * 1000.0,
        "queuedMs": phases.queued.as_secs_f64() * 1000.0,
        "planMs": phases.plan.as_secs_f64() * 1000.0,
        "planCached": phases.plan_cached,
        "executeMs": phases.started.elapsed().as_secs_f64() * 1000.0,
        "docsScanned": stats.docs_scanned,
        "plan": plan.lines().map(str::trim_end).collect::<Vec<_>>(),
    })
    .to_string()
}

/// Rewrites Pinot's spellings, applies the default limit, refuses anything but reads, plans and
/// starts the statement.
async fn plan_and_start(session: Session, planning: Planning) -> Result<Planned, QueryError> {
    let Planning { mut statement, known, max_join_pairs, default_limit } = planning;
    let (names, multi_value, tables) = (&known.names, &known.multi_value, &known.tables);
    let mut shape = ResultShape::default();
    match &mut statement {
        DfStatement::Statement(s) => {
            canonicalize(s, names);
            if let Statement::Query(q) = s.as_mut() {
                if let Some(limit) = default_limit {
                    dialect::apply_default_limit(q, limit);
                }
                // Named from Pinot's spellings, before they become DataFusion's.
                shape = ResultShape::of(q);
            }
            rewrite(s, multi_value).map_err(QueryError::validation)?;
        }
        DfStatement::Explain(e) => {
            if let DfStatement::Statement(s) = e.statement.as_mut() {
                canonicalize(s, names);
                rewrite(s, multi_value).map_err(QueryError::validation)?;
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
    // The query's start time: now(), current_date and current_timestamp fold to it.
    let start = Utc::now();
    let (physical, task, read, cached) = match session {
        Session::Shared { shared, recorder, view, runtime } => {
            // A statement planned before reuses its optimised logical plan; its scans are scoped
            // to this query after.
            let key = match &statement {
                DfStatement::Statement(s) => Some(s.to_string()),
                _ => None,
            };
            let hit = key.as_deref().and_then(|k| shared.cached(k));
            let cached = hit.is_some();
            let entry = match hit {
                Some(entry) => entry,
                None => {
                    let plan = shared
                        .shoal_only
                        .statement_to_plan(statement)
                        .await
                        .map_err(QueryError::from_datafusion)?;
                    read_only(&plan)?;
                    let (read, others) = tables_read(&plan, tables);
                    let state = if others { &shared.mixed } else { &shared.shoal_only };
                    let config = QueryStart { state, start, aliases: Arc::default() };
                    // A plan that calls a function that is not immutable (now(), ago(),
                    // LOOKUP) folds the query's start or reads what changes: it is not kept.
                    let immutable = immutable(&plan);
                    let analyzed = state
                        .analyzer()
                        .execute_and_check(plan, state.config_options(), |_, _| {})
                        .map_err(QueryError::from_datafusion)?;
                    let optimized = state
                        .optimizer()
                        .optimize(analyzed, &config, |_, _| {})
                        .map_err(QueryError::from_datafusion)?;
                    let entry = Arc::new(CachedPlan { plan: optimized, read, others });
                    if let Some(key) = key.filter(|_| immutable) {
                        shared.cache(key, Arc::clone(&entry));
                    }
                    entry
                }
            };
            // Shoal's scans cut themselves into partitions by their rows: DataFusion's round
            // robin would spread a short scan over every hash partition for nothing but the
            // hand-off. An app's table, a dimension table or information_schema does not
            // partition itself: the round robin spreads its batches, as in an app's own session.
            let state = if entry.others { &shared.mixed } else { &shared.shoal_only };
            let plan =
                shared.scoped(entry.plan.clone(), &recorder, view).map_err(QueryError::from_datafusion)?;
            let physical = state
                .query_planner()
                .create_physical_plan(&plan, state)
                .await
                .map_err(QueryError::from_datafusion)?;
            let task = Arc::new(TaskContext::from(state).with_runtime(runtime));
            (physical, task, entry.read.clone(), cached)
        }
        Session::Own(mut state) => {
            // As SessionContext::state() sets it.
            state.mark_start_execution();
            let plan = state.statement_to_plan(statement).await.map_err(QueryError::from_datafusion)?;
            read_only(&plan)?;
            let (read, others) = tables_read(&plan, tables);
            state.config_mut().options_mut().optimizer.enable_round_robin_repartition = others;
            let physical = state.create_physical_plan(&plan).await.map_err(QueryError::from_datafusion)?;
            let task = state.task_ctx();
            (physical, task, read, false)
        }
    };
    guard::check_join_pairs(&physical, max_join_pairs).map_err(QueryError::from_datafusion)?;
    let stream = datafusion::physical_plan::execute_stream(Arc::clone(&physical), task)
        .map_err(QueryError::from_datafusion)?;
    Ok(Planned { stream, plan: physical, shape, tables: read, cached })
}

/// The registered tables `plan` scans, subqueries included, by their names without
/// `_REALTIME` (Pinot's `tablesQueried` holds raw table names), and whether it scans any other
/// table (an app's, a dimension table, information_schema).
/// Refuses a plan that is not a read.
fn read_only(plan: &LogicalPlan) -> Result<(), QueryError> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| QueryError::validation(format!("{} (Shoal's SQL is read-only)", e.strip_backtrace())))
}

/// Whether every function `plan` calls gives the same answer for the same arguments at any
/// time (no now(), no LOOKUP).
fn immutable(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::{Expr, Volatility};
    let mut immutable = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let fixed = match e {
                    Expr::ScalarFunction(f) => f.func.signature().volatility == Volatility::Immutable,
                    Expr::ScalarVariable(..) => false,
                    _ => true,
                };
                immutable &= fixed;
                Ok(if fixed { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
            })
        })
    });
    immutable
}

fn tables_read(plan: &LogicalPlan, tables: &[String]) -> (Vec<String>, bool) {
    let mut read = BTreeSet::new();
    let mut others = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = scan.table_name.table();
            let raw = name.strip_suffix("_REALTIME").unwrap_or(name);
            if tables.iter().any(|t| t == raw) {
                read.insert(raw.to_string());
            } else {
                others = true;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    (read.into_iter().collect(), others)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use futures::TryStreamExt;

    #[test]
    fn the_engine_builds_its_session_once_while_its_tables_stay() {
        let engine = QueryEngine::default();
        let first = engine.shared().expect("a session");
        assert!(Arc::ptr_eq(&first, &engine.shared().expect("a session")));
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let table = MemTable::try_new(schema, vec![vec![]]).expect("a table");
        engine.register_external("t", Arc::new(table)).expect("registered");
        let second = engine.shared().expect("a session");
        assert!(!Arc::ptr_eq(&first, &second), "a table was registered: a new session");
        assert_eq!(second.names.get("t").map(String::as_str), Some("t"));
        assert!(Arc::ptr_eq(&second, &engine.shared().expect("a session")));
        assert!(engine.deregister_external("t"));
        assert!(!Arc::ptr_eq(&second, &engine.shared().expect("a session")));
    }

    #[test]
    fn a_removed_table_is_let_go_at_once_not_at_the_next_query() {
        #[derive(Debug)]
        struct Empty;
        impl SnapshotSource for Empty {
            fn snapshot(&self) -> crate::provider::TableSnapshot {
                crate::provider::TableSnapshot::new(Vec::new())
            }
        }
        let (schema, _) =
            shoal_segment::Schema::from_json_str(shoal_segment::events::EVENTS_SCHEMA).expect("a schema");
        let layout = Arc::new(TableLayout::new(Arc::new(schema), &shoal_segment::LayoutOptions::default()));
        let engine = QueryEngine::default();
        let source: Arc<dyn SnapshotSource> = Arc::new(Empty);
        let watch = Arc::downgrade(&source);
        engine.register("events", layout, source);
        engine.shared().expect("a session built with the table");
        engine.deregister("events");
        // What the table holds (its files, its data directory's lock) goes with its removal.
        assert!(watch.upgrade().is_none(), "the engine still holds a removed table's source");
    }

    #[tokio::test]
    async fn the_engine_counts_rows_with_a_repeated_literal() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from_iter_values(1..=100))])
                .expect("a batch");
        let engine = QueryEngine::default();
        let table = MemTable::try_new(schema, vec![vec![batch]]).expect("a table");
        engine.register_external("t", Arc::new(table)).expect("registered");
        let query = engine.stream("SELECT count(*) FROM t WHERE x > 10").await.expect("planned");
        let arguments = crate::literal::tests::count_arguments(&query.plan);
        assert_eq!(arguments, [("count(Int64(1))".to_string(), true)]);
        let batches: Vec<RecordBatch> = query.stream.try_collect().await.expect("the rows");
        let column = batches[0].column(0).as_any().downcast_ref::<Int64Array>().expect("a LONG count");
        assert_eq!(column.value(0), 90);
    }
}
