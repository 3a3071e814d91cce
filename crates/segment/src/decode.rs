//! Schema-driven JSON decoding: record bytes straight into typed column builders.
//!
//! A serde visitor walks the record once and drops each known field into a per-record staging
//! row (borrowing strings from the input where there are no escapes); unknown fields are skipped
//! without being built. The staging row is then converted to the columns' types with Pinot's
//! coercions and, only if every column converts, appended to the builders: a bad record never
//! leaves half a row behind. No `serde_json::Value` tree is built, except to turn a nested
//! object or array into text for a STRING column.

use crate::builder::{ColumnBuilder, ScalarBuilder, Value};
use crate::columns::{Column, DECIMAL_SCALE, Source, TableLayout};
use crate::datetime::DateTimeFormat;
use crate::schema::{DataType, DefaultValue, decode_hex};
use crate::transform::{InputValue, ValueChunk, ValueWrite};
use arrow::array::{Array, ArrayRef};
use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

mod scan;

/// FxHash (the rustc hasher): field names are short and trusted to be few, so a fast,
/// non-keyed hash beats SipHash on the hot path.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;
type FxSet<K> = HashSet<K, std::hash::BuildHasherDefault<FxHasher>>;

/// Record metadata that the stream hands over with the bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordMeta<'a> {
    /// Kinesis partition key.
    pub partition_key: &'a str,
    /// Sequence number (with `:sub` for KPL user records).
    pub sequence_number: &'a str,
    /// Approximate arrival time, epoch ms.
    pub arrival_millis: i64,
}

/// Why a record was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Not valid JSON.
    MalformedJson,
    /// The JSON ends before the record is complete.
    Truncated,
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// Nested deeper than the decoder follows (128 levels).
    TooDeep,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A field cannot be converted to its column's type.
    TypeMismatch,
    /// A number does not fit its column's type.
    OutOfRange,
    /// NaN or Infinity for a FLOAT or DOUBLE column.
    NotFinite,
    /// The time column is missing or null.
    MissingTime,
    /// The time column's value does not match its dateTime format.
    BadTime,
    /// The time column's value is outside 1971..2071 (with `rowTimeValueCheck`, as Pinot).
    TimeOutOfRange,
    /// A transform or the filter of the table's `ingestionConfig` failed on the record
    /// (without `continueOnError`).
    TransformFailed,
    /// An upsert table's record sets not exactly one of several comparison columns (Pinot:
    /// "Documents must have exactly 1 non-null comparison column value").
    BadComparison,
}

impl DropReason {
    /// Every reason.
    pub const ALL: [DropReason; 13] = [
        DropReason::MalformedJson,
        DropReason::Truncated,
        DropReason::NotUtf8,
        DropReason::TooDeep,
        DropReason::NotAnObject,
        DropReason::TypeMismatch,
        DropReason::OutOfRange,
        DropReason::NotFinite,
        DropReason::MissingTime,
        DropReason::BadTime,
        DropReason::TimeOutOfRange,
        DropReason::TransformFailed,
        DropReason::BadComparison,
    ];

    /// The snake_case name used in metrics and statuses.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::MalformedJson => "malformed_json",
            DropReason::Truncated => "truncated",
            DropReason::NotUtf8 => "not_utf8",
            DropReason::TooDeep => "too_deep",
            DropReason::NotAnObject => "not_an_object",
            DropReason::TypeMismatch => "type_mismatch",
            DropReason::OutOfRange => "out_of_range",
            DropReason::NotFinite => "not_finite",
            DropReason::MissingTime => "missing_time",
            DropReason::BadTime => "bad_time",
            DropReason::TimeOutOfRange => "time_out_of_range",
            DropReason::TransformFailed => "transform_failed",
            DropReason::BadComparison => "bad_comparison",
        }
    }
}

/// A dropped record: why, and a message naming the column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The reason.
    pub reason: DropReason,
    /// What was wrong, naming the column where there is one.
    pub message: String,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.name(), self.message)
    }
}

/// Pinot's valid time range for a time column: 1971-01-01 to 2071-01-01 UTC.
pub const MIN_VALID_TIME_MS: i64 = 31_536_000_000;
/// See [`MIN_VALID_TIME_MS`].
pub const MAX_VALID_TIME_MS: i64 = 3_187_296_000_000;

/// Counts of dropped records by reason, with a few samples of each for debugging.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DropStats {
    /// Dropped records per reason.
    pub counts: BTreeMap<DropReason, u64>,
    /// Up to [`DropStats::SAMPLES`] examples per reason: the message and the record's start.
    pub samples: BTreeMap<DropReason, Vec<DropSample>>,
}

/// One dropped record kept for debugging.
#[derive(Debug, Clone, Serialize)]
pub struct DropSample {
    /// What was wrong.
    pub message: String,
    /// The first bytes of the record, as lossy UTF-8.
    pub record: String,
}

impl DropStats {
    /// Samples kept per reason.
    pub const SAMPLES: usize = 5;
    const SAMPLE_BYTES: usize = 200;

    /// Counts a dropped record.
    pub fn record(&mut self, dropped: &Dropped, bytes: &[u8]) {
        *self.counts.entry(dropped.reason).or_default() += 1;
        let samples = self.samples.entry(dropped.reason).or_default();
        if samples.len() < Self::SAMPLES {
            let cut = &bytes[..bytes.len().min(Self::SAMPLE_BYTES)];
            samples.push(DropSample {
                message: dropped.message.clone(),
                record: String::from_utf8_lossy(cut).into_owned(),
            });
        }
    }

    /// All dropped records.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Adds another's counts (samples up to the limit).
    pub fn merge(&mut self, other: &DropStats) {
        for (reason, n) in &other.counts {
            *self.counts.entry(*reason).or_default() += n;
        }
        for (reason, list) in &other.samples {
            let mine = self.samples.entry(*reason).or_default();
            for s in list {
                if mine.len() < Self::SAMPLES {
                    mine.push(s.clone());
                }
            }
        }
    }
}

/// A field value as read from the JSON, before conversion.
#[derive(Debug)]
enum Cell<'de> {
    Absent,
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'de, str>),
    /// An object or array, as JSON text.
    Json(Cow<'de, str>),
    /// Items of a multi-value field: a range of the decoder's item cells.
    List(usize, usize),
}

impl Cell<'_> {
    /// An integer cell's value, if it fits a LONG.
    fn long(&self) -> Option<i64> {
        match self {
            Cell::I64(v) => Some(*v),
            Cell::U64(v) => i64::try_from(*v).ok(),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Cell::Absent | Cell::Null => "null".into(),
            Cell::Bool(b) => b.to_string(),
            Cell::I64(v) => v.to_string(),
            Cell::U64(v) => v.to_string(),
            Cell::F64(v) => v.to_string(),
            Cell::Str(s) => format!("{:?}", truncate_chars(s, 40)),
            Cell::Json(s) => truncate_chars(s, 40).to_string(),
            Cell::List(..) => "a list".into(),
        }
    }
}

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Reuses a vector's allocation for a new lifetime (in-place collect of an emptied vector).
fn recycle<'a, 'b>(mut v: Vec<Cell<'a>>) -> Vec<Cell<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable!("the vector is empty")).collect()
}

fn recycle_values<'a, 'b>(mut v: Vec<Value<'a>>) -> Vec<Value<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable!("the vector is empty")).collect()
}

