//! The command line of the server (`shoal-server`, and `cargo run --example serve`): opens the
//! engine over Pinot table configs and schemas, consumes their Kinesis streams and serves the
//! router.
//!
//! ```text
//! shoal-server --table-config T.json --schema S.json \
//!     [--data-dir DIR] [--listen 127.0.0.1:8099] [--auth-token TOKEN] [--validate]
//! ```
//!
//! `--table-config` and `--schema` may be repeated, once per table, in pairs. With `--validate`
//! it checks the files, prints each normalised table config as JSON (secrets as `***`) and
//! exits 0, or prints every problem and exits 2.

use crate::{Api, ApiOptions};
use clap::Parser;
use serde_json::Value;
use shoal::{Engine, EngineOptions, TableDefinition};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The environment variable that holds the auth token when `--auth-token` is not given.
const TOKEN_ENV: &str = "SHOAL_AUTH_TOKEN";
/// The environment variable that holds Basic credentials when `--basic-auth` is not given.
const BASIC_ENV: &str = "SHOAL_BASIC_AUTH";

#[derive(Parser, Debug)]
#[command(name = "serve", about = "Shoal's SQL server, speaking Pinot's broker API")]
struct Args {
    /// A Pinot table config JSON file (repeat for several tables, each with its --schema).
    #[arg(long = "table-config", value_name = "T.json", required = true)]
    table_configs: Vec<PathBuf>,
    /// The Pinot schema JSON file of the table config in the same position.
    #[arg(long = "schema", value_name = "S.json", required = true)]
    schemas: Vec<PathBuf>,
    /// Where tables keep their segments and manifests.
    #[arg(long, value_name = "DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Address to serve HTTP on (loopback unless told otherwise).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8099")]
    listen: String,
    /// Require `Authorization: Bearer TOKEN` on every endpoint but /health/* and the console
    /// page (better: set SHOAL_AUTH_TOKEN, which `ps` does not show).
    #[arg(long, value_name = "TOKEN")]
    auth_token: Option<String>,
    /// Accept Basic credentials `USER:PASSWORD` too, as pinotdb's username/password send them
    /// (better: set SHOAL_BASIC_AUTH).
    #[arg(long, value_name = "USER:PASSWORD")]
    basic_auth: Option<String>,
    /// Longest a query may run, in milliseconds (a query past it answers Pinot code 250).
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    query_timeout_ms: u64,
    /// Memory one query's operators may hold, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    query_memory_mib: usize,
    /// Most rows one result may hold (more are cut and `partialResult` is set).
    #[arg(long, value_name = "ROWS", default_value_t = 100_000)]
    max_result_rows: usize,
    /// Most bytes one result may hold (more are cut and `partialResult` is set).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    max_result_bytes: usize,
    /// Memory all running queries together may hold, in MiB (a query that needs more than is
    /// free answers Pinot code 245).
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    memory_mib: usize,
    /// Queries that run at once (default: twice the cores, at least 4).
    #[arg(long, value_name = "N")]
    max_concurrent_queries: Option<usize>,
    /// Queries that may wait for a place to run; more are refused at once (Pinot code 211).
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_queued_queries: usize,
    /// The LIMIT a query without one gets, as Pinot's broker (`pinot.broker.default.query.limit`);
    /// -1: no limit.
    #[arg(long, value_name = "ROWS", default_value_t = 10, allow_negative_numbers = true)]
    default_limit: i64,
    /// Threads that run queries (default: the cores), apart from those that answer HTTP and
    /// consume streams, so that health checks, metrics and the console answer under any load.
    #[arg(long, value_name = "N")]
    query_threads: Option<usize>,
    /// Most connections open at once; more are closed as soon as they are accepted.
    #[arg(long, value_name = "N", default_value_t = 512)]
    max_connections: usize,
    /// Longest a client may take to send a request's headers, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Longest a request may take, in milliseconds (default: the query time limit plus 15 s).
    #[arg(long, value_name = "MS")]
    request_timeout_ms: Option<u64>,
    /// The deep store: every sealed segment is uploaded there as Parquet, a lost data
    /// directory is restored from it, and `deep_store` tiers keep old segments only there.
    /// `s3://bucket/prefix` (settings and credentials from the AWS environment, as for
    /// Kinesis: AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true for plain HTTP),
    /// `gs://bucket/prefix`, `az://container/prefix`, or `file:///path`.
    #[arg(long, value_name = "URL")]
    deep_store: Option<String>,
    /// Check the files, print the normalised table configs and exit.
    #[arg(long)]
    validate: bool,
}

