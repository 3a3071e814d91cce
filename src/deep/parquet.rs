//! A sealed segment's rows as one Parquet file: zstd, row groups of 128 Ki rows (a unit of
//! parallel scan and of pruning), statistics per column chunk and per page with the page index
//! (column and offset indexes), the sort order when the segment is sorted, and the table's
//! Arrow schema embedded so that every reader sees the same types. Other engines read the file
//! with their ordinary Parquet readers; the restore reads it back into a segment.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use std::sync::Arc;

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

/// A Parquet file's rows, in `schema` (the table's): an error when the file's columns differ
/// in their names, number or kind. A STRING column is read into the table's encoding (plain or
/// dictionary), whichever the file was written with.
pub(crate) fn read(schema: &SchemaRef, bytes: Bytes) -> Result<Vec<RecordBatch>, String> {
    // The file's own columns (its embedded Arrow schema): the table's names and Pinot types in
    // order, each of the table's Arrow type or a STRING encoded the other way.
    let own = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new()).map_err(|e| e.to_string())?;
    let same = own.schema().fields().len() == schema.fields().len()
        && own.schema().fields().iter().zip(schema.fields()).all(|(file, table)| {
            file.name() == table.name()
                && file.metadata() == table.metadata()
                && (file.data_type() == table.data_type()
                    || shoal_segment::columns::strings_either_way(file.data_type(), table.data_type()))
        });
    if !same {
        return Err("its columns are not the table's".into());
    }
    let options = ArrowReaderOptions::new().with_schema(SchemaRef::clone(schema));
    let metadata = ArrowReaderMetadata::try_new(Arc::clone(own.metadata()), options)
        .map_err(|e| format!("its columns are not the table's: {e}"))?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, metadata);
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
    use std::sync::Arc;

    #[test]
    fn files_have_zstd_row_groups_statistics_the_page_index_and_read_back() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batches: Vec<RecordBatch> = (0..3)
            .map(|b| {
                let n: Vec<i64> = (b * 100_000..(b + 1) * 100_000).collect();
                let s: Vec<Option<String>> =
                    n.iter().map(|i| (i % 7 != 0).then(|| format!("v{}", i % 13))).collect();
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(Int64Array::from(n)), Arc::new(StringArray::from(s))],
                )
                .unwrap()
            })
            .collect();
        let info = FileInfo { segment: "t__0__0__x", shard: "shard-0", sorted_by: Some(0) };
        let bytes = write(&schema, &batches, &info).unwrap();
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&bytes)
            .unwrap();
        assert_eq!(meta.num_row_groups(), 3, "300,000 rows in groups of 128 Ki");
        assert_eq!(meta.row_group(0).num_rows(), ROW_GROUP_ROWS as i64);
        for rg in meta.row_groups() {
            for c in rg.columns() {
                assert!(matches!(c.compression(), Compression::ZSTD(_)));
                assert!(c.statistics().is_some_and(|s| s.min_bytes_opt().is_some()));
            }
            assert_eq!(rg.sorting_columns().map(|s| s[0].column_idx), Some(0));
        }
        assert!(meta.column_index().is_some() && meta.offset_index().is_some(), "the page index");
        let kv = meta.file_metadata().key_value_metadata().unwrap();
        assert!(kv.iter().any(|k| k.key == "shoal.segment" && k.value.as_deref() == Some("t__0__0__x")));
        let back = read(&schema, bytes).unwrap();
        assert_eq!(
            arrow::compute::concat_batches(&schema, &back).unwrap(),
            arrow::compute::concat_batches(&schema, &batches).unwrap()
        );
        let other: SchemaRef = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        assert!(
            read(&other, write(&schema, &batches, &info).unwrap()).is_err(),
            "another table's file is refused"
        );
        let longs: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Int64, true),
        ]));
        assert!(read(&longs, write(&schema, &batches, &info).unwrap()).is_err(), "a column of another kind");
        let renamed: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("t", DataType::Utf8, true),
        ]));
        assert!(
            read(&renamed, write(&schema, &batches, &info).unwrap()).is_err(),
            "a column of another name"
        );
    }

    /// A file written before a STRING column was dictionary-encoded reads into the encoded
    /// table, and the other way round.
    #[test]
    fn strings_read_into_the_tables_encoding_whichever_the_file_has() {
        let plain: SchemaRef = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let encoded: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        )]));
        let strings = StringArray::from(vec![Some("a"), None, Some("b"), Some("a")]);
        let info = FileInfo { segment: "t__0__0__x", shard: "shard-0", sorted_by: None };
        let plain_batch = RecordBatch::try_new(Arc::clone(&plain), vec![Arc::new(strings.clone())]).unwrap();
        let encoded_batch = RecordBatch::try_new(
            Arc::clone(&encoded),
            vec![arrow::compute::cast(&strings, encoded.field(0).data_type()).unwrap()],
        )
        .unwrap();
        for (from, batch, to) in [(&plain, &plain_batch, &encoded), (&encoded, &encoded_batch, &plain)] {
            let back = read(to, write(from, std::slice::from_ref(batch), &info).unwrap()).unwrap();
            let back = arrow::compute::concat_batches(to, &back).unwrap();
            assert_eq!(back.schema().field(0).data_type(), to.field(0).data_type());
            let as_plain = arrow::compute::cast(back.column(0), &DataType::Utf8).unwrap();
            assert_eq!(as_plain.as_ref(), &strings as &dyn arrow::array::Array);
        }
    }
}