/// Decodes JSON records of one table into its column builders.
pub struct Decoder {
    layout: Arc<TableLayout>,
    /// JSON field name (or flattened path) to column index, for record columns.
    lookup: FxMap<Box<str>, usize>,
    /// Parents of flattened column names (`a` and `a.b` for column `a.b.c`).
    prefixes: FxSet<Box<str>>,
    /// Which columns take raw JSON text.
    json_columns: Vec<bool>,
    cells: Vec<Cell<'static>>,
    items: Vec<Cell<'static>>,
    row: Vec<Value<'static>>,
    list_values: Vec<Value<'static>>,
    list_bounds: Vec<(usize, usize)>,
    /// The last record decoded was kept with defaults in place of bad values
    /// (`continueOnError`).
    incomplete: bool,
    /// Convert without appending (`check`).
    dry_run: bool,
    /// Cells per record: one per column, then one per field read only for the value
    /// transforms (a capture).
    slots: usize,
    /// The cell slot of each value-transform input.
    inputs: Arc<[usize]>,
    /// Records of the common shape are read by the scanner (off only in tests, which compare
    /// the two ways).
    fast: bool,
    /// The scanner's guess of the column at each field position (see `scan`).
    order: Vec<u32>,
    /// How each column's cell goes straight into its builder; None when a column cannot, and
    /// then every record goes the general way (see `Decoder::append_direct`).
    direct: Option<Box<[Direct]>>,
}

/// The cells a column takes straight into its builder, without a [`Value`] in between: its own
/// JSON type, which converts to itself. Any other cell, a missing or null one, an out-of-range
/// number, a string longer than the column's `maxLength`, an empty list or a list with a null
/// item sends the record the general way (`Decoder::convert_and_append`), which decides it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Direct {
    /// A single-value column.
    One(Straight),
    /// A multi-value column: a non-empty array of such values.
    Many(Straight),
}

/// The values of one type taken straight.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Straight {
    /// STRING from a string of at most `max` bytes (so at most `max` characters: nothing cut).
    Str { max: usize },
    /// INT from an integer that fits.
    Int,
    /// LONG from an integer that fits (the time column's too, checked as the general way does).
    Long,
    /// TIMESTAMP (epoch ms) from an integer that fits a LONG.
    Timestamp,
    /// FLOAT from a number within FLOAT's range, or an integer.
    Float,
    /// DOUBLE from a finite number or an integer.
    Double,
    /// BOOLEAN from `true` or `false`.
    Bool,
}

impl Direct {
    /// How `column` is appended straight from its cells, if it can be.
    fn of(column: &Column, is_time: bool) -> Option<Direct> {
        let spec = &column.spec;
        let single = spec.single_value;
        if column.source != Source::Record || (is_time && !(single && spec.data_type == DataType::Long)) {
            return None;
        }
        let straight = match spec.data_type {
            DataType::String => Straight::Str { max: spec.max_length },
            DataType::Int => Straight::Int,
            DataType::Long => Straight::Long,
            DataType::Timestamp => Straight::Timestamp,
            DataType::Float => Straight::Float,
            DataType::Double => Straight::Double,
            DataType::Boolean => Straight::Bool,
            _ => return None,
        };
        Some(if single { Direct::One(straight) } else { Direct::Many(straight) })
    }

    /// Whether `cell` (with the record's `items`) is one this column takes straight.
    fn takes(self, cell: &Cell<'_>, items: &[Cell<'_>]) -> bool {
        match (self, cell) {
            (Direct::One(straight), cell) => straight.takes(cell),
            (Direct::Many(straight), Cell::List(a, b)) => {
                a < b && items.get(*a..*b).is_some_and(|l| l.iter().all(|c| straight.takes(c)))
            }
            (Direct::Many(_), _) => false,
        }
    }
}

impl Straight {
    fn takes(self, cell: &Cell<'_>) -> bool {
        match (self, cell) {
            (Straight::Str { max }, Cell::Str(s)) => s.len() <= max,
            (Straight::Int, cell) => cell.long().is_some_and(|v| i32::try_from(v).is_ok()),
            (Straight::Long | Straight::Timestamp, cell) => cell.long().is_some(),
            // The general way's range (`convert`, DataType::Float) refuses the rest.
            (Straight::Float, Cell::F64(f)) => f.is_finite() && f.abs() <= f64::from(f32::MAX),
            (Straight::Double, Cell::F64(f)) => f.is_finite(),
            // Every integer is within FLOAT's range.
            (Straight::Float | Straight::Double, Cell::I64(_) | Cell::U64(_)) => true,
            (Straight::Bool, Cell::Bool(_)) => true,
            _ => false,
        }
    }

    /// Appends `cell`, which [`Straight::takes`], to `values`.
    fn append(self, cell: &Cell<'_>, values: &mut ScalarBuilder) {
        // The general way's conversion, which cannot fail on a cell `takes` took.
        let number = |cell: &Cell<'_>| float(cell, DataType::Double, "").unwrap_or_default();
        match (self, cell) {
            (Straight::Str { .. }, Cell::Str(s)) => values.append_str(s),
            (Straight::Int, cell) => values.append_int(cell.long().unwrap_or_default() as i32),
            (Straight::Long, cell) => values.append_long(cell.long().unwrap_or_default()),
            (Straight::Timestamp, cell) => values.append_timestamp(cell.long().unwrap_or_default()),
            (Straight::Float, cell) => values.append_float(number(cell) as f32),
            (Straight::Double, cell) => values.append_double(number(cell)),
            (Straight::Bool, Cell::Bool(b)) => values.append_bool(*b),
            // Not reached: `takes` checked the cell.
            (_, _) => values.append(&Value::Null),
        }
    }
}

