//! Writes realistic page-view events into a Kinesis stream (creating it when missing): the
//! quickstart's generator.
//!
//! ```text
//! cargo run --example generate -- --endpoint http://127.0.0.1:4568 --stream events --shards 4 --rate 200
//! ```

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use clap::Parser;
use shoal_segment::events::EventGenerator;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug)]
#[command(name = "generate", about = "Writes page-view events into a Kinesis stream")]
struct Args {
    /// Kinesis endpoint (loopback emulator by default).
    #[arg(long, default_value = "http://127.0.0.1:4568")]
    endpoint: String,
    /// Stream name.
    #[arg(long, default_value = "events")]
    stream: String,
    /// Shards of the stream when it is created.
    #[arg(long, default_value_t = 4)]
    shards: i32,
    /// Events per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Stop after this many events (0: run until stopped).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = shoal_stream::local_client(&args.endpoint);
    let exists = client.describe_stream_summary().stream_name(&args.stream).send().await.is_ok();
    if !exists {
        if let Err(e) = client.create_stream().stream_name(&args.stream).shard_count(args.shards).send().await
        {
            eprintln!(
                "generate: cannot create stream {}: {}",
                args.stream,
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            );
            std::process::exit(1);
        }
        loop {
            let active = client
                .describe_stream_summary()
                .stream_name(&args.stream)
                .send()
                .await
                .ok()
                .and_then(|d| d.stream_description_summary)
                .is_some_and(|d| d.stream_status == aws_sdk_kinesis::types::StreamStatus::Active);
            if active {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("generate: created stream {} with {} shards", args.stream, args.shards);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let mut generator = EventGenerator::new(now as u64, now);
    generator.with_context = true;
    let batch = (args.rate / 4).clamp(1, 500) as usize;
    let pause = Duration::from_secs_f64(batch as f64 / f64::from(args.rate.max(1)));
    let mut written = 0u64;
    let mut ticker = tokio::time::interval(pause);
    loop {
        ticker.tick().await;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        generator.time_ms = generator.time_ms.max(now);
        let entries: Vec<PutRecordsRequestEntry> = (0..batch)
            .filter_map(|i| {
                let event = generator.next_event();
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("user-{}", (written + i as u64) % 997))
                    .data(Blob::new(event))
                    .build()
                    .ok()
            })
            .collect();
        match client.put_records().stream_name(&args.stream).set_records(Some(entries)).send().await {
            Ok(_) => written += batch as u64,
            Err(e) => eprintln!(
                "generate: put failed (retrying): {}",
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            ),
        }
        if args.count > 0 && written >= args.count {
            println!("generate: wrote {written} events");
            return;
        }
    }
}
