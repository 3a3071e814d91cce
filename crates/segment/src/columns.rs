//! The table's columns: the Pinot schema mapped to Arrow, plus the metadata columns.

use crate::datetime::DateTimeFormat;
use crate::schema::{DataType, DefaultValue, FieldRole, FieldSpec, Schema};
use crate::transform::RecordTransform;
use arrow::datatypes::{
    DataType as ArrowType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit as ArrowUnit,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Precision of BIG_DECIMAL columns (Arrow Decimal128's maximum).
pub const DECIMAL_PRECISION: u8 = 38;
/// Scale of BIG_DECIMAL columns: 20 digits before the point, 18 after.
pub const DECIMAL_SCALE: i8 = 18;

/// Name of the partition key column added by `metadata.populate`.
pub const KEY_COLUMN: &str = "__key";
/// Name of the sequence number column added by `metadata.populate`.
pub const SEQUENCE_COLUMN: &str = "__metadata$sequenceNumber";
/// Name of the arrival time column added by `metadata.populate`.
pub const ARRIVAL_COLUMN: &str = "__metadata$apprxArrivalTimestamp";

/// Field metadata key holding the Pinot data type of a column.
pub const PINOT_TYPE_KEY: &str = "pinot.dataType";

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A JSON field of the record (possibly a flattened `a.b` path).
    Record,
    /// The record's partition key.
    PartitionKey,
    /// The record's sequence number.
    SequenceNumber,
    /// The record's approximate arrival time (epoch ms).
    ArrivalTime,
}

/// One column of a table.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its Pinot field spec.
    pub spec: FieldSpec,
    /// Where values come from.
    pub source: Source,
    /// Stored dictionary-encoded: `Dictionary(Int32, Utf8)` in every segment, consuming and
    /// sealed (single-value STRING columns only).
    pub dictionary: bool,
}

impl Column {
    /// The Arrow type of one value.
    pub fn value_type(&self) -> ArrowType {
        arrow_type(self.spec.data_type)
    }

    /// The Arrow type of the column (a List for multi-value columns, a dictionary for
    /// dictionary-encoded ones).
    pub fn arrow_type(&self) -> ArrowType {
        if self.dictionary {
            dictionary_type()
        } else if self.spec.single_value {
            self.value_type()
        } else {
            ArrowType::List(Arc::new(Field::new("item", self.value_type(), true)))
        }
    }
}

/// The Arrow type of a dictionary-encoded STRING column.
pub fn dictionary_type() -> ArrowType {
    ArrowType::Dictionary(Box::new(ArrowType::Int32), Box::new(ArrowType::Utf8))
}

/// True for a plain STRING type and a dictionary of strings, either way round: the two
/// encodings a STRING column's values can be stored in, and converted between.
pub fn strings_either_way(a: &ArrowType, b: &ArrowType) -> bool {
    let plain = |t: &ArrowType| *t == ArrowType::Utf8;
    let dictionary = |t: &ArrowType| matches!(t, ArrowType::Dictionary(_, v) if **v == ArrowType::Utf8);
    (plain(a) && dictionary(b)) || (dictionary(a) && plain(b))
}

/// The Arrow type of a Pinot data type.
pub fn arrow_type(t: DataType) -> ArrowType {
    match t {
        DataType::Int => ArrowType::Int32,
        DataType::Long => ArrowType::Int64,
        DataType::Float => ArrowType::Float32,
        DataType::Double => ArrowType::Float64,
        DataType::BigDecimal => ArrowType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
        DataType::Boolean => ArrowType::Boolean,
        DataType::Timestamp => ArrowType::Timestamp(ArrowUnit::Millisecond, None),
        DataType::String | DataType::Json => ArrowType::Utf8,
        DataType::Bytes => ArrowType::Binary,
    }
}