impl Decoder {
    /// A decoder for `layout`.
    pub fn new(layout: Arc<TableLayout>) -> Decoder {
        let mut lookup = FxMap::default();
        let mut prefixes = FxSet::default();
        for (i, c) in layout.columns.iter().enumerate() {
            if c.source != Source::Record {
                continue;
            }
            lookup.insert(c.spec.name.clone().into_boxed_str(), i);
            if let Some(delim) = layout.flatten_delimiter.as_deref().filter(|d| !d.is_empty()) {
                let mut end = 0;
                while let Some(pos) = c.spec.name[end..].find(delim) {
                    prefixes.insert(c.spec.name[..end + pos].to_string().into_boxed_str());
                    end += pos + delim.len();
                }
            }
        }
        let json_columns = layout.columns.iter().map(|c| c.spec.data_type == DataType::Json).collect();
        // Fields the value transforms read that are no record column are captured in slots
        // after the columns', in the same pass.
        let mut slots = layout.columns.len();
        let mut inputs = Vec::new();
        if let Some(values) = layout.transform.as_ref().and_then(|t| t.values()) {
            for name in values.inputs() {
                let slot = match lookup.get(name.as_str()) {
                    Some(&column) => column,
                    None => {
                        // A flattened name (`a.b`) is also found inside nested objects.
                        if let Some(delim) = layout.flatten_delimiter.as_deref().filter(|d| !d.is_empty()) {
                            let mut end = 0;
                            while let Some(pos) = name[end..].find(delim) {
                                prefixes.insert(name[..end + pos].to_string().into_boxed_str());
                                end += pos + delim.len();
                            }
                        }
                        lookup.insert(name.clone().into_boxed_str(), slots);
                        slots += 1;
                        slots - 1
                    }
                };
                inputs.push(slot);
            }
        }
        let direct = layout
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| Direct::of(c, layout.time_column == Some(i)))
            .collect::<Option<Box<[Direct]>>>();
        Decoder {
            layout,
            lookup,
            prefixes,
            json_columns,
            cells: Vec::new(),
            items: Vec::new(),
            row: Vec::new(),
            list_values: Vec::new(),
            list_bounds: Vec::new(),
            incomplete: false,
            dry_run: false,
            slots,
            inputs: inputs.into(),
            fast: true,
            order: Vec::new(),
            direct,
        }
    }

    /// Whether `bytes` would decode into a row, without appending it: the rows a record makes
    /// are checked first and appended all or none.
    pub fn check(&mut self, bytes: &[u8], meta: &RecordMeta<'_>) -> Result<(), Dropped> {
        self.dry_run = true;
        let result = self.decode(bytes, meta, &mut []).map(|_| ());
        self.dry_run = false;
        result
    }

    /// True when the last record decoded was kept with default values in place of values that
    /// could not be converted (`continueOnError`; Pinot counts such rows as incomplete).
    pub fn last_was_incomplete(&self) -> bool {
        self.incomplete
    }

    /// The layout decoded into.
    pub fn layout(&self) -> &Arc<TableLayout> {
        &self.layout
    }

    /// Decodes one record and appends it to `builders` (one per column, in layout order).
    /// Returns the record's time in epoch ms when the table has a time column. On error
    /// nothing is appended.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        meta: &RecordMeta<'_>,
        builders: &mut [ColumnBuilder],
    ) -> Result<Option<i64>, Dropped> {
        let n = self.slots;
        self.incomplete = false;
        let mut cells: Vec<Cell<'_>> = recycle(std::mem::take(&mut self.cells));
        let mut items: Vec<Cell<'_>> = recycle(std::mem::take(&mut self.items));
        cells.resize_with(n, || Cell::Absent);
        // One UTF-8 check of the whole record is cheaper than serde_json's check per string.
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                self.cells = recycle(cells);
                self.items = recycle(items);
                return Err(Dropped {
                    reason: DropReason::NotUtf8,
                    message: format!("the record is not UTF-8: {e}"),
                });
            }
        };
        let result = match self.read(text, &mut cells, &mut items) {
            Ok(()) => self.convert_and_append(&mut cells, &items, meta, builders),
            Err(e) => Err(classify(&e, bytes)),
        };
        self.cells = recycle(cells);
        self.items = recycle(items);
        result
    }

    /// Reads the record `text` into `cells` (one per slot, all absent) and `items`: by the
    /// scanner when the record has its common shape, else by the serde visitor.
    fn read<'de>(
        &mut self,
        text: &'de str,
        cells: &mut Vec<Cell<'de>>,
        items: &mut Vec<Cell<'de>>,
    ) -> Result<(), serde_json::Error> {
        let mark = items.len();
        if self.fast {
            let mut order = std::mem::take(&mut self.order);
            let scanned = self.scan(text, cells, items, &mut order);
            self.order = order;
            if scanned.is_some() {
                return Ok(());
            }
        }
        cells.iter_mut().for_each(|c| *c = Cell::Absent);
        items.truncate(mark);
        let mut de = serde_json::Deserializer::from_str(text);
        let seed = RecordSeed { decoder: self, cells, items, prefix: None };
        seed.deserialize(&mut de).and_then(|()| de.end())
    }

    /// Appends a record whose every cell its column takes straight (see [`Direct`]) without
    /// converting it to [`Value`]s first: the same row as the general way, in less time, and
    /// returns its time. None (nothing appended) for any other record, which then goes the
    /// general way: a record is never refused here.
    fn append_direct(
        &self,
        cells: &[Cell<'_>],
        items: &[Cell<'_>],
        builders: &mut [ColumnBuilder],
    ) -> Option<Option<i64>> {
        let direct = self.direct.as_deref()?;
        let layout = &*self.layout;
        if cells.len() < direct.len() || !direct.iter().zip(cells).all(|(d, c)| d.takes(c, items)) {
            return None;
        }
        let time = match layout.time_column {
            Some(i) => {
                let v = cells.get(i)?.long()?;
                let spec = &layout.columns[i].spec;
                let format = spec.date_time.as_ref().map(|d| &d.format);
                // A time out of range is the general way's to refuse or replace.
                Some(time_millis(&Value::Long(v), format, &spec.name, layout.row_time_check).ok()?)
            }
            None => None,
        };
        if self.dry_run {
            return Some(time);
        }
        for ((d, cell), builder) in direct.iter().zip(cells).zip(builders.iter_mut()) {
            match (*d, cell) {
                (Direct::One(straight), cell) => match builder.scalar() {
                    Some(values) => straight.append(cell, values),
                    None => builder.append(&Value::Null),
                },
                (Direct::Many(straight), Cell::List(a, z)) => builder.append_list_with(|values| {
                    for item in items.get(*a..*z).unwrap_or_default() {
                        straight.append(item, values);
                    }
                }),
                // Not reached: `takes` checked every cell against its column.
                (Direct::Many(_), _) => builder.append(&Value::Null),
            }
        }
        Some(time)
    }

    fn convert_and_append<'de>(
        &mut self,
        cells: &mut [Cell<'de>],
        items: &[Cell<'de>],
        meta: &RecordMeta<'de>,
        builders: &mut [ColumnBuilder],
    ) -> Result<Option<i64>, Dropped> {
        if self.fast
            && let Some(time) = self.append_direct(cells, items, builders)
        {
            return Ok(time);
        }
        let layout = &*self.layout;
        let mut row: Vec<Value<'de>> = recycle_values(std::mem::take(&mut self.row));
        let mut list_values: Vec<Value<'de>> = recycle_values(std::mem::take(&mut self.list_values));
        self.list_bounds.clear();
        let mut time = None;
        let mut result = Ok(());
        for (i, column) in layout.columns.iter().enumerate() {
            let spec = &column.spec;
            let cell = std::mem::replace(&mut cells[i], Cell::Absent);
            let cell = match column.source {
                Source::Record => cell,
                Source::PartitionKey => Cell::Str(Cow::Borrowed(meta.partition_key)),
                Source::SequenceNumber => Cell::Str(Cow::Borrowed(meta.sequence_number)),
                Source::ArrivalTime => Cell::I64(meta.arrival_millis),
            };
            let is_time = layout.time_column == Some(i);
            let converted = if spec.single_value {
                let value = match cell {
                    Cell::Absent | Cell::Null if is_time => Err(Dropped {
                        reason: DropReason::MissingTime,
                        message: format!("time column {:?} is missing or null", spec.name),
                    }),
                    Cell::Absent | Cell::Null => Ok(self.null_value(i)),
                    // A one-item list for a single-value column is that item, as in Pinot.
                    Cell::List(start, end) if end - start == 1 => {
                        convert(&items[start], spec.data_type, spec)
                    }
                    Cell::List(start, end) if end == start => Ok(self.null_value(i)),
                    other => convert(&other, spec.data_type, spec),
                };
                let format = spec.date_time.as_ref().map(|d| &d.format);
                let value = value.and_then(|v| {
                    if is_time {
                        time = Some(time_millis(&v, format, &spec.name, layout.row_time_check)?);
                    }
                    Ok(v)
                });
                match value {
                    Ok(v) => {
                        row.push(v);
                        Ok(())
                    }
                    // pinot-segment-local DataTypeTransformer / TimeValidationTransformer with
                    // continueOnError: the value becomes null, then its default; the row is kept.
                    Err(_) if layout.continue_on_error => {
                        self.incomplete = true;
                        let v = if is_time { self.time_default(i, meta) } else { self.null_value(i) };
                        if is_time {
                            time = time_millis(&v, format, &spec.name, false).ok();
                        }
                        row.push(v);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            } else {
                let start = list_values.len();
                let converted = match cell {
                    Cell::Absent | Cell::Null => Ok(()),
                    Cell::List(a, b) => items[a..b].iter().try_for_each(|item| match item {
                        Cell::Null | Cell::Absent => Ok(()),
                        item => convert(item, spec.data_type, spec).map(|v| list_values.push(v)),
                    }),
                    other => convert(&other, spec.data_type, spec).map(|v| list_values.push(v)),
                };
                let converted = match converted {
                    Err(_) if layout.continue_on_error => {
                        // The whole value becomes null, then its default (Pinot's
                        // DataTypeTransformer with continueOnError).
                        self.incomplete = true;
                        list_values.truncate(start);
                        Ok(())
                    }
                    other => other,
                };
                converted.map(|()| {
                    // An empty or missing multi-value field holds the default, as in Pinot
                    // (or is null with column-based null handling).
                    if list_values.len() == start && !self.layout.schema.null_handling {
                        list_values.push(default_value(&spec.default_null_value));
                    }
                    self.list_bounds.push((start, list_values.len()));
                    row.push(Value::Null);
                })
            };
            if let Err(e) = converted {
                result = Err(e);
                break;
            }
        }
        let dry_run = self.dry_run;
        let outcome = result.map(|()| {
            if dry_run {
                return time;
            }
            let mut lists = self.list_bounds.iter();
            for (i, (value, builder)) in row.iter().zip(builders.iter_mut()).enumerate() {
                if layout.columns[i].spec.single_value {
                    builder.append(value);
                } else {
                    let (a, b) = *lists.next().expect("one bound per multi-value column");
                    if a == b {
                        builder.append_list(None)
                    } else {
                        builder.append_list(Some(&list_values[a..b]))
                    }
                }
            }
            time
        });
        self.row = recycle_values(row);
        self.list_values = recycle_values(list_values);
        outcome
    }

    /// Reads a chunk of records in one pass each: the schema's columns and the fields the
    /// table's value transforms need. Nothing is appended; [`Decoder::append_parsed`] appends
    /// a row once the transforms have computed over the chunk.
    pub fn parse_chunk<'de>(&mut self, records: &[(&'de [u8], RecordMeta<'_>)]) -> ParsedChunk<'de> {
        let mut chunk = ParsedChunk {
            slots: self.slots,
            inputs: Arc::clone(&self.inputs),
            cells: Vec::with_capacity(records.len() * self.slots),
            items: Vec::new(),
            status: Vec::with_capacity(records.len()),
        };
        let mut scratch: Vec<Cell<'de>> = recycle(std::mem::take(&mut self.cells));
        for (bytes, _) in records {
            scratch.clear();
            scratch.resize_with(self.slots, || Cell::Absent);
            let status = match std::str::from_utf8(bytes) {
                Err(e) => Err(Dropped {
                    reason: DropReason::NotUtf8,
                    message: format!("the record is not UTF-8: {e}"),
                }),
                Ok(text) => self.read(text, &mut scratch, &mut chunk.items).map_err(|e| classify(&e, bytes)),
            };
            if status.is_err() {
                scratch.iter_mut().for_each(|c| *c = Cell::Absent);
            }
            chunk.status.push(status);
            chunk.cells.append(&mut scratch);
        }
        self.cells = recycle(scratch);
        chunk
    }

    /// Converts row `row` of `chunk`, with the values the transforms computed for it
    /// (`writes`, pointing into `arrays`) in the columns the record leaves empty, and appends
    /// it to `builders`. As [`Decoder::decode`], returns the row's time; on error nothing is
    /// appended.
    pub fn append_parsed<'x, 'de: 'x>(
        &mut self,
        chunk: &mut ParsedChunk<'de>,
        row: usize,
        writes: &[ValueWrite],
        arrays: &'x [ArrayRef],
        meta: &RecordMeta<'x>,
        builders: &mut [ColumnBuilder],
    ) -> Result<Option<i64>, Dropped> {
        self.incomplete = false;
        if let Err(dropped) = &chunk.status[row] {
            return Err(dropped.clone());
        }
        let columns = self.layout.columns.len();
        let mut cells: Vec<Cell<'x>> = recycle(std::mem::take(&mut self.cells));
        let range = row * chunk.slots..row * chunk.slots + columns;
        cells.extend(chunk.cells[range].iter_mut().map(|c| std::mem::replace(c, Cell::Absent)));
        for w in writes {
            let slot = chunk.inputs[w.input];
            if slot < columns && (w.replace || matches!(cells[slot], Cell::Absent | Cell::Null)) {
                let single = self.layout.columns[slot].spec.single_value;
                cells[slot] = array_cell(&arrays[w.array], w.index, single, &mut chunk.items);
            }
        }
        let result = self.convert_and_append(&mut cells, &chunk.items, meta, builders);
        self.cells = recycle(cells);
        result
    }

    /// The time column's value in place of a missing or bad one (`continueOnError`): its
    /// default when that is a valid time, else the record's arrival time. Pinot takes the
    /// current time there (pinot-segment-local `NullValueTransformerUtils`); the arrival time
    /// is as recent and gives the same row when the record is read again.
    fn time_default(&self, column: usize, meta: &RecordMeta<'_>) -> Value<'static> {
        let spec = &self.layout.columns[column].spec;
        let format = spec.date_time.as_ref().map(|d| &d.format);
        let default = default_value(&spec.default_null_value);
        if time_millis(&default, format, &spec.name, true).is_ok() {
            return default;
        }
        let arrival = meta.arrival_millis;
        match (spec.data_type, format) {
            (DataType::Timestamp, _) => Value::Timestamp(arrival),
            (DataType::String, Some(DateTimeFormat::SimpleDate(p))) => {
                p.try_format_millis(arrival).map(|t| Value::Str(Cow::Owned(t))).unwrap_or(default)
            }
            (DataType::Int, Some(f)) => {
                f.epoch_value(arrival).and_then(|v| i32::try_from(v).ok()).map(Value::Int).unwrap_or(default)
            }
            (DataType::Long, Some(f)) => f.epoch_value(arrival).map(Value::Long).unwrap_or(default),
            (DataType::Long, None) => Value::Long(arrival),
            _ => default,
        }
    }

    fn null_value(&self, column: usize) -> Value<'static> {
        if self.layout.schema.null_handling {
            let spec = &self.layout.columns[column].spec;
            if !spec.not_null {
                return Value::Null;
            }
        }
        default_value(&self.layout.columns[column].spec.default_null_value)
    }
}

/// The builder value of a default null value.
pub fn default_value(d: &DefaultValue) -> Value<'static> {
    match d {
        DefaultValue::Int(v) => Value::Int(*v),
        DefaultValue::Long(v) => Value::Long(*v),
        DefaultValue::Float(v) => Value::Float(*v),
        DefaultValue::Double(v) => Value::Double(*v),
        DefaultValue::BigDecimal(s) => Value::Decimal(parse_decimal(s).unwrap_or(0)),
        DefaultValue::Boolean(v) => Value::Boolean(*v),
        DefaultValue::Timestamp(v) => Value::Timestamp(*v),
        DefaultValue::String(s) => Value::Str(Cow::Owned(s.clone())),
        DefaultValue::Bytes(b) => Value::Bytes(Cow::Owned(b.clone())),
    }
}

/// Why `bytes` are no record, from serde_json's error: the reasons the decoder gives.
pub fn unreadable(e: &serde_json::Error, bytes: &[u8]) -> Dropped {
    classify(e, bytes)
}

/// The drop of a record that is valid JSON but not an object.
pub fn not_an_object() -> Dropped {
    Dropped { reason: DropReason::NotAnObject, message: NOT_AN_OBJECT.to_string() }
}

fn classify(e: &serde_json::Error, bytes: &[u8]) -> Dropped {
    let text = e.to_string();
    let reason = if text.starts_with(NOT_AN_OBJECT) {
        DropReason::NotAnObject
    } else if text.contains("recursion limit") {
        DropReason::TooDeep
    } else if e.is_eof() {
        DropReason::Truncated
    } else if std::str::from_utf8(bytes).is_err() {
        DropReason::NotUtf8
    } else {
        DropReason::MalformedJson
    };
    Dropped { reason, message: text }
}

const NOT_AN_OBJECT: &str = "a record must be a JSON object";

/// Deserializes one object (the record, or a nested object being flattened) into cells.
struct RecordSeed<'a, 'de> {
    decoder: &'a Decoder,
    cells: &'a mut Vec<Cell<'de>>,
    items: &'a mut Vec<Cell<'de>>,
    /// The flattened path of this object, for nested objects.
    prefix: Option<&'a str>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let decoder = self.decoder;
        let mut path = String::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let name: &str = match self.prefix {
                None => &key,
                Some(prefix) => {
                    path.clear();
                    path.push_str(prefix);
                    path.push_str(decoder.layout.flatten_delimiter.as_deref().unwrap_or("."));
                    path.push_str(&key);
                    &path
                }
            };
            if let Some(&slot) = decoder.lookup.get(name)
                && slot >= decoder.layout.columns.len()
            {
                let cell = map.next_value_seed(CaptureSeed)?;
                // A field read whole that also holds flattened columns fills them too.
                if let (Cell::Json(text), true) = (&cell, decoder.prefixes.contains(name)) {
                    flatten_text(decoder, text, name, self.cells, self.items);
                }
                self.cells[slot] = cell;
            } else if let Some(&column) = decoder.lookup.get(name) {
                let json = decoder.json_columns[column];
                let cell = map.next_value_seed(CellSeed {
                    items: self.items,
                    json,
                    multi_value: !decoder.layout.columns[column].spec.single_value,
                })?;
                // Pinot flattens a nested object even when a column has the parent's name.
                if let (Cell::Json(text), true) = (&cell, decoder.prefixes.contains(name)) {
                    flatten_text(decoder, text, name, self.cells, self.items);
                }
                self.cells[column] = cell;
            } else if decoder.prefixes.contains(name) {
                let owned_name = name.to_string();
                map.next_value_seed(FlattenSeed {
                    decoder,
                    cells: &mut *self.cells,
                    items: &mut *self.items,
                    prefix: &owned_name,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(NOT_AN_OBJECT))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
}

/// Flattens the object `text` (the value of field `name`) into the `name.field` cells.
fn flatten_text<'de>(
    decoder: &Decoder,
    text: &str,
    name: &str,
    cells: &mut [Cell<'de>],
    items: &mut Vec<Cell<'de>>,
) {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut nested_cells: Vec<Cell<'_>> = Vec::new();
    nested_cells.resize_with(cells.len(), || Cell::Absent);
    let mut nested_items = Vec::new();
    let seed = RecordSeed { decoder, cells: &mut nested_cells, items: &mut nested_items, prefix: Some(name) };
    if seed.deserialize(&mut de).is_ok() {
        for (slot, nested) in cells.iter_mut().zip(nested_cells) {
            if !matches!(nested, Cell::Absent) {
                *slot = into_owned(nested, &nested_items, items);
            }
        }
    }
}

/// Copies a cell decoded from a temporary text into one that outlives it.
fn into_owned<'de>(cell: Cell<'_>, from_items: &[Cell<'_>], to_items: &mut Vec<Cell<'de>>) -> Cell<'de> {
    match cell {
        Cell::Absent => Cell::Absent,
        Cell::Null => Cell::Null,
        Cell::Bool(b) => Cell::Bool(b),
        Cell::I64(v) => Cell::I64(v),
        Cell::U64(v) => Cell::U64(v),
        Cell::F64(v) => Cell::F64(v),
        Cell::Str(s) => Cell::Str(Cow::Owned(s.into_owned())),
        Cell::Json(s) => Cell::Json(Cow::Owned(s.into_owned())),
        Cell::List(a, b) => {
            let start = to_items.len();
            for item in &from_items[a..b] {
                let owned = match item {
                    Cell::Str(s) => Cell::Str(Cow::Owned(s.to_string())),
                    Cell::Json(s) => Cell::Json(Cow::Owned(s.to_string())),
                    Cell::Bool(b) => Cell::Bool(*b),
                    Cell::I64(v) => Cell::I64(*v),
                    Cell::U64(v) => Cell::U64(*v),
                    Cell::F64(v) => Cell::F64(*v),
                    _ => Cell::Null,
                };
                to_items.push(owned);
            }
            Cell::List(start, to_items.len())
        }
    }
}

/// A field name, borrowed from the input when it has no escapes. (serde's own `Cow<str>`
/// always allocates.)
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// A chunk of records read by [`Decoder::parse_chunk`]: each record's cells, kept until its
/// row is appended, and what the value transforms read of them ([`ValueChunk`]).
pub struct ParsedChunk<'de> {
    slots: usize,
    inputs: Arc<[usize]>,
    cells: Vec<Cell<'de>>,
    items: Vec<Cell<'de>>,
    status: Vec<Result<(), Dropped>>,
}

impl fmt::Debug for ParsedChunk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedChunk").field("rows", &self.status.len()).finish_non_exhaustive()
    }
}

