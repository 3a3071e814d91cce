//! The query console: its page, served without a token (it holds no data; its API calls carry
//! the token the user types) under headers that keep it from being framed or running anything
//! but its own inline script and style, and the ingestion-lag history it charts.

use crate::routes::{AppState, error};
use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use shoal::{Engine, ShardState};
use shoal_segment::mutable::now_ms;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The page, one file compiled in.
const HTML: &str = include_str!("console.html");

/// How often the sampler reads each table's lag.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How much lag history each table keeps.
const WINDOW: Duration = Duration::from_secs(600);
/// Shards kept per sample: a stream resharded into more would make an unreadable chart, and the
/// history stays bounded whatever the stream does.
const MAX_SHARDS: usize = 256;

/// The console's state: the page with its headers, and the lag history.
pub(crate) struct Console {
    csp: HeaderValue,
    lag: Mutex<HashMap<String, VecDeque<Tick>>>,
    sampler: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(task) = self.sampler.get_mut().take() {
            task.abort();
        }
    }
}

/// Each shard's MillisBehindLatest (None until its first answer).
type ShardLags = Vec<(String, Option<i64>)>;

/// One read of a table's shards.
struct Tick {
    time_ms: i64,
    shards: ShardLags,
}

/// One point of the lag endpoint's answer.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct LagSample<'a> {
    time_ms: i64,
    shard: &'a str,
    millis_behind_latest: Option<i64>,
}

impl Console {
    /// The console over `engine`; its lag sampler runs on the current Tokio runtime (without
    /// one, nothing is sampled and the lag endpoint answers no samples) until the console is
    /// dropped.
    pub(crate) fn start(engine: &Engine) -> Arc<Console> {
        let console = Arc::new(Console {
            csp: HeaderValue::from_str(&content_security_policy(HTML))
                .expect("a CSP made of base64 hashes and ASCII keywords is a valid header value"),
            lag: Mutex::new(HashMap::new()),
            sampler: Mutex::new(None),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let task = runtime.spawn(sample(engine.clone(), Arc::downgrade(&console)));
            *console.sampler.lock() = Some(task.abort_handle());
        } else {
            tracing::warn!("no Tokio runtime: the console's lag history stays empty");
        }
        console
    }

    /// Keeps one tick per table, drops ticks past the window and tables no longer listed.
    fn record(&self, now: i64, reads: Vec<(String, ShardLags)>) {
        let mut lag = self.lag.lock();
        lag.retain(|name, _| reads.iter().any(|(n, _)| n == name));
        let oldest = now - WINDOW.as_millis() as i64;
        let most = (WINDOW.as_millis() / SAMPLE_EVERY.as_millis()) as usize + 1;
        for (name, mut shards) in reads {
            shards.truncate(MAX_SHARDS);
            let ticks = lag.entry(name).or_default();
            ticks.push_back(Tick { time_ms: now, shards });
            while ticks.len() > most || ticks.front().is_some_and(|t| t.time_ms < oldest) {
                ticks.pop_front();
            }
        }
    }
}

/// Every `SAMPLE_EVERY`, each table's consuming shards and their MillisBehindLatest.
async fn sample(engine: Engine, console: Weak<Console>) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(console) = console.upgrade() else { return };
        let reads = engine
            .tables()
            .into_iter()
            .filter_map(|name| {
                let status = engine.table_status(&name).ok()?;
                let shards = status
                    .shards
                    .into_iter()
                    .filter(|s| s.state != ShardState::Ended)
                    .map(|s| (s.shard, s.millis_behind_latest))
                    .collect();
                Some((name, shards))
            })
            .collect();
        console.record(now_ms(), reads);
    }
}

