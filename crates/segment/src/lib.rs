//! Shoal's segments: the Pinot schema, schema-driven JSON decoding, consuming (mutable)
//! segments and sealed, memory-mapped columnar files.
#![warn(missing_docs)]

pub mod builder;
pub mod columns;
pub mod datetime;
pub mod decode;
pub mod durable;
pub mod events;
pub mod mutable;
pub mod problem;
pub mod schema;
pub mod sealed;
pub mod stats;
pub mod threshold;
pub mod transform;
pub mod zone;

pub use columns::{LayoutOptions, TableLayout};
pub use datetime::{DateTimeFormat, Granularity, JavaDatePattern, Rescale, TimeUnit};
pub use decode::{DropReason, DropStats, Dropped, ParsedChunk, RecordMeta, not_an_object, unreadable};
pub use mutable::{Decoded, MutableSegment, SealReason, SegmentSnapshot};
pub use problem::{Problem, Problems};
pub use schema::{DataType, DateTimeSpec, DefaultValue, FieldRole, FieldSpec, Schema};
pub use sealed::{SealRequest, SealedSegment, SegmentError, SegmentMeta, write_segment};
pub use stats::{ColumnStats, StatValue};
pub use threshold::{FlushLimit, FlushThresholds};
pub use transform::{
    InputValue, RecordTransform, RowResult, Transformed, TransformedRow, ValueChunk, ValueOutcome,
    ValueTransform, ValueWrite,
};
pub use zone::TimeZone;
