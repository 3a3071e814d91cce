//! Per-shard consumer metrics, shared with the engine's registry.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one shard's reader.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// Records handed on (KPL user records counted one by one).
    pub records: AtomicU64,
    /// Bytes of those records.
    pub bytes: AtomicU64,
    /// MillisBehindLatest of the last answer (-1 before the first).
    pub millis_behind_latest: AtomicI64,
    /// GetRecords calls.
    pub get_records_calls: AtomicU64,
    /// Throttling answers (ProvisionedThroughputExceeded, KMSThrottling, LimitExceeded).
    pub throttles: AtomicU64,
    /// Retries after connection errors, timeouts and 5xx answers.
    pub retries: AtomicU64,
    /// New iterators after ExpiredIterator.
    pub iterator_renewals: AtomicU64,
    /// Epoch ms of the last successful fetch (0 before the first).
    pub last_fetch_ms: AtomicI64,
    /// KPL user records dropped because their aggregate holds a record of another shard (the
    /// producer puts such an aggregate's records again, to the right shards).
    pub kpl_foreign_records: AtomicU64,
}

impl ShardMetrics {
    /// A plain copy of the counters.
    pub fn snapshot(&self) -> ShardMetricsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ShardMetricsSnapshot {
            records: l(&self.records),
            bytes: l(&self.bytes),
            millis_behind_latest: self.millis_behind_latest.load(Ordering::Relaxed),
            get_records_calls: l(&self.get_records_calls),
            throttles: l(&self.throttles),
            retries: l(&self.retries),
            iterator_renewals: l(&self.iterator_renewals),
            last_fetch_ms: self.last_fetch_ms.load(Ordering::Relaxed),
            kpl_foreign_records: l(&self.kpl_foreign_records),
        }
    }
}

/// A copy of one shard's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShardMetricsSnapshot {
    /// Records handed on.
    pub records: u64,
    /// Bytes handed on.
    pub bytes: u64,
    /// MillisBehindLatest of the last answer (-1 before the first).
    pub millis_behind_latest: i64,
    /// GetRecords calls.
    pub get_records_calls: u64,
    /// Throttling answers.
    pub throttles: u64,
    /// Retries after transient errors.
    pub retries: u64,
    /// New iterators after ExpiredIterator.
    pub iterator_renewals: u64,
    /// Epoch ms of the last successful fetch.
    pub last_fetch_ms: i64,
    /// KPL user records dropped as another shard's.
    pub kpl_foreign_records: u64,
}

/// The metrics of one stream's consumer.
#[derive(Debug, Default)]
pub struct StreamMetrics {
    shards: Mutex<BTreeMap<String, Arc<ShardMetrics>>>,
    /// Shards whose data expired before they were read to their end.
    pub data_loss_events: AtomicU64,
}

impl StreamMetrics {
    /// The counters of `shard`, created on first use.
    pub fn shard(&self, shard: &str) -> Arc<ShardMetrics> {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(shards.entry(shard.to_string()).or_insert_with(|| {
            let m = ShardMetrics::default();
            m.millis_behind_latest.store(-1, Ordering::Relaxed);
            Arc::new(m)
        }))
    }

    /// Every shard's counters.
    pub fn snapshot(&self) -> BTreeMap<String, ShardMetricsSnapshot> {
        let shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        shards.iter().map(|(k, v)| (k.clone(), v.snapshot())).collect()
    }
}
