//! The engine's error type: it wraps the crates' errors and names what the user must fix.

use std::path::{Path, PathBuf};

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The table config or schema is invalid.
    #[error("invalid table config or schema: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A sealed segment could not be written or read.
    #[error(transparent)]
    Segment(#[from] shoal_segment::SegmentError),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] shoal_query::QueryError),
    /// No table has this name.
    #[error("no table named {0:?}")]
    NoSuchTable(String),
    /// A table with this name exists.
    #[error("a table named {0:?} exists already")]
    TableExists(String),
    /// Another process (or another engine in this one) holds the data directory.
    #[error(
        "the data directory {path} is in use by another Shoal engine (pid {holder}): one process per data directory"
    )]
    DataDirInUse {
        /// The data directory.
        path: PathBuf,
        /// The holder's pid, as its lock file says.
        holder: String,
    },
    /// The deep store could not be reached or refused a request (its URL is shown without
    /// credentials).
    #[error("{0}")]
    DeepStore(String),
    /// `Engine::append` was given a table that reads a Kinesis stream.
    #[error(
        "table {0:?} consumes a Kinesis stream: Engine::append takes a table whose streamType is \"append\""
    )]
    NotAppendable(String),
    /// A request Shoal does not take, and why.
    #[error("{0}")]
    Invalid(String),
    /// A request is larger than Shoal takes at once.
    #[error("{bytes} bytes is more than the {limit} one call takes: split it")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The most one call takes.
        limit: usize,
    },
    /// An internal task failed (it panicked or was cancelled).
    #[error("an internal task failed: {0}")]
    Task(String),
    /// The engine is shut down.
    #[error("the engine is shut down")]
    ShutDown,
}

/// What kind of failure an [`Error`] is, to match on without taking the error apart.
///
/// ```
/// # async fn demo(engine: shoal::Engine) {
/// match engine.sql("SELECT count(*) FROM nope").await {
///     Err(e) if e.kind() == shoal::ErrorKind::Query(shoal::QueryErrorKind::TableNotFound) => {}
///     Err(e) if e.kind() == shoal::ErrorKind::Query(shoal::QueryErrorKind::Timeout) => {}
///     _ => {}
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A table config, schema or setting is invalid ([`Error::Config`]).
    InvalidConfig,
    /// A request is not one Shoal takes: a table that takes no appends, a batch too large.
    InvalidInput,
    /// No table has the name.
    NotFound,
    /// A table has the name already.
    AlreadyExists,
    /// A file could not be read or written.
    Io,
    /// A file is damaged or not what it should be.
    Corrupt,
    /// A query failed, and why (Pinot's error codes follow from it).
    Query(shoal_query::ErrorKind),
    /// The deep store could not be reached or refused a request.
    DeepStore,
    /// Another engine holds the data directory.
    InUse,
    /// The engine is shut down.
    ShutDown,
    /// An internal task failed.
    Internal,
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::InvalidConfig,
            Error::Io { .. } => ErrorKind::Io,
            Error::Segment(shoal_segment::SegmentError::Io { .. }) => ErrorKind::Io,
            Error::Corrupt { .. } | Error::Segment(_) => ErrorKind::Corrupt,
            Error::Query(q) => ErrorKind::Query(q.kind),
            Error::NoSuchTable(_) => ErrorKind::NotFound,
            Error::TableExists(_) => ErrorKind::AlreadyExists,
            Error::DataDirInUse { .. } => ErrorKind::InUse,
            Error::DeepStore(_) => ErrorKind::DeepStore,
            Error::NotAppendable(_) | Error::TooLarge { .. } | Error::Invalid(_) => ErrorKind::InvalidInput,
            Error::Task(_) => ErrorKind::Internal,
            Error::ShutDown => ErrorKind::ShutDown,
        }
    }
}

/// An I/O error naming its file.
pub fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.to_path_buf(), source }
}