impl ParsedChunk<'_> {
    /// Why record `row` could not be read, if it could not.
    pub fn dropped(&self, row: usize) -> Option<&Dropped> {
        self.status[row].as_ref().err()
    }
}

impl ValueChunk for ParsedChunk<'_> {
    fn rows(&self) -> usize {
        self.status.len()
    }

    fn value(&self, row: usize, input: usize) -> InputValue<'_> {
        match &self.cells[row * self.slots + self.inputs[input]] {
            Cell::Absent | Cell::Null => InputValue::Null,
            Cell::Bool(b) => InputValue::Bool(*b),
            Cell::I64(v) => InputValue::I64(*v),
            // serde_json reads every non-negative integer as u64: one that fits i64 is an i64,
            // as in the record.
            Cell::U64(v) => match i64::try_from(*v) {
                Ok(v) => InputValue::I64(v),
                Err(_) => InputValue::U64(*v),
            },
            Cell::F64(v) => InputValue::F64(*v),
            Cell::Str(s) => InputValue::Str(s),
            // A JSON column keeps a number or a boolean as its text; a transform reads it as
            // the record holds it.
            Cell::Json(s) => match s.as_bytes().first() {
                Some(b'{' | b'[') | None => InputValue::Json(compact(s)),
                Some(_) => match serde_json::from_str::<serde_json::Value>(s) {
                    Ok(serde_json::Value::Bool(b)) => InputValue::Bool(b),
                    Ok(serde_json::Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
                        (Some(i), _) => InputValue::I64(i),
                        (None, Some(u)) => InputValue::U64(u),
                        _ => InputValue::F64(n.as_f64().unwrap_or(f64::NAN)),
                    },
                    _ => InputValue::Json(compact(s)),
                },
            },
            Cell::List(a, b) => {
                let values: Vec<serde_json::Value> = self.items[*a..*b].iter().map(cell_json).collect();
                InputValue::Json(Cow::Owned(serde_json::Value::Array(values).to_string()))
            }
        }
    }
}

