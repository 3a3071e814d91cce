//! Column builders of the active part of a consuming segment, fed with typed values.

use crate::columns::{Column, DECIMAL_PRECISION, DECIMAL_SCALE};
use crate::schema::DataType;
use arrow::array::NullBufferBuilder;
use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Decimal128Builder, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, ListArray, StringBuilder, StringDictionaryBuilder,
    TimestampMillisecondBuilder,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::Field;
use arrow::datatypes::Int32Type;
use std::borrow::Cow;
use std::sync::Arc;

/// One typed value, ready to append.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A null.
    Null,
    /// INT.
    Int(i32),
    /// LONG.
    Long(i64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// BIG_DECIMAL, scaled by 10^DECIMAL_SCALE.
    Decimal(i128),
    /// BOOLEAN.
    Boolean(bool),
    /// TIMESTAMP, epoch ms.
    Timestamp(i64),
    /// STRING or JSON.
    Str(Cow<'a, str>),
    /// BYTES.
    Bytes(Cow<'a, [u8]>),
}

/// A builder for one scalar column.
pub enum ScalarBuilder {
    /// INT.
    Int(Int32Builder),
    /// LONG.
    Long(Int64Builder),
    /// FLOAT.
    Float(Float32Builder),
    /// DOUBLE.
    Double(Float64Builder),
    /// BIG_DECIMAL.
    Decimal(Decimal128Builder),
    /// BOOLEAN.
    Boolean(BooleanBuilder),
    /// TIMESTAMP.
    Timestamp(TimestampMillisecondBuilder),
    /// STRING and JSON.
    Str(StringBuilder),
    /// A dictionary-encoded STRING column.
    Dict(StringDictionaryBuilder<Int32Type>),
    /// BYTES.
    Bytes(BinaryBuilder),
}

impl std::fmt::Debug for ScalarBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            ScalarBuilder::Int(_) => "Int",
            ScalarBuilder::Long(_) => "Long",
            ScalarBuilder::Float(_) => "Float",
            ScalarBuilder::Double(_) => "Double",
            ScalarBuilder::Decimal(_) => "Decimal",
            ScalarBuilder::Boolean(_) => "Boolean",
            ScalarBuilder::Timestamp(_) => "Timestamp",
            ScalarBuilder::Str(_) => "Str",
            ScalarBuilder::Dict(_) => "Dict",
            ScalarBuilder::Bytes(_) => "Bytes",
        };
        f.debug_struct("ScalarBuilder").field("kind", &kind).field("len", &self.len()).finish()
    }
}

