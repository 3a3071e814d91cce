//! Shoal's segments: the Pinot schema, schema-driven JSON decoding, consuming (mutable)
//! segments and sealed, memory-mapped columnar files.
#![warn(missing_docs)]

pub mod datetime;
pub mod problem;
pub mod schema;
pub mod threshold;

pub use datetime::{DateTimeFormat, Granularity, JavaDatePattern, TimeUnit};
pub use problem::{Problem, Problems};
pub use schema::{DataType, DateTimeSpec, DefaultValue, FieldRole, FieldSpec, Schema};
pub use threshold::{FlushLimit, FlushThresholds};
