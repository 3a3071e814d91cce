//! An analytics app that embeds Shoal: it consumes a Kinesis stream of purchases into a Shoal
//! table and joins it, in its own DataFusion context, with a Parquet file of products it owns,
//! printing a live top-10 of products by revenue.
//!
//! ```text
//! cargo run --example join_app                      # starts kinesis-local and writes purchases
//! cargo run --example join_app -- --endpoint http://127.0.0.1:4567 --stream purchases
//! ```
//! With no `--endpoint`, it starts the Kinesis emulator (`npm ci` in the checkout installs it)
//! and writes purchases into it while it runs. Its test (`cargo test --example join_app`)
//! checks the top-10 against an answer computed by hand.

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The products the app owns: `p00`…`p24`, five categories.
const PRODUCTS: usize = 25;
const CATEGORIES: [&str; 5] = ["books", "games", "music", "tools", "toys"];

/// The live query: the ten products with the most revenue, with their category from the
/// app's file. Shoal's table and the app's Parquet file meet in the app's own context.
const TOP_10: &str = "SELECT e.product, p.category, count(*) AS purchases, sum(e.amount) AS revenue \
     FROM purchases e JOIN products p ON e.product = p.product \
     GROUP BY e.product, p.category ORDER BY revenue DESC, e.product LIMIT 10";

/// The Shoal table: Pinot's REALTIME config for the stream. Credentials come from the AWS
/// default chain, except for the local emulator, which takes any static pair.
fn table_config(stream: &str, endpoint: &str, local: bool) -> Value {
    let mut config = json!({
        "tableName": "purchases",
        "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "ts", "replicasPerPartition": "1"},
        "tableIndexConfig": {
            "loadMode": "MMAP",
            "streamConfigs": {
                "streamType": "kinesis",
                "stream.kinesis.topic.name": stream,
                "region": "us-east-1",
                "endpoint": endpoint,
                "shardIteratorType": "TRIM_HORIZON",
                "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder",
                "realtime.segment.flush.threshold.segment.rows": "100",
                "shardDiscoveryInterval": "1s"
            }
        },
        "metadata": {}
    });
    if local {
        let map = &mut config["tableIndexConfig"]["streamConfigs"];
        map["accessKey"] = json!("local");
        map["secretKey"] = json!("local-secret");
    }
    config
}

fn table_schema() -> Value {
    json!({
        "schemaName": "purchases",
        "dimensionFieldSpecs": [{"name": "product", "dataType": "STRING"}, {"name": "customer", "dataType": "STRING"}],
        "metricFieldSpecs": [{"name": "amount", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    })
}

fn product(i: usize) -> String {
    format!("p{:02}", i % PRODUCTS)
}

fn category(i: usize) -> &'static str {
    CATEGORIES[i % PRODUCTS % CATEGORIES.len()]
}

/// The app's own file of products.
fn write_products(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("product", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from((0..PRODUCTS).map(product).collect::<Vec<_>>())) as ArrayRef,
            Arc::new(StringArray::from((0..PRODUCTS).map(category).collect::<Vec<_>>())),
        ],
    )?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path)?, schema, None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}

