//! `serve --validate`: prints the normalised config with secrets masked and exits 0, or lists
//! every problem and exits 2, never with a panic.

mod server;

use server::serve_binary;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(serve_binary())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run serve")
}

const SECRETS: [&str; 2] = ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"];

#[test]
fn valid_files_print_the_normalised_config_without_secrets() {
    let out = run(&[
        "--validate",
        "--table-config",
        "examples/config/events.table.json",
        "--schema",
        "examples/config/events.schema.json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    let streams = &json["tableIndexConfig"]["streamConfigs"];
    assert_eq!(streams["secretKey"], "***");
    assert_eq!(streams["accessKey"], "***");
    assert_eq!(streams["maxRecordsToFetch"], "10000");
    assert_eq!(streams["realtime.segment.flush.threshold.time"], "6h");
    for secret in SECRETS {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} leaked");
    }
}

/// Secrets off the stream map: in `metadata.customConfigs`, in a nested credentials object,
/// in a list of objects, at the top; beside look-alike keys that are no secret.
#[test]
fn secrets_anywhere_in_the_config_are_masked_and_look_alikes_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut table: serde_json::Value =
        serde_json::from_str(include_str!("../examples/config/events.table.json")).unwrap();
    table["metadata"]["customConfigs"] = serde_json::json!({
        "apiKey": "cc-apikey-5d1e",
        "smtp_password": "cc-smtp-pwd-7a20",
        "partitionKey": "visible-partition-key",
    });
    table["exports"] = serde_json::json!({
        "db.credentials": {"user": "nested-user-31f0", "pass": "nested-pass-4be2"},
        "targets": [{"name": "visible-warehouse", "apiKey": "array-apikey-8e6d"}],
        "keyColumn": "visible-key-column",
    });
    table["apiKey"] = "top-apikey-66ab".into();
    let table_path = dir.path().join("t.json");
    std::fs::write(&table_path, table.to_string()).unwrap();
    let out = run(&[
        "--validate",
        "--table-config",
        table_path.to_str().unwrap(),
        "--schema",
        "examples/config/events.schema.json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let secrets = [
        "cc-apikey-5d1e",
        "cc-smtp-pwd-7a20",
        "nested-user-31f0",
        "nested-pass-4be2",
        "array-apikey-8e6d",
        "top-apikey-66ab",
    ];
    for secret in secrets.iter().chain(&SECRETS) {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} leaked:\n{stdout}\n{stderr}");
    }
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert_eq!(json["exports"]["db.credentials"], serde_json::json!({"user": "***", "pass": "***"}));
    assert_eq!(json["metadata"]["customConfigs"]["partitionKey"], "visible-partition-key");
    assert_eq!(json["exports"]["targets"][0]["name"], "visible-warehouse");
    assert_eq!(json["exports"]["keyColumn"], "visible-key-column");
    let streams = &json["tableIndexConfig"]["streamConfigs"];
    assert_eq!(streams["stream.kinesis.topic.name"], "events");
    assert_eq!(
        streams["stream.kinesis.consumer.factory.class.name"],
        "org.apache.pinot.plugin.stream.kinesis.KinesisConsumerFactory"
    );
}

#[test]
fn several_tables_validate_together() {
    let out = run(&[
        "--validate",
        "--table-config",
        "examples/config/events.table.json",
        "--schema",
        "examples/config/events.schema.json",
        "--table-config",
        "examples/config/events.streamConfigMaps.table.json",
        "--schema",
        "examples/config/events.schema.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(2));
}

/// The config of Pinot's Kinesis page, as written there: valid, with its start and its
/// placeholders as warnings on stderr, and the effective start in the printed config.
#[test]
fn the_pinot_docs_config_validates_with_warnings() {
    let out = run(&[
        "--validate",
        "--table-config",
        "examples/config/kinesisTable.table.json",
        "--schema",
        "examples/config/kinesisTable.schema.json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let warning = stderr
        .lines()
        .find(|l| {
            l.starts_with("warning:") && l.contains("tableIndexConfig.streamConfigs.shardIteratorType:")
        })
        .unwrap_or_else(|| panic!("no start warning in {stderr}"));
    assert!(warning.contains("AFTER_SEQUENCE_NUMBER") && warning.contains("TRIM_HORIZON"), "{warning}");
    assert!(stderr.contains("tableIndexConfig.streamConfigs.region:"), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    let streams = &json["tableIndexConfig"]["streamConfigs"];
    assert_eq!(streams["shardIteratorType"], "TRIM_HORIZON");
    assert_eq!(streams["secretKey"], "***");
    assert!(!stdout.contains("<your secret key>") && !stderr.contains("<your secret key>"));
}

#[test]
fn invalid_files_list_every_problem_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut table: serde_json::Value =
        serde_json::from_str(include_str!("../examples/config/events.table.json")).unwrap();
    let streams = table["tableIndexConfig"]["streamConfigs"].as_object_mut().unwrap();
    streams.remove("region");
    streams.insert("realtime.segment.flush.threshold.time".into(), "soonish".into());
    table["segmentsConfig"]["timeColumnName"] = "when".into();
    let table_path = dir.path().join("t.json");
    std::fs::write(&table_path, table.to_string()).unwrap();
    let out = run(&[
        "--validate",
        "--table-config",
        table_path.to_str().unwrap(),
        "--schema",
        "examples/config/events.schema.json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for path in [
        "tableIndexConfig.streamConfigs.region: missing",
        "tableIndexConfig.streamConfigs.realtime.segment.flush.threshold.time:",
        "segmentsConfig.timeColumnName:",
    ] {
        assert!(stderr.contains(path), "{path} not in {stderr}");
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    for secret in SECRETS {
        assert!(!stderr.contains(secret) && !String::from_utf8_lossy(&out.stdout).contains(secret));
    }
}

#[test]
fn unreadable_and_malformed_files_exit_2_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"tableName\": ").unwrap();
    for args in [
        vec![
            "--validate",
            "--table-config",
            "/nonexistent/t.json",
            "--schema",
            "examples/config/events.schema.json",
        ],
        vec!["--validate", "--table-config", bad.to_str().unwrap(), "--schema", bad.to_str().unwrap()],
        vec!["--validate", "--table-config", bad.to_str().unwrap()],
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