/// A cell as a JSON value (the items of a multi-value field handed to a transform).
fn cell_json(cell: &Cell<'_>) -> serde_json::Value {
    match cell {
        Cell::Absent | Cell::Null | Cell::List(..) => serde_json::Value::Null,
        Cell::Bool(b) => serde_json::Value::Bool(*b),
        Cell::I64(v) => serde_json::Value::from(*v),
        Cell::U64(v) => serde_json::Value::from(*v),
        Cell::F64(v) => serde_json::Value::from(*v),
        Cell::Str(s) => serde_json::Value::String(s.to_string()),
        Cell::Json(s) => serde_json::from_str(s).unwrap_or(serde_json::Value::Null),
    }
}

/// JSON text without the whitespace between its tokens (strings untouched, fields in their
/// order): a nested value handed to a transform reads the same however the record was spaced.
fn compact(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|b| b.is_ascii_whitespace()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Reads a field only the value transforms need, kept as close to the record as possible:
/// strings borrowed, objects and arrays as their text.
struct CaptureSeed;

impl<'de> DeserializeSeed<'de> for CaptureSeed {
    type Value = Cell<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cell<'de>, D::Error> {
        let text = <&'de RawValue>::deserialize(deserializer)?.get();
        Ok(match text.as_bytes().first() {
            // Without escapes the string is the text between its quotes (serde_json has
            // checked it).
            Some(b'"') if !text.as_bytes().contains(&b'\\') => {
                Cell::Str(Cow::Borrowed(&text[1..text.len() - 1]))
            }
            Some(b'"') => {
                let mut de = serde_json::Deserializer::from_str(text);
                Cell::Str(KeySeed.deserialize(&mut de).map_err(de::Error::custom)?)
            }
            Some(b'n') => Cell::Null,
            Some(b't') => Cell::Bool(true),
            Some(b'f') => Cell::Bool(false),
            Some(b'{' | b'[') => Cell::Json(compact(text)),
            _ => {
                if let Ok(v) = text.parse::<i64>() {
                    Cell::I64(v)
                } else if let Ok(v) = text.parse::<u64>() {
                    Cell::U64(v)
                } else {
                    // serde_json refuses a number past f64, as it does in any other field.
                    Cell::F64(serde_json::from_str::<f64>(text).map_err(de::Error::custom)?)
                }
            }
        })
    }
}