/// `GET /`: the console page.
pub(crate) async fn page(State(state): State<AppState>) -> Response {
    let mut response = axum::response::Html(HTML).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, state.console.csp.clone());
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /tables/{name}/lag`: the table's lag history, oldest first, one point per shard and
/// sample.
pub(crate) async fn table_lag(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    if let Err(e) = state.engine.definition(&name) {
        return error(StatusCode::NOT_FOUND, e.to_string());
    }
    let lag = state.console.lag.lock();
    let samples: Vec<LagSample> = lag
        .get(&name)
        .into_iter()
        .flatten()
        .flat_map(|tick| {
            tick.shards.iter().map(|(shard, millis)| LagSample {
                time_ms: tick.time_ms,
                shard,
                millis_behind_latest: *millis,
            })
        })
        .collect();
    Json(json!({
        "table": name,
        "intervalMs": SAMPLE_EVERY.as_millis() as u64,
        "windowMs": WINDOW.as_millis() as u64,
        "samples": samples,
    }))
    .into_response()
}

/// The page's policy: nothing but its own inline script and style (by hash), calls to its own
/// origin, no framing, no forms, no `<base>`.
fn content_security_policy(html: &str) -> String {
    let script = inline(html, "script").expect("console.html has one inline <script>");
    let style = inline(html, "style").expect("console.html has one inline <style>");
    format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        csp_hash(script),
        csp_hash(style)
    )
}

/// The text of the one `<tag>` element without attributes in `html` (None unless exactly one).
fn inline<'a>(html: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = html.find(&open)? + open.len();
    let end = start + html[start..].find(&close)?;
    let rest = &html[end..];
    (!rest.contains(&open) && !html[..start].contains(&format!("<{tag} "))).then_some(&html[start..end])
}

/// A CSP source expression for an inline element's text: `sha256-<base64 of its SHA-256>`.
fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256_in_base64() {
        // SHA-256 of the empty string and of "abc" (FIPS 180-2, appendix B.1), in base64.
        assert_eq!(csp_hash(""), "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(csp_hash("abc"), "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    }

    #[test]
    fn the_policy_hashes_the_pages_own_script_and_style() {
        let script = inline(HTML, "script").unwrap();
        let style = inline(HTML, "style").unwrap();
        assert!(script.contains("fetch("), "not the page's script: {script}");
        assert!(style.contains("body"), "not the page's style: {style}");
        let csp = content_security_policy(HTML);
        assert!(csp.contains(&format!("script-src '{}'", csp_hash(script))), "{csp}");
        assert!(csp.contains(&format!("style-src '{}'", csp_hash(style))), "{csp}");
        assert!(csp.starts_with("default-src 'none'; "), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }

    #[test]
    fn only_one_bare_element_is_hashed() {
        assert_eq!(inline("<p><script>a</script></p>", "script"), Some("a"));
        assert_eq!(inline("<script>a</script><script>b</script>", "script"), None);
        assert_eq!(inline("<script src=x></script><script>b</script>", "script"), None);
        assert_eq!(inline("<p></p>", "script"), None);
    }

    fn console() -> Console {
        Console {
            csp: HeaderValue::from_static(""),
            lag: Mutex::new(HashMap::new()),
            sampler: Mutex::new(None),
        }
    }

    fn read(table: &str, lag: i64) -> (String, ShardLags) {
        (table.to_string(), vec![("shard-0".to_string(), Some(lag)), ("shard-1".to_string(), None)])
    }

    #[test]
    fn the_history_keeps_ten_minutes_per_table_and_forgets_dropped_tables() {
        let console = console();
        let step = SAMPLE_EVERY.as_millis() as i64;
        for i in 0..500 {
            console.record(i * step, vec![read("a", i), read("b", i)]);
        }
        let lag = console.lag.lock();
        let a = &lag["a"];
        assert_eq!(a.len(), 121, "10 minutes at one tick per 5 s, both ends kept");
        assert_eq!(a.front().unwrap().time_ms, 379 * step);
        assert_eq!(a.back().unwrap().shards[0], ("shard-0".to_string(), Some(499)));
        drop(lag);
        // A gap longer than the window leaves only the new tick; a table gone is forgotten.
        console.record(10_000 * step, vec![read("a", 1)]);
        let lag = console.lag.lock();
        assert_eq!(lag["a"].len(), 1);
        assert!(!lag.contains_key("b"));
    }

    #[test]
    fn a_tick_keeps_a_bounded_number_of_shards() {
        let console = console();
        let shards = (0..1000).map(|i| (format!("shard-{i}"), Some(i))).collect();
        console.record(0, vec![("a".to_string(), shards)]);
        assert_eq!(console.lag.lock()["a"][0].shards.len(), MAX_SHARDS);
    }
}
