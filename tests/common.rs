//! Helpers for the engine's integration tests.
#![allow(dead_code)]

use arrow::array::AsArray;
use serde_json::{Value, json};
use shoal::{Engine, EngineOptions, SourceFactory, TableDefinition};
use shoal_stream::Source;
use shoal_stream::memory::MemoryStream;
use std::collections::HashMap;
use std::future::Future;
use std::io::BufRead;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// In-memory streams, one per table name.
#[derive(Default, Clone)]
pub struct MemorySources(pub Arc<Mutex<HashMap<String, MemoryStream>>>);

impl MemorySources {
    pub fn stream(&self, table: &str, shards: usize) -> MemoryStream {
        self.0.lock().unwrap().entry(table.to_string()).or_insert_with(|| MemoryStream::new(shards)).clone()
    }
}

impl SourceFactory for MemorySources {
    fn create(&self, table: &TableDefinition) -> Pin<Box<dyn Future<Output = Box<dyn Source>> + Send>> {
        let stream = self.stream(&table.config.name, 1);
        Box::pin(async move { Box::new(stream.source()) as Box<dyn Source> })
    }
}

pub fn options(sources: impl SourceFactory + 'static) -> EngineOptions {
    EngineOptions::default()
        .with_sources(Arc::new(sources))
        .with_retention_interval(Duration::from_millis(200))
}

/// A table config for `name` reading `stream` at `endpoint`, sealing every `rows` rows.
pub fn table_config(name: &str, stream: &str, endpoint: &str, rows: u64) -> Value {
    json!({
        "tableName": name,
        "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "ts", "replicasPerPartition": "1"},
        "tableIndexConfig": {
            "loadMode": "MMAP",
            "streamConfigs": {
                "streamType": "kinesis",
                "stream.kinesis.topic.name": stream,
                "region": "us-east-1",
                "endpoint": endpoint,
                "accessKey": "shoal-test",
                "secretKey": "shoal-test-secret",
                "shardIteratorType": "TRIM_HORIZON",
                "requests_per_second_limit": "5",
                "shardDiscoveryInterval": "1s",
                "stream.kinesis.fetch.timeout.millis": "3000",
                "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder",
                "realtime.segment.flush.threshold.segment.rows": rows.to_string(),
                "realtime.segment.flush.threshold.time": "1h"
            }
        },
        "metadata": {"customConfigs": {}}
    })
}

