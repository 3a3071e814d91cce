//! Faults between the consumer and kinesis-local (a fault-injecting proxy): throttling answers,
//! expired iterators, connection resets, slow answers past the fetch timeout, and a port that
//! is closed for a while. Nothing is lost or read twice. Also: the proxy's fault script and
//! its closed port do what they promise.

mod common;

use common::*;
use shoal_stream::emulator::{Emulator, FaultCounts, FaultProxy, Faults, kinesis_config_for};
use shoal_stream::{KinesisSource, ResumeState, StartPosition};
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What became of one raw request sent through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The proxy answered with this error type itself.
    Injected(String),
    /// The connection was reset without an answer.
    Reset,
    /// The request reached the emulator (whatever it answered).
    Passed,
}

/// Sends one Kinesis request (`target`, e.g. `GetRecords`, with an empty body) through the
/// proxy on `port`.
async fn call(port: u16, target: &str) -> Outcome {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the proxy listens");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Amz-Target: Kinesis_20131202.{target}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await.expect("the request is sent");
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer).await {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Outcome::Reset,
        Err(e) => panic!("reading the answer to {target}: {e}"),
        Ok(_) => {
            let text = String::from_utf8_lossy(&answer);
            if !text.contains("injected by the test proxy") {
                assert!(text.starts_with("HTTP/1.1 "), "an HTTP answer from the emulator: {text:?}");
                return Outcome::Passed;
            }
            let kind = text.split("\"__type\":\"").nth(1).and_then(|t| t.split('"').next()).unwrap_or("");
            Outcome::Injected(kind.to_string())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_requested_fault_comes_first_then_the_seed_decides() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    let proxy = FaultProxy::start(emulator.port()).await.unwrap();
    let faults = Faults {
        throttle: 0.2,
        expire: 0.2,
        delay: 0.1,
        delay_by: Duration::from_millis(10),
        reset: 0.2,
        seed: 7,
        slow_body: None,
    };
    proxy.set(faults.clone());
    let port = proxy.port();
    // The script: a ListShards passes while GetRecords faults are due; then a throttle, an
    // expired iterator and a delay, and the reset falls on the next request of any kind.
    let injected = |kind: &str| Outcome::Injected(kind.to_string());
    assert_eq!(call(port, "ListShards").await, Outcome::Passed);
    assert_eq!(call(port, "GetRecords").await, injected("ProvisionedThroughputExceededException"));
    assert_eq!(call(port, "GetRecords").await, injected("ExpiredIteratorException"));
    assert_eq!(call(port, "GetRecords").await, Outcome::Passed, "delayed, then forwarded");
    assert_eq!(call(port, "ListShards").await, Outcome::Reset);
    let want = FaultCounts { requests: 5, get_records: 3, throttled: 1, expired: 1, resets: 1, delayed: 1 };
    assert_eq!(proxy.counts(), want);

    // Only the requested kinds: a throttle and nothing else.
    proxy.set(Faults { throttle: 0.5, ..Faults::default() });
    assert_eq!(call(port, "ListShards").await, Outcome::Passed);
    assert_eq!(call(port, "GetRecords").await, injected("ProvisionedThroughputExceededException"));

    // After the script, the same seed and the same requests meet the same faults, and both
    // faults and clean passes happen.
    let twin = FaultProxy::start(emulator.port()).await.unwrap();
    proxy.set(faults.clone());
    twin.set(faults);
    let targets = ["GetRecords", "GetRecords", "ListShards"];
    let mut seen = [Vec::new(), Vec::new()];
    for (n, p) in [&proxy, &twin].into_iter().enumerate() {
        for i in 0..60 {
            seen[n].push(call(p.port(), targets[i % targets.len()]).await);
        }
    }
    assert_eq!(seen[0], seen[1]);
    // The script took five requests: the ListShards among them passed while a delay was due.
    let after_script = &seen[0][5..];
    assert!(after_script.contains(&Outcome::Passed), "{after_script:?}");
    assert!(after_script.contains(&Outcome::Reset), "{after_script:?}");
    assert!(after_script.iter().any(|o| matches!(o, Outcome::Injected(_))), "{after_script:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_refuses_connections_and_reopens_on_the_same_port() {
    // No upstream is needed: only connections are tried.
    let proxy = FaultProxy::start(1).await.unwrap();
    let connect = || std::net::TcpStream::connect(("127.0.0.1", proxy.port()));
    assert!(connect().is_ok(), "open at first");
    for _ in 0..2 {
        proxy.close_port().await.unwrap();
        assert!(!listening(proxy.port(), true), "closed: no socket of this process listens on the port");
        let refused = connect().map(|_| ()).map_err(|e| e.kind());
        // The kernel refuses, unless another process on this shared machine took the free
        // port meanwhile (then /proc shows its listening socket, and the refusal cannot be seen).
        if !listening(proxy.port(), false) {
            assert_eq!(refused, Err(ErrorKind::ConnectionRefused), "closed: the kernel refuses");
        }
        proxy.reopen_port().await.unwrap();
        assert!(listening(proxy.port(), true), "open again: this process listens on the port");
        assert!(connect().is_ok(), "open again on the same port");
    }
}

/// Whether a socket listens on loopback `port`: one of this process's (`ours`), or any other.
fn listening(port: u16, ours: bool) -> bool {
    let own: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|l| l.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else { return false };
        let on_port = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port);
        let mine = own.contains(&format!("socket:[{inode}]"));
        on_port && *state == "0A" && mine == ours
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_or_repeated_through_faults() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("faulty", 2).await.unwrap();
    let proxy = FaultProxy::start(emulator.port()).await.unwrap();
    let mut config = fast(kinesis_config_for(&proxy.endpoint(), "faulty"));
    config.start = StartPosition::TrimHorizon;
    config.fetch_timeout = Duration::from_millis(1500);
    config.max_records_to_fetch = 50;
    let source = Box::new(KinesisSource::connect(config).await);
    proxy.set(Faults {
        throttle: 0.3,
        expire: 0.15,
        delay: 0.1,
        delay_by: Duration::from_secs(3),
        reset: 0.2,
        seed: 1,
        slow_body: None,
    });
    let reading = tokio::spawn(collect(source, ResumeState::default(), 1200, Duration::from_secs(150)));

    put_ids(&emulator, "faulty", 0..600, 13).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The port closes for a while, then opens again.
    proxy.close_port().await.unwrap();
    let refused = std::net::TcpStream::connect(("127.0.0.1", proxy.port())).map(|_| ()).map_err(|e| e.kind());
    assert_eq!(refused, Err(ErrorKind::ConnectionRefused));
    put_ids(&emulator, "faulty", 600..900, 13).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    proxy.set(Faults { throttle: 0.25, reset: 0.15, seed: 2, ..Faults::default() });
    proxy.reopen_port().await.unwrap();
    put_ids(&emulator, "faulty", 900..1200, 13).await;

    let records = reading.await.unwrap();
    let ids: Vec<usize> = records.iter().map(id).collect();
    let unique: BTreeSet<usize> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 1200, "nothing lost");
    assert_eq!(ids.len(), 1200, "nothing repeated");
    let counts = proxy.counts();
    assert!(
        counts.throttled > 0 && counts.expired > 0 && counts.resets > 0 && counts.delayed > 0,
        "{counts:?}"
    );
}

