//! Faults between the consumer and kinesis-local (a fault-injecting proxy): throttling answers,
//! expired iterators, connection resets, slow answers past the fetch timeout, and an endpoint
//! that is unreachable for a while. Nothing is lost or read twice.

mod common;

use common::*;
use shoal_stream::emulator::{Emulator, FaultProxy, Faults, kinesis_config_for};
use shoal_stream::{KinesisSource, ResumeState, StartPosition};
use std::collections::BTreeSet;
use std::time::Duration;

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
        throttle_every: Some(3),
        expire_every: Some(7),
        reset_every: Some(5),
        delay_every: Some((11, Duration::from_secs(3))),
        down: false,
    });
    let reading = tokio::spawn(collect(source, ResumeState::default(), 1200, Duration::from_secs(150)));

    put_ids(&emulator, "faulty", 0..600, 13).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The endpoint disappears for a while, then comes back.
    proxy.set(Faults { down: true, ..Faults::default() });
    put_ids(&emulator, "faulty", 600..900, 13).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    proxy.set(Faults { throttle_every: Some(4), reset_every: Some(6), ..Faults::default() });
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