impl ScalarBuilder {
    fn new(t: DataType, dictionary: bool, capacity: usize) -> ScalarBuilder {
        if dictionary && t == DataType::String {
            // Room for the keys; the values grow as distinct strings arrive.
            return ScalarBuilder::Dict(StringDictionaryBuilder::with_capacity(capacity, 64, 1024));
        }
        match t {
            DataType::Int => ScalarBuilder::Int(Int32Builder::with_capacity(capacity)),
            DataType::Long => ScalarBuilder::Long(Int64Builder::with_capacity(capacity)),
            DataType::Float => ScalarBuilder::Float(Float32Builder::with_capacity(capacity)),
            DataType::Double => ScalarBuilder::Double(Float64Builder::with_capacity(capacity)),
            DataType::BigDecimal => ScalarBuilder::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE)
                    .expect("38/18 is a valid decimal precision and scale"),
            ),
            DataType::Boolean => ScalarBuilder::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Timestamp => {
                ScalarBuilder::Timestamp(TimestampMillisecondBuilder::with_capacity(capacity))
            }
            DataType::String | DataType::Json => {
                ScalarBuilder::Str(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            DataType::Bytes => ScalarBuilder::Bytes(BinaryBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    /// Appends a value of this builder's type (the decoder has converted it); anything else
    /// is appended as null.
    pub fn append(&mut self, value: &Value<'_>) {
        match (self, value) {
            (ScalarBuilder::Int(b), Value::Int(v)) => b.append_value(*v),
            (ScalarBuilder::Long(b), Value::Long(v)) => b.append_value(*v),
            (ScalarBuilder::Float(b), Value::Float(v)) => b.append_value(*v),
            (ScalarBuilder::Double(b), Value::Double(v)) => b.append_value(*v),
            (ScalarBuilder::Decimal(b), Value::Decimal(v)) => b.append_value(*v),
            (ScalarBuilder::Boolean(b), Value::Boolean(v)) => b.append_value(*v),
            (ScalarBuilder::Timestamp(b), Value::Timestamp(v)) => b.append_value(*v),
            (ScalarBuilder::Str(b), Value::Str(v)) => b.append_value(v),
            (ScalarBuilder::Dict(b), Value::Str(v)) => b.append_value(v.as_ref()),
            (ScalarBuilder::Bytes(b), Value::Bytes(v)) => b.append_value(v),
            (b, v) => {
                debug_assert!(matches!(v, Value::Null), "decoder handed {v:?} to {b:?}");
                b.append_null();
            }
        }
    }

    /// Appends a STRING or JSON value; on a builder of another type, a null (the decoder
    /// checks the types first).
    pub(crate) fn append_str(&mut self, v: &str) {
        match self {
            ScalarBuilder::Str(b) => b.append_value(v),
            ScalarBuilder::Dict(b) => b.append_value(v),
            other => other.append_mismatch("a string"),
        }
    }

    /// Appends an INT value (a null on a builder of another type).
    pub(crate) fn append_int(&mut self, v: i32) {
        match self {
            ScalarBuilder::Int(b) => b.append_value(v),
            other => other.append_mismatch("an INT"),
        }
    }

    /// Appends a LONG value (a null on a builder of another type).
    pub(crate) fn append_long(&mut self, v: i64) {
        match self {
            ScalarBuilder::Long(b) => b.append_value(v),
            other => other.append_mismatch("a LONG"),
        }
    }

    /// Appends a TIMESTAMP value, epoch ms (a null on a builder of another type).
    pub(crate) fn append_timestamp(&mut self, v: i64) {
        match self {
            ScalarBuilder::Timestamp(b) => b.append_value(v),
            other => other.append_mismatch("a TIMESTAMP"),
        }
    }

    /// Appends a FLOAT value (a null on a builder of another type).
    pub(crate) fn append_float(&mut self, v: f32) {
        match self {
            ScalarBuilder::Float(b) => b.append_value(v),
            other => other.append_mismatch("a FLOAT"),
        }
    }

    /// Appends a DOUBLE value (a null on a builder of another type).
    pub(crate) fn append_double(&mut self, v: f64) {
        match self {
            ScalarBuilder::Double(b) => b.append_value(v),
            other => other.append_mismatch("a DOUBLE"),
        }
    }

    /// Appends a BOOLEAN value (a null on a builder of another type).
    pub(crate) fn append_bool(&mut self, v: bool) {
        match self {
            ScalarBuilder::Boolean(b) => b.append_value(v),
            other => other.append_mismatch("a BOOLEAN"),
        }
    }

    fn append_mismatch(&mut self, what: &str) {
        debug_assert!(false, "the decoder handed {what} to {self:?}");
        self.append_null();
    }

    fn append_null(&mut self) {
        match self {
            ScalarBuilder::Int(b) => b.append_null(),
            ScalarBuilder::Long(b) => b.append_null(),
            ScalarBuilder::Float(b) => b.append_null(),
            ScalarBuilder::Double(b) => b.append_null(),
            ScalarBuilder::Decimal(b) => b.append_null(),
            ScalarBuilder::Boolean(b) => b.append_null(),
            ScalarBuilder::Timestamp(b) => b.append_null(),
            ScalarBuilder::Str(b) => b.append_null(),
            ScalarBuilder::Dict(b) => b.append_null(),
            ScalarBuilder::Bytes(b) => b.append_null(),
        }
    }

    fn builder(&mut self) -> &mut dyn ArrayBuilder {
        match self {
            ScalarBuilder::Int(b) => b,
            ScalarBuilder::Long(b) => b,
            ScalarBuilder::Float(b) => b,
            ScalarBuilder::Double(b) => b,
            ScalarBuilder::Decimal(b) => b,
            ScalarBuilder::Boolean(b) => b,
            ScalarBuilder::Timestamp(b) => b,
            ScalarBuilder::Str(b) => b,
            ScalarBuilder::Dict(b) => b,
            ScalarBuilder::Bytes(b) => b,
        }
    }

    fn builder_ref(&self) -> &dyn ArrayBuilder {
        match self {
            ScalarBuilder::Int(b) => b,
            ScalarBuilder::Long(b) => b,
            ScalarBuilder::Float(b) => b,
            ScalarBuilder::Double(b) => b,
            ScalarBuilder::Decimal(b) => b,
            ScalarBuilder::Boolean(b) => b,
            ScalarBuilder::Timestamp(b) => b,
            ScalarBuilder::Str(b) => b,
            ScalarBuilder::Dict(b) => b,
            ScalarBuilder::Bytes(b) => b,
        }
    }

    fn len(&self) -> usize {
        self.builder_ref().len()
    }

    fn finish(&mut self) -> ArrayRef {
        self.builder().finish()
    }

    fn finish_cloned(&self) -> ArrayRef {
        self.builder_ref().finish_cloned()
    }
}

/// A builder for one column: scalar, or a list of scalars for multi-value columns.
#[derive(Debug)]
pub enum ColumnBuilder {
    /// A single-value column.
    Scalar(ScalarBuilder),
    /// A multi-value column.
    List {
        /// The item type's field.
        item: Arc<Field>,
        /// The items of every row.
        values: ScalarBuilder,
        /// Row boundaries in `values`.
        offsets: Vec<i32>,
        /// Which rows are null.
        nulls: NullBufferBuilder,
    },
}

impl ColumnBuilder {
    /// A builder for `column` with room for `capacity` rows.
    pub fn new(column: &Column, capacity: usize) -> ColumnBuilder {
        let values = ScalarBuilder::new(column.spec.data_type, column.dictionary, capacity);
        if column.spec.single_value {
            ColumnBuilder::Scalar(values)
        } else {
            let mut offsets = Vec::with_capacity(capacity + 1);
            offsets.push(0);
            ColumnBuilder::List {
                item: Arc::new(Field::new("item", column.value_type(), true)),
                values,
                offsets,
                nulls: NullBufferBuilder::new(capacity),
            }
        }
    }

    /// Appends a single value (for a list column: a one-item list, or null).
    pub fn append(&mut self, value: &Value<'_>) {
        match self {
            ColumnBuilder::Scalar(b) => b.append(value),
            ColumnBuilder::List { .. } if matches!(value, Value::Null) => self.append_list(None),
            ColumnBuilder::List { .. } => self.append_list(Some(std::slice::from_ref(value))),
        }
    }

    /// Appends a list (None for a null row). On a scalar column, appends the first item.
    pub fn append_list(&mut self, items: Option<&[Value<'_>]>) {
        match self {
            ColumnBuilder::Scalar(b) => b.append(items.and_then(|i| i.first()).unwrap_or(&Value::Null)),
            ColumnBuilder::List { values, offsets, nulls, .. } => {
                for item in items.unwrap_or_default() {
                    values.append(item);
                }
                offsets.push(i32::try_from(values.len()).unwrap_or(i32::MAX));
                nulls.append(items.is_some());
            }
        }
    }

    /// The values' builder of a single-value column; None for a multi-value one.
    pub(crate) fn scalar(&mut self) -> Option<&mut ScalarBuilder> {
        match self {
            ColumnBuilder::Scalar(b) => Some(b),
            ColumnBuilder::List { .. } => None,
        }
    }

    /// Appends one row of a multi-value column, a list whose items `items` appends to the
    /// items' builder. On a single-value column a null is appended.
    pub(crate) fn append_list_with(&mut self, items: impl FnOnce(&mut ScalarBuilder)) {
        match self {
            ColumnBuilder::Scalar(b) => b.append_mismatch("a list"),
            ColumnBuilder::List { values, offsets, nulls, .. } => {
                items(values);
                offsets.push(i32::try_from(values.len()).unwrap_or(i32::MAX));
                nulls.append(true);
            }
        }
    }

    /// Rows appended since the last finish.
    pub fn len(&self) -> usize {
        match self {
            ColumnBuilder::Scalar(b) => b.len(),
            ColumnBuilder::List { offsets, .. } => offsets.len() - 1,
        }
    }

    /// True when no row was appended since the last finish.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows appended so far as an array; the builder starts over.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Scalar(b) => b.finish(),
            ColumnBuilder::List { item, values, offsets, nulls } => {
                let offsets_now = std::mem::replace(offsets, vec![0]);
                let array = ListArray::new(
                    item.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets_now)),
                    values.finish(),
                    nulls.finish(),
                );
                Arc::new(array)
            }
        }
    }

    /// A copy of the rows appended so far; the builder keeps them.
    pub fn finish_cloned(&self) -> ArrayRef {
        match self {
            ColumnBuilder::Scalar(b) => b.finish_cloned(),
            ColumnBuilder::List { item, values, offsets, nulls } => Arc::new(ListArray::new(
                item.clone(),
                OffsetBuffer::new(ScalarBuffer::from(offsets.clone())),
                values.finish_cloned(),
                nulls.finish_cloned(),
            )),
        }
    }
}