pub fn schema(name: &str) -> Value {
    json!({
        "schemaName": name,
        "dimensionFieldSpecs": [{"name": "key", "dataType": "STRING"}],
        "metricFieldSpecs": [{"name": "id", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    })
}

pub fn record(id: usize, ts: i64) -> String {
    format!(r#"{{"id": {id}, "key": "key-{}", "ts": {ts}}}"#, id % 37)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `count(*)` and `count(DISTINCT id)` of `table`.
pub async fn counts(engine: &Engine, table: &str) -> (i64, i64) {
    let batches = engine.sql(&format!("SELECT count(*), count(DISTINCT id) FROM {table}")).await.unwrap();
    let b = &batches[0];
    let get = |i: usize| {
        arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Int64)
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0)
    };
    (get(0), get(1))
}

/// Waits until `table` holds `want` rows (checking that it never holds more, nor duplicates).
pub async fn wait_for_rows(engine: &Engine, table: &str, want: i64, limit: Duration) -> (i64, i64) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (rows, distinct) = counts(engine, table).await;
        assert_eq!(rows, distinct, "a row counted twice");
        assert!(rows <= want, "more rows than written: {rows}");
        if rows == want || tokio::time::Instant::now() > deadline {
            return (rows, distinct);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Puts `total` records (unique ids) into `stream`, splitting a shard after a third and
/// merging two shards after two thirds.
pub async fn write_with_reshards(emulator: &shoal_stream::emulator::Emulator, stream: &str, total: usize) {
    write_with_reshards_paced(emulator, stream, total, Duration::ZERO).await;
}

/// As `write_with_reshards`, waiting `pause` after each batch of 250 records.
pub async fn write_with_reshards_paced(
    emulator: &shoal_stream::emulator::Emulator,
    stream: &str,
    total: usize,
    pause: Duration,
) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let client = emulator.client();
    let t = now_ms();
    for (n, chunk) in (0..total).collect::<Vec<_>>().chunks(250).enumerate() {
        let entries: Vec<PutRecordsRequestEntry> = chunk
            .iter()
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{}", i % 37))
                    .data(Blob::new(record(*i, t)))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = client.put_records().stream_name(stream).set_records(Some(entries)).send().await.unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
        tokio::time::sleep(pause).await;
        let (before, written) = (n * 250, (n + 1) * 250);
        if before < total / 3 && written >= total / 3 {
            let shards = client.list_shards().stream_name(stream).send().await.unwrap();
            let s = &shards.shards()[0];
            let r = s.hash_key_range().unwrap();
            let (lo, hi): (u128, u128) =
                (r.starting_hash_key().parse().unwrap(), r.ending_hash_key().parse().unwrap());
            client
                .split_shard()
                .stream_name(stream)
                .shard_to_split(s.shard_id())
                .new_starting_hash_key(((lo + hi) / 2).to_string())
                .send()
                .await
                .unwrap();
            emulator.wait_active(stream).await.unwrap();
        }
        if before < 2 * total / 3 && written >= 2 * total / 3 {
            let shards = client.list_shards().stream_name(stream).send().await.unwrap();
            let mut open: Vec<_> = shards
                .shards()
                .iter()
                .filter(|s| s.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_none())
                .map(|s| {
                    (
                        s.hash_key_range().unwrap().starting_hash_key().parse::<u128>().unwrap(),
                        s.shard_id().to_string(),
                    )
                })
                .collect();
            open.sort();
            client
                .merge_shards()
                .stream_name(stream)
                .shard_to_merge(&open[1].1)
                .adjacent_shard_to_merge(&open[2].1)
                .send()
                .await
                .unwrap();
            emulator.wait_active(stream).await.unwrap();
        }
    }
}

/// The sum of the samples of metric `family` whose label `label` is `value`, read from
/// Prometheus' text format (HELP and TYPE lines are not samples); `None` when no sample
/// matches. A line that is not a sample fails the test.
pub fn prometheus_sum(text: &str, family: &str, label: &str, value: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((name, labels, sample)) = prometheus_sample(line) else {
            panic!("not a Prometheus sample: {line:?}");
        };
        if name == family && labels.iter().any(|(k, v)| k == label && v == value) {
            *sum.get_or_insert(0.0) += sample;
        }
    }
    sum
}

/// A sample's labels: (name, unescaped value) pairs.
type Labels = Vec<(String, String)>;

/// One sample line: its metric name, labels and value.
fn prometheus_sample(line: &str) -> Option<(&str, Labels, f64)> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = prometheus_labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, Vec::new(), rest)
        }
    };
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// Reads `key="value",...}`; returns the pairs and what follows the `}`.
fn prometheus_labels(text: &str) -> Option<(Labels, &str)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((pairs, after));
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        pairs.push((key.trim().to_string(), value));
        rest = &after[end + 1..];
    }
}

/// Puts the records `ids` (`record(id, t)`, unique ids) into `stream` in batches of 250, each
/// with the partition key `key(id)` and, when given, an explicit hash key (to pick a shard).
pub async fn put_ids(
    emulator: &shoal_stream::emulator::Emulator,
    stream: &str,
    ids: std::ops::Range<usize>,
    t: i64,
    key: impl Fn(usize) -> String,
    explicit_hash_key: Option<&str>,
) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let ids: Vec<usize> = ids.collect();
    for chunk in ids.chunks(250) {
        let entries = chunk
            .iter()
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key(*i))
                    .set_explicit_hash_key(explicit_hash_key.map(str::to_string))
                    .data(Blob::new(record(*i, t)))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = emulator
            .client()
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0), "every put succeeds");
    }
}

