//! Read-only SQL over the registered tables, under time, memory and result-size limits.

use crate::functions::{aggregate_functions, scalar_functions};
use crate::provider::{ScanStats, ShoalTable, SnapshotSource};
use crate::rewrite::{canonicalize, rewrite};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::DataFusionError;
use datafusion::common::TableReference;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use futures::StreamExt;
use shoal_segment::TableLayout;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

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
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            timeout: Duration::from_secs(30),
            memory_limit: 2 << 30,
            max_result_rows: 100_000,
            target_partitions: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            prune: true,
        }
    }
}

/// What kind of failure a query met, with Pinot's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The SQL does not parse, names what does not exist, or is not allowed (150).
    Validation,
    /// Execution failed, including the memory limit (200).
    Execution,
    /// The time limit passed (250).
    Timeout,
}

impl ErrorKind {
    /// Pinot's error code.
    pub fn pinot_code(self) -> i32 {
        match self {
            ErrorKind::Validation => 150,
            ErrorKind::Execution => 200,
            ErrorKind::Timeout => 250,
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
            _ => ErrorKind::Execution,
        };
        QueryError { kind, message: e.to_string() }
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
    /// True when rows were cut at the result limit.
    pub truncated: bool,
}

/// A query whose rows arrive as a stream.
pub struct QueryStream {
    /// The rows.
    pub stream: SendableRecordBatchStream,
    stats: Arc<Mutex<ScanStats>>,
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
#[derive(Debug, Default)]
pub struct QueryEngine {
    tables: RwLock<BTreeMap<String, Registered>>,
    options: QueryOptions,
}

impl QueryEngine {
    /// An engine with `options`.
    pub fn new(options: QueryOptions) -> QueryEngine {
        QueryEngine { tables: RwLock::default(), options }
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
        let stats = Arc::new(Mutex::new(ScanStats::default()));
        let ctx = self.context(&stats)?;
        let mut statements =
            DFParser::parse_sql(sql).map_err(|e| QueryError::validation(format!("SQL parse error: {e}")))?;
        if statements.len() != 1 {
            return Err(QueryError::validation(format!(
                "expected one SQL statement, found {}",
                statements.len()
            )));
        }
        let mut statement = statements.pop_front().expect("one statement");
        let names = self.known_names();
        match &mut statement {
            DfStatement::Statement(s) => {
                rewrite(s);
                canonicalize(s, &names);
            }
            DfStatement::Explain(e) => {
                if let DfStatement::Statement(s) = e.statement.as_mut() {
                    rewrite(s);
                    canonicalize(s, &names);
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
        let state = ctx.state();
        let plan = tokio::time::timeout(self.options.timeout, state.statement_to_plan(statement))
            .await
            .map_err(|_| QueryError { kind: ErrorKind::Timeout, message: "planning timed out".into() })?
            .map_err(QueryError::from_datafusion)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| {
                QueryError::validation(format!("{} (Shoal's SQL is read-only)", e.strip_backtrace()))
            })?;
        let frame = ctx.execute_logical_plan(plan).await.map_err(QueryError::from_datafusion)?;
        let stream = frame.execute_stream().await.map_err(QueryError::from_datafusion)?;
        Ok(QueryStream { stream, stats })
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
        let query = tokio::time::timeout_at(deadline, self.stream(sql)).await.map_err(|_| timed_out())??;
        let QueryStream { mut stream, stats } = query;
        let schema = stream.schema();
        let max_rows = self.options.max_result_rows;
        let gather = tokio::spawn(async move {
            let mut batches = Vec::new();
            let mut rows = 0;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(QueryError::from_datafusion)?;
                let room = max_rows - rows;
                if batch.num_rows() > room {
                    batches.push(batch.slice(0, room));
                    return Ok((batches, true));
                }
                rows += batch.num_rows();
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

    /// Lowercase spelling → spelling of every table (both names) and column.
    fn known_names(&self) -> HashMap<String, String> {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        let mut names = HashMap::new();
        for (name, t) in tables.iter() {
            for field in t.layout.arrow.fields() {
                names.insert(field.name().to_lowercase(), field.name().clone());
            }
            for alias in [name.clone(), format!("{name}_REALTIME")] {
                names.insert(alias.to_lowercase(), alias);
            }
        }
        names
    }

    fn context(&self, stats: &Arc<Mutex<ScanStats>>) -> Result<SessionContext, QueryError> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(self.options.target_partitions.max(1));
        // Names keep their case; `canonicalize` matches them without regard to case.
        config.options_mut().sql_parser.enable_ident_normalization = false;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.options.memory_limit, 1.0)
            .build_arc()
            .map_err(QueryError::from_datafusion)?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for f in scalar_functions() {
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
