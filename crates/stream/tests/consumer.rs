//! The Kinesis consumer against kinesis-local: resharding, resume, start positions, KPL.

mod common;

use common::*;
use shoal_stream::emulator::Emulator;
use shoal_stream::{ResumeState, SequenceNumber, ShardEvent, StartPosition};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

async fn started(stream: &str, shards: i32) -> Emulator {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream(stream, shards).await.unwrap();
    emulator
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_and_a_merge_lose_and_repeat_nothing_and_keep_key_order() {
    let emulator = started("reshard", 2).await;
    let client = emulator.client().clone();
    let source = source(&emulator, "reshard", |c| c.start = StartPosition::TrimHorizon).await;
    let reader = tokio::spawn(collect(source, ResumeState::default(), 5000, Duration::from_secs(120)));

    put_ids(&emulator, "reshard", 0..1500, 40).await;
    let shards = shoal_stream::consumer::list_shards(&client, "reshard").await.unwrap();
    let first = &shards[0];
    // Split the first shard in the middle of its hash range.
    let range = client.list_shards().stream_name("reshard").send().await.unwrap();
    let hk = range.shards()[0].hash_key_range().unwrap();
    let lo: u128 = hk.starting_hash_key().parse().unwrap();
    let hi: u128 = hk.ending_hash_key().parse().unwrap();
    client
        .split_shard()
        .stream_name("reshard")
        .shard_to_split(&first.id)
        .new_starting_hash_key(((lo + hi) / 2).to_string())
        .send()
        .await
        .unwrap();
    emulator.wait_active("reshard").await.unwrap();
    put_ids(&emulator, "reshard", 1500..3000, 40).await;
    // Merge the split's upper child with the second original shard (adjacent ranges).
    let open: Vec<_> = client
        .list_shards()
        .stream_name("reshard")
        .send()
        .await
        .unwrap()
        .shards()
        .iter()
        .filter(|s| s.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_none())
        .map(|s| {
            (
                s.shard_id().to_string(),
                s.hash_key_range().unwrap().starting_hash_key().parse::<u128>().unwrap(),
            )
        })
        .collect();
    let mut open = open;
    open.sort_by_key(|(_, start)| *start);
    assert_eq!(open.len(), 3, "{open:?}");
    client
        .merge_shards()
        .stream_name("reshard")
        .shard_to_merge(&open[1].0)
        .adjacent_shard_to_merge(&open[2].0)
        .send()
        .await
        .unwrap();
    emulator.wait_active("reshard").await.unwrap();
    put_ids(&emulator, "reshard", 3000..5000, 40).await;

    let records = reader.await.unwrap();
    let ids: Vec<usize> = records.iter().map(id).collect();
    let unique: BTreeSet<usize> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 5000, "every record read");
    assert_eq!(ids.len(), 5000, "none read twice");
    let mut per_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for r in &records {
        per_key.entry(r.partition_key.as_str()).or_default().push(id(r));
    }
    for (key, ids) in per_key {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{key} out of write order: {ids:?}");
    }
    let shards_seen: BTreeSet<&str> = records.iter().map(|r| r.shard_id.as_ref()).collect();
    assert_eq!(
        shards_seen.len(),
        5,
        "records came from both originals, both split children and the merge child"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_checkpoint_mid_stream() {
    let emulator = started("resume", 1).await;
    put_ids(&emulator, "resume", 0..300, 7).await;
    let all = collect(
        source(&emulator, "resume", |c| c.start = StartPosition::TrimHorizon).await,
        ResumeState::default(),
        300,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(all.len(), 300);
    let checkpoint = all[122].position();
    let mut resume = ResumeState::default();
    resume.checkpoints.insert(all[122].shard_id.to_string(), checkpoint);
    // LATEST is ignored for a shard with a checkpoint.
    let rest = collect(
        source(&emulator, "resume", |c| c.start = StartPosition::Latest).await,
        resume,
        177,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(rest.iter().map(id).collect::<Vec<_>>(), (123..300).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_aggregates_are_split_into_user_records_and_resume_inside_them() {
    let emulator = started("kpl", 1).await;
    let users: Vec<(String, Vec<u8>)> =
        (0..5).map(|i| (format!("user-key-{i}"), format!("{{\"id\": {i}}}").into_bytes())).collect();
    let refs: Vec<(&str, &[u8])> = users.iter().map(|(k, d)| (k.as_str(), d.as_slice())).collect();
    let blob = shoal_stream::kpl::aggregate(&refs);
    emulator.put("kpl", "aggregate-key", &blob).await.unwrap();
    let mut bad = shoal_stream::kpl::aggregate(&[("x", b"{\"id\": 100}"), ("y", b"{\"id\": 101}")]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    emulator.put("kpl", "bad-md5", &bad).await.unwrap();
    emulator.put("kpl", "plain", br#"{"id": 6}"#).await.unwrap();

    let all = collect(
        source(&emulator, "kpl", |c| c.start = StartPosition::TrimHorizon).await,
        ResumeState::default(),
        7,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(all.len(), 7, "5 user records, the bad blob as one record, 1 plain record");
    for (i, r) in all[..5].iter().enumerate() {
        assert_eq!(r.partition_key, format!("user-key-{i}"));
        assert_eq!(r.sub_sequence, Some(i as u64));
        assert_eq!(id(r), i);
        assert_eq!(
            r.sequence_number, all[0].sequence_number,
            "user records share the aggregate's sequence number"
        );
    }
    assert_eq!(all[5].data.as_ref(), &bad[..], "a blob with a bad MD5 is passed on as it is");
    assert_eq!((all[5].sub_sequence, all[5].partition_key.as_str()), (None, "bad-md5"));
    assert_eq!(id(&all[6]), 6);

    // A checkpoint inside the aggregate resumes at its next user record.
    let mut resume = ResumeState::default();
    resume.checkpoints.insert(all[2].shard_id.to_string(), all[2].position());
    let rest = collect(source(&emulator, "kpl", |_| {}).await, resume, 4, Duration::from_secs(30)).await;
    let subs: Vec<Option<u64>> = rest.iter().map(|r| r.sub_sequence).collect();
    assert_eq!(subs, [Some(3), Some(4), None, None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_start_position_behaves_as_documented() {
    let emulator = started("starts", 1).await;
    put_ids(&emulator, "starts", 0..50, 3).await;
    let all = collect(
        source(&emulator, "starts", |c| c.start = StartPosition::TrimHorizon).await,
        ResumeState::default(),
        50,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        all.iter().map(id).collect::<Vec<_>>(),
        (0..50).collect::<Vec<_>>(),
        "TRIM_HORIZON reads from the oldest record"
    );
    let shard = all[0].shard_id.to_string();
    let seq = |i: usize| all[i].sequence_number.clone();

    let per_shard = |n: SequenceNumber| BTreeMap::from([(shard.clone(), n)]);
    let at = collect(
        source(&emulator, "starts", |c| {
            c.start = StartPosition::AtSequenceNumber { shards: per_shard(seq(20)) }
        })
        .await,
        ResumeState::default(),
        30,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        at.iter().map(id).collect::<Vec<_>>(),
        (20..50).collect::<Vec<_>>(),
        "AT_SEQUENCE_NUMBER includes the record"
    );
    let after = collect(
        source(&emulator, "starts", |c| {
            c.start = StartPosition::AfterSequenceNumber { shards: per_shard(seq(20)) }
        })
        .await,
        ResumeState::default(),
        29,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        after.iter().map(id).collect::<Vec<_>>(),
        (21..50).collect::<Vec<_>>(),
        "AFTER_SEQUENCE_NUMBER starts after it"
    );

    // AT_TIMESTAMP: records written after a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let moment = shoal_stream::now_ms();
    tokio::time::sleep(Duration::from_millis(500)).await;
    put_ids(&emulator, "starts", 50..60, 3).await;
    let since = collect(
        source(&emulator, "starts", |c| c.start = StartPosition::AtTimestamp { millis: moment }).await,
        ResumeState::default(),
        10,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        since.iter().map(id).collect::<Vec<_>>(),
        (50..60).collect::<Vec<_>>(),
        "AT_TIMESTAMP skips older records"
    );

    // LATEST: only records written after the reader started.
    let latest = {
        let source = source(&emulator, "starts", |c| c.start = StartPosition::Latest).await;
        let reading = tokio::spawn(collect(source, ResumeState::default(), 5, Duration::from_secs(20)));
        tokio::time::sleep(Duration::from_secs(3)).await;
        put_ids(&emulator, "starts", 60..65, 3).await;
        reading.await.unwrap()
    };
    assert_eq!(
        latest.iter().map(id).collect::<Vec<_>>(),
        (60..65).collect::<Vec<_>>(),
        "LATEST reads only new records"
    );

    // An unknown sequence number for AT_SEQUENCE_NUMBER falls back to TRIM_HORIZON for other shards.
    let other = collect(
        source(&emulator, "starts", |c| {
            c.start = StartPosition::AtSequenceNumber {
                shards: BTreeMap::from([("shardId-999".to_string(), seq(3))]),
            }
        })
        .await,
        ResumeState::default(),
        65,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(other.len(), 65, "a shard not listed starts at TRIM_HORIZON");
}

/// A KPL aggregate put before a reshard can hold user records of another shard; the KPL then
/// puts all of its records again, to the right shards. Such an aggregate is dropped whole (as
/// the KCL does) and counted; an aggregate whose records all belong to the shard is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kpl_aggregate_holding_another_shards_record_is_dropped_whole() {
    use shoal_stream::kpl::{HashKeyRange, UserRecord, aggregate_records, effective_hash_key};
    let emulator = started("foreign", 2).await;
    let shards = emulator.client().list_shards().stream_name("foreign").send().await.unwrap();
    let ranges: Vec<(String, HashKeyRange)> = shards
        .shards()
        .iter()
        .map(|s| {
            let r = s.hash_key_range().unwrap();
            (
                s.shard_id().to_string(),
                HashKeyRange::parse(r.starting_hash_key(), r.ending_hash_key()).unwrap(),
            )
        })
        .collect();
    let (home, home_range) = ranges[0].clone();
    let (_, away_range) = ranges[1];
    // Partition keys whose MD5 falls in each shard's range.
    let keys_in = |range: HashKeyRange, n: usize| -> Vec<String> {
        (0..)
            .map(|i| format!("key-{i}"))
            .filter(|k| range.contains(effective_hash_key(k, None).unwrap()))
            .take(n)
            .collect()
    };
    let user = |key: &str, id: usize| UserRecord {
        partition_key: key.to_string(),
        explicit_hash_key: None,
        data: bytes::Bytes::from(format!("{{\"id\": {id}}}")),
    };
    let own: Vec<UserRecord> = keys_in(home_range, 4).iter().enumerate().map(|(i, k)| user(k, i)).collect();
    let mut mixed: Vec<UserRecord> =
        keys_in(home_range, 3).iter().enumerate().map(|(i, k)| user(k, 10 + i)).collect();
    mixed.extend(keys_in(away_range, 2).iter().enumerate().map(|(i, k)| user(k, 20 + i)));
    // Both aggregates land on the home shard (as a KPL with a stale shard map would put them).
    for blob in [aggregate_records(&own), aggregate_records(&mixed)] {
        emulator
            .client()
            .put_record()
            .stream_name("foreign")
            .partition_key("aggregate")
            .explicit_hash_key(home_range.start.to_string())
            .data(aws_sdk_kinesis::primitives::Blob::new(blob))
            .send()
            .await
            .unwrap();
    }
    emulator
        .client()
        .put_record()
        .stream_name("foreign")
        .partition_key("plain")
        .explicit_hash_key(home_range.start.to_string())
        .data(aws_sdk_kinesis::primitives::Blob::new(&b"{\"id\": 99}"[..]))
        .send()
        .await
        .unwrap();

    let source = source(&emulator, "foreign", |c| c.start = StartPosition::TrimHorizon).await;
    let mut handle = source.start(ResumeState::default());
    let metrics = std::sync::Arc::clone(&handle.metrics);
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 5 && tokio::time::Instant::now() < deadline {
        let Ok(Some(mut reader)) = tokio::time::timeout_at(deadline, handle.readers.recv()).await else {
            break;
        };
        if reader.shard_id != home {
            continue;
        }
        while got.len() < 5 {
            match tokio::time::timeout_at(deadline, reader.next()).await {
                Ok(Some(ShardEvent::Records { records, .. })) => got.extend(records),
                _ => break,
            }
        }
    }
    let ids: Vec<usize> = got.iter().map(id).collect();
    assert_eq!(ids, [0, 1, 2, 3, 99], "the aggregate of the shard's own records and the plain record");
    assert_eq!(metrics.shard(&home).kpl_foreign_records.load(std::sync::atomic::Ordering::Relaxed), 5);
}
