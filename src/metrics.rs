//! The engine's metrics registry: per table and shard, rendered in Prometheus' text format.

use shoal_segment::DropStats;
use shoal_stream::StreamMetrics;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one table.
#[derive(Debug, Default)]
pub struct TableMetrics {
    /// Rows appended to consuming segments.
    pub rows_ingested: AtomicU64,
    /// Bytes of the records offered.
    pub bytes_ingested: AtomicU64,
    /// Records dropped, by reason.
    pub dropped: Mutex<DropStats>,
    /// Rows the table's filter (`ingestionConfig.filterConfig`) dropped: not errors.
    pub rows_filtered: AtomicU64,
    /// Rows kept with defaults in place of values a transform or conversion failed on
    /// (`continueOnError`).
    pub rows_incomplete: AtomicU64,
    /// What an upsert or dedup table's key map decided.
    pub upsert: Arc<crate::UpsertCounters>,
    /// Segments sealed.
    pub segments_sealed: AtomicU64,
    /// Upsert segments rewritten with only their visible rows, or dropped with none.
    pub segments_compacted: AtomicU64,
    /// Time spent sealing, in microseconds.
    pub seal_micros: AtomicU64,
    /// Attempts to seal that failed (each is retried).
    pub seal_failures: AtomicU64,
    /// Scans of the table by queries.
    pub queries: AtomicU64,
    /// Sealed segments found damaged after open (by the scrub or a query) and quarantined.
    pub segments_quarantined: AtomicU64,
    /// Ingest tasks that panicked (each is started again from the shard's last commit).
    pub ingest_panics: AtomicU64,
    /// Segments uploaded to the deep store.
    pub deep_uploads: AtomicU64,
    /// Bytes uploaded to the deep store.
    pub deep_upload_bytes: AtomicU64,
    /// Deep-store rounds that failed (each is retried with backoff).
    pub deep_upload_failures: AtomicU64,
    /// Segments evicted from local disk to the cold tier.
    pub deep_evicted: AtomicU64,
    /// Sealed segments not uploaded yet (a gauge).
    pub deep_pending_segments: AtomicU64,
    /// Bytes of the sealed segments not uploaded yet (a gauge).
    pub deep_pending_bytes: AtomicU64,
    /// Segments whose only copy is in the deep store (a gauge).
    pub deep_cold_segments: AtomicU64,
    /// The table's consumer (per-shard MillisBehindLatest, throttles, ...).
    pub stream: Mutex<Option<Arc<StreamMetrics>>>,
}

/// Every table's counters, plus the engine's.
#[derive(Debug, Default)]
pub struct Metrics {
    tables: Mutex<BTreeMap<String, Arc<TableMetrics>>>,
    /// Queries run.
    pub queries: AtomicU64,
    /// Queries that failed.
    pub query_errors: AtomicU64,
    /// Time queries took, in microseconds.
    pub query_micros: AtomicU64,
}

impl Metrics {
    /// The counters of `table`, created on first use.
    pub fn table(&self, table: &str) -> Arc<TableMetrics> {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(tables.entry(table.to_string()).or_default())
    }

    /// Forgets a dropped table.
    pub fn remove(&self, table: &str) {
        self.tables.lock().unwrap_or_else(|p| p.into_inner()).remove(table);
    }

