//! Helpers to run the `serve` example and talk HTTP to it (a small HTTP/1.1 client, so the
//! tests need no client library).
#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The `serve` example, built (or found up to date) once per test binary.
pub fn serve_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--example", "serve"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build --example serve");
            assert!(status.success(), "cargo build --example serve failed");
            let exe = std::env::current_exe().expect("test binary path");
            let target = exe.parent().and_then(Path::parent).expect("target/<profile>");
            let built = target.join("examples").join(format!("serve{}", std::env::consts::EXE_SUFFIX));
            // A copy of this test process's own: another checkout sharing the target directory
            // may build `serve` again while these tests run. Copies of processes gone are removed.
            let copies = target.join("serve-copies");
            std::fs::create_dir_all(&copies).expect("a directory for serve copies");
            for entry in std::fs::read_dir(&copies).into_iter().flatten().flatten() {
                let pid = entry.file_name().to_string_lossy().into_owned();
                if !Path::new("/proc").join(&pid).exists() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            let own = copies.join(std::process::id().to_string());
            std::fs::copy(&built, &own).expect("copy the serve binary");
            own
        })
        .clone()
}

/// A running server, killed on drop. Every answer got through `get` and `post` is kept in
/// `answers`, so that a test can check all of them at the end (for secrets, say).
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub answers: Mutex<Vec<Answer>>,
}

/// One request and what the server answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// Starts `serve` with one table and waits for /health (ready: every table consumes).
    pub fn start(dir: &Path, table: &Value, schema: &Value, extra: &[&str]) -> Server {
        Server::start_until(dir, table, schema, extra, "/health")
    }

    /// Starts `serve` with one table and waits until `health_path` answers 200: `/health` for
    /// a server whose tables consume, `/health/liveness` for one that only listens.
    pub fn start_until(
        dir: &Path,
        table: &Value,
        schema: &Value,
        extra: &[&str],
        health_path: &str,
    ) -> Server {
        let table_path = dir.join("table.json");
        let schema_path = dir.join("schema.json");
        std::fs::write(&table_path, table.to_string()).unwrap();
        std::fs::write(&schema_path, schema.to_string()).unwrap();
        let port = free_port();
        let log = dir.join("serve.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(serve_binary())
            .arg("--table-config")
            .arg(&table_path)
            .arg("--schema")
            .arg(&schema_path)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("RUST_LOG", "debug,hyper=info,aws_smithy_runtime=info,aws_config=info,h2=info")
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Server { child, port, log, answers: Mutex::new(Vec::new()) };
        let started = Instant::now();
        loop {
            if let Ok(r) = server.get(health_path, None)
                && r.0 == 200
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "serve exited with {status}: {}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                );
            }
            assert!(started.elapsed() < Duration::from_secs(60), "serve did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
        self.keep("GET", path, request(self.port, "GET", path, token, None))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &[u8]) -> std::io::Result<(u16, String)> {
        self.keep("POST", path, request(self.port, "POST", path, token, Some(body)))
    }

    fn keep(
        &self,
        method: &str,
        path: &str,
        answer: std::io::Result<(u16, String)>,
    ) -> std::io::Result<(u16, String)> {
        if let Ok((status, body)) = &answer {
            self.answers.lock().unwrap().push(Answer {
                method: method.to_string(),
                path: path.to_string(),
                status: *status,
                body: body.clone(),
            });
        }
        answer
    }

    /// Every answer kept so far.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    /// Sends `signal` (`libc::SIGTERM`, `libc::SIGINT`) and waits up to 30 s for the exit.
    pub fn stop_with(&mut self, signal: i32) -> ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, which has not been waited for yet (so the pid is
        // still ours).
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "serve did not stop on signal {signal}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and the body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if let Some(b) = body {
        // The server may answer (413) and close before reading all of a large body.
        let _ = stream.write_all(b);
    }
    // Read the head, then as many body bytes as Content-Length says (some servers keep the
    // connection open despite `Connection: close`), or to the end.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut wanted: Option<usize> = None;
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            if wanted.is_none() {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                wanted = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .map(|n| end + 4 + n);
            }
            if wanted.is_some_and(|w| raw.len() >= w) {
                break;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `count(*)` of `table` through /query/sql.
pub fn count(server: &Server, token: Option<&str>, table: &str) -> i64 {
    let (status, body) = server
        .post("/query/sql", token, format!("{{\"sql\": \"SELECT count(*) FROM {table}\"}}").as_bytes())
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["resultTable"]["rows"][0][0].as_i64().unwrap_or(-1)
}

/// Sends `raw` (a whole request, as bytes) and returns the status, the head and the body.
pub fn raw_request(port: u16, raw: &[u8]) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(raw)?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

impl Server {
    /// The server process's resident memory now and at its peak, in bytes (VmRSS, VmHWM).
    pub fn resident_bytes(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}
