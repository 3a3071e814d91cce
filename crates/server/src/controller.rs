//! The controller JSON of the paths Shoal serves: Pinot's `consumingSegmentsInfo`
//! (pinot-controller `ConsumingSegmentInfoReader.ConsumingSegmentsInfoMap`) and each table's
//! status. The engine's status types are plain Rust; their wire form is made here.

use serde_json::{Value, json};
use shoal::TableStatus;

/// What Pinot writes where it cannot tell (pinot-spi `PartitionLagState.NOT_CALCULATED`).
const NOT_CALCULATED: &str = "NOT_CALCULATED";

/// Pinot's `consumingSegmentsInfo` of a table: per consuming shard, its state, checkpoint, lag
/// and rows. The records lag is known only when the shard's reader has caught up (0); Kinesis
/// tells time behind, not records behind (Pinot's Kinesis plugin, `KinesisConsumerPartitionLag`,
/// reports NOT_CALCULATED too).
pub fn consuming_segments_info(status: &TableStatus) -> Value {
    let mut map = serde_json::Map::new();
    for s in &status.shards {
        let segment = format!("{}__{}__CONSUMING", status.table, s.shard);
        let caught_up = s.millis_behind_latest == Some(0);
        let records_lag = if caught_up { "0".to_string() } else { NOT_CALCULATED.to_string() };
        let latest = s.latest_upstream.clone().unwrap_or_else(|| NOT_CALCULATED.to_string());
        let availability =
            s.availability_lag_ms.map_or_else(|| NOT_CALCULATED.to_string(), |ms| ms.to_string());
        // Where reading stands: the last record consumed, else the last committed.
        let current = s.consumed.clone().or_else(|| s.checkpoint.clone());
        map.insert(
            segment,
            json!([{
                "serverName": "shoal",
                "consumerState": shard_state_name(s.state),
                "lastConsumedTimestamp": s.last_consumed_ms.unwrap_or(-1),
                "partitionToOffsetMap": {&s.shard: current},
                "partitionOffsetInfo": {
                    "currentOffsetsMap": {&s.shard: current},
                    "latestUpstreamOffsetMap": {&s.shard: latest},
                    "recordsLagMap": {&s.shard: records_lag},
                    "availabilityLagMsMap": {&s.shard: availability},
                },
                "shard": s.shard,
                "checkpoint": s.checkpoint,
                "millisBehindLatest": s.millis_behind_latest,
                "consumingRows": s.consuming_rows,
                "rowsIngested": s.rows_ingested,
            }]),
        );
    }
    json!({"_segmentToConsumingInfoMap": map, "serversFailingToRespond": 0, "serversUnparsableRespond": 0})
}

/// Pinot's `pauseStatus` (pinot-common `PauseStatusDetails`): whether consumption is paused, the
/// consuming segments, why and since when.
pub fn pause_status(table: &str, status: &shoal::PauseStatus) -> Value {
    json!({
        "pauseFlag": status.paused,
        "consumingSegments": status.consuming.iter().map(|s| format!("{table}__{s}__CONSUMING")).collect::<Vec<_>>(),
        "reasonCode": if status.paused { Value::from("ADMINISTRATIVE") } else { Value::Null },
        "comment": status.comment,
        "timestamp": status.since_ms.map(format_iso),
    })
}

/// Pinot's table size (pinot-controller `TableSizeReader.TableSizeDetails`): the sealed
/// segments' file sizes (one replica: reported and estimated are the same).
pub fn table_size(status: &TableStatus) -> Value {
    let total: u64 = status.segments.iter().map(|s| s.bytes).sum();
    let segments: serde_json::Map<String, Value> = status
        .segments
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                json!({
                    "reportedSizeInBytes": s.bytes,
                    "estimatedSizeInBytes": s.bytes,
                    "maxReportedSizePerReplicaInBytes": s.bytes,
                    "serverInfo": {"shoal": {"segmentName": s.name, "diskSizeInBytes": s.bytes}},
                }),
            )
        })
        .collect();
    json!({
        "tableName": status.table,
        "reportedSizeInBytes": total,
        "estimatedSizeInBytes": total,
        "reportedSizePerReplicaInBytes": total,
        "offlineSegments": null,
        "realtimeSegments": {
            "reportedSizeInBytes": total,
            "estimatedSizeInBytes": total,
            "reportedSizePerReplicaInBytes": total,
            "missingSegments": 0,
            "segments": segments,
        },
    })
}

/// Pinot's segment list (pinot-controller `PinotSegmentRestletResource.getSegments`): the
/// sealed segments, then the consuming ones.
pub fn segment_list(status: &TableStatus) -> Value {
    let mut names: Vec<String> = status.segments.iter().map(|s| s.name.clone()).collect();
    names.extend(
        status
            .shards
            .iter()
            .filter(|s| s.state != shoal::ShardState::Ended)
            .map(|s| format!("{}__{}__CONSUMING", status.table, s.shard)),
    );
    json!([{"REALTIME": names}])
}

/// Epoch ms as ISO-8601 UTC text.
fn format_iso(ms: i64) -> String {
    shoal_segment::JavaDatePattern::parse("yyyy-MM-dd'T'HH:mm:ss'Z'")
        .map(|p| p.format_millis(ms))
        .unwrap_or_else(|_| ms.to_string())
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
            let mut segment = json!({
                "name": s.name,
                "shard": s.shard,
                "rows": s.rows,
                "timeRange": s.time_range,
                "verified": s.verified,
            });
            if status.deep_store.is_some() {
                segment["uploaded"] = json!(s.uploaded);
                segment["tier"] = json!(if s.cold { "deepStore" } else { "local" });
            }
            segment
        })
        .collect();
    let mut out = json!({
        "table": status.table,
        "shards": shards,
        "segments": segments,
        "sealedRows": status.sealed_rows,
        "consumingRows": status.consuming_rows,
        "dropped": status.dropped,
        "filtered": status.filtered,
        "incomplete": status.incomplete,
        "paused": status.paused,
    });
    if let Some(d) = &status.deep_store {
        out["deepStore"] = json!({
            "url": d.url,
            "uploadedSegments": d.uploaded_segments,
            "pendingSegments": d.pending_segments,
            "pendingBytes": d.pending_bytes,
            "manifestSegments": d.manifest_segments,
            "coldSegments": d.cold_segments,
            "error": d.error,
        });
    }
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
