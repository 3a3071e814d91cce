//! The smallest analytics app embedding Shoal: open an engine, create a table from Pinot's
//! JSON, query it.
//!
//! ```text
//! cargo run --example embed -- examples/config/events.table.json examples/config/events.schema.json
//! ```
//! (it consumes the stream the table config names; with the sample config, a local emulator).

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(table), Some(schema)) = (args.next(), args.next()) else {
        eprintln!("usage: embed TABLE_CONFIG.json SCHEMA.json");
        std::process::exit(2);
    };
    let table: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(table)?)?;
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(schema)?)?;
    let dir = std::env::temp_dir().join("shoal-embed");
    let engine = shoal::Engine::open(&dir).await?;
    let name = table["tableName"].as_str().unwrap_or_default().trim_end_matches("_REALTIME").to_string();
    if !engine.tables().contains(&name) {
        engine.create_table(&table, &schema).await?;
    }
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let batches = engine.sql(&format!("SELECT count(*) AS rows FROM {name}")).await?;
        println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    }
    engine.shutdown().await;
    Ok(())
}