/// The cell of a value a transform computed: `array` at `index`. Strings are borrowed from
/// the array; a list's items go into `items` (a single-value column takes a one-item list's
/// item, and any other list as its JSON text, as when the list is in the record).
fn array_cell<'x>(
    array: &'x ArrayRef,
    index: usize,
    single_value: bool,
    items: &mut Vec<Cell<'_>>,
) -> Cell<'x> {
    use arrow::array::AsArray;
    use arrow::datatypes::*;
    if array.is_null(index) {
        return Cell::Null;
    }
    let float = |f: f64| if f.is_finite() { Cell::F64(f) } else { Cell::Null };
    match array.data_type() {
        DataType::Null => Cell::Null,
        DataType::Boolean => Cell::Bool(array.as_boolean().value(index)),
        DataType::Int8 => Cell::I64(array.as_primitive::<Int8Type>().value(index).into()),
        DataType::Int16 => Cell::I64(array.as_primitive::<Int16Type>().value(index).into()),
        DataType::Int32 => Cell::I64(array.as_primitive::<Int32Type>().value(index).into()),
        DataType::Int64 => Cell::I64(array.as_primitive::<Int64Type>().value(index)),
        DataType::UInt8 => Cell::I64(array.as_primitive::<UInt8Type>().value(index).into()),
        DataType::UInt16 => Cell::I64(array.as_primitive::<UInt16Type>().value(index).into()),
        DataType::UInt32 => Cell::I64(array.as_primitive::<UInt32Type>().value(index).into()),
        DataType::UInt64 => Cell::U64(array.as_primitive::<UInt64Type>().value(index)),
        DataType::Float32 => float(array.as_primitive::<Float32Type>().value(index).into()),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(index)),
        DataType::Utf8 => Cell::Str(Cow::Borrowed(array.as_string::<i32>().value(index))),
        DataType::LargeUtf8 => Cell::Str(Cow::Borrowed(array.as_string::<i64>().value(index))),
        DataType::Utf8View => Cell::Str(Cow::Borrowed(array.as_string_view().value(index))),
        // A TIMESTAMP as epoch milliseconds.
        DataType::Timestamp(..) => {
            arrow::compute::cast(&array.slice(index, 1), &DataType::Timestamp(TimeUnit::Millisecond, None))
                .and_then(|t| arrow::compute::cast(&t, &DataType::Int64))
                .map(|v| Cell::I64(v.as_primitive::<Int64Type>().value(0)))
                .unwrap_or(Cell::Null)
        }
        DataType::List(_) | DataType::LargeList(_) => {
            let values = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(index),
                _ => array.as_list::<i64>().value(index),
            };
            let mut cells: Vec<Cell<'static>> = Vec::with_capacity(values.len());
            for i in 0..values.len() {
                let cell = match array_cell(&values, i, true, &mut Vec::new()) {
                    Cell::Str(s) => Cell::Str(Cow::Owned(s.into_owned())),
                    Cell::Json(s) => Cell::Json(Cow::Owned(s.into_owned())),
                    Cell::Bool(b) => Cell::Bool(b),
                    Cell::I64(v) => Cell::I64(v),
                    Cell::U64(v) => Cell::U64(v),
                    Cell::F64(v) => Cell::F64(v),
                    _ => Cell::Null,
                };
                cells.push(cell);
            }
            if single_value && cells.len() == 1 {
                return cells.pop().expect("one item");
            }
            if single_value {
                let values: Vec<serde_json::Value> = cells.iter().map(cell_json).collect();
                return Cell::Json(Cow::Owned(serde_json::Value::Array(values).to_string()));
            }
            let start = items.len();
            items.extend(cells);
            Cell::List(start, items.len())
        }
        _ => match arrow::compute::cast(&array.slice(index, 1), &DataType::Utf8) {
            Ok(text) => Cell::Str(Cow::Owned(text.as_string::<i32>().value(0).to_string())),
            Err(_) => Cell::Null,
        },
    }
}

/// A nested object whose fields flatten into `prefix.field` columns; other values are skipped.
struct FlattenSeed<'a, 'de> {
    decoder: &'a Decoder,
    cells: &'a mut Vec<Cell<'de>>,
    items: &'a mut Vec<Cell<'de>>,
    prefix: &'a str,
}

impl<'de> DeserializeSeed<'de> for FlattenSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FlattenSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        RecordSeed { decoder: self.decoder, cells: self.cells, items: self.items, prefix: Some(self.prefix) }
            .visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Reads one field value into a cell.
struct CellSeed<'a, 'de> {
    items: &'a mut Vec<Cell<'de>>,
    /// The column keeps JSON text: read the value raw.
    json: bool,
    multi_value: bool,
}

