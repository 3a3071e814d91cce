//! The hook through which a table's ingestion transforms (Pinot's `ingestionConfig`: complex
//! types, transform functions, the filter) turn each record into the rows to decode. The
//! transforms themselves live above this crate (they need the query functions); a consuming
//! segment calls them for every chunk of records it appends, so that every path that appends
//! (consumption, recovery's reread, tests) transforms the same way.

use crate::decode::{Dropped, RecordMeta};
use std::fmt;

/// Turns records into the rows to decode.
pub trait RecordTransform: Send + Sync + fmt::Debug {
    /// The rows for `records`, in record order, each record's rows together. Deterministic:
    /// the same records give the same rows, so a record read again after a restart makes the
    /// rows it made before.
    fn apply(&self, records: &[(&[u8], RecordMeta<'_>)]) -> Transformed;
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
