//! The query console in headless Chromium (Debian's `chromium`, driven through `chromedriver`
//! over the WebDriver protocol): type a query, press Ctrl+Enter, read the result table.
//! scripts/test.sh installs both.

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
    fn start() -> Driver {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let chromium = chromium.expect("Debian's chromium is needed: apt-get install chromium chromium-driver (scripts/test.sh does this)");
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is needed: apt-get install chromium-driver (scripts/test.sh does this)");
        let started = Instant::now();
        while request(port, "GET", "/status", None, None).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
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
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": args}}}});
        let (status, text) =
            request(port, "POST", "/session", None, Some(caps.to_string().as_bytes())).unwrap();
        assert_eq!(status, 200, "new session: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        Driver { child, port, session, _profile: profile }
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
        assert_eq!(cells, ["n LONG", "top LONG", "42", "41"]);
        // An error is shown as such.
        driver.call("POST", &format!("/element/{sql}/clear"), Some(json!({})));
        driver.call("POST", &format!("/element/{sql}/value"), Some(json!({"text": "SELECT nope FROM views\u{E009}\u{E007}\u{E000}"})));
        let started = Instant::now();
        loop {
            let script = json!({"script": "return document.getElementById('error').textContent", "args": []});
            let text = driver.call("POST", "/execute/sync", Some(script));
            if text.as_str().is_some_and(|t| t.contains("[150]")) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no error shown: {text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
}