/// The `n`-th purchase the demo writes: product `p((n*7) % 25)`, amount `n % 50 + 1`.
fn purchase(n: usize, ts: i64) -> (String, i64, String) {
    let product = product(n * 7);
    let amount = (n % 50 + 1) as i64;
    (
        product.clone(),
        amount,
        format!(r#"{{"product":"{product}","customer":"c{}","amount":{amount},"ts":{ts}}}"#, n % 13),
    )
}

/// The app's DataFusion context: Shoal's table, the app's Parquet file, Shoal's functions.
async fn app_context(
    engine: &shoal::Engine,
    products: &Path,
) -> Result<SessionContext, Box<dyn std::error::Error>> {
    let ctx = SessionContext::new();
    ctx.register_table("purchases", engine.table_provider("purchases")?)?;
    let path = products.to_str().ok_or("the products path is not UTF-8")?;
    ctx.register_parquet("products", path, ParquetReadOptions::default()).await?;
    engine.register_functions(&ctx);
    Ok(ctx)
}

async fn top_10(ctx: &SessionContext) -> Result<Vec<RecordBatch>, Box<dyn std::error::Error>> {
    Ok(ctx.sql(TOP_10).await?.collect().await?)
}

/// Writes `count` purchases from `from` into the stream.
async fn write_purchases(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    from: usize,
    count: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let mut entries = Vec::new();
    for n in from..from + count {
        let (_, _, json) = purchase(n, ts);
        entries.push(
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key(format!("k{n}"))
                .data(aws_sdk_kinesis::primitives::Blob::new(json))
                .build()?,
        );
    }
    for chunk in entries.chunks(500) {
        let out = client.put_records().stream_name(stream).set_records(Some(chunk.to_vec())).send().await?;
        if out.failed_record_count().unwrap_or(0) > 0 {
            return Err("the stream refused some purchases".into());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let stream = arg("--stream").unwrap_or_else(|| "purchases".into());
    let rounds: usize = arg("--rounds").map(|r| r.parse()).transpose()?.unwrap_or(10);
    // Without an endpoint: a local emulator, and purchases written into it as the app runs.
    let emulator = match arg("--endpoint") {
        Some(_) => None,
        None => {
            let e = shoal_stream::emulator::Emulator::start().await?;
            e.create_stream(&stream, 2).await?;
            Some(e)
        }
    };
    let endpoint = arg("--endpoint").or_else(|| emulator.as_ref().map(|e| e.endpoint())).unwrap_or_default();
    let dir = tempfile::tempdir()?;
    let products = dir.path().join("products.parquet");
    write_products(&products)?;
    let engine = shoal::Engine::open(dir.path().join("data")).await?;
    engine.create_table(&table_config(&stream, &endpoint, emulator.is_some()), &table_schema()).await?;
    let ctx = app_context(&engine, &products).await?;
    for round in 0..rounds {
        if let Some(e) = &emulator {
            write_purchases(e.client(), &stream, round * 200, 200).await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!("top 10 products by revenue, round {round}:");
        println!("{}", arrow::util::pretty::pretty_format_batches(&top_10(&ctx).await?)?);
    }
    engine.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use std::collections::BTreeMap;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_live_top_10_joins_the_stream_with_the_apps_parquet_file() {
        let emulator =
            shoal_stream::emulator::Emulator::start().await.expect("kinesis-local must be installed");
        emulator.create_stream("purchases", 2).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let products = dir.path().join("products.parquet");
        write_products(&products).unwrap();
        let engine = shoal::Engine::open(dir.path().join("data")).await.unwrap();
        engine
            .create_table(&table_config("purchases", &emulator.endpoint(), true), &table_schema())
            .await
            .unwrap();
        let ctx = app_context(&engine, &products).await.unwrap();

        // 450 purchases in three rounds; the answer by hand after each round.
        let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for round in 0..3 {
            write_purchases(emulator.client(), "purchases", round * 150, 150).await.unwrap();
            for n in round * 150..(round + 1) * 150 {
                let (product, amount, _) = purchase(n, 0);
                let e = expected.entry(product).or_default();
                e.0 += 1;
                e.1 += amount;
            }
            let mut want: Vec<(String, String, i64, i64)> = expected
                .iter()
                .map(|(p, (c, r))| (p.clone(), category(p[1..].parse().unwrap()).to_string(), *c, *r))
                .collect();
            want.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(&b.0)));
            want.truncate(10);
            let total = (round + 1) * 150;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let got = loop {
                // The count first: rows only grow, so a top-10 taken after a full count is over
                // every purchase.
                let seen: i64 =
                    ctx.sql("SELECT count(*) FROM purchases").await.unwrap().collect().await.unwrap()[0]
                        .column(0)
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .value(0);
                assert!(seen <= total as i64, "more purchases than written: {seen}");
                let got = rows(&top_10(&ctx).await.unwrap());
                if seen == total as i64 || tokio::time::Instant::now() > deadline {
                    break got;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert_eq!(got, want, "round {round}");
        }
        engine.shutdown().await;
    }

    fn rows(batches: &[RecordBatch]) -> Vec<(String, String, i64, i64)> {
        let mut out = Vec::new();
        for b in batches {
            let text = |i: usize| arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
            let int = |i: usize| arrow::compute::cast(b.column(i), &DataType::Int64).unwrap();
            let (p, c, n, r) = (text(0), text(1), int(2), int(3));
            for i in 0..b.num_rows() {
                out.push((
                    p.as_string::<i32>().value(i).to_string(),
                    c.as_string::<i32>().value(i).to_string(),
                    n.as_primitive::<arrow::datatypes::Int64Type>().value(i),
                    r.as_primitive::<arrow::datatypes::Int64Type>().value(i),
                ));
            }
        }
        out
    }
}
