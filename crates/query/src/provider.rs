//! The DataFusion TableProvider of a table: one snapshot of its sealed and consuming segments,
//! pruned by segment statistics, one partition per segment (large ones split).

use arrow::array::{ArrayRef, RecordBatch, UInt64Array, new_null_array};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use shoal_segment::columns::{DECIMAL_PRECISION, DECIMAL_SCALE};
use shoal_segment::{ColumnStats, SealedSegment, SegmentError, SegmentSnapshot, StatValue, TableLayout};
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Rows per partition of a large segment.
const PARTITION_ROWS: usize = 131_072;

/// One segment of a table snapshot.
#[derive(Debug, Clone)]
pub enum SegmentData {
    /// A sealed, memory-mapped segment.
    Sealed(Arc<SealedSegment>),
    /// A snapshot of a consuming segment.
    Consuming(SegmentSnapshot),
}

impl SegmentData {
    fn rows(&self) -> usize {
        match self {
            SegmentData::Sealed(s) => s.meta().rows as usize,
            SegmentData::Consuming(c) => c.rows,
        }
    }

    fn stats(&self, column: usize) -> Option<&ColumnStats> {
        match self {
            SegmentData::Sealed(s) => s.meta().columns.get(column).map(|c| &c.stats),
            SegmentData::Consuming(c) => c.stats.get(column),
        }
    }

    fn batches(&self) -> std::result::Result<Vec<RecordBatch>, (Arc<SealedSegment>, SegmentError)> {
        match self {
            SegmentData::Sealed(s) => {
                s.batches().map(<[RecordBatch]>::to_vec).map_err(|e| (Arc::clone(s), e))
            }
            SegmentData::Consuming(c) => Ok(c.batches.clone()),
        }
    }
}

/// A consistent view of a table: what a query reads.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    /// The segments.
    pub segments: Vec<SegmentData>,
}

/// Supplies snapshots of a table (the engine implements it).
pub trait SnapshotSource: Send + Sync + fmt::Debug {
    /// The table's current segments, sealed and consuming, as one consistent set.
    fn snapshot(&self) -> TableSnapshot;

    /// A sealed segment of a snapshot could not be read (its data is damaged). The query goes
    /// on without it and says so; the source may take the segment out and restore its rows.
    fn unreadable(&self, segment: &Arc<SealedSegment>, error: &SegmentError) {
        let _ = (segment, error);
    }
}

/// What the scans of one query touched, for the Pinot response.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanStats {
    /// Rows in every segment of the snapshots.
    pub total_docs: u64,
    /// Rows of the segments read (after pruning).
    pub docs_scanned: u64,
    /// Segments in the snapshots.
    pub segments_queried: u64,
    /// Segments read after pruning.
    pub segments_processed: u64,
    /// Segments read that hold rows.
    pub segments_matched: u64,
    /// Consuming segments in the snapshots.
    pub consuming_queried: u64,
    /// Oldest last-append time among the consuming segments queried, epoch ms.
    pub min_consuming_freshness_ms: Option<i64>,
    /// Sealed segments left out because their data could not be read, with why.
    pub unreadable: Vec<String>,
}

/// A table as DataFusion sees it.
#[derive(Debug)]
pub struct ShoalTable {
    layout: Arc<TableLayout>,
    source: Arc<dyn SnapshotSource>,
    stats: Arc<Mutex<ScanStats>>,
    prune: bool,
}

impl ShoalTable {
    /// A provider over `source`, recording what its scans touch into `stats`.
    pub fn new(
        layout: Arc<TableLayout>,
        source: Arc<dyn SnapshotSource>,
        stats: Arc<Mutex<ScanStats>>,
    ) -> Self {
        ShoalTable { layout, source, stats, prune: true }
    }

    /// Whether scans skip segments by their statistics (on by default). Off is for benchmarks
    /// and diagnosis: every segment is read, and DataFusion's filter still gives the same rows.
    pub fn with_pruning(mut self, on: bool) -> Self {
        self.prune = on;
        self
    }
}

