//! Pinot dimension tables (`isDimTable`, `primaryKeyColumns`, a file the app names) and
//! `LOOKUP` over them, with answers checked by hand; the definition kept across an open, the
//! file read again at a reload, and bad configs and files refused by name.

mod common;

use arrow::array::{Array, AsArray, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use common::*;
use serde_json::{Value, json};
use shoal::{Engine, Error};
use std::path::Path;
use std::sync::Arc;

fn facts_config() -> Value {
    json!({
        "tableName": "orders",
        "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "ts", "replicasPerPartition": "1"},
        "tableIndexConfig": {"streamConfigs": {"streamType": "append", "realtime.segment.flush.threshold.segment.rows": "3"}},
        "metadata": {}
    })
}

fn facts_schema() -> Value {
    json!({
        "schemaName": "orders",
        "dimensionFieldSpecs": [{"name": "country", "dataType": "STRING"}, {"name": "shop", "dataType": "INT"}],
        "metricFieldSpecs": [{"name": "amount", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    })
}

fn dim_config(name: &str) -> Value {
    json!({"tableName": name, "tableType": "OFFLINE", "isDimTable": true, "segmentsConfig": {}, "metadata": {}})
}

fn countries_schema() -> Value {
    json!({
        "schemaName": "countries",
        "dimensionFieldSpecs": [
            {"name": "code", "dataType": "STRING"},
            {"name": "region", "dataType": "STRING"},
            {"name": "population", "dataType": "INT"}
        ],
        "primaryKeyColumns": ["code"]
    })
}

fn shops_schema() -> Value {
    json!({
        "schemaName": "shops",
        "dimensionFieldSpecs": [
            {"name": "country", "dataType": "STRING"},
            {"name": "shop", "dataType": "INT"},
            {"name": "manager", "dataType": "STRING"}
        ],
        "primaryKeyColumns": ["country", "shop"]
    })
}

async fn column(engine: &Engine, sql: &str) -> Vec<String> {
    let batches = engine.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in &batches {
        let c = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
        let c = c.as_string::<i32>();
        out.extend(
            (0..c.len()).map(|i| if c.is_null(i) { "NULL".to_string() } else { c.value(i).to_string() }),
        );
    }
    out
}

async fn engine_with_orders(dir: &Path) -> Engine {
    let engine = Engine::open_with(dir, options(MemorySources::default())).await.unwrap();
    if engine.tables().is_empty() {
        engine.create_table(&facts_config(), &facts_schema()).await.unwrap();
        let ts = now_ms();
        let orders = [("DE", 1, 10), ("FR", 2, 20), ("DE", 2, 30), ("XX", 1, 40), ("FR", 1, 50)];
        let records: Vec<String> = orders
            .iter()
            .map(|(c, s, a)| format!(r#"{{"country":"{c}","shop":{s},"amount":{a},"ts":{ts}}}"#))
            .collect();
        engine.append("orders", &records).await.unwrap().queryable().await.unwrap();
    }
    engine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_answers_from_json_csv_and_parquet_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let engine = engine_with_orders(dir.path()).await;

    // JSON lines; the population of FR is missing (its default, INT's i32::MIN, as Pinot).
    let countries = files.path().join("countries.json");
    std::fs::write(
        &countries,
        "{\"code\":\"DE\",\"region\":\"Europe\",\"population\":83}\n\n{\"code\":\"FR\",\"region\":\"Europe\"}\n",
    )
    .unwrap();
    let rows = engine.create_dimension_table(&dim_config("countries"), &countries_schema(), &countries).await;
    assert_eq!(rows.unwrap(), 2);
    let sql = "SELECT LOOKUP('countries', 'region', 'code', country) FROM orders ORDER BY amount";
    // A miss (XX) gives STRING's default null value, "null".
    assert_eq!(column(&engine, sql).await, ["Europe", "Europe", "Europe", "null", "Europe"]);
    let sql = "SELECT lookup('countries_OFFLINE', 'population', 'code', country) FROM orders ORDER BY amount";
    assert_eq!(column(&engine, sql).await, ["83", "-2147483648", "83", "-2147483648", "-2147483648"]);
    let sql = "SELECT LOOKUP('countries', 'region', 'code', country) AS r, sum(amount) FROM orders GROUP BY r ORDER BY r";
    assert_eq!(column(&engine, sql).await, ["Europe", "null"]);
    // The dimension table is a table SQL can query too.
    assert_eq!(column(&engine, "SELECT code FROM countries ORDER BY code").await, ["DE", "FR"]);

    // CSV with a composite key; the shop number is cast from the fact's INT, and from text.
    let shops = files.path().join("shops.csv");
    std::fs::write(&shops, "country,shop,manager\nDE,1,Anna\nDE,2,Bert\nFR,1,Chloe\n").unwrap();
    engine.create_dimension_table(&dim_config("shops"), &shops_schema(), &shops).await.unwrap();
    let sql =
        "SELECT LOOKUP('shops', 'manager', 'country', country, 'shop', shop) FROM orders ORDER BY amount";
    assert_eq!(column(&engine, sql).await, ["Anna", "null", "Bert", "null", "Chloe"]);
    let sql = "SELECT LOOKUP('shops', 'manager', 'country', 'FR', 'shop', '1')";
    assert_eq!(column(&engine, sql).await, ["Chloe"]);
    // The whole primary key, in order, or a plan error that says so.
    let e =
        engine.sql("SELECT LOOKUP('shops', 'manager', 'country', country) FROM orders").await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("primary key"), "{e}");
    let e = engine.sql("SELECT LOOKUP('nope', 'manager', 'country', country) FROM orders").await.unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");

    // Parquet, with a null (its default) and a column the file lacks (its default).
    let parquet = files.path().join("countries2.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("population", DataType::Int32, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(vec!["DE", "XX"])), Arc::new(Int32Array::from(vec![Some(84), None]))],
    )
    .unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&parquet).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let mut schema2 = countries_schema();
    schema2["schemaName"] = json!("countries2");
    engine.create_dimension_table(&dim_config("countries2"), &schema2, &parquet).await.unwrap();
    let sql = "SELECT LOOKUP('countries2', 'population', 'code', country) FROM orders ORDER BY amount";
    assert_eq!(column(&engine, sql).await, ["84", "-2147483648", "84", "-2147483648", "-2147483648"]);
    let sql = "SELECT LOOKUP('countries2', 'region', 'code', 'DE')";
    assert_eq!(column(&engine, sql).await, ["null"]);

    // LOOKUP in an app's own DataFusion context, over this engine's dimension tables.
    let ctx = datafusion::prelude::SessionContext::new();
    engine.register_functions(&ctx);
    let got = ctx.sql("SELECT LOOKUP('shops', 'manager', 'country', 'DE', 'shop', 2)").await.unwrap();
    let got = got.collect().await.unwrap();
    assert_eq!(got[0].column(0).as_string::<i32>().value(0), "Bert");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dimension_tables_last_across_an_open_and_reload_from_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let countries = files.path().join("countries.jsonl");
    std::fs::write(&countries, "{\"code\":\"DE\",\"region\":\"Europe\"}\n").unwrap();
    let sql = "SELECT LOOKUP('countries', 'region', 'code', country) FROM orders ORDER BY amount";
    {
        let engine = engine_with_orders(dir.path()).await;
        engine
            .create_dimension_table(&dim_config("countries"), &countries_schema(), &countries)
            .await
            .unwrap();
        let e =
            engine.create_dimension_table(&dim_config("countries"), &countries_schema(), &countries).await;
        assert!(matches!(e, Err(Error::TableExists(_))), "{e:?}");
        engine.shutdown().await;
    }
    let engine = engine_with_orders(dir.path()).await;
    assert_eq!(engine.dimension_tables(), ["countries"]);
    assert_eq!(column(&engine, sql).await, ["Europe", "null", "Europe", "null", "null"]);
    // The app changes its file: a reload reads it; the later of two rows with a key wins.
    std::fs::write(
        &countries,
        "{\"code\":\"FR\",\"region\":\"Old\"}\n{\"code\":\"DE\",\"region\":\"EU\"}\n{\"code\":\"FR\",\"region\":\"EU\"}\n",
    )
    .unwrap();
    assert_eq!(engine.reload_dimension_table("countries").await.unwrap(), 3);
    assert_eq!(column(&engine, sql).await, ["EU", "EU", "EU", "null", "EU"]);
    // A file that cannot be read: the reload fails and the old rows stay.
    std::fs::write(&countries, "{\"code\":\"DE\",\"region\":\"Nope\"}\n{broken\n").unwrap();
    let e = engine.reload_dimension_table("countries").await.unwrap_err().to_string();
    assert!(e.contains("countries.jsonl") && e.contains("1 of 2 records"), "{e}");
    assert_eq!(column(&engine, sql).await, ["EU", "EU", "EU", "null", "EU"]);
    engine.shutdown().await;

    // The file gone at an open: the engine opens, the table is left out until a reload.
    std::fs::remove_file(&countries).unwrap();
    let engine = engine_with_orders(dir.path()).await;
    assert_eq!(engine.dimension_tables(), ["countries"]);
    assert!(engine.sql(sql).await.is_err());
    std::fs::write(&countries, "{\"code\":\"XX\",\"region\":\"Nowhere\"}\n").unwrap();
    engine.reload_dimension_table("countries").await.unwrap();
    assert_eq!(column(&engine, sql).await, ["null", "null", "null", "Nowhere", "null"]);
    engine.drop_dimension_table("countries").await.unwrap();
    assert!(engine.dimension_tables().is_empty());
    assert!(engine.sql(sql).await.is_err());
    assert!(countries.exists(), "the app's file stays");
    engine.shutdown().await;
    let engine = engine_with_orders(dir.path()).await;
    assert!(engine.dimension_tables().is_empty());
    engine.shutdown().await;
}

#[tokio::test]
async fn bad_dimension_configs_and_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(dir.path(), options(MemorySources::default())).await.unwrap();
    let file = files.path().join("countries.json");
    std::fs::write(&file, "{\"code\":\"DE\"}\n{\"code\":\"DE\"}\n").unwrap();
    let mut config = dim_config("countries");
    config["isDimTable"] = json!(false);
    config["tableType"] = json!("REALTIME");
    let e = engine.create_dimension_table(&config, &countries_schema(), &file).await.unwrap_err().to_string();
    assert!(e.contains("isDimTable") && e.contains("tableType"), "{e}");
    let mut schema = countries_schema();
    schema["primaryKeyColumns"] = json!(["nope"]);
    let e = engine
        .create_dimension_table(&dim_config("countries"), &schema, &file)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("primaryKeyColumns[0]") && e.contains("nope"), "{e}");
    let mut config = dim_config("countries");
    config["dimensionTableConfig"] = json!({"errorOnDuplicatePrimaryKey": true});
    let e = engine.create_dimension_table(&config, &countries_schema(), &file).await.unwrap_err().to_string();
    assert!(e.contains("errorOnDuplicatePrimaryKey"), "{e}");
    let e = engine
        .create_dimension_table(&dim_config("countries"), &countries_schema(), files.path().join("c.xlsx"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("xlsx"), "{e}");
    let e = engine
        .create_dimension_table(&dim_config("countries"), &countries_schema(), files.path().join("none.csv"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    // Nothing of a refused create is kept.
    assert!(engine.dimension_tables().is_empty());
    assert!(!dir.path().join("dimensions").join("countries").exists());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dimension_names_values_and_leftovers_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let engine = engine_with_orders(dir.path()).await;
    let csv = files.path().join("codes.csv");
    std::fs::write(&csv, "code,region,population\n007,Bond,1\n02139,Cambridge,2\n").unwrap();

    // A name that is no table name, or one another table has in any case, is refused before
    // anything is written.
    let mut schema = countries_schema();
    for name in ["../tables/orders", "Orders", "orders_REALTIME"] {
        schema["schemaName"] = json!(name);
        let e = engine.create_dimension_table(&dim_config(name), &schema, &csv).await.unwrap_err();
        assert!(
            matches!(e.kind(), shoal::ErrorKind::InvalidConfig | shoal::ErrorKind::AlreadyExists),
            "{name}: {e}"
        );
    }
    assert!(engine.definition("orders").is_ok());
    assert!(
        !dir.path().join("dimensions").exists()
            || std::fs::read_dir(dir.path().join("dimensions")).unwrap().count() == 0
    );

    // CSV values are read as text and cast to the schema's types: "007" stays a string key.
    engine.create_dimension_table(&dim_config("countries"), &countries_schema(), &csv).await.unwrap();
    let sql = "SELECT LOOKUP('countries', 'region', 'code', '007')";
    assert_eq!(column(&engine, sql).await, ["Bond"]);
    assert_eq!(column(&engine, "SELECT LOOKUP('countries', 'population', 'code', '02139')").await, ["2"]);
    // Its name is taken for every other kind of table, and only its own drop removes it.
    let e = engine
        .create_table(&facts_config_named("COUNTRIES"), &facts_schema_named("COUNTRIES"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), shoal::ErrorKind::AlreadyExists, "{e}");
    assert_eq!(engine.deregister_table("countries").unwrap_err().kind(), shoal::ErrorKind::InvalidInput);

    // A value that does not convert fails the load instead of becoming a default.
    let bad = files.path().join("bad.csv");
    std::fs::write(&bad, "code,region,population\nDE,Europe,many\n").unwrap();
    let mut schema = countries_schema();
    schema["schemaName"] = json!("bad");
    let e = engine.create_dimension_table(&dim_config("bad"), &schema, &bad).await.unwrap_err().to_string();
    assert!(e.contains("population") && e.contains("many"), "{e}");
    // A file without a primary key column is refused.
    std::fs::write(&bad, "region,population\nEurope,1\n").unwrap();
    let e = engine.create_dimension_table(&dim_config("bad"), &schema, &bad).await.unwrap_err().to_string();
    assert!(e.contains("primary key column") && e.contains("code"), "{e}");

    // A DOUBLE column's miss is Pinot's LOOKUP default: -Infinity's intValue().
    let doubles = files.path().join("rates.json");
    std::fs::write(&doubles, "{\"code\":\"DE\",\"rate\":1.5}\n").unwrap();
    let rates = json!({
        "schemaName": "rates",
        "dimensionFieldSpecs": [{"name": "code", "dataType": "STRING"}, {"name": "rate", "dataType": "DOUBLE"}],
        "primaryKeyColumns": ["code"]
    });
    engine.create_dimension_table(&dim_config("rates"), &rates, &doubles).await.unwrap();
    assert_eq!(column(&engine, "SELECT LOOKUP('rates', 'rate', 'code', 'XX')").await, ["-2147483648.0"]);
    assert_eq!(column(&engine, "SELECT LOOKUP('rates', 'rate', 'code', 'DE')").await, ["1.5"]);
    engine.shutdown().await;

    // Leftovers in dimensions/ (a stray file, a definition another version broke) keep
    // nothing from opening.
    std::fs::write(dir.path().join("dimensions/.DS_Store"), "x").unwrap();
    std::fs::write(dir.path().join("dimensions/rates/table.json"), "{broken").unwrap();
    let engine = engine_with_orders(dir.path()).await;
    assert_eq!(engine.dimension_tables(), ["countries"]);
    assert_eq!(column(&engine, "SELECT LOOKUP('countries', 'region', 'code', '007')").await, ["Bond"]);
    engine.shutdown().await;
}

fn facts_config_named(name: &str) -> Value {
    let mut c = facts_config();
    c["tableName"] = json!(name);
    c
}

fn facts_schema_named(name: &str) -> Value {
    let mut s = facts_schema();
    s["schemaName"] = json!(name);
    s
}
