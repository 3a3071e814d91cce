//! The test harness itself: kinesis-local starts, takes records, and gives them back through
//! aws-sdk-kinesis.

use aws_sdk_kinesis::types::ShardIteratorType;
use shoal_stream::emulator::Emulator;
use std::collections::BTreeSet;

#[tokio::test]
async fn two_shards_200_records_read_back() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("harness", 2).await.unwrap();
    let mut written = BTreeSet::new();
    for i in 0..200 {
        let body = format!("{{\"id\": {i}}}");
        emulator.put("harness", &format!("key-{i}"), body.as_bytes()).await.unwrap();
        written.insert(body);
    }
    let client = emulator.client();
    let shards = client.list_shards().stream_name("harness").send().await.unwrap().shards.unwrap_or_default();
    assert_eq!(shards.len(), 2);
    let mut read = BTreeSet::new();
    let mut per_shard = Vec::new();
    for shard in &shards {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name("harness")
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        let mut count = 0;
        while let Some(it) = iterator {
            let out = client.get_records().shard_iterator(it).send().await.unwrap();
            count += out.records.len();
            for r in &out.records {
                read.insert(String::from_utf8(r.data.as_ref().to_vec()).unwrap());
            }
            if out.records.is_empty() {
                break;
            }
            iterator = out.next_shard_iterator;
        }
        per_shard.push(count);
    }
    assert_eq!(read, written);
    assert!(per_shard.iter().all(|&n| n > 0), "both shards hold records: {per_shard:?}");
}

#[tokio::test]
async fn a_port_taken_before_the_emulator_listens_is_given_up_for_another() {
    // Another process holds this port, as a test's server or a browser took one in a CI run
    // between the harness finding it free and the emulator listening on it.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let mut first = Some(taken);
    let emulator = Emulator::start_with_ports(move || match first.take() {
        Some(port) => Ok(port),
        None => shoal_stream::emulator::free_port(),
    })
    .await
    .expect("started again on free ports");
    assert_ne!(emulator.port(), taken);
    emulator.create_stream("after-a-taken-port", 1).await.unwrap();
    emulator.put("after-a-taken-port", "k", b"{}").await.unwrap();
}
