//! The query console in headless Chromium (Debian's `chromium`, driven through `chromedriver`
//! over the WebDriver protocol): type a query, press Ctrl+Enter, read the result table; the
//! page with auth on and under its Content-Security-Policy; its charts, column list, figures
//! and example queries. scripts/test.sh installs both.

mod common;
mod server;

use common::*;
use serde_json::{Value, json};
use server::*;
use shoal_stream::emulator::Emulator;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Driver {
    child: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = request(self.port, "DELETE", &format!("/session/{}", self.session), None, None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webdriver(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let (status, text) = request(port, method, path, None, body.as_deref().map(str::as_bytes)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: {status} {text}"));
    assert_eq!(status, 200, "{method} {path}: {v}");
    v["value"].clone()
}

impl Driver {
    /// A chromedriver and a Chromium session. A port picked free can be taken by another
    /// test's server before chromedriver binds it (chromedriver then exits, and another
    /// process may answer on the port): such a start is retried on a new port.
    fn start() -> Driver {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Driver::try_start() {
                Ok(driver) => return driver,
                Err(e) => failures.push(e),
            }
        }
        panic!("chromedriver gave no session in three tries: {failures:?}");
    }

    fn try_start() -> Result<Driver, String> {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let chromium = chromium.expect("Debian's chromium is needed: apt-get install chromium chromium-driver (scripts/test.sh does this)");
        let port = free_port();
        let mut child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is needed: apt-get install chromium-driver (scripts/test.sh does this)");
        let started = Instant::now();
        while request(port, "GET", "/status", None, None).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("chromedriver on port {port} exited: {status}"));
            }
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The answer may have come from another process on the port: ours must still run.
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("chromedriver on port {port} exited: {status} (the port was taken)"));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let answer = request(port, "POST", "/session", None, Some(caps.to_string().as_bytes()));
        let (status, text) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("new session on port {port}: {e}"));
            }
        };
        assert_eq!(status, 200, "new session: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        Ok(Driver { child, port, session, _profile: profile })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        webdriver(self.port, method, &format!("/session/{}{path}", self.session), body)
    }

    fn find(&self, css: &str) -> Option<String> {
        let body = json!({"using": "css selector", "value": css});
        let (status, text) = request(
            self.port,
            "POST",
            &format!("/session/{}/element", self.session),
            None,
            Some(body.to_string().as_bytes()),
        )
        .unwrap();
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&text).ok()?;
        v["value"].as_object()?.values().next()?.as_str().map(str::to_string)
    }

    /// Runs `body` (a function body, `arguments[0..]` are `args`) in the page; its result.
    fn script(&self, body: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": body, "args": args})))
    }

    /// Polls `body` until it returns something other than null/false; that value.
    fn wait_for(&self, what: &str, body: &str, args: Value) -> Value {
        let started = Instant::now();
        loop {
            let v = self.script(body, args.clone());
            if !v.is_null() && v != json!(false) {
                return v;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{what}: not seen within 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Types `text` into the element at `css` (WebDriver key codes allowed).
    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).unwrap_or_else(|| panic!("no element {css}"));
        self.call("POST", &format!("/element/{id}/value"), Some(json!({ "text": text })));
    }

    fn click(&self, css: &str) {
        let id = self.find(css).unwrap_or_else(|| panic!("no element {css}"));
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// The browser's console messages since the last call (chromedriver's log endpoint).
    fn browser_log(&self) -> Vec<String> {
        let v = self.call("POST", "/se/log", Some(json!({"type": "browser"})));
        v.as_array().into_iter().flatten().filter_map(|m| m["message"].as_str().map(str::to_string)).collect()
    }

    /// The result table's cells, header first, once it is there.
    fn result_cells(&self) -> Vec<String> {
        let v = self.wait_for(
            "the result table",
            "const t = document.getElementById('result-table'); return t && Array.from(t.querySelectorAll('td, th')).map(c => c.textContent)",
            json!([]),
        );
        v.as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_runs_a_query_and_shows_the_result_table() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("views", 1).await.unwrap();
    let t = now_ms();
    for i in 0..42 {
        emulator.put("views", "k", record(i, t).as_bytes()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let table = table_config("views", "views", &emulator.endpoint(), 100_000);
    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let server = Server::start(&path, &table, &schema("views"), &[]);
        let started = Instant::now();
        while count(&server, None, "views") != 42 {
            assert!(started.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(200));
        }
        let driver = Driver::start();
        driver.call("POST", "/url", Some(json!({"url": format!("http://127.0.0.1:{}/", server.port)})));
        let sql = driver.find("#sql").expect("the SQL box");
        driver.call("POST", &format!("/element/{sql}/clear"), Some(json!({})));
        driver.call("POST", &format!("/element/{sql}/value"), Some(json!({"text": "SELECT count(*) AS n, max(id) AS top FROM views"})));
        // Ctrl+Enter runs it (Control held, then Enter, then release).
        driver.call("POST", &format!("/element/{sql}/value"), Some(json!({"text": "\u{E009}\u{E007}\u{E000}"})));
        let started = Instant::now();
        let cells = loop {
            if driver.find("#result-table").is_some() {
                let script = json!({"script": "return Array.from(document.querySelectorAll('#result-table td, #result-table th')).map(c => c.textContent)", "args": []});
                let v = driver.call("POST", "/execute/sync", Some(script));
                break v.as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect::<Vec<_>>();
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no result table appeared");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(cells, ["n LONG", "top DOUBLE", "42", "41"]);
        // An error is shown as such.
        driver.call("POST", &format!("/element/{sql}/clear"), Some(json!({})));
        driver.call("POST", &format!("/element/{sql}/value"), Some(json!({"text": "SELECT nope FROM views\u{E009}\u{E007}\u{E000}"})));
        let started = Instant::now();
        loop {
            let script = json!({"script": "return document.getElementById('error').textContent", "args": []});
            let text = driver.call("POST", "/execute/sync", Some(script));
            if text.as_str().is_some_and(|t| t.contains("[710]")) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no error shown: {text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
}

const TOKEN: &str = "console-test-token";

/// `GET path` without a token: the status line and headers (lower-cased names), and the body.
fn head_and_body(port: u16, path: &str) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A server over one `views` stream of 42 records, `ts` 20 s apart over the last 14 minutes;
/// with `extra` flags.
async fn serve_views(extra: &'static [&'static str]) -> (Emulator, tempfile::TempDir, Server) {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("views", 1).await.unwrap();
    let first = now_ms() - 15 * 60_000;
    for i in 0..42 {
        emulator.put("views", "k", record(i, first + i as i64 * 20_000).as_bytes()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let table = table_config("views", "views", &emulator.endpoint(), 100_000);
    let path = dir.path().to_path_buf();
    let token = extra.iter().position(|a| *a == "--auth-token").map(|i| extra[i + 1]);
    let server = tokio::task::spawn_blocking(move || {
        let server = Server::start(&path, &table, &schema("views"), extra);
        let started = Instant::now();
        while count(&server, token, "views") != 42 {
            assert!(started.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    })
    .await
    .unwrap();
    (emulator, dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_on_the_page_loads_without_a_token_and_its_calls_carry_the_typed_one() {
    let (_emulator, _dir, server) = serve_views(&["--auth-token", TOKEN]).await;
    tokio::task::spawn_blocking(move || {
        // The page needs no token and comes with its headers; the API still needs one.
        let (status, headers, body) = head_and_body(server.port, "/");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<textarea id=\"sql\""));
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&headers, "x-frame-options"), Some("DENY"));
        let csp = header(&headers, "content-security-policy").expect("a Content-Security-Policy");
        for directive in [
            "default-src 'none'",
            "script-src 'sha256-",
            "style-src 'sha256-",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} missing from {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        for path in ["/tables", "/tables/views/lag", "/schemas/views", "/query/sql?sql=SELECT%201"] {
            assert_eq!(head_and_body(server.port, path).0, 401, "{path} without the token");
        }
        let (status, lag) = server.get("/tables/views/lag", Some(TOKEN)).unwrap();
        assert_eq!(status, 200, "{lag}");
        let lag: Value = serde_json::from_str(&lag).unwrap();
        assert_eq!(lag["table"], "views");
        assert!(lag["samples"].is_array(), "{lag}");
        assert_eq!(server.get("/tables/nope/lag", Some(TOKEN)).unwrap().0, 404);

        let driver = Driver::start();
        driver.call("POST", "/url", Some(json!({"url": format!("http://127.0.0.1:{}/", server.port)})));
        // The page's own style applied (its hash is in style-src) and its script ran (script-src):
        // the first call, without a token, is refused and the page says why.
        let display = driver.script("return getComputedStyle(document.body).display", json!([]));
        assert_eq!(display, "grid", "the page's stylesheet was not applied");
        let said = driver.wait_for(
            "the page asking for a token",
            "const a = document.getElementById('auth'); return !a.hidden && a.textContent",
            json!([]),
        );
        assert!(said.as_str().unwrap().contains("needs an auth token"), "{said}");
        // A query without the token: a clear error, no result.
        driver.call("POST", &format!("/element/{}/clear", driver.find("#sql").unwrap()), Some(json!({})));
        driver.type_into("#sql", "SELECT count(*) AS n, max(id) AS top FROM views\u{E009}\u{E007}\u{E000}");
        let error = driver.wait_for(
            "the query's error",
            "return document.getElementById('error').textContent || null",
            json!([]),
        );
        assert!(error.as_str().unwrap().contains("needs an auth token (401)"), "{error}");
        assert!(driver.find("#result-table").is_none());
        // With the token typed, the same query runs; the token is not stored.
        driver.type_into("#token", TOKEN);
        driver.type_into("#sql", "\u{E009}\u{E007}\u{E000}");
        assert_eq!(driver.result_cells(), ["n LONG", "top DOUBLE", "42", "41"]);
        assert_eq!(driver.script("return document.getElementById('error').textContent", json!([])), "");
        assert_eq!(driver.script("return document.getElementById('auth').hidden", json!([])), true);
        driver.wait_for("the table list", "return document.querySelector('section.table[data-table=views]') !== null", json!([]));
        assert_eq!(driver.script("return localStorage.getItem('shoalToken')", json!([])), Value::Null);
        // Ticking "remember on this device" stores it; unticking forgets it.
        driver.click("#remember");
        assert_eq!(driver.script("return localStorage.getItem('shoalToken')", json!([])), TOKEN);
        driver.click("#remember");
        assert_eq!(driver.script("return localStorage.getItem('shoalToken')", json!([])), Value::Null);
        // Nothing the page did was refused by its policy; the policy is enforced: a script
        // injected inline does not run.
        let refused: Vec<String> = driver.browser_log().into_iter().filter(|m| m.contains("Content Security Policy")).collect();
        assert!(refused.is_empty(), "the page broke its own policy: {refused:?}");
        let injected = driver.script(
            "const s = document.createElement('script'); s.textContent = 'window.injected = true'; document.body.appendChild(s); return window.injected === true",
            json!([]),
        );
        assert_eq!(injected, false, "an inline script not in the policy ran");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_charts_time_series_and_lag_lists_columns_shows_figures_and_runs_examples() {
    let (_emulator, dir, server) = serve_views(&[]).await;
    let shot = dir.path().join("console.png");
    tokio::task::spawn_blocking(move || {
        let driver = Driver::start();
        driver.call("POST", "/window/rect", Some(json!({"width": 1280, "height": 900})));
        driver.call("POST", "/url", Some(json!({"url": format!("http://127.0.0.1:{}/", server.port)})));
        // The lag chart: the sampler's points for the table's shard, drawn.
        let points = driver.wait_for(
            "the lag chart",
            "const p = document.querySelector('section.table[data-table=views] svg.lag-chart polyline'); return p && p.getAttribute('points')",
            json!([]),
        );
        assert!(!points.as_str().unwrap().trim().is_empty(), "an empty lag line");
        // The columns, from the schema; a click inserts a name at the cursor.
        let columns = driver.wait_for(
            "the column list",
            "const b = Array.from(document.querySelectorAll('section.table[data-table=views] button.column')); return b.length > 0 && b.map(x => x.dataset.column)",
            json!([]),
        );
        assert_eq!(columns, json!(["key", "id", "ts"]));
        driver.script(
            "const s = document.getElementById('sql'); s.value = 'SELECT  FROM views'; s.setSelectionRange(7, 7)",
            json!([]),
        );
        driver.click("section.table[data-table=views] button.column[data-column=key]");
        assert_eq!(driver.script("return document.getElementById('sql').value", json!([])), "SELECT key FROM views");
        // Example queries from the schema: a count, a GROUP BY on the STRING dimension, a
        // DATETRUNC series on the time column. A click fills the SQL box; it runs.
        let examples = driver.script(
            "return Array.from(document.querySelectorAll('section.table[data-table=views] button.example')).map(b => b.textContent)",
            json!([]),
        );
        let examples: Vec<String> = serde_json::from_value(examples).unwrap();
        assert_eq!(examples[0], "SELECT count(*) FROM views");
        assert!(examples.iter().any(|e| e.contains("GROUP BY key")), "{examples:?}");
        let series = examples.iter().position(|e| e.contains("DATETRUNC('MINUTE', ts)")).expect("a time series");
        driver.click(&format!("section.table[data-table=views] li:nth-child({}) button.example", series + 1));
        assert_eq!(driver.script("return document.getElementById('sql').value", json!([])), examples[series]);
        driver.click("#run");
        let cells = driver.result_cells();
        assert_eq!(cells[..3], ["minute LONG", "n LONG", "id_sum DOUBLE"]);
        let rows = (cells.len() - 3) / 3;
        // 42 records 20 s apart: 14 or 15 whole minutes, every record counted once.
        assert!((14..=16).contains(&rows), "{cells:?}");
        let counted: i64 = cells[3..].chunks(3).map(|r| r[1].parse::<i64>().unwrap()).sum();
        assert_eq!(counted, 42);
        // The chart: one line (per value column) with a point per row.
        let lines = driver.wait_for(
            "the result chart",
            "const c = document.getElementById('result-chart'); return c && Array.from(c.querySelectorAll('polyline')).map(p => p.getAttribute('points').trim().split(/\\s+/).length)",
            json!([]),
        );
        assert_eq!(lines, json!([rows, rows]), "two value columns, {rows} points each");
        // The response's figures.
        let figures = driver.script(
            "return Object.fromEntries(Array.from(document.querySelectorAll('#figures dd')).map(d => [d.dataset.figure, d.textContent]))",
            json!([]),
        );
        assert_eq!(figures["numDocsScanned"], "42 of 42", "{figures}");
        assert_eq!(figures["numRowsResultSet"], rows.to_string(), "{figures}");
        assert!(figures["timeUsedMs"].as_str().unwrap().ends_with(" ms"), "{figures}");
        let queried: i64 = figures["numSegmentsQueried"].as_str().unwrap().parse().unwrap();
        let processed: i64 = figures["numSegmentsProcessed"].as_str().unwrap().parse().unwrap();
        assert!(queried >= 1, "{figures}");
        assert_eq!(figures["numSegmentsPruned"], (queried - processed).to_string(), "{figures}");
        // The rows are in a consuming segment: its age shows.
        assert!(figures["freshness"].as_str().unwrap().ends_with(" old"), "{figures}");
        // A TIMESTAMP text column charts too; a result whose first column is no time does not.
        let drawn = driver.script(
            "drawResultChart({dataSchema: {columnNames: ['t', 'v'], columnDataTypes: ['TIMESTAMP', 'DOUBLE']}, rows: [['2024-01-31 12:00:00.0', 1.5], ['2024-01-31 12:01:00.0', 3], ['2024-01-31 12:02:00.0', 2]]}); const p = document.querySelector('#result-chart polyline'); return p && p.getAttribute('points').trim().split(/\\s+/).length",
            json!([]),
        );
        assert_eq!(drawn, 3);
        driver.script("document.getElementById('sql').value = 'SELECT count(*) AS n FROM views'", json!([]));
        driver.click("#run");
        driver.wait_for("a count", "const t = document.getElementById('result-table'); return t && t.rows.length === 2 && t.rows[0].textContent.startsWith('n ')", json!([]));
        assert_eq!(driver.script("return document.getElementById('result-chart') === null", json!([])), true);
        // The series again, for a screenshot of the page with both charts.
        driver.click(&format!("section.table[data-table=views] li:nth-child({}) button.example", series + 1));
        driver.click("#run");
        driver.wait_for("the result chart", "return document.getElementById('result-chart') !== null", json!([]));
        take_screenshot(&driver, &shot);
    })
    .await
    .unwrap();
}

/// Saves the window's screenshot to `path` and checks it is a picture, not one colour: decoded
/// (by the browser, on a blank page), it has many colours and many pixels unlike the commonest.
fn take_screenshot(driver: &Driver, path: &std::path::Path) {
    use base64::Engine as _;
    let png64 = driver.call("GET", "/screenshot", None).as_str().expect("a base64 PNG").to_string();
    let png = base64::engine::general_purpose::STANDARD.decode(&png64).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    std::fs::write(path, &png).unwrap();
    println!("console screenshot: {}", path.display());
    driver.call("POST", "/url", Some(json!({"url": "about:blank"})));
    let decode = "const done = arguments[1]; const img = new Image(); \
        img.onload = () => { const c = document.createElement('canvas'); c.width = img.width; c.height = img.height; \
          const g = c.getContext('2d'); g.drawImage(img, 0, 0); const d = g.getImageData(0, 0, c.width, c.height).data; \
          const counts = new Map(); for (let i = 0; i < d.length; i += 4) { const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2]; counts.set(k, (counts.get(k) || 0) + 1); } \
          done({width: c.width, height: c.height, colours: counts.size, commonest: Math.max(...counts.values())}); }; \
        img.onerror = () => done(null); img.src = 'data:image/png;base64,' + arguments[0];";
    let seen = driver.call("POST", "/execute/async", Some(json!({"script": decode, "args": [png64]})));
    let pixels = seen["width"].as_f64().unwrap() * seen["height"].as_f64().unwrap();
    assert!(pixels >= 640.0 * 480.0, "a small screenshot: {seen}");
    assert!(seen["colours"].as_u64().unwrap() >= 16, "a screenshot of few colours: {seen}");
    let others = pixels - seen["commonest"].as_f64().unwrap();
    assert!(others / pixels >= 0.02, "a screenshot of mostly one colour: {seen}");
}
