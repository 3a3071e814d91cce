//! The hook through which a table's ingestion transforms (Pinot's `ingestionConfig`: complex
//! types, transform functions, the filter) reach the rows a consuming segment appends. The
//! transforms themselves live above this crate (they need the query functions); a consuming
//! segment calls them for every chunk of records it appends, so that every path that appends
//! (consumption, recovery's reread, tests) transforms the same way.
//!
//! There are two ways in. Transforms that restructure records (unnesting, renames) turn each
//! record into the JSON rows to decode ([`RecordTransform::apply`]). Transforms that only
//! compute values ([`ValueTransform`]) do not touch JSON at all: the decoder reads the fields
//! they need in the same single pass that reads the schema's columns, the transforms compute
//! over those values a whole chunk at a time, and their results go into the row's columns.

use crate::decode::{Dropped, RecordMeta};
use arrow::array::ArrayRef;
use std::fmt;

/// Turns records into the rows to decode.
pub trait RecordTransform: Send + Sync + fmt::Debug {
    /// The rows for `records`, in record order, each record's rows together. Deterministic:
    /// the same records give the same rows, so a record read again after a restart makes the
    /// rows it made before.
    fn apply(&self, records: &[(&[u8], RecordMeta<'_>)]) -> Transformed;

    /// The same transforms computing over decoded values, when they need no whole records
    /// (no restructuring): the segment then decodes each record once and calls this instead
    /// of [`RecordTransform::apply`].
    fn values(&self) -> Option<&dyn ValueTransform> {
        None
    }
}

/// Transforms that compute column values and a filter from a record's fields.
pub trait ValueTransform: Send + Sync {
    /// The fields read, in a fixed order: the schema columns the transforms fill (their value
    /// in the record, if any, is kept) and every field the expressions read.
    fn inputs(&self) -> &[String];

    /// What the transforms make of a chunk of rows. Deterministic, as [`RecordTransform::apply`].
    fn apply(&self, chunk: &dyn ValueChunk) -> ValueOutcome;
}

/// The values of a chunk of records, one row per record.
pub trait ValueChunk {
    /// The number of rows.
    fn rows(&self) -> usize;
    /// The value of input `input` (an index into [`ValueTransform::inputs`]) in row `row`.
    fn value(&self, row: usize, input: usize) -> InputValue<'_>;
}

/// A field's value as the record holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValue<'a> {
    /// Absent or null.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer that fits i64.
    I64(i64),
    /// An integer past i64 that fits u64.
    U64(u64),
    /// Any other number.
    F64(f64),
    /// A string.
    Str(&'a str),
    /// An object or array, as compact JSON text (its fields in the record's order).
    Json(std::borrow::Cow<'a, str>),
}

/// What the value transforms made of a chunk.
#[derive(Debug, Default)]
pub struct ValueOutcome {
    /// One result per row.
    pub rows: Vec<RowResult>,
    /// The arrays that `writes` point into.
    pub arrays: Vec<ArrayRef>,
    /// Values for the rows' columns, in row order.
    pub writes: Vec<ValueWrite>,
}

/// What happens to one row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowResult {
    /// Appended; `incomplete` when a transform or the filter failed on it and it is kept
    /// anyway (`continueOnError`).
    Keep {
        /// Kept with a failed transform.
        incomplete: bool,
    },
    /// The filter was true: not appended, counted as filtered.
    Filtered,
    /// A transform or the filter failed (without `continueOnError`): the record is dropped.
    Failed(String),
}

/// One computed value for a row's column: `arrays[array]` at `index`, for the column named by
/// input `input`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueWrite {
    /// The row.
    pub row: usize,
    /// The input (the column) it fills.
    pub input: usize,
    /// The array in [`ValueOutcome::arrays`].
    pub array: usize,
    /// The value's index in that array.
    pub index: usize,
    /// The value replaces the record's own, even with null (Pinot recomputes a column that
    /// holds an array or an object); otherwise it fills the column only where the record has
    /// no value.
    pub replace: bool,
}

/// What the transforms made of a chunk of records.
#[derive(Debug, Default)]
pub struct Transformed {
    /// The rows to decode, in order.
    pub rows: Vec<TransformedRow>,
    /// Rows the filter dropped (its function was true).
    pub filtered: usize,
    /// Records dropped whole, by index: a transform or the filter failed on one of their rows
    /// (without `continueOnError`), or the transforms could not read them.
    pub failed: Vec<(usize, Dropped)>,
}

/// One row to decode.
#[derive(Debug)]
pub struct TransformedRow {
    /// The index of the record it comes from.
    pub record: usize,
    /// Its JSON; None to decode the record's own bytes.
    pub json: Option<Vec<u8>>,
    /// Kept although a transform or the filter failed on it (`continueOnError`).
    pub incomplete: bool,
}