#[async_trait]
impl TableProvider for ShoalTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.layout.arrow)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters prune whole segments; DataFusion still applies them to the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = self.source.snapshot();
        let keep = self.prune(state, filters, &snapshot.segments);
        let mut partitions = Vec::new();
        let mut stats = ScanStats::default();
        for (segment, keep) in snapshot.segments.iter().zip(&keep) {
            let rows = segment.rows() as u64;
            stats.total_docs += rows;
            stats.segments_queried += 1;
            if let SegmentData::Consuming(c) = segment {
                stats.consuming_queried += 1;
                if let Some(t) = c.last_append_ms {
                    stats.min_consuming_freshness_ms =
                        Some(stats.min_consuming_freshness_ms.map_or(t, |m: i64| m.min(t)));
                }
            }
            if !keep {
                continue;
            }
            stats.segments_processed += 1;
            stats.docs_scanned += rows;
            if rows == 0 {
                continue;
            }
            let batches = match segment.batches() {
                Ok(b) => b,
                Err((sealed, e)) => {
                    // One damaged segment does not fail the query: it is left out and named.
                    tracing::error!(segment = %sealed.path().display(), error = %e, "a segment could not be read; the query goes on without it");
                    stats.unreadable.push(e.to_string());
                    self.source.unreadable(&sealed, &e);
                    continue;
                }
            };
            stats.segments_matched += 1;
            let mut part = Vec::new();
            let mut part_rows = 0;
            for batch in batches {
                part_rows += batch.num_rows();
                part.push(batch);
                if part_rows >= PARTITION_ROWS {
                    partitions.push(std::mem::take(&mut part));
                    part_rows = 0;
                }
            }
            if !part.is_empty() {
                partitions.push(part);
            }
        }
        {
            let mut total = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            total.total_docs += stats.total_docs;
            total.docs_scanned += stats.docs_scanned;
            total.segments_queried += stats.segments_queried;
            total.segments_processed += stats.segments_processed;
            total.segments_matched += stats.segments_matched;
            total.consuming_queried += stats.consuming_queried;
            if let Some(t) = stats.min_consuming_freshness_ms {
                total.min_consuming_freshness_ms =
                    Some(total.min_consuming_freshness_ms.map_or(t, |m| m.min(t)));
            }
            total.unreadable.append(&mut stats.unreadable);
        }
        if partitions.is_empty() {
            partitions.push(Vec::new());
        }
        let source =
            MemorySourceConfig::try_new(&partitions, self.schema(), projection.cloned())?.with_limit(limit);
        Ok(DataSourceExec::from_data_source(source))
    }
}

impl ShoalTable {
    /// Which segments may hold rows matching `filters`.
    fn prune(&self, state: &dyn Session, filters: &[Expr], segments: &[SegmentData]) -> Vec<bool> {
        let all = vec![true; segments.len()];
        if !self.prune {
            return all;
        }
        let Some(filter) = conjunction(filters.iter().cloned()) else { return all };
        let Ok(expr) = DFSchema::try_from(self.schema().as_ref().clone())
            .and_then(|df| state.create_physical_expr(filter, &df))
        else {
            return all;
        };
        let Some(predicate) = PruningPredicateBuilder::new().with_file_schema(self.schema()).build(expr)
        else {
            return all;
        };
        let statistics = SegmentStatistics { layout: &self.layout, segments };
        predicate.prune(&statistics).unwrap_or(all)
    }
}

/// Segment statistics as DataFusion's pruning reads them.
struct SegmentStatistics<'a> {
    layout: &'a TableLayout,
    segments: &'a [SegmentData],
}

impl SegmentStatistics<'_> {
    fn values(&self, column: &Column, pick: impl Fn(&ColumnStats) -> Option<&StatValue>) -> Option<ArrayRef> {
        let index = self.layout.column_index(&column.name)?;
        let data_type = self.layout.arrow.field(index).data_type().clone();
        let scalars: Vec<ScalarValue> = self
            .segments
            .iter()
            .map(|s| {
                s.stats(index)
                    .and_then(&pick)
                    .and_then(|v| to_scalar(v, &data_type))
                    .unwrap_or_else(|| ScalarValue::try_from(&data_type).unwrap_or(ScalarValue::Null))
            })
            .collect();
        if scalars.is_empty() {
            return Some(new_null_array(&data_type, 0));
        }
        ScalarValue::iter_to_array(scalars).ok()
    }
}

fn to_scalar(v: &StatValue, t: &DataType) -> Option<ScalarValue> {
    Some(match (v, t) {
        (StatValue::Int(i), DataType::Int32) => ScalarValue::Int32(Some(i32::try_from(*i).ok()?)),
        (StatValue::Int(i), DataType::Int64) => ScalarValue::Int64(Some(*i)),
        (StatValue::Int(i), DataType::Timestamp(_, tz)) => {
            ScalarValue::TimestampMillisecond(Some(*i), tz.clone())
        }
        (StatValue::Float(f), DataType::Float32) => ScalarValue::Float32(Some(*f as f32)),
        (StatValue::Float(f), DataType::Float64) => ScalarValue::Float64(Some(*f)),
        (StatValue::Bool(b), DataType::Boolean) => ScalarValue::Boolean(Some(*b)),
        (StatValue::Str(s), DataType::Utf8) => ScalarValue::Utf8(Some(s.clone())),
        (StatValue::Decimal(d), DataType::Decimal128(_, _)) => {
            ScalarValue::Decimal128(Some(d.parse().ok()?), DECIMAL_PRECISION, DECIMAL_SCALE)
        }
        _ => return None,
    })
}

impl PruningStatistics for SegmentStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.min.as_ref())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.max.as_ref())
    }

    fn num_containers(&self) -> usize {
        self.segments.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let index = self.layout.column_index(&column.name)?;
        Some(Arc::new(UInt64Array::from_iter(
            self.segments.iter().map(|s| s.stats(index).map(|c| c.null_count)),
        )))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from_iter_values(self.segments.iter().map(|s| s.rows() as u64))))
    }

    fn contained(
        &self,
        _column: &Column,
        _values: &HashSet<ScalarValue>,
    ) -> Option<arrow::array::BooleanArray> {
        None
    }
}
