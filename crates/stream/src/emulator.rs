//! A real Kinesis API emulator for tests: the npm package `kinesis-local`, pinned in
//! `tools/kinesis-local`, started on free loopback ports and stopped when dropped (also when
//! the test panics, and, through the parent-death signal, when the test process is killed).

use crate::config::{
    DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_RECORDS_TO_FETCH, DEFAULT_REQUESTS_PER_SECOND,
    DEFAULT_SHARD_DISCOVERY_INTERVAL, KinesisConfig, StartPosition, StaticCredentials,
};
use crate::secret::Secret;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::StreamStatus;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the emulator could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The npm package is not installed.
    #[error(
        "kinesis-local is not installed at {0}: run `npm ci --prefix tools/kinesis-local` from the repository \
         root (the README's test command, scripts/test.sh, does this), or set SHOAL_KINESIS_LOCAL to its main.js"
    )]
    NotInstalled(PathBuf),
    /// It could not be started.
    #[error("cannot start kinesis-local with node (is Node.js installed?): {0}")]
    Spawn(std::io::Error),
    /// It started but never answered, or ended (after the time given).
    #[error("kinesis-local did not answer within {0:?}; its log:\n{1}")]
    NotReady(Duration, String),
    /// A port it was given was taken by another process before it could listen on it.
    #[error("kinesis-local could not listen: its port was taken; its log:\n{0}")]
    PortTaken(String),
    /// A call to it failed.
    #[error("kinesis-local call failed: {0}")]
    Call(String),
}

/// A running kinesis-local.
pub struct Emulator {
    child: Child,
    plain_port: u16,
    log_path: PathBuf,
    client: Client,
}

/// Region the emulator's streams live in.
pub const REGION: &str = "us-east-1";

fn main_js() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_KINESIS_LOCAL") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/kinesis-local/node_modules/kinesis-local/main.js")
}

/// A loopback port free when asked; another process may take it before the emulator listens.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts of kinesis-local tried, each on new ports, while a port it is given turns out taken.
const START_ATTEMPTS: usize = 5;

impl Emulator {
    /// Starts kinesis-local on free loopback ports and waits until it answers.
    pub async fn start() -> Result<Emulator, EmulatorError> {
        Emulator::start_with_ports(free_port).await
    }

    /// [`Emulator::start`] on the ports `port` gives, two for each attempt: a port found free
    /// can be taken by another process (a test's server, a browser) before the emulator
    /// listens on it, and then the emulator is stopped and started again on the next two.
    pub async fn start_with_ports(
        mut port: impl FnMut() -> std::io::Result<u16>,
    ) -> Result<Emulator, EmulatorError> {
        let mut attempt = 1;
        loop {
            let plain_port = port().map_err(EmulatorError::Spawn)?;
            let tls_port = port().map_err(EmulatorError::Spawn)?;
            match Emulator::start_on(plain_port, tls_port).await {
                Err(EmulatorError::PortTaken(_)) if attempt < START_ATTEMPTS => attempt += 1,
                started => return started,
            }
        }
    }

