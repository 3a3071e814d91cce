//! The router and its handlers: Pinot's broker API, the controller paths, health, metrics and
//! the console.

use crate::broker;
use crate::console::{self, Console};
use crate::controller;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use shoal::Engine;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest request body accepted.
const BODY_LIMIT: usize = 1 << 20;

#[derive(Clone)]
pub(crate) struct AppState {
    pub engine: Engine,
    pub token: Option<Arc<str>>,
    /// Set when a shutdown began: readiness answers 503 from then on.
    pub stopping: Arc<AtomicBool>,
    pub loopback_hosts_only: bool,
    pub request_timeout: std::time::Duration,
    pub query_runtime: Option<tokio::runtime::Handle>,
    /// Basic credentials, base64 of `user:password`, as a client sends them.
    pub basic: Option<Arc<str>>,
    /// The console page's headers and the lag history it charts.
    pub console: Arc<Console>,
}

pub(crate) fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/query/sql", get(query_get).post(query_post))
        .route("/tables", get(list_tables))
        .route("/tables/{name}", get(table_config))
        .route("/tables/{name}/consumingSegmentsInfo", get(consuming_info))
        .route("/tables/{name}/status", get(table_status))
        .route("/tables/{name}/lag", get(console::table_lag))
        .route("/schemas/{name}", get(table_schema))
        .route("/tables/{name}/schema", get(table_schema))
        .route("/tables/{name}/pauseConsumption", post(pause_consumption))
        .route("/tables/{name}/resumeConsumption", post(resume_consumption))
        .route("/tables/{name}/pauseStatus", get(pause_status))
        .route("/tables/{name}/forceCommit", post(force_commit))
        .route("/tables/{name}/size", get(table_size))
        .route("/segments/{name}", get(segment_list))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/health", get(readiness))
        .route("/health/readiness", get(readiness))
        .route("/health/liveness", get(liveness))
        // The console page holds no data: it is served without a token, its API calls need one.
        .route("/", get(console::page))
        .merge(protected)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), limit_time))
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Refuses requests to a loopback-bound server whose `Host` is not loopback (DNS rebinding: a
/// web page whose name resolves to 127.0.0.1 would otherwise read Shoal's answers).
async fn check_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.loopback_hosts_only {
        let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        if !is_loopback_host(host) {
            return error(
                StatusCode::FORBIDDEN,
                "this server listens on loopback and answers only requests for localhost, 127.0.0.1 or [::1]",
            );
        }
    }
    next.run(request).await
}

/// `localhost`, an IPv4 loopback address or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host
            .rsplit_once(':')
            .map_or(host, |(name, port)| if port.chars().all(|c| c.is_ascii_digit()) { name } else { host }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Bounds a whole request, reading its body included.
async fn limit_time(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {:?}", state.request_timeout),
        ),
    }
}

/// Headers that keep browsers from reading Shoal's answers in ways they were not meant for:
/// no content sniffing, no framing, and (unless a handler set its own, as the console does) a
/// policy that lets an answer load nothing.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    response
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"code": status.as_u16(), "error": message.into()}))).into_response()
}

/// With a token or Basic credentials set, a request must carry one of them:
/// `Authorization: Bearer <token>`, or `Authorization: Basic <base64 user:password>` as
/// pinotdb sends its `username`/`password` (and Pinot's `BasicAuthAccessControlFactory` reads).
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.token.is_none() && state.basic.is_none() {
        return next.run(request).await;
    }
    let given =
        request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let bearer = given.strip_prefix("Bearer ").zip(state.token.as_deref());
    let basic = given.strip_prefix("Basic ").zip(state.basic.as_deref());
    let ok = bearer.is_some_and(|(g, t)| constant_time_eq(g.as_bytes(), t.as_bytes()))
        || basic.is_some_and(|(g, b)| constant_time_eq(g.trim().as_bytes(), b.as_bytes()));
    if !ok {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong Authorization (Bearer token or Basic credentials)",
        );
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Liveness, as Pinot's `/health/liveness` (pinot-server `HealthCheckResource.java`): 200 `OK`
/// whenever the process answers HTTP.
async fn liveness() -> Response {
    (StatusCode::OK, "OK").into_response()
}

/// Readiness, as Pinot's `/health` and `/health/readiness` (pinot-server
/// `HealthCheckResource.java`, pinot-broker `PinotBrokerHealthCheck.java`: 503 until the
/// service status is GOOD and while shutting down). Ready: every table has a shard CONSUMING.
/// Without a token, so the answer names no table.
async fn readiness(State(state): State<AppState>) -> Response {
    if state.stopping.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let tables = state.engine.tables();
    let waiting = tables.iter().filter(|t| !state.engine.table_status(t).is_ok_and(|s| s.is_ready())).count();
    if waiting == 0 {
        (StatusCode::OK, "OK").into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: {waiting} of {} table(s) have no shard consuming yet (the stream may not exist or its endpoint may not answer; see /tables/{{name}}/status)",
                tables.len()
            ),
        )
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn run_query(state: &AppState, sql: &str, request: shoal::RequestOptions) -> Response {
    let response = match &state.query_runtime {
        // On the queries' own runtime: however hard they work, this one keeps answering.
        Some(runtime) => {
            let (engine, sql) = (state.engine.clone(), sql.to_string());
            match runtime.spawn(async move { broker::answer_with(&engine, &sql, &request).await }).await {
                Ok(r) => r,
                Err(e) if e.is_cancelled() => broker::BrokerResponse::from_error(
                    &shoal_query::QueryError {
                        kind: shoal_query::ErrorKind::Cancelled,
                        message: "the query was cancelled: the server is stopping".into(),
                    },
                    std::time::Duration::ZERO,
                ),
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("the query failed: {e}")),
            }
        }
        None => broker::answer_with(&state.engine, sql, &request).await,
    };
    (StatusCode::OK, Json(response)).into_response()
}