/// Runs the server's command line (the process's arguments); the exit code to return.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if args.table_configs.len() != args.schemas.len() {
        eprintln!(
            "error: {} --table-config and {} --schema given: give one schema per table config, in the same order",
            args.table_configs.len(),
            args.schemas.len()
        );
        return ExitCode::from(2);
    }
    let mut definitions = Vec::new();
    let mut failed = false;
    for (table_path, schema_path) in args.table_configs.iter().zip(&args.schemas) {
        match load(table_path, schema_path) {
            Ok((def, table, schema)) => {
                for w in &def.warnings {
                    eprintln!("warning: {}: {w}", table_path.display());
                }
                definitions.push((def, table, schema));
            }
            Err(message) => {
                eprintln!("{message}");
                failed = true;
            }
        }
    }
    if failed {
        return ExitCode::from(2);
    }
    if args.validate {
        let configs: Vec<_> = definitions.iter().map(|(d, _, _)| d.config.normalised_json()).collect();
        let out = if configs.len() == 1 { configs[0].clone() } else { Value::Array(configs) };
        match serde_json::to_string_pretty(&out) {
            Ok(text) => {
                // A closed pipe (`serve --validate | head`) is not an error worth a panic.
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            }
            Err(e) => {
                eprintln!("error: cannot print the config: {e}");
                return ExitCode::from(2);
            }
        }
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
        )
        .init();
    if args.auth_token.is_some() {
        tracing::warn!(
            "--auth-token on the command line is visible to every user of this machine (ps, /proc); set {TOKEN_ENV} instead"
        );
    }
    if args.basic_auth.is_some() {
        tracing::warn!(
            "--basic-auth on the command line is visible to every user of this machine (ps, /proc); set {BASIC_ENV} instead"
        );
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    // One runtime answers HTTP and consumes streams; queries run on one of their own.
    let runtimes = tokio::runtime::Builder::new_multi_thread().enable_all().build().and_then(|io| {
        let queries = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.query_threads.unwrap_or(cores).max(1))
            .thread_name("shoal-query")
            .enable_all()
            .build()?;
        Ok((io, queries))
    });
    let (runtime, queries) = match runtimes {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtimes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let token = args.auth_token.clone().or_else(|| std::env::var(TOKEN_ENV).ok()).filter(|t| !t.is_empty());
    let query_runtime = queries.handle().clone();
    let served = runtime.block_on(serve(args, definitions, token, query_runtime));
    // Dropped outside the other runtime: a runtime cannot be dropped inside one.
    queries.shutdown_timeout(Duration::from_secs(5));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads and validates one table config and its schema; the error lists every problem.
fn load(table_path: &PathBuf, schema_path: &PathBuf) -> Result<(TableDefinition, Value, Value), String> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|e| format!("error: cannot read {}: {e}", p.display()))
    };
    let (table, schema) = match (read(table_path), read(schema_path)) {
        (Ok(t), Ok(s)) => (t, s),
        (t, s) => return Err([t.err(), s.err()].into_iter().flatten().collect::<Vec<_>>().join("\n")),
    };
    let def = TableDefinition::from_json_str(&table, &schema).map_err(|err| {
        let mut lines = vec![format!(
            "error: {} with {} is not valid: {} problem(s)",
            table_path.display(),
            schema_path.display(),
            err.table.len() + err.schema.len()
        )];
        lines.extend(err.table.iter().map(|p| format!("  {}: {p}", table_path.display())));
        lines.extend(err.schema.iter().map(|p| format!("  {}: {p}", schema_path.display())));
        lines.join("\n")
    })?;
    // Both parsed above, so these cannot fail.
    let table: Value = serde_json::from_str(&table).map_err(|e| e.to_string())?;
    let schema: Value = serde_json::from_str(&schema).map_err(|e| e.to_string())?;
    Ok((def, table, schema))
}