impl<'de> DeserializeSeed<'de> for CellSeed<'_, 'de> {
    type Value = Cell<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cell<'de>, D::Error> {
        if self.json && !self.multi_value {
            let raw = <&'de RawValue>::deserialize(deserializer)?;
            let text = raw.get();
            return Ok(match text.as_bytes().first() {
                Some(b'"') => {
                    Cell::Str(serde_json::from_str::<Cow<'de, str>>(text).map_err(de::Error::custom)?)
                }
                Some(b'n') => Cell::Null,
                _ => Cell::Json(Cow::Borrowed(text)),
            });
        }
        deserializer.deserialize_any(self)
    }
}

use serde::Deserialize;

/// The visits shared by every value visitor: scalars into cells (strings borrowed where the
/// input allows), null, and an object as its JSON text.
macro_rules! scalar_cell_visits {
    () => {
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Cell<'de>, E> {
            Ok(Cell::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Cell<'de>, E> {
            Ok(Cell::I64(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Cell<'de>, E> {
            Ok(Cell::U64(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Cell<'de>, E> {
            Ok(Cell::F64(v))
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cell<'de>, E> {
            Ok(Cell::Str(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Cell<'de>, E> {
            Ok(Cell::Str(Cow::Owned(v.to_string())))
        }
        fn visit_string<E>(self, v: String) -> Result<Cell<'de>, E> {
            Ok(Cell::Str(Cow::Owned(v)))
        }
        fn visit_unit<E>(self) -> Result<Cell<'de>, E> {
            Ok(Cell::Null)
        }
        fn visit_none<E>(self) -> Result<Cell<'de>, E> {
            Ok(Cell::Null)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Cell<'de>, A::Error> {
            let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
            Ok(Cell::Json(Cow::Owned(value.to_string())))
        }
    };
}

impl<'de> Visitor<'de> for CellSeed<'_, 'de> {
    type Value = Cell<'de>;
    scalar_cell_visits!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell<'de>, A::Error> {
        if !self.multi_value {
            // Kept as JSON text: a one-item list for a single-value column is unwrapped
            // later, as Pinot does; anything longer does not convert.
            let mut values = Vec::new();
            while let Some(v) = seq.next_element::<serde_json::Value>()? {
                values.push(v);
            }
            if values.len() == 1 {
                // A one-item list: converting takes its item, as Pinot does, and a transform
                // still sees an array.
                let only = values.pop().expect("one item");
                let start = self.items.len();
                self.items.push(value_cell(only));
                return Ok(Cell::List(start, start + 1));
            }
            return Ok(Cell::Json(Cow::Owned(serde_json::Value::Array(values).to_string())));
        }
        // Items are read straight into cells (strings borrowed); a nested list or object
        // inside becomes its JSON text.
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ItemSeed)? {
            items.push(item);
        }
        let start = self.items.len();
        self.items.extend(items);
        Ok(Cell::List(start, self.items.len()))
    }
}

/// One item of a multi-value field.
struct ItemSeed;

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = Cell<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cell<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed {
    type Value = Cell<'de>;
    scalar_cell_visits!();
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Cell<'de>, A::Error> {
        let value = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Cell::Json(Cow::Owned(value.to_string())))
    }
}

fn value_cell<'de>(v: serde_json::Value) -> Cell<'de> {
    match v {
        serde_json::Value::Null => Cell::Null,
        serde_json::Value::Bool(b) => Cell::Bool(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Cell::I64(i)
            } else if let Some(u) = n.as_u64() {
                Cell::U64(u)
            } else {
                Cell::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Cell::Str(Cow::Owned(s)),
        other => Cell::Json(Cow::Owned(other.to_string())),
    }
}

fn mismatch(cell: &Cell<'_>, t: DataType, column: &str) -> Dropped {
    Dropped {
        reason: DropReason::TypeMismatch,
        message: format!("column {column:?}: {} is not a {}", cell.describe(), t.name()),
    }
}

fn out_of_range(what: impl fmt::Display, t: DataType, column: &str) -> Dropped {
    Dropped {
        reason: DropReason::OutOfRange,
        message: format!("column {column:?}: {what} does not fit {}", t.name()),
    }
}

/// An integer from a cell: integers as they are, floats truncated toward zero (as Pinot's
/// `Number.longValue()`), booleans as 1/0, numeric strings parsed.
fn integer(cell: &Cell<'_>, t: DataType, column: &str) -> Result<i128, Dropped> {
    let from_float = |f: f64| {
        if !f.is_finite() {
            Err(Dropped {
                reason: DropReason::NotFinite,
                message: format!("column {column:?}: {f} is not a number"),
            })
        } else if f.abs() >= 1.7e38 {
            Err(out_of_range(f, t, column))
        } else {
            Ok(f.trunc() as i128)
        }
    };
    match cell {
        Cell::I64(v) => Ok(i128::from(*v)),
        Cell::U64(v) => Ok(i128::from(*v)),
        Cell::F64(f) => from_float(*f),
        Cell::Bool(b) => Ok(i128::from(*b)),
        Cell::Str(s) => {
            let s = s.trim();
            if let Ok(v) = s.parse::<i64>() {
                Ok(i128::from(v))
            } else if let Ok(v) = s.parse::<i128>() {
                Ok(v)
            } else {
                match parse_finite(s) {
                    Some(Ok(f)) => from_float(f),
                    Some(Err(d)) => Err(Dropped {
                        reason: d,
                        message: format!("column {column:?}: {s:?} is not a number"),
                    }),
                    None => Err(mismatch(cell, t, column)),
                }
            }
        }
        _ => Err(mismatch(cell, t, column)),
    }
}

/// Parses a float; Some(Err) for NaN and infinities.
fn parse_finite(s: &str) -> Option<Result<f64, DropReason>> {
    let f = s.parse::<f64>().ok()?;
    Some(if f.is_finite() { Ok(f) } else { Err(DropReason::NotFinite) })
}

fn float(cell: &Cell<'_>, t: DataType, column: &str) -> Result<f64, Dropped> {
    let not_finite = |what: &str| Dropped {
        reason: DropReason::NotFinite,
        message: format!("column {column:?}: {what} is not a finite {}", t.name()),
    };
    match cell {
        Cell::I64(v) => Ok(*v as f64),
        Cell::U64(v) => Ok(*v as f64),
        Cell::F64(f) if f.is_finite() => Ok(*f),
        Cell::F64(f) => Err(not_finite(&f.to_string())),
        Cell::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Cell::Str(s) => match parse_finite(s.trim()) {
            Some(Ok(f)) => Ok(f),
            Some(Err(_)) => Err(not_finite(s)),
            None => Err(mismatch(cell, t, column)),
        },
        _ => Err(mismatch(cell, t, column)),
    }
}

/// Parses decimal text (`-12.5`, `1e3`) into a Decimal128 scaled by 10^18.
pub fn parse_decimal(text: &str) -> Option<i128> {
    let t = text.trim();
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (negative, digits) = match mantissa.as_bytes().first()? {
        b'-' => (true, &mantissa[1..]),
        b'+' => (false, &mantissa[1..]),
        _ => (false, mantissa),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = int.frac × 10^exponent, kept with DECIMAL_SCALE fraction digits (rounded half up).
    let scale = i32::from(DECIMAL_SCALE) + exponent - frac.len() as i32;
    let mut value: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    if scale >= 0 {
        value = value.checked_mul(10i128.checked_pow(scale as u32)?)?;
    } else {
        let div = 10i128.checked_pow((-scale) as u32).unwrap_or(i128::MAX);
        value = value / div + i128::from((value % div) * 2 >= div);
    }
    if value >= 10i128.pow(38) {
        return None;
    }
    Some(if negative { -value } else { value })
}

/// Parses a timestamp text: epoch ms, `yyyy-MM-dd HH:mm:ss[.SSS]`, `yyyy-MM-dd`, or ISO-8601.
pub fn parse_timestamp_text(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<i64>() {
        return Some(v);
    }
    static PATTERNS: std::sync::OnceLock<Vec<crate::datetime::JavaDatePattern>> = std::sync::OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        [
            "yyyy-MM-dd HH:mm:ss.SSS",
            "yyyy-MM-dd HH:mm:ss",
            "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
            "yyyy-MM-dd'T'HH:mm:ssXXX",
            "yyyy-MM-dd'T'HH:mm:ss.SSS",
            "yyyy-MM-dd'T'HH:mm:ss",
            "yyyy-MM-dd",
        ]
        .iter()
        .filter_map(|p| crate::datetime::JavaDatePattern::parse(p).ok())
        .collect()
    });
    patterns.iter().find_map(|p| p.parse_millis(s))
}