/// A page that takes longer to download than the fetch timeout (a slow link) is read to its
/// end: the timeout bounds the wait for the answer, not the reading of its body. With the
/// whole call bounded instead, every attempt is cut off and nothing ever arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_page_on_a_slow_link_is_read_whole() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("slow", 1).await.unwrap();
    let padding = "x".repeat(2000);
    let entries: Vec<_> = (0..200)
        .map(|i| {
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .data(aws_sdk_kinesis::primitives::Blob::new(format!(r#"{{"id": {i}, "pad": "{padding}"}}"#)))
                .build()
                .unwrap()
        })
        .collect();
    emulator.client().put_records().stream_name("slow").set_records(Some(entries)).send().await.unwrap();
    let proxy = FaultProxy::start(emulator.port()).await.unwrap();
    // About 550 KB of JSON (base64 bodies) at 200 KB/s: close to 3 s per page.
    proxy.set(Faults { slow_body: Some(200_000), ..Faults::default() });
    let mut config = fast(kinesis_config_for(&proxy.endpoint(), "slow"));
    config.start = StartPosition::TrimHorizon;
    config.fetch_timeout = Duration::from_secs(1);
    let source = Box::new(KinesisSource::connect(config).await);
    let records = collect(source, ResumeState::default(), 200, Duration::from_secs(60)).await;
    let ids: BTreeSet<usize> = records.iter().map(id).collect();
    assert_eq!((records.len(), ids.len()), (200, 200), "every record once, through a slow link");
}

/// A LATEST iterator that expires before any record arrived is renewed where it started, not
/// at a new LATEST: records put while the iterators kept expiring are not skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latest_iterator_expiring_before_any_record_skips_nothing() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("expiring", 1).await.unwrap();
    put_ids(&emulator, "expiring", 0..5, 1).await;
    let proxy = FaultProxy::start(emulator.port()).await.unwrap();
    let mut config = fast(kinesis_config_for(&proxy.endpoint(), "expiring"));
    config.start = StartPosition::Latest;
    let source = Box::new(KinesisSource::connect(config).await);
    // ResumeState without a creation time: LATEST as the service means it.
    let reading = tokio::spawn(collect(source, ResumeState::default(), 20, Duration::from_secs(40)));
    // Once the reader holds its iterator, every GetRecords answer says it expired.
    while proxy.counts().get_records == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.set(Faults { expire: 1.0, ..Faults::default() });
    put_ids(&emulator, "expiring", 5..25, 1).await;
    // Iterators keep expiring for a while (kinesis-local's LATEST takes records of the same
    // second: the last renewal must come well after the puts).
    let expired_after_put = proxy.counts().expired;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(proxy.counts().expired >= expired_after_put + 3, "{:?}", proxy.counts());
    proxy.set(Faults::default());
    let records = reading.await.unwrap();
    let ids: Vec<usize> = records.iter().map(id).collect();
    assert_eq!(ids, (5..25).collect::<Vec<_>>(), "the records put after the start, once, in order");
}