/// Jackson's `asBoolean` of the body's `trace`, as pinot-common `RequestUtils.setOptions` reads
/// it: a boolean, or the text `true`.
fn trace_flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        _ => false,
    }
}

async fn query_get(State(state): State<AppState>, Query(params): Query<HashMap<String, String>>) -> Response {
    // pinot-broker PinotClientRequest.processSqlQueryGet reads `sql` and `trace`; Shoal reads
    // `queryOptions` as well, as the POST body has it.
    let request = shoal::RequestOptions::default()
        .with_query_options(params.get("queryOptions").cloned())
        .with_trace(params.get("trace").is_some_and(|t| t.trim().eq_ignore_ascii_case("true")));
    match params.get("sql").filter(|s| !s.trim().is_empty()) {
        Some(sql) => run_query(&state, sql, request).await,
        None => error(StatusCode::BAD_REQUEST, "missing the sql parameter: /query/sql?sql=SELECT ..."),
    }
}

async fn query_post(
    State(state): State<AppState>,
    headers: header::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // JSON only, as Pinot's clients send it (pinotdb, the Java client): a web page can POST
    // `text/plain` across origins without asking, but not `application/json`.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the query as JSON: Content-Type: application/json and {\"sql\": \"SELECT ...\"}",
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), format!("cannot read the request body: {}", e.body_text())),
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}; send {{\"sql\": \"SELECT ...\"}}"),
            );
        }
    };
    // pinot-common RequestUtils.setOptions: the body's `queryOptions` ("k1=v1;k2=v2") and
    // `trace`.
    let request = shoal::RequestOptions::default()
        .with_query_options(value.get("queryOptions").map(|o| match o {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
        .with_trace(trace_flag(value.get("trace")));
    match value.get("sql").and_then(Value::as_str).filter(|s| !s.trim().is_empty()) {
        Some(sql) => run_query(&state, sql, request).await,
        None => error(StatusCode::BAD_REQUEST, "missing \"sql\": send {\"sql\": \"SELECT ...\"}"),
    }
}

async fn list_tables(State(state): State<AppState>) -> Response {
    Json(json!({"tables": state.engine.tables()})).into_response()
}

async fn table_config(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.engine.definition(&name) {
        Ok(d) => Json(json!({"REALTIME": d.config.normalised_json()})).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn table_schema(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.engine.definition(&name) {
        Ok(d) => Json(d.schema.raw.clone()).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn table_status(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.engine.table_status(&name) {
        Ok(s) => Json(controller::table_status(&s)).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// Pinot's `consumingSegmentsInfo`: per consuming shard, its state, checkpoint, lag and rows.
async fn consuming_info(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.engine.table_status(&name) {
        Ok(status) => Json(controller::consuming_segments_info(&status)).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.engine.metrics().prometheus())
        .into_response()
}

#[derive(serde::Deserialize)]
struct PauseParams {
    comment: Option<String>,
}

/// Pinot's `pauseConsumption`: the consuming segments commit and nothing more is read until
/// `resumeConsumption`, across restarts.
async fn pause_consumption(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Query(params): Query<PauseParams>,
) -> Response {
    match state.engine.pause_consumption(&name, params.comment).await {
        Ok(status) => Json(controller::pause_status(&name, &status)).into_response(),
        Err(e) => engine_error(e),
    }
}

#[derive(serde::Deserialize)]
struct ResumeParams {
    #[serde(rename = "consumeFrom")]
    consume_from: Option<String>,
}

/// Pinot's `resumeConsumption`, from the last commit (Pinot's `consumeFrom=lastConsumed`).
/// `smallest` and `largest` would read rows twice or skip them: refused.
async fn resume_consumption(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Query(params): Query<ResumeParams>,
) -> Response {
    if let Some(from) = params.consume_from.as_deref().filter(|f| !f.eq_ignore_ascii_case("lastConsumed")) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "consumeFrom={from} is not offered: Shoal resumes from the last commit (lastConsumed), so that no row is read twice or skipped"
            ),
        );
    }
    match state.engine.resume_consumption(&name).await {
        Ok(status) => Json(controller::pause_status(&name, &status)).into_response(),
        Err(e) => engine_error(e),
    }
}

async fn pause_status(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.engine.pause_status(&name) {
        Ok(status) => Json(controller::pause_status(&name, &status)).into_response(),
        Err(e) => engine_error(e),
    }
}

/// Pinot's `forceCommit`: every consuming segment that holds rows commits now.
async fn force_commit(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.engine.force_commit(&name).await {
        Ok(segments) => Json(json!({
            "forceCommitStatus": "SUCCESS",
            "forceCommitJobId": format!("{name}-{}", shoal_segment::mutable::now_ms()),
            "segmentsCommitted": segments,
        }))
        .into_response(),
        Err(e) => engine_error(e),
    }
}

async fn table_size(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.engine.table_status(&name) {
        Ok(status) => Json(controller::table_size(&status)).into_response(),
        Err(e) => engine_error(e),
    }
}

async fn segment_list(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.engine.table_status(&name) {
        Ok(status) => Json(controller::segment_list(&status)).into_response(),
        Err(e) => engine_error(e),
    }
}

/// An engine error as JSON: 404 for an unknown table, 500 otherwise.
fn engine_error(e: shoal::Error) -> Response {
    match e {
        shoal::Error::NoSuchTable(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}
