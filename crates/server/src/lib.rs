//! Shoal's HTTP server: Pinot's broker API (`/query/sql`), the controller paths Pinot clients
//! read (`/tables`, `/schemas`, `consumingSegmentsInfo`), health, Prometheus metrics and the
//! query console, over an embedded [`shoal::Engine`]. An app mounts [`Api::router`] on its own
//! axum router; `shoal-server` (and `cargo run --example serve`) is the command line around it.
#![warn(missing_docs)]

pub mod broker;
pub mod cli;
mod console;
pub mod controller;
pub mod http;
mod routes;

use routes::AppState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How the API answers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiOptions {
    /// Every endpoint but the health ones and the console page (which holds no data) needs
    /// `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Answer only requests whose `Host` is a loopback name or address (`localhost`,
    /// `127.0.0.1`, `[::1]`, with any port): a web page the user visits cannot reach a Shoal
    /// bound to loopback through DNS rebinding. Set it when the server listens on loopback.
    pub loopback_hosts_only: bool,
    /// Longest a request may take, reading its body included (default 60 s).
    pub request_timeout: std::time::Duration,
    /// Where queries run: a runtime of their own keeps health checks, metrics and the console
    /// answering while queries use every core. None: the caller's runtime.
    pub query_runtime: Option<tokio::runtime::Handle>,
    /// Basic credentials (`user`, `password`) accepted beside the token, as pinotdb's
    /// `username`/`password` send them.
    pub basic: Option<(String, String)>,
}

/// Builder methods: `ApiOptions::default().with_…(…)`, so that a setting added later breaks no caller.
impl ApiOptions {
    /// Sets [`ApiOptions::token`].
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Sets [`ApiOptions::loopback_hosts_only`].
    pub fn with_loopback_hosts_only(mut self, loopback_hosts_only: bool) -> Self {
        self.loopback_hosts_only = loopback_hosts_only;
        self
    }

    /// Sets [`ApiOptions::request_timeout`].
    pub fn with_request_timeout(mut self, request_timeout: std::time::Duration) -> Self {
        self.request_timeout = request_timeout;
        self
    }

    /// Sets [`ApiOptions::query_runtime`].
    pub fn with_query_runtime(mut self, query_runtime: Option<tokio::runtime::Handle>) -> Self {
        self.query_runtime = query_runtime;
        self
    }

    /// Sets [`ApiOptions::basic`].
    pub fn with_basic(mut self, basic: Option<(String, String)>) -> Self {
        self.basic = basic;
        self
    }
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            token: None,
            loopback_hosts_only: true,
            request_timeout: std::time::Duration::from_secs(60),
            query_runtime: None,
            basic: None,
        }
    }
}

/// Shoal's HTTP API over an engine.
#[derive(Clone)]
pub struct Api {
    state: AppState,
}

impl Api {
    /// The API over `engine`. Called inside a Tokio runtime, it starts the console's lag
    /// sampler there, which stops when the last clone of the API and its routers is dropped.
    pub fn new(engine: shoal::Engine, options: ApiOptions) -> Api {
        let console = console::Console::start(&engine);
        Api {
            state: AppState {
                engine,
                token: options.token.map(Arc::from),
                stopping: Arc::new(AtomicBool::new(false)),
                loopback_hosts_only: options.loopback_hosts_only,
                request_timeout: options.request_timeout,
                query_runtime: options.query_runtime,
                basic: options.basic.map(|(user, password)| {
                    use base64::Engine as _;
                    Arc::from(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
                }),
                console,
            },
        }
    }

    /// The router, to serve or to mount on an app's own.
    pub fn router(&self) -> axum::Router {
        routes::router(self.state.clone())
    }

    /// A shutdown has begun: readiness answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.state.stopping.store(true, Ordering::SeqCst);
    }
}