/// A child process running an ignored test of the same test binary (an engine to SIGKILL),
/// its log lines gathered as they come.
pub struct Child {
    process: std::process::Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Child {
    /// Runs the ignored test `test` of the test binary `exe` with the environment `env`.
    pub fn start(exe: &std::path::Path, test: &str, env: &[(&str, &std::ffi::OsStr)]) -> Child {
        let mut process = Command::new(exe)
            .args([test, "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = process.stdout.take().unwrap();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Child { process, log }
    }

    pub fn count(&self, what: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(what)).count()
    }

    /// Waits until the child has logged `what` more than `after` times.
    pub async fn wait_for(&self, what: &str, after: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.count(what) > after {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// SIGKILL; false when the child had already died.
    pub fn kill(&mut self) -> bool {
        let alive = self.process.try_wait().unwrap().is_none();
        self.process.kill().unwrap();
        self.process.wait().unwrap();
        alive
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(30)..].join("\n")
    }
}

/// moto's S3 server (PyPI `moto[server]`, installed by scripts/test.sh) on a free loopback
/// port, killed when dropped. Its request log (one line per request) is kept in a file.
pub struct Moto {
    process: std::process::Child,
    pub port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// The key moto is given; a test checks it never shows.
pub const MOTO_SECRET: &str = "moto-secret-7f3a9c";

impl Moto {
    /// Starts the server on a free port and creates `bucket`.
    pub async fn start(bucket: &str) -> Moto {
        Moto::start_with_ports(bucket, shoal_stream::emulator::free_port).await
    }

    /// [`Moto::start`] on the ports `port` gives, one for each attempt: a port found free can
    /// be taken by another process before moto listens on it, and then moto is started again
    /// on the next one.
    pub async fn start_with_ports(bucket: &str, mut port: impl FnMut() -> std::io::Result<u16>) -> Moto {
        const ATTEMPTS: usize = 5;
        let mut port = || port().expect("a free loopback port");
        for _ in 1..ATTEMPTS {
            if let Some(moto) = Moto::start_on(bucket, port()).await {
                return moto;
            }
        }
        Moto::start_on(bucket, port()).await.expect("moto's S3 server found its port taken in every attempt")
    }

    /// Moto on `port`, None when the port turned out taken.
    async fn start_on(bucket: &str, port: u16) -> Option<Moto> {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new("python3");
        command
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null());
        // SAFETY: prctl in the child before exec; it touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let process = command
            .spawn()
            .expect("python3 must run moto's S3 server: run scripts/test.sh, which installs moto[server]");
        let mut moto = Moto { process, port, log, _dir: dir };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            // A port taken is logged, and moto ends; whatever holds the port may answer instead.
            let exited = moto.process.try_wait().ok().flatten().is_some();
            if exited && moto.log_tail().contains("in use") {
                return None;
            }
            if moto.http("PUT", &format!("/{bucket}")).await.is_some_and(|status| status == 200) {
                return Some(moto);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto's S3 server did not start (is moto[server] installed? scripts/test.sh installs it):\n{}",
                moto.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One plain HTTP request without a body; the status code, None when nothing answered.
    async fn http(&self, method: &str, path: &str) -> Option<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.ok()?.ok()?;
        let text = String::from_utf8_lossy(&answer);
        text.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The deep store `s3://bucket/prefix` on this server.
    pub fn deep_store(&self, bucket: &str, prefix: &str) -> shoal::DeepStoreOptions {
        shoal::DeepStoreOptions::new(format!("s3://{bucket}/{prefix}"))
            .with_option("aws_endpoint", self.endpoint())
            .with_option("aws_allow_http", "true")
            .with_option("aws_region", "us-east-1")
            .with_option("aws_access_key_id", "moto-test")
            .with_option("aws_secret_access_key", MOTO_SECRET)
    }

    /// The standard AWS environment that points a child process's deep store (and its default
    /// credential chain, which Kinesis uses too) here.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "moto-test".into()),
            ("AWS_SECRET_ACCESS_KEY", MOTO_SECRET.into()),
        ]
    }

    /// The store itself, for a test to look into.
    pub fn client(&self, bucket: &str) -> Arc<dyn object_store::ObjectStore> {
        Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_bucket_name(bucket)
                .with_region("us-east-1")
                .with_access_key_id("moto-test")
                .with_secret_access_key(MOTO_SECRET)
                .build()
                .unwrap(),
        )
    }

    /// Every key under `prefix`, sorted.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let store = self.client(bucket);
        let prefix = object_store::path::Path::from(prefix);
        let mut keys: Vec<String> =
            store.list(Some(&prefix)).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
        keys.sort();
        keys
    }

    /// Requests moto has logged whose line contains `what`.
    pub fn requests(&self, what: &str) -> usize {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().filter(|l| l.contains(what)).count()
    }

    /// Stops the server (SIGSTOP): connections hang, as in a network partition; its objects
    /// stay. `resume` lets it go on.
    pub fn pause(&self) {
        // SAFETY: a signal to the child this struct owns.
        unsafe { libc::kill(self.process.id() as i32, libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        // SAFETY: as in `pause`.
        unsafe { libc::kill(self.process.id() as i32, libc::SIGCONT) };
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.resume();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
