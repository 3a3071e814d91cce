//! The controller JSON of the paths Shoal serves: Pinot's `consumingSegmentsInfo`
//! (pinot-controller `ConsumingSegmentInfoReader.ConsumingSegmentsInfoMap`) and each table's
//! status. The engine's status types are plain Rust; their wire form is made here.

use serde_json::{Value, json};
use shoal::TableStatus;

/// Pinot's `consumingSegmentsInfo` of a table: per consuming shard, its state, checkpoint, lag
/// and rows.
pub fn consuming_segments_info(status: &TableStatus) -> Value {
    let mut map = serde_json::Map::new();
    for s in &status.shards {
        let segment = format!("{}__{}__CONSUMING", status.table, s.shard);
        map.insert(
            segment,
            json!([{
                "serverName": "shoal",
                "consumerState": shard_state_name(s.state),
                "lastConsumedTimestamp": null,
                "partitionToOffsetMap": {&s.shard: s.checkpoint},
                "partitionOffsetInfo": {
                    "currentOffsetsMap": {&s.shard: s.checkpoint},
                    "availabilityLagMsMap": {&s.shard: s.millis_behind_latest.map(|m| m.to_string())},
                },
                "shard": s.shard,
                "checkpoint": s.checkpoint,
                "millisBehindLatest": s.millis_behind_latest,
                "consumingRows": s.consuming_rows,
                "rowsIngested": s.rows_ingested,
            }]),
        );
    }
    json!({"_segmentToConsumingInfoMap": map})
}

/// A shard's state as the status JSON names it.
pub fn shard_state_name(state: shoal::ShardState) -> &'static str {
    match state {
        shoal::ShardState::Consuming => "CONSUMING",
        shoal::ShardState::Paused => "PAUSED",
        shoal::ShardState::Ended => "ENDED",
    }
}

/// A quarantined segment's state as the status JSON names it.
pub fn quarantine_state_name(state: shoal::QuarantineState) -> &'static str {
    match state {
        shoal::QuarantineState::Pending => "PENDING",
        shoal::QuarantineState::Rereading => "REREADING",
        shoal::QuarantineState::Restored => "RESTORED",
        shoal::QuarantineState::Partial => "PARTIAL",
    }
}

/// `/tables/{name}/status`: a table's status for operators, in Pinot's camelCase.
pub fn table_status(status: &TableStatus) -> Value {
    let shards: Vec<Value> = status
        .shards
        .iter()
        .map(|s| {
            let mut shard = json!({
                "shard": s.shard,
                "state": shard_state_name(s.state),
                "checkpoint": s.checkpoint,
                "millisBehindLatest": s.millis_behind_latest,
                "consumingRows": s.consuming_rows,
                "rowsIngested": s.rows_ingested,
            });
            if let Some(error) = &s.error {
                shard["error"] = json!(error);
            }
            if s.restarts > 0 {
                shard["restarts"] = json!(s.restarts);
                shard["lastPanic"] = json!(s.last_panic);
            }
            shard
        })
        .collect();
    let segments: Vec<Value> = status
        .segments
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "shard": s.shard,
                "rows": s.rows,
                "timeRange": s.time_range,
                "verified": s.verified,
            })
        })
        .collect();
    let mut out = json!({
        "table": status.table,
        "shards": shards,
        "segments": segments,
        "sealedRows": status.sealed_rows,
        "consumingRows": status.consuming_rows,
        "dropped": status.dropped,
    });
    if !status.quarantined.is_empty() {
        out["quarantined"] = status
            .quarantined
            .iter()
            .map(|q| {
                json!({
                    "file": q.file,
                    "shard": q.shard,
                    "reason": q.reason,
                    "rows": q.rows,
                    "state": quarantine_state_name(q.state),
                    "rowsRestored": q.rows_restored,
                })
            })
            .collect();
    }
    out
}
