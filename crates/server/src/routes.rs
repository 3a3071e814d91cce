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
use axum::routing::get;
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
        .with_state(state)
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"code": status.as_u16(), "error": message.into()}))).into_response()
}

async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong Authorization: Bearer token");
        }
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
    let waiting =
        tables.iter().filter(|t| !state.engine.table_status(t).is_ok_and(|s| s.is_consuming())).count();
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

async fn run_query(engine: &Engine, sql: &str) -> Response {
    let response = broker::answer(engine, sql).await;
    (StatusCode::OK, Json(response)).into_response()
}

async fn query_get(State(state): State<AppState>, Query(params): Query<HashMap<String, String>>) -> Response {
    match params.get("sql").filter(|s| !s.trim().is_empty()) {
        Some(sql) => run_query(&state.engine, sql).await,
        None => error(StatusCode::BAD_REQUEST, "missing the sql parameter: /query/sql?sql=SELECT ..."),
    }
}

async fn query_post(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
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
    match value.get("sql").and_then(Value::as_str).filter(|s| !s.trim().is_empty()) {
        Some(sql) => run_query(&state.engine, sql).await,
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
        Ok(s) => Json(s).into_response(),
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
