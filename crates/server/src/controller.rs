//! Pinot's controller JSON for the paths Shoal serves: `consumingSegmentsInfo`
//! (pinot-controller `ConsumingSegmentInfoReader.ConsumingSegmentsInfoMap`).

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
                "consumerState": s.state,
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
