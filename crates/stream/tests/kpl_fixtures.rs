//! Shoal's KPL de-aggregator on blobs made by AWS's own aggregator (PyPI `aws-kinesis-agg`,
//! see `fixtures/kpl/README.md`): every user record comes out with its partition key, explicit
//! hash key and bytes, in order, and its effective hash key is the one `fixtures.json` gives.

use bytes::Bytes;
use serde_json::Value;
use shoal_stream::kpl::{Deaggregated, UserRecord, deaggregate, effective_hash_key};
use std::path::PathBuf;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kpl")
}

/// The user records `fixtures.json` lists for one blob, and their effective hash keys.
fn expected(fixture: &Value) -> (Vec<UserRecord>, Vec<u128>) {
    let records = fixture["records"].as_array().expect("records is a list");
    let users = records
        .iter()
        .map(|r| UserRecord {
            partition_key: r["partition_key"].as_str().expect("partition_key is a string").to_string(),
            explicit_hash_key: r["explicit_hash_key"].as_str().map(str::to_string),
            data: Bytes::from(r["data"].as_str().expect("data is a string").as_bytes().to_vec()),
        })
        .collect();
    let hash_keys = records
        .iter()
        .map(|r| {
            let text = r["effective_hash_key"].as_str().expect("effective_hash_key is a string");
            text.parse().expect("effective_hash_key is a decimal u128")
        })
        .collect();
    (users, hash_keys)
}

#[test]
fn aws_aggregates_deaggregate_to_the_records_fixtures_json_lists() {
    let text =
        std::fs::read_to_string(fixtures_dir().join("fixtures.json")).expect("fixtures.json is readable");
    let doc: Value = serde_json::from_str(&text).expect("fixtures.json is JSON");
    let fixtures = doc["fixtures"].as_array().expect("fixtures is a list");
    let mut checked = Vec::new();
    for fixture in fixtures {
        let file = fixture["file"].as_str().expect("file is a string");
        let blob = Bytes::from(std::fs::read(fixtures_dir().join(file)).expect("the .bin file is readable"));
        let (want, want_hash_keys) = expected(fixture);
        let Deaggregated::Aggregate(got) = deaggregate(&blob) else {
            panic!("{file}: not recognised as an aggregate");
        };
        assert_eq!(got, want, "{file}: user records");
        let hash_keys: Vec<Option<u128>> = got
            .iter()
            .map(|r| effective_hash_key(&r.partition_key, r.explicit_hash_key.as_deref()))
            .collect();
        assert_eq!(hash_keys, want_hash_keys.into_iter().map(Some).collect::<Vec<_>>(), "{file}: hash keys");
        checked.push(file.to_string());
    }
    // Every blob in the directory is listed, so none is skipped unnoticed.
    let mut bins: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("the fixture directory is readable")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".bin"))
        .collect();
    bins.sort();
    checked.sort();
    assert_eq!(checked, bins);
    assert_eq!(checked.len(), 6);
}

/// AWS's own Python de-aggregator gives a record without an explicit hash key the table's
/// first entry when the table is not empty (fixtures/kpl/README.md); Shoal keeps it absent.
#[test]
fn records_without_an_explicit_hash_key_keep_none_beside_records_with_one() {
    let blob = Bytes::from(
        std::fs::read(fixtures_dir().join("partial_explicit_hash_keys.bin"))
            .expect("the fixture is readable"),
    );
    let Deaggregated::Aggregate(got) = deaggregate(&blob) else { panic!("not recognised as an aggregate") };
    let keys: Vec<(&str, Option<&str>)> =
        got.iter().map(|r| (r.partition_key.as_str(), r.explicit_hash_key.as_deref())).collect();
    assert_eq!(
        keys,
        [
            ("plain-a", None),
            ("with-ehk", Some("170141183460469231731687303715884105728")),
            ("plain-b", None),
            ("with-ehk-2", Some("42")),
            ("with-ehk", Some("170141183460469231731687303715884105728")),
        ]
    );
}
