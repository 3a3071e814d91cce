//! A sealed segment's rows as one Parquet file: zstd, row groups of 128 Ki rows (a unit of
//! parallel scan and of pruning), statistics per column chunk and per page with the page index
//! (column and offset indexes), the sort order when the segment is sorted, and the table's
//! Arrow schema embedded so that every reader sees the same types. Other engines read the file
//! with their ordinary Parquet readers; the restore reads it back into a segment.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

/// Rows per row group.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;

/// What the Parquet file says about its segment, as key-value metadata.
pub(crate) struct FileInfo<'a> {
    /// The segment's name.
    pub segment: &'a str,
    /// The shard it was consumed from.
    pub shard: &'a str,
    /// The column its rows are sorted by, as its index in the schema.
    pub sorted_by: Option<usize>,
}

/// The rows as a Parquet file.
pub(crate) fn write(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    info: &FileInfo<'_>,
) -> Result<Bytes, String> {
    let level = ZstdLevel::try_new(3).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(
            info.sorted_by
                .map(|c| vec![SortingColumn { column_idx: c as i32, descending: false, nulls_first: true }]),
        )
        .set_created_by(format!("shoal {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("shoal.segment".into(), info.segment.to_string()),
            KeyValue::new("shoal.shard".into(), info.shard.to_string()),
        ]))
        .build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, SchemaRef::clone(schema), Some(props)).map_err(|e| e.to_string())?;
    for batch in batches {
        writer.write(batch).map_err(|e| e.to_string())?;
    }
    writer.close().map_err(|e| e.to_string())?;
    Ok(Bytes::from(out))
}

/// A Parquet file's rows, in `schema` (the table's): an error when the file's schema differs.
pub(crate) fn read(schema: &SchemaRef, bytes: Bytes) -> Result<Vec<RecordBatch>, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    if builder.schema().fields() != schema.fields() {
        return Err("its columns are not the table's".into());
    }
    let reader = builder.with_batch_size(8192).build().map_err(|e| e.to_string())?;
    let batches: Result<Vec<RecordBatch>, _> = reader.collect();
    let batches = batches.map_err(|e| e.to_string())?;
    // The table's schema (with its metadata), the file's columns.
    batches
        .into_iter()
        .map(|b| {
            RecordBatch::try_new(SchemaRef::clone(schema), b.columns().to_vec()).map_err(|e| e.to_string())
        })
        .collect()
}