fn cut_chars(s: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return s;
    }
    match s.char_indices().nth(max) {
        None => s,
        Some((i, _)) => match s {
            Cow::Borrowed(b) => Cow::Borrowed(&b[..i]),
            Cow::Owned(mut o) => {
                o.truncate(i);
                Cow::Owned(o)
            }
        },
    }
}

/// Converts one cell to a column's type with Pinot's coercions.
fn convert<'de>(
    cell: &Cell<'de>,
    t: DataType,
    spec: &crate::schema::FieldSpec,
) -> Result<Value<'de>, Dropped> {
    let column = spec.name.as_str();
    let timestamp_format =
        matches!(spec.date_time.as_ref().map(|d| &d.format), Some(DateTimeFormat::Timestamp));
    Ok(match t {
        DataType::Int => {
            let v = integer(cell, t, column)?;
            Value::Int(i32::try_from(v).map_err(|_| out_of_range(v, t, column))?)
        }
        DataType::Long | DataType::Timestamp => {
            let v = match cell {
                Cell::Str(s)
                    if (timestamp_format || t == DataType::Timestamp) && s.trim().parse::<f64>().is_err() =>
                {
                    i128::from(parse_timestamp_text(s).ok_or_else(|| Dropped {
                        reason: if timestamp_format { DropReason::BadTime } else { DropReason::TypeMismatch },
                        message: format!(
                            "column {column:?}: {s:?} is not a timestamp (epoch ms or yyyy-MM-dd HH:mm:ss)"
                        ),
                    })?)
                }
                _ => integer(cell, t, column)?,
            };
            let v = i64::try_from(v).map_err(|_| out_of_range(v, t, column))?;
            if t == DataType::Long { Value::Long(v) } else { Value::Timestamp(v) }
        }
        DataType::Float => {
            let f = float(cell, t, column)?;
            // `Straight::takes` takes the values inside this range straight.
            if f.abs() > f64::from(f32::MAX) {
                return Err(out_of_range(f, t, column));
            }
            Value::Float(f as f32)
        }
        DataType::Double => Value::Double(float(cell, t, column)?),
        DataType::BigDecimal => {
            let parsed = match cell {
                Cell::I64(v) => parse_decimal(&v.to_string()),
                Cell::U64(v) => parse_decimal(&v.to_string()),
                Cell::F64(f) if f.is_finite() => parse_decimal(&f.to_string()),
                Cell::Str(s) => parse_decimal(s),
                _ => return Err(mismatch(cell, t, column)),
            };
            Value::Decimal(parsed.ok_or_else(|| out_of_range(cell.describe(), t, column))?)
        }
        DataType::Boolean => Value::Boolean(match cell {
            Cell::Bool(b) => *b,
            Cell::I64(v) => *v != 0,
            Cell::U64(v) => *v != 0,
            Cell::F64(f) => *f != 0.0,
            Cell::Str(s) => match s.trim() {
                x if x.eq_ignore_ascii_case("true") || x == "1" => true,
                x if x.eq_ignore_ascii_case("false") || x == "0" => false,
                _ => return Err(mismatch(cell, t, column)),
            },
            _ => return Err(mismatch(cell, t, column)),
        }),
        DataType::String => Value::Str(cut_chars(
            match cell {
                Cell::Str(s) | Cell::Json(s) => s.clone(),
                Cell::I64(v) => Cow::Owned(v.to_string()),
                Cell::U64(v) => Cow::Owned(v.to_string()),
                Cell::F64(f) => Cow::Owned(f.to_string()),
                Cell::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
                _ => return Err(mismatch(cell, t, column)),
            },
            spec.max_length,
        )),
        DataType::Json => Value::Str(match cell {
            Cell::Str(s) | Cell::Json(s) => s.clone(),
            Cell::I64(v) => Cow::Owned(v.to_string()),
            Cell::U64(v) => Cow::Owned(v.to_string()),
            Cell::F64(f) => Cow::Owned(f.to_string()),
            Cell::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            _ => return Err(mismatch(cell, t, column)),
        }),
        DataType::Bytes => match cell {
            Cell::Str(s) => {
                let mut bytes = decode_hex(s.trim()).ok_or_else(|| Dropped {
                    reason: DropReason::TypeMismatch,
                    message: format!("column {column:?}: {} is not hex-encoded BYTES", cell.describe()),
                })?;
                bytes.truncate(spec.max_length);
                Value::Bytes(Cow::Owned(bytes))
            }
            _ => return Err(mismatch(cell, t, column)),
        },
    })
}

/// The epoch ms of a time column's converted value, checked against Pinot's valid range when
/// `check_range` (`ingestionConfig.rowTimeValueCheck`).
fn time_millis(
    value: &Value<'_>,
    format: Option<&DateTimeFormat>,
    column: &str,
    check_range: bool,
) -> Result<i64, Dropped> {
    let bad = |what: String| Dropped {
        reason: DropReason::BadTime,
        message: format!("time column {column:?}: {what} does not match its format"),
    };
    let millis = match (value, format) {
        (Value::Timestamp(ms), _) => Some(*ms),
        (Value::Long(v), Some(f)) => f.epoch_to_millis(*v),
        (Value::Int(v), Some(f)) => f.epoch_to_millis(i64::from(*v)),
        (Value::Str(s), Some(DateTimeFormat::SimpleDate(p))) => p.parse_millis(s),
        (Value::Str(s), Some(DateTimeFormat::Timestamp)) => parse_timestamp_text(s),
        (Value::Str(s), Some(f @ DateTimeFormat::Epoch { .. })) => {
            s.trim().parse::<i64>().ok().and_then(|v| f.epoch_to_millis(v))
        }
        (Value::Long(v), None) => Some(*v),
        (other, _) => return Err(bad(format!("{other:?}"))),
    };
    let millis = millis.ok_or_else(|| bad(format!("{value:?}")))?;
    // pinot-spi TimeUtils.timeValueInValidRange: both ends included.
    if check_range && !(MIN_VALID_TIME_MS..=MAX_VALID_TIME_MS).contains(&millis) {
        return Err(Dropped {
            reason: DropReason::TimeOutOfRange,
            message: format!("time column {column:?}: {millis} ms is outside 1971-01-01..2071-01-01"),
        });
    }
    Ok(millis)
}