    async fn start_on(plain_port: u16, tls_port: u16) -> Result<Emulator, EmulatorError> {
        let main = main_js();
        if !main.exists() {
            return Err(EmulatorError::NotInstalled(main));
        }
        let package_dir = main.parent().map(PathBuf::from).unwrap_or_default();
        let log_path = std::env::temp_dir().join(format!("shoal-kinesis-local-{plain_port}.log"));
        let log = std::fs::File::create(&log_path).map_err(EmulatorError::Spawn)?;
        let log_err = log.try_clone().map_err(EmulatorError::Spawn)?;
        let mut command = Command::new("node");
        command
            .arg(&main)
            .current_dir(std::env::temp_dir())
            .env("KINESIS_MOCK_PLAIN_PORT", plain_port.to_string())
            .env("KINESIS_MOCK_TLS_PORT", tls_port.to_string())
            .env("KINESIS_MOCK_CERT_PATH", package_dir.join("server.json"))
            .env("LOG_LEVEL", "WARN")
            .env("SHOULD_PERSIST_DATA", "false")
            .env("CREATE_STREAM_DURATION", "100ms")
            .env("SPLIT_SHARD_DURATION", "200ms")
            .env("MERGE_SHARDS_DURATION", "200ms")
            .env("UPDATE_SHARD_COUNT_DURATION", "200ms")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the emulator when
        // the thread that started it dies, so a killed test run leaves no emulator behind.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().map_err(EmulatorError::Spawn)?;
        let client = test_client(&format!("http://127.0.0.1:{plain_port}"));
        let mut emulator = Emulator { child, plain_port, log_path, client };
        emulator.wait_ready(Duration::from_secs(60)).await?;
        Ok(emulator)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), EmulatorError> {
        let started = Instant::now();
        loop {
            // A failed listen is logged; then the emulator exits or goes on without listening,
            // and whatever holds the port may take a connection and never answer.
            let exited = self.child.try_wait().ok().flatten().is_some();
            let log = self.log_tail();
            if log.contains("EADDRINUSE") || log.contains("Address already in use") {
                return Err(EmulatorError::PortTaken(log));
            }
            if exited {
                return Err(EmulatorError::NotReady(started.elapsed(), log));
            }
            let asked = tokio::time::timeout(Duration::from_secs(2), self.client.list_streams().send()).await;
            if matches!(asked, Ok(Ok(_))) {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(EmulatorError::NotReady(limit, self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines the emulator logged.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Its plain-HTTP endpoint, e.g. `http://127.0.0.1:45123`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.plain_port)
    }

    /// Its plain-HTTP port.
    pub fn port(&self) -> u16 {
        self.plain_port
    }

    /// A client for it.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Settings that make Shoal's consumer read `stream` from this emulator.
    pub fn kinesis_config(&self, stream: &str) -> KinesisConfig {
        kinesis_config_for(&self.endpoint(), stream)
    }

    /// Creates a stream with `shards` shards and waits until it is ACTIVE.
    pub async fn create_stream(&self, stream: &str, shards: i32) -> Result<(), EmulatorError> {
        self.client
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await
            .map_err(|e| EmulatorError::Call(format!("CreateStream {stream}: {}", error_text(&e))))?;
        self.wait_active(stream).await
    }

    /// Waits until `stream` is ACTIVE (after a create, split or merge).
    pub async fn wait_active(&self, stream: &str) -> Result<(), EmulatorError> {
        let started = Instant::now();
        loop {
            let status = self
                .client
                .describe_stream_summary()
                .stream_name(stream)
                .send()
                .await
                .map_err(|e| {
                    EmulatorError::Call(format!("DescribeStreamSummary {stream}: {}", error_text(&e)))
                })?
                .stream_description_summary
                .map(|d| d.stream_status);
            if status == Some(StreamStatus::Active) {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(EmulatorError::Call(format!("stream {stream} not ACTIVE after 30s: {status:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Puts one record; returns its shard id and sequence number.
    pub async fn put(&self, stream: &str, key: &str, data: &[u8]) -> Result<(String, String), EmulatorError> {
        let out = self
            .client
            .put_record()
            .stream_name(stream)
            .partition_key(key)
            .data(Blob::new(data))
            .send()
            .await
            .map_err(|e| EmulatorError::Call(format!("PutRecord {stream}: {}", error_text(&e))))?;
        Ok((out.shard_id, out.sequence_number))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// Consumer settings for a stream behind `endpoint` (the emulator, or a proxy in front of it).
pub fn kinesis_config_for(endpoint: &str, stream: &str) -> KinesisConfig {
    KinesisConfig {
        stream_name: stream.to_string(),
        region: REGION.to_string(),
        endpoint: Some(endpoint.to_string()),
        credentials: Some(StaticCredentials {
            access_key: Secret::new("shoal-test"),
            secret_key: Secret::new("shoal-test-secret"),
            session_token: None,
        }),
        assume_role: None,
        start: StartPosition::TrimHorizon,
        max_records_to_fetch: DEFAULT_MAX_RECORDS_TO_FETCH,
        requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
        fetch_timeout: DEFAULT_FETCH_TIMEOUT,
        shard_discovery_interval: DEFAULT_SHARD_DISCOVERY_INTERVAL,
    }
}

/// A plain client for `endpoint`, for test set-up (creating streams, putting records).
pub fn test_client(endpoint: &str) -> Client {
    crate::local_client(endpoint)
}

/// The service's error code and message, or the transport error.
pub fn error_text<E: std::error::Error + 'static>(e: &aws_sdk_kinesis::error::SdkError<E>) -> String {
    use std::fmt::Write;
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

/// Faults a [`FaultProxy`] injects, each at a rate from 0 to 1; a kind with rate 0 never
/// happens. Every kind with a rate above 0 happens at least once, by construction: right after
/// [`FaultProxy::set`] the proxy plays a script, in which the first GetRecords calls get, in
/// order, a throttle, an expired iterator and a delay, and the next request of any kind after
/// those is reset (each step only if its kind is requested; other requests pass untouched
/// until the script is done). After the script every request draws one number from a
/// generator seeded with `seed`, so a given order of requests always meets the same faults.
/// The rates of one request add up: keep their sum at most 1.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Share of GetRecords calls answered with ProvisionedThroughputExceededException.
    pub throttle: f64,
    /// Share of GetRecords calls answered with ExpiredIteratorException.
    pub expire: f64,
    /// Share of GetRecords calls whose answer is held back by `delay_by`.
    pub delay: f64,
    /// How long a delayed answer is held back (past the fetch timeout, say).
    pub delay_by: Duration,
    /// Share of requests of any kind whose connection is reset without an answer.
    pub reset: f64,
    /// Seed of the generator that draws the faults after the script.
    pub seed: u64,
    /// A slow link: every forwarded answer's headers are sent at once and its body at this
    /// many bytes per second (None: as fast as it comes).
    pub slow_body: Option<u64>,
}

/// What a [`FaultProxy`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests seen.
    pub requests: u64,
    /// GetRecords calls seen.
    pub get_records: u64,
    /// Throttling answers sent.
    pub throttled: u64,
    /// Expired-iterator answers sent.
    pub expired: u64,
    /// Connections reset.
    pub resets: u64,
    /// Answers delayed.
    pub delayed: u64,
}

/// One fault the proxy can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Throttle,
    Expire,
    Delay,
    Reset,
}

impl Fault {
    /// Whether this fault can fall on a request that is (or is not) a GetRecords call.
    fn applies_to(self, get_records: bool) -> bool {
        get_records || self == Fault::Reset
    }
}

/// The faults in force: the script still to play, then the seeded draws.
struct Schedule {
    faults: Faults,
    script: std::collections::VecDeque<Fault>,
    rng: rand::rngs::StdRng,
}

impl Schedule {
    fn new(faults: Faults) -> Schedule {
        use rand::SeedableRng;
        let script = [
            (Fault::Throttle, faults.throttle),
            (Fault::Expire, faults.expire),
            (Fault::Delay, faults.delay),
            (Fault::Reset, faults.reset),
        ]
        .into_iter()
        .filter(|(_, rate)| *rate > 0.0)
        .map(|(fault, _)| fault)
        .collect();
        let rng = rand::rngs::StdRng::seed_from_u64(faults.seed);
        Schedule { faults, script, rng }
    }

    /// The fault for the next request, if any.
    fn next(&mut self, get_records: bool) -> Option<Fault> {
        use rand::Rng;
        if let Some(&scripted) = self.script.front() {
            if !scripted.applies_to(get_records) {
                return None;
            }
            self.script.pop_front();
            return Some(scripted);
        }
        let draw: f64 = self.rng.random();
        let f = &self.faults;
        let mut below = 0.0;
        [
            (Fault::Delay, f.delay),
            (Fault::Reset, f.reset),
            (Fault::Throttle, f.throttle),
            (Fault::Expire, f.expire),
        ]
        .into_iter()
        .filter(|(fault, _)| fault.applies_to(get_records))
        .find(|(_, rate)| {
            below += rate.max(0.0);
            draw < below
        })
        .map(|(fault, _)| fault)
    }
}

struct ProxyState {
    schedule: Schedule,
    counts: FaultCounts,
}

/// Opens (true) or closes (false) the proxy's port, and says when that is done.
struct PortCommand {
    open: bool,
    done: tokio::sync::oneshot::Sender<std::io::Result<()>>,
}

/// An HTTP proxy between a Kinesis client and the emulator that injects faults (see
/// [`Faults`]): throttling and expired-iterator answers, connection resets, slow answers, and
/// a closed port.
pub struct FaultProxy {
    port: u16,
    state: Arc<std::sync::Mutex<ProxyState>>,
    commands: tokio::sync::mpsc::UnboundedSender<PortCommand>,
    task: tokio::task::JoinHandle<()>,
}

use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream_port`, injecting nothing.
    pub async fn start(upstream_port: u16) -> std::io::Result<FaultProxy> {
        let listener = bind_outside_ephemeral().await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(std::sync::Mutex::new(ProxyState {
            schedule: Schedule::new(Faults::default()),
            counts: FaultCounts::default(),
        }));
        let (commands, received) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(serve(listener, port, upstream_port, Arc::clone(&state), received));
        Ok(FaultProxy { port, state, commands, task })
    }

    /// The proxy's endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The proxy's port (the same while it is closed and after it is opened again).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets the faults to inject from now on, starting with their script.
    pub fn set(&self, faults: Faults) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).schedule = Schedule::new(faults);
    }

    /// What the proxy did so far.
    pub fn counts(&self) -> FaultCounts {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).counts
    }

    /// Closes the port: once this returns, nothing listens on it and the kernel refuses new
    /// connections (ECONNREFUSED). Requests already accepted still finish.
    pub async fn close_port(&self) -> std::io::Result<()> {
        self.command(false).await
    }

    /// Listens on the same port again; once this returns, connections are accepted.
    pub async fn reopen_port(&self) -> std::io::Result<()> {
        self.command(true).await
    }

    async fn command(&self, open: bool) -> std::io::Result<()> {
        let stopped = || std::io::Error::other("the fault proxy has stopped");
        let (done, answer) = tokio::sync::oneshot::channel();
        self.commands.send(PortCommand { open, done }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections while the port is open and carries out port commands.
async fn serve(
    listener: tokio::net::TcpListener,
    port: u16,
    upstream_port: u16,
    state: Arc<std::sync::Mutex<ProxyState>>,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<PortCommand>,
) {
    let mut listener = Some(listener);
    loop {
        let command = match &listener {
            Some(open) => tokio::select! {
                accepted = open.accept() => {
                    if let Ok((socket, _)) = accepted {
                        tokio::spawn(handle(socket, upstream_port, Arc::clone(&state)));
                    }
                    continue;
                }
                command = commands.recv() => command,
            },
            None => commands.recv().await,
        };
        let Some(PortCommand { open, done }) = command else { return };
        let result = match (open, listener.is_some()) {
            (false, _) => {
                listener = None;
                Ok(())
            }
            (true, true) => Ok(()),
            (true, false) => bind_again(port).await.map(|l| listener = Some(l)),
        };
        let _ = done.send(result);
    }
}

/// Binds a loopback port below the kernel's ephemeral range. While the proxy's port is closed,
/// nothing else may take it: not another test asking for a free port (those come from the
/// ephemeral range), and not a client's own end of a connection to it (a connection from an
/// ephemeral port to the same port number would connect to itself).
async fn bind_outside_ephemeral() -> std::io::Result<tokio::net::TcpListener> {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|v| v.parse::<u16>().ok()))
        .unwrap_or(32768);
    let floor = 10_000u16.min(low.saturating_sub(1));
    let mut last = None;
    for _ in 0..200 {
        let port = rand::rng().random_range(floor..low.max(floor + 1));
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    // Any port rather than none.
    tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| last.unwrap_or(e))
}

/// Binds `port` again, retrying for a while: a client's socket may hold it briefly (a
/// connection to a closed loopback port can, rarely, be given that port as its own).
async fn bind_again(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let mut attempts = 0;
    loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return Ok(listener),
            Err(e) if attempts >= 100 => return Err(e),
            Err(_) => attempts += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

enum Action {
    /// Forward, with the body at this many bytes per second if set.
    Forward(Option<u64>),
    Answer(&'static str),
    Reset,
    Delay(Duration),
}

async fn handle(
    mut client: tokio::net::TcpStream,
    upstream_port: u16,
    state: Arc<std::sync::Mutex<ProxyState>>,
) {
    // One request per connection: it is forwarded with `Connection: close`.
    let Some(request) = read_request(&mut client).await else { return };
    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(request.len());
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let get_records = head.contains("x-amz-target: kinesis_20131202.getrecords");
    let action = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.counts.requests += 1;
        if get_records {
            s.counts.get_records += 1;
        }
        match s.schedule.next(get_records) {
            Some(Fault::Throttle) => {
                s.counts.throttled += 1;
                Action::Answer("ProvisionedThroughputExceededException")
            }
            Some(Fault::Expire) => {
                s.counts.expired += 1;
                Action::Answer("ExpiredIteratorException")
            }
            Some(Fault::Delay) => {
                s.counts.delayed += 1;
                Action::Delay(s.schedule.faults.delay_by)
            }
            Some(Fault::Reset) => {
                s.counts.resets += 1;
                Action::Reset
            }
            None => Action::Forward(s.schedule.faults.slow_body),
        }
    };
    match action {
        Action::Reset => {
            // SO_LINGER 0: the close sends a RST.
            let _ = client.set_zero_linger();
            drop(client);
        }
        Action::Answer(kind) => {
            let body = format!("{{\"__type\":\"{kind}\",\"message\":\"injected by the test proxy\"}}");
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: {kind}\r\nx-amzn-RequestId: fault\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(answer.as_bytes()).await;
        }
        Action::Delay(d) => {
            tokio::time::sleep(d).await;
            forward(&mut client, &request, head_end, upstream_port, None).await;
        }
        Action::Forward(rate) => forward(&mut client, &request, head_end, upstream_port, rate).await,
    }
}

async fn forward(
    client: &mut tokio::net::TcpStream,
    request: &[u8],
    head_end: usize,
    upstream_port: u16,
    body_rate: Option<u64>,
) {
    let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await else { return };
    let head = String::from_utf8_lossy(&request[..head_end]);
    let mut rewritten: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes();
    rewritten.extend_from_slice(b"\r\nConnection: close");
    rewritten.extend_from_slice(&request[head_end..]);
    if upstream.write_all(&rewritten).await.is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = upstream.read_to_end(&mut answer).await;
    let Some(rate) = body_rate.filter(|r| *r > 0) else {
        let _ = client.write_all(&answer).await;
        return;
    };
    // The headers at once, then the body a tenth of a second's worth at a time.
    let body_at = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |p| p + 4);
    if client.write_all(&answer[..body_at]).await.is_err() {
        return;
    }
    let step = (rate / 10).max(1) as usize;
    for chunk in answer[body_at..].chunks(step) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if client.write_all(chunk).await.is_err() {
            return;
        }
    }
}

async fn read_request(client: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = client.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf);
        }
        if buf.len() > 16 << 20 {
            return None;
        }
    }
}