/// How a table's records are decoded and laid out.
#[derive(Debug, Clone)]
pub struct TableLayout {
    /// The Pinot schema.
    pub schema: Arc<Schema>,
    /// Every column, in Arrow schema order.
    pub columns: Vec<Column>,
    /// The Arrow schema of segments.
    pub arrow: SchemaRef,
    /// Index of the time column, if the table has one.
    pub time_column: Option<usize>,
    /// The delimiter that flattens nested objects into `a.b` columns, when flattening is on.
    pub flatten_delimiter: Option<String>,
    /// `ingestionConfig.continueOnError`: a value that cannot be converted becomes its
    /// column's default and the row is kept (counted incomplete), as in Pinot.
    pub continue_on_error: bool,
    /// `ingestionConfig.rowTimeValueCheck`: rows whose time is outside 1971..2071 are dropped
    /// (Pinot's default is off: no range check).
    pub row_time_check: bool,
    /// The table's ingestion transforms, which turn each record into the rows to decode.
    pub transform: Option<Arc<dyn RecordTransform>>,
    index: HashMap<String, usize>,
}

/// Options that shape a layout beyond the schema.
#[derive(Debug, Clone, Default)]
pub struct LayoutOptions {
    /// `segmentsConfig.timeColumnName`.
    pub time_column: Option<String>,
    /// `complexTypeConfig.delimiter`, when complexTypeConfig is set.
    pub flatten_delimiter: Option<String>,
    /// `metadata.populate`: add the record metadata columns.
    pub populate_metadata: bool,
    /// `ingestionConfig.continueOnError`.
    pub continue_on_error: bool,
    /// `ingestionConfig.rowTimeValueCheck`.
    pub row_time_check: bool,
    /// The table's ingestion transforms.
    pub transform: Option<Arc<dyn RecordTransform>>,
    /// Columns stored dictionary-encoded. Only single-value STRING columns of the record are;
    /// any other name here is ignored.
    pub dictionary: HashSet<String>,
}

impl TableLayout {
    /// Lays out the columns of `schema`.
    pub fn new(schema: Arc<Schema>, options: &LayoutOptions) -> TableLayout {
        let mut columns: Vec<Column> = schema
            .fields
            .iter()
            .map(|spec| Column {
                spec: spec.clone(),
                source: Source::Record,
                dictionary: spec.single_value
                    && spec.data_type == DataType::String
                    && options.dictionary.contains(&spec.name),
            })
            .collect();
        if options.populate_metadata {
            for (name, source, data_type) in [
                (KEY_COLUMN, Source::PartitionKey, DataType::String),
                (SEQUENCE_COLUMN, Source::SequenceNumber, DataType::String),
                (ARRIVAL_COLUMN, Source::ArrivalTime, DataType::Long),
            ] {
                if let Some(c) = columns.iter_mut().find(|c| c.spec.name == name) {
                    c.source = source;
                    c.dictionary = false;
                } else {
                    columns.push(Column {
                        spec: FieldSpec {
                            name: name.to_string(),
                            data_type,
                            role: FieldRole::Dimension,
                            single_value: true,
                            default_null_value: DefaultValue::pinot_default(data_type, FieldRole::Dimension),
                            not_null: false,
                            max_length: usize::MAX,
                            date_time: None,
                            transform_function: None,
                        },
                        source,
                        dictionary: false,
                    });
                }
            }
        }
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                let mut metadata = HashMap::new();
                let mut pinot = c.spec.data_type.name().to_string();
                if !c.spec.single_value {
                    pinot.push_str("_ARRAY");
                }
                metadata.insert(PINOT_TYPE_KEY.to_string(), pinot);
                let nullable = schema.null_handling || !c.spec.single_value || c.source != Source::Record;
                Field::new(&c.spec.name, c.arrow_type(), nullable).with_metadata(metadata)
            })
            .collect();
        let index = columns.iter().enumerate().map(|(i, c)| (c.spec.name.clone(), i)).collect();
        let time_column =
            options.time_column.as_ref().and_then(|t| columns.iter().position(|c| &c.spec.name == t));
        TableLayout {
            arrow: Arc::new(ArrowSchema::new(fields)),
            schema,
            columns,
            time_column,
            flatten_delimiter: options.flatten_delimiter.clone(),
            continue_on_error: options.continue_on_error,
            row_time_check: options.row_time_check,
            transform: options.transform.clone(),
            index,
        }
    }

    /// The index of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The dateTime format of the time column.
    pub fn time_format(&self) -> Option<&DateTimeFormat> {
        let c = &self.columns[self.time_column?];
        c.spec.date_time.as_ref().map(|d| &d.format)
    }
}