async fn serve(
    args: Args,
    definitions: Vec<(TableDefinition, Value, Value)>,
    token: Option<String>,
    query_runtime: tokio::runtime::Handle,
) -> Result<(), String> {
    let defaults = shoal::QueryOptions::default();
    let query_timeout = Duration::from_millis(args.query_timeout_ms.max(1));
    let options = EngineOptions::default()
        .with_query(
            defaults
                .clone()
                .with_timeout(query_timeout)
                .with_memory_limit(args.query_memory_mib.max(1) << 20)
                .with_total_memory(args.memory_mib.max(1) << 20)
                .with_max_result_rows(args.max_result_rows.max(1))
                .with_max_result_bytes(args.max_result_bytes.max(1))
                .with_max_concurrent_queries(
                    args.max_concurrent_queries.unwrap_or(defaults.max_concurrent_queries).max(1),
                )
                .with_max_queued_queries(args.max_queued_queries)
                .with_default_limit(usize::try_from(args.default_limit).ok()),
        )
        .with_deep_store(args.deep_store.as_deref().map(shoal::DeepStoreOptions::new));
    let engine = Engine::open_with(&args.data_dir, options)
        .await
        .map_err(|e| format!("cannot open the engine in {}: {e}", args.data_dir.display()))?;
    for (def, table, schema) in &definitions {
        let name = &def.config.name;
        if engine.tables().contains(name) {
            tracing::info!(table = %name, "table reopened from {}", args.data_dir.display());
            if engine
                .definition(name)
                .map(|d| d.config.original_json() != def.config.original_json())
                .unwrap_or(false)
            {
                tracing::warn!(table = %name, "the table config differs from the one the table was created with; the stored one is used");
            }
        } else {
            engine
                .create_table(table, schema)
                .await
                .map_err(|e| format!("cannot create table {name}: {e}"))?;
            tracing::info!(table = %name, "table created");
        }
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let loopback = local.ip().is_loopback();
    let basic =
        match args.basic_auth.clone().or_else(|| std::env::var(BASIC_ENV).ok()).filter(|b| !b.is_empty()) {
            None => None,
            Some(pair) => match pair.split_once(':') {
                Some((user, password)) if !user.is_empty() => Some((user.to_string(), password.to_string())),
                _ => return Err(format!("--basic-auth ({BASIC_ENV}) must be USER:PASSWORD")),
            },
        };
    let request_timeout =
        args.request_timeout_ms.map(Duration::from_millis).unwrap_or(query_timeout + Duration::from_secs(15));
    let api = Api::new(
        engine.clone(),
        ApiOptions::default()
            .with_token(token.clone())
            .with_loopback_hosts_only(loopback)
            .with_request_timeout(request_timeout)
            .with_query_runtime(Some(query_runtime))
            .with_basic(basic),
    );
    tokio::spawn(progress(engine.clone()));
    println!(
        "Shoal is serving {} table(s) on http://{local}/ (console), Pinot broker API at http://{local}/query/sql",
        engine.tables().len()
    );
    tracing::info!(%local, auth = token.is_some(), "serving");
    let stopping = api.clone();
    let limits = crate::http::ConnectionLimits {
        max_connections: args.max_connections.max(1),
        header_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
        drain_timeout: request_timeout,
    };
    crate::http::serve(listener, api.router(), limits, async move {
        shutdown_signal().await;
        stopping.begin_shutdown();
    })
    .await
    .map_err(|e| format!("server failed: {e}"))?;
    tracing::info!("shutting down: stopping the readers; committed data stays");
    engine.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGINT (Ctrl+C) or SIGTERM and logs which one came.
async fn shutdown_signal() {
    let int = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let name = tokio::select! {
        _ = int => "SIGINT",
        _ = term => "SIGTERM",
    };
    tracing::info!(signal = name, "signal received: no new connections; answering the open ones");
}

/// While a table catches up (MillisBehindLatest > 0), a line per table every 10 s.
async fn progress(engine: Engine) {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let every = Duration::from_secs(10);
    loop {
        tokio::time::sleep(every).await;
        for name in engine.tables() {
            let Ok(status) = engine.table_status(&name) else { continue };
            let rows: u64 = status.shards.iter().map(|s| s.rows_ingested).sum();
            let lag = status.shards.iter().filter_map(|s| s.millis_behind_latest).max().unwrap_or(0);
            let previous = last.insert(name.clone(), rows).unwrap_or(rows);
            if lag > 0 {
                let rate = (rows - previous.min(rows)) as f64 / every.as_secs_f64();
                tracing::info!(table = %name, rows_per_sec = rate as u64, lag_ms = lag, rows, "catching up");
            }
        }
    }
}