    /// Every metric in Prometheus' text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let tables: Vec<(String, Arc<TableMetrics>)> = {
            let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            t.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect()
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(&mut out, "shoal_rows_ingested_total", "counter", "Rows appended to consuming segments.");
        for (t, m) in &tables {
            let _ =
                writeln!(out, "shoal_rows_ingested_total{{table=\"{}\"}} {}", esc(t), load(&m.rows_ingested));
        }
        family(&mut out, "shoal_bytes_ingested_total", "counter", "Bytes of the records consumed.");
        for (t, m) in &tables {
            let _ = writeln!(
                out,
                "shoal_bytes_ingested_total{{table=\"{}\"}} {}",
                esc(t),
                load(&m.bytes_ingested)
            );
        }
        family(&mut out, "shoal_rows_dropped_total", "counter", "Records dropped, by reason.");
        for (t, m) in &tables {
            let dropped = m.dropped.lock().unwrap_or_else(|p| p.into_inner());
            for (reason, n) in &dropped.counts {
                let _ = writeln!(
                    out,
                    "shoal_rows_dropped_total{{table=\"{}\",reason=\"{}\"}} {n}",
                    esc(t),
                    reason.name()
                );
            }
        }
        family(
            &mut out,
            "shoal_rows_filtered_total",
            "counter",
            "Rows the table's ingestion filter dropped.",
        );
        for (t, m) in &tables {
            let _ =
                writeln!(out, "shoal_rows_filtered_total{{table=\"{}\"}} {}", esc(t), load(&m.rows_filtered));
        }
        for (name, help, get) in [
            (
                "shoal_rows_deduplicated_total",
                "Records dedup dropped: their primary key was in the table (Pinot's REALTIME_DEDUP_DROPPED).",
                (|u: &crate::UpsertCounters| &u.deduplicated) as fn(&crate::UpsertCounters) -> &AtomicU64,
            ),
            (
                "shoal_upsert_out_of_order_total",
                "Versions older than their primary key's current one (Pinot's UPSERT_OUT_OF_ORDER).",
                |u| &u.out_of_order,
            ),
            (
                "shoal_upsert_out_of_order_dropped_total",
                "Versions dropped as out of order (dropOutOfOrderRecord).",
                |u| &u.out_of_order_dropped,
            ),
            ("shoal_upsert_keys_expired_total", "Primary keys taken out of the key map by a TTL.", |u| {
                &u.keys_expired
            }),
        ] {
            family(&mut out, name, "counter", help);
            for (t, m) in &tables {
                let _ = writeln!(out, "{name}{{table=\"{}\"}} {}", esc(t), load(get(&m.upsert)));
            }
        }
        family(
            &mut out,
            "shoal_rows_incomplete_total",
            "counter",
            "Rows kept with defaults where a transform or conversion failed (continueOnError).",
        );
        for (t, m) in &tables {
            let _ = writeln!(
                out,
                "shoal_rows_incomplete_total{{table=\"{}\"}} {}",
                esc(t),
                load(&m.rows_incomplete)
            );
        }
        family(
            &mut out,
            "shoal_segments_compacted_total",
            "counter",
            "Upsert segments rewritten with only their visible rows, or dropped with none (UpsertCompactionTask).",
        );
        for (t, m) in &tables {
            let _ = writeln!(
                out,
                "shoal_segments_compacted_total{{table=\"{}\"}} {}",
                esc(t),
                load(&m.segments_compacted)
            );
        }
        for (name, kind, help, get) in [
            (
                "shoal_deep_store_uploads_total",
                "counter",
                "Sealed segments uploaded to the deep store.",
                (|m: &TableMetrics| &m.deep_uploads) as fn(&TableMetrics) -> &AtomicU64,
            ),
            (
                "shoal_deep_store_upload_bytes_total",
                "counter",
                "Parquet bytes uploaded to the deep store.",
                |m| &m.deep_upload_bytes,
            ),
            (
                "shoal_deep_store_failures_total",
                "counter",
                "Deep-store rounds that failed and were retried.",
                |m| &m.deep_upload_failures,
            ),
            (
                "shoal_deep_store_evicted_total",
                "counter",
                "Segments dropped from local disk into the cold tier.",
                |m| &m.deep_evicted,
            ),
            (
                "shoal_deep_store_pending_segments",
                "gauge",
                "Sealed segments not uploaded to the deep store yet (the upload lag).",
                |m| &m.deep_pending_segments,
            ),
            (
                "shoal_deep_store_pending_bytes",
                "gauge",
                "Bytes of sealed segments not uploaded to the deep store yet.",
                |m| &m.deep_pending_bytes,
            ),
            (
                "shoal_deep_store_cold_segments",
                "gauge",
                "Segments whose only copy is in the deep store (the cold tier).",
                |m| &m.deep_cold_segments,
            ),
        ] {
            family(&mut out, name, kind, help);
            for (t, m) in &tables {
                let _ = writeln!(out, "{name}{{table=\"{}\"}} {}", esc(t), load(get(m)));
            }
        }
        family(&mut out, "shoal_segments_sealed_total", "counter", "Segments sealed.");
        for (t, m) in &tables {
            let _ = writeln!(
                out,
                "shoal_segments_sealed_total{{table=\"{}\"}} {}",
                esc(t),
                load(&m.segments_sealed)
            );
        }
        family(&mut out, "shoal_seal_seconds_total", "counter", "Time spent sealing segments.");
        for (t, m) in &tables {
            let _ = writeln!(
                out,
                "shoal_seal_seconds_total{{table=\"{}\"}} {:.6}",
                esc(t),
                load(&m.seal_micros) as f64 / 1e6
            );
        }
        family(
            &mut out,
            "shoal_seal_failures_total",
            "counter",
            "Attempts to seal that failed and were retried.",
        );
        for (t, m) in &tables {
            let _ =
                writeln!(out, "shoal_seal_failures_total{{table=\"{}\"}} {}", esc(t), load(&m.seal_failures));
        }
        family(
            &mut out,
            "shoal_segments_quarantined_total",
            "counter",
            "Sealed segments found damaged after open and quarantined (their rows are read again).",
        );
        for (t, m) in &tables {
            let n = load(&m.segments_quarantined);
            let _ = writeln!(out, "shoal_segments_quarantined_total{{table=\"{}\"}} {n}", esc(t));
        }
        family(
            &mut out,
            "shoal_ingest_panics_total",
            "counter",
            "Ingest tasks that panicked and were started again from the last commit.",
        );
        for (t, m) in &tables {
            let _ =
                writeln!(out, "shoal_ingest_panics_total{{table=\"{}\"}} {}", esc(t), load(&m.ingest_panics));
        }
        family(&mut out, "shoal_table_queries_total", "counter", "Queries that read the table.");
        for (t, m) in &tables {
            let _ = writeln!(out, "shoal_table_queries_total{{table=\"{}\"}} {}", esc(t), load(&m.queries));
        }
        let shard_rows: Vec<(String, String, shoal_stream::ShardMetricsSnapshot)> = tables
            .iter()
            .flat_map(|(t, m)| {
                let stream = m.stream.lock().unwrap_or_else(|p| p.into_inner()).clone();
                stream
                    .map(|s| {
                        s.snapshot().into_iter().map(|(shard, v)| (t.clone(), shard, v)).collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect();
        for (name, kind, help, get) in [
            (
                "shoal_shard_records_total",
                "counter",
                "Records read from the shard.",
                (|s: &shoal_stream::ShardMetricsSnapshot| s.records as i64)
                    as fn(&shoal_stream::ShardMetricsSnapshot) -> i64,
            ),
            (
                "shoal_shard_millis_behind_latest",
                "gauge",
                "MillisBehindLatest of the shard's last GetRecords answer (-1 before the first).",
                |s| s.millis_behind_latest,
            ),
            ("shoal_shard_throttles_total", "counter", "Throttling answers.", |s| s.throttles as i64),
            ("shoal_shard_retries_total", "counter", "Retries after transient errors.", |s| s.retries as i64),
            ("shoal_shard_iterator_renewals_total", "counter", "New iterators after expiry.", |s| {
                s.iterator_renewals as i64
            }),
            ("shoal_shard_get_records_total", "counter", "GetRecords calls.", |s| s.get_records_calls as i64),
            (
                "shoal_shard_kpl_foreign_records_total",
                "counter",
                "KPL user records dropped because their aggregate holds a record of another shard.",
                |s| s.kpl_foreign_records as i64,
            ),
            ("shoal_shard_last_fetch_ms", "gauge", "Epoch ms of the last successful fetch.", |s| {
                s.last_fetch_ms
            }),
        ] {
            family(&mut out, name, kind, help);
            for (t, shard, s) in &shard_rows {
                let _ = writeln!(out, "{name}{{table=\"{}\",shard=\"{}\"}} {}", esc(t), esc(shard), get(s));
            }
        }
        family(
            &mut out,
            "shoal_data_loss_events_total",
            "counter",
            "Shards whose records expired before they were read.",
        );
        for (t, m) in &tables {
            let n = m
                .stream
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|s| s.data_loss_events.load(Ordering::Relaxed))
                .unwrap_or(0);
            let _ = writeln!(out, "shoal_data_loss_events_total{{table=\"{}\"}} {n}", esc(t));
        }
        family(&mut out, "shoal_queries_total", "counter", "Queries run.");
        let _ = writeln!(out, "shoal_queries_total {}", load(&self.queries));
        family(&mut out, "shoal_query_errors_total", "counter", "Queries that failed.");
        let _ = writeln!(out, "shoal_query_errors_total {}", load(&self.query_errors));
        family(&mut out, "shoal_query_seconds_total", "counter", "Time queries took.");
        let _ = writeln!(out, "shoal_query_seconds_total {:.6}", load(&self.query_micros) as f64 / 1e6);
        out
    }
}

/// Escapes a Prometheus label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
