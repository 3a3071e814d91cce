//! The decoder's fast path: a scanner for the common shape of a record (one flat object whose
//! fields are scalars, arrays of scalars for multi-value columns, and fields the table does
//! not read) that fills the same cells as the serde visitor, strings borrowed from the record,
//! without its per-value dispatch. Anything else gives up: an escape in a key or a string, an
//! object or array in a column that is not multi-value, a field to flatten or to capture for a
//! transform, a number serde_json would read another way, nesting past its depth, a syntax
//! error. The record then goes the general way, which decides it (and its error) exactly as
//! before; the scanner only ever answers what the general way would.

use super::{Cell, Decoder};
use std::borrow::Cow;

/// Nesting the scanner follows in a skipped value (serde_json stops at 128).
const DEPTH: usize = 100;

/// No column guessed for a field position.
pub(super) const NO_GUESS: u32 = u32::MAX;

/// Field positions a guess is kept for: the decoder keeps the guesses between records, so a
/// record of many fields must not make them grow without bound.
const GUESSES: usize = 256;

/// Powers of ten that are exact in an f64 (serde_json's table starts the same).
const POW10: [f64; 19] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18];

struct Scanner<'de> {
    text: &'de str,
    bytes: &'de [u8],
    at: usize,
}

impl Decoder {
    /// Reads `text` into `cells` (one per slot) and `items` by the fast path; None when the
    /// record needs the general one (the cells and items it touched are then to be reset).
    /// `order` holds, per field position, the column the field there named last time:
    /// records of a stream mostly list their fields in one order, so one comparison of names
    /// usually finds the column without hashing.
    pub(super) fn scan<'de>(
        &self,
        text: &'de str,
        cells: &mut [Cell<'de>],
        items: &mut Vec<Cell<'de>>,
        order: &mut Vec<u32>,
    ) -> Option<()> {
        let mut s = Scanner { text, bytes: text.as_bytes(), at: 0 };
        let mut position = 0;
        s.ws();
        s.eat(b'{')?;
        s.ws();
        if s.peek()? == b'}' {
            s.at += 1;
        } else {
            loop {
                s.eat(b'"')?;
                let key = s.string()?;
                s.ws();
                s.eat(b':')?;
                s.ws();
                // A parent of flattened columns is read the general way.
                if !self.prefixes.is_empty() && self.prefixes.contains(key) {
                    return None;
                }
                let guess = order.get(position).copied().unwrap_or(NO_GUESS) as usize;
                let found = match self.layout.columns.get(guess) {
                    Some(c) if c.spec.name == key => Some(&guess),
                    _ => {
                        let found = self.lookup.get(key);
                        if position < GUESSES {
                            if order.len() <= position {
                                order.resize(position + 1, NO_GUESS);
                            }
                            order[position] = found.map_or(NO_GUESS, |&c| c as u32);
                        }
                        found
                    }
                };
                position += 1;
                match found {
                    Some(&column) if column < self.layout.columns.len() && !self.json_columns[column] => {
                        let multi_value = !self.layout.columns[column].spec.single_value;
                        cells[column] = s.value(multi_value, items)?;
                    }
                    // A JSON column, or a field captured for a transform.
                    Some(_) => return None,
                    None => s.skip(1)?,
                }
                if !s.more(b'}')? {
                    break;
                }
            }
        }
        s.ws();
        (s.at == s.bytes.len()).then_some(())
    }
}

impl<'de> Scanner<'de> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// After an item of an object or array closed by `close`: true when another item follows
    /// (its comma read), false at the end (`close` read); None for anything else.
    fn more(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let next = self.peek()?;
        self.at += 1;
        if next == b',' {
            self.ws();
            return Some(true);
        }
        (next == close).then_some(false)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// The text of a string without escapes, its opening quote read; None at an escape or a
    /// control character (which serde_json refuses).
    fn string(&mut self) -> Option<&'de str> {
        let start = self.at;
        let rest = self.bytes.get(start..)?;
        let len = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Both ends are ASCII bytes of a valid UTF-8 text: character boundaries.
        self.text.get(start..start + len)
    }

    /// A number as serde_json reads it: a positive integer as u64, a negative one as i64, any
    /// other as f64 (parsed by serde_json itself). None for what it reads another way (`-0`, an
    /// integer past 64 bits, a float out of range) or refuses.
    fn number(&mut self) -> Option<Cell<'de>> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let digits = self.at;
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let integer = self.at;
        if self.peek() == Some(b'.') {
            self.at += 1;
            let from = self.at;
            self.digits();
            if self.at == from {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            let from = self.at;
            self.digits();
            if self.at == from {
                return None;
            }
        }
        if self.at != integer {
            let text = self.text.get(start..self.at)?;
            // Up to 18 digits and no exponent: serde_json's own arithmetic, the significand
            // divided by a power of ten (one correctly rounded step); else serde_json parses.
            let whole = self.text.get(digits..integer)?;
            let fraction = self.text.get(integer + 1..self.at)?;
            if self.bytes[integer] == b'.'
                && whole.len() + fraction.len() <= 18
                && fraction.bytes().all(|b| b.is_ascii_digit())
            {
                let significand =
                    whole.bytes().chain(fraction.bytes()).fold(0u64, |m, b| m * 10 + u64::from(b - b'0'));
                let f = significand as f64 / POW10[fraction.len()];
                return Some(Cell::F64(if negative { -f } else { f }));
            }
            return serde_json::from_str::<f64>(text).ok().map(Cell::F64);
        }
        let magnitude: u64 = self.text.get(digits..self.at)?.parse().ok()?;
        if !negative {
            return Some(Cell::U64(magnitude));
        }
        // serde_json reads -0 and anything below i64::MIN as floats.
        if magnitude == 0 || magnitude > 1 << 63 {
            return None;
        }
        Some(Cell::I64((magnitude as i64).wrapping_neg()))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    /// A scalar value's cell; None for an object or array.
    fn scalar(&mut self) -> Option<Cell<'de>> {
        Some(match self.peek()? {
            b'"' => {
                self.at += 1;
                Cell::Str(Cow::Borrowed(self.string()?))
            }
            b't' => {
                self.literal(b"true")?;
                Cell::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                Cell::Bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                Cell::Null
            }
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return None,
        })
    }

    /// A column's value: a scalar, or for a multi-value column an array of scalars (its items
    /// appended to `items`).
    fn value(&mut self, multi_value: bool, items: &mut Vec<Cell<'de>>) -> Option<Cell<'de>> {
        if !(multi_value && self.peek()? == b'[') {
            return self.scalar();
        }
        self.at += 1;
        self.ws();
        let start = items.len();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(Cell::List(start, start));
        }
        loop {
            let item = self.scalar()?;
            items.push(item);
            if !self.more(b']')? {
                return Some(Cell::List(start, items.len()));
            }
        }
    }

    /// Skips a value the table does not read, checking it is valid JSON.
    fn skip(&mut self, depth: usize) -> Option<()> {
        let close = match self.peek()? {
            b'{' => b'}',
            b'[' => b']',
            _ => return self.scalar().map(|_| ()),
        };
        if depth >= DEPTH {
            return None;
        }
        self.at += 1;
        self.ws();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            if close == b'}' {
                self.eat(b'"')?;
                self.string()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
            }
            self.skip(depth + 1)?;
            if !self.more(close)? {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cell, Decoder, RecordMeta};
    use crate::builder::ColumnBuilder;
    use crate::{LayoutOptions, Schema, TableLayout};
    use std::sync::Arc;

    /// A table of `dimensions`, the metrics `l` (LONG) and `d` (DOUBLE), and the time `ts`.
    fn layout_of(dimensions: serde_json::Value, options: &LayoutOptions) -> Arc<TableLayout> {
        let schema = serde_json::json!({
            "schemaName": "t",
            "dimensionFieldSpecs": dimensions,
            "metricFieldSpecs": [
                {"name": "l", "dataType": "LONG"},
                {"name": "d", "dataType": "DOUBLE"}
            ],
            "dateTimeFieldSpecs": [
                {"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}
            ]
        });
        let (schema, _) = Schema::from_json(&schema).expect("valid schema");
        Arc::new(TableLayout::new(Arc::new(schema), options))
    }

    fn layout() -> Arc<TableLayout> {
        let dimensions = serde_json::json!([
            {"name": "s", "dataType": "STRING"},
            {"name": "i", "dataType": "INT"},
            {"name": "b", "dataType": "BOOLEAN"},
            {"name": "j", "dataType": "JSON"},
            {"name": "mv", "dataType": "STRING", "singleValueField": false},
            {"name": "ml", "dataType": "LONG", "singleValueField": false}
        ]);
        layout_of(dimensions, &LayoutOptions::default())
    }

    /// Records of the common shape: the scanner reads each.
    const COMMON: &[&str] = &[
        r#"{"s":"a","l":5,"d":1.5,"mv":["x","y"],"ml":[1,-2],"b":true,"ts":1700000000000}"#,
        " \n{ \"s\" : \"héllo\" , \"l\" :\t-7 ,\"ts\":1700000000001}\r\n",
        r#"{"x":{"a":[1,{"b":null}],"c":"d"},"s":"q","y":[],"z":{},"w":-1.5e3,"ts":1700000000002}"#,
        r#"{"l":18446744073709551615,"ts":1700000000003}"#,
        r#"{"l":-9223372036854775808,"ts":1700000000004}"#,
        r#"{"d":0.1,"i":1E2,"ts":1700000000005}"#,
        r#"{"d":-0.0,"l":0,"ts":1700000000006}"#,
        r#"{"d":2.5e+3,"l":"12","ts":1700000000007}"#,
        r#"{"s":"a","s":"b","mv":["1"],"mv":["2","3"],"ts":1700000000008}"#,
        r#"{"mv":"solo","ml":null,"ts":1700000000009}"#,
        r#"{"mv":[null,"a"],"ml":[],"ts":1700000000010}"#,
        r#"{"s":null,"l":null,"b":false,"ts":1700000000011}"#,
        r#"{"s":12.5,"i":"42","b":"true","ts":"1700000000012"}"#,
        r#"{}"#,
        r#"{ }"#,
        r#"{"i":99999999999,"ts":1700000000014}"#,
        r#"{"d":123.456,"ts":1700000000015}"#,
        r#"{"d":-0.5,"ts":1700000000016}"#,
        r#"{"d":12345678901234567.8,"ts":1700000000017}"#,
        r#"{"d":1234567890123456789.5,"ts":1700000000018}"#,
        r#"{"d":0.30000000000000004,"ts":1700000000019}"#,
        r#"{"d":9007199254740993.5,"ts":1700000000020}"#,
        r#"{"d":0.1e1,"ts":1700000000021}"#,
        r#"{"d":-0.000000000000000001,"ts":1700000000022}"#,
        // Read, then refused for their missing time.
        r#"{"l":1}"#,
        r#"{"ts":null}"#,
    ];

    /// Records the scanner leaves to the general way (which may keep or refuse them).
    const OTHER: &[&str] = &[
        r#"{"l":-0,"ts":1700000000020}"#,
        r#"{"l":18446744073709551616,"ts":1700000000021}"#,
        r#"{"l":-9223372036854775809,"ts":1700000000022}"#,
        r#"{"s":"a\"b","ts":1700000000024}"#,
        r#"{"s":"\u00e9","ts":1700000000025}"#,
        "{\"s\":\"a\tb\",\"ts\":1700000000026}",
        r#"{"\u0073":"x","ts":1700000000027}"#,
        r#"{"x":"esc\\aped","ts":1700000000028}"#,
        r#"{"s":["one"],"ts":1700000000029}"#,
        r#"{"s":["a","b"],"ts":1700000000030}"#,
        r#"{"l":[],"ts":1700000000031}"#,
        r#"{"mv":[["n"]],"ts":1700000000032}"#,
        r#"{"mv":{"k":1},"ts":1700000000033}"#,
        r#"{"j":{"a":1},"ts":1700000000034}"#,
        r#"{"j":"text","ts":1700000000035}"#,
        r#"{"s":{"k":1},"ts":1700000000036}"#,
        r#"{"l":0123,"ts":1}"#,
        r#"{"l":1.,"ts":1}"#,
        r#"{"l":-,"ts":1}"#,
        r#"{"d":.5,"ts":1}"#,
        r#"{"s":"a",}"#,
        r#"{"s":"a""#,
        r#"[1,2]"#,
        r#""str""#,
        r#"{} x"#,
        r#"{}{}"#,
        "",
        r#"{"s":"a" "l":1}"#,
        r#"{"s" "a"}"#,
        r#"{"s":tru}"#,
        r#"{"s":nul}"#,
        r#"{"s":truex}"#,
        r#"{"x":[1,2,],"ts":1}"#,
        r#"{"x":{"a":1,},"ts":1}"#,
        r#"{"x":{"a"},"ts":1}"#,
        r#"{"x":12abc,"ts":1}"#,
        r#"{"l":1e400,"ts":1700000000013}"#,
    ];

    fn deep() -> String {
        format!(r#"{{"x":{}1{},"ts":1}}"#, "[".repeat(150), "]".repeat(150))
    }

    /// Decodes `records` one way (`fast` or not) and returns each outcome and the columns.
    fn decode_all(records: &[String], fast: bool) -> (Vec<String>, Vec<arrow::array::ArrayRef>) {
        decode_all_into(layout(), records, fast)
    }

    fn decode_all_into(
        layout: Arc<TableLayout>,
        records: &[String],
        fast: bool,
    ) -> (Vec<String>, Vec<arrow::array::ArrayRef>) {
        let mut decoder = Decoder::new(Arc::clone(&layout));
        decoder.fast = fast;
        let mut builders: Vec<ColumnBuilder> =
            layout.columns.iter().map(|c| ColumnBuilder::new(c, 64)).collect();
        let meta =
            RecordMeta { partition_key: "pk", sequence_number: "1", arrival_millis: 1_700_000_000_000 };
        let outcomes = records
            .iter()
            .map(|r| format!("{:?}", decoder.decode(r.as_bytes(), &meta, &mut builders)))
            .collect();
        (outcomes, builders.iter_mut().map(ColumnBuilder::finish).collect())
    }

    #[test]
    fn the_scanner_reads_the_common_shape_and_leaves_the_rest() {
        let decoder = Decoder::new(layout());
        for record in COMMON {
            let (mut cells, mut items) = (Vec::new(), Vec::new());
            cells.resize_with(decoder.slots, || Cell::Absent);
            assert!(
                decoder.scan(record, &mut cells, &mut items, &mut Vec::new()).is_some(),
                "scanned: {record}"
            );
        }
        for record in OTHER.iter().map(|r| r.to_string()).chain([deep()]) {
            let (mut cells, mut items) = (Vec::new(), Vec::new());
            cells.resize_with(decoder.slots, || Cell::Absent);
            assert!(
                decoder.scan(&record, &mut cells, &mut items, &mut Vec::new()).is_none(),
                "left to serde: {record}"
            );
        }
    }

    /// A table whose every column can be appended straight from its cells (no JSON column):
    /// short strings, an INT, booleans, multi-value strings and longs, and a time column that
    /// Pinot's range check applies to.
    fn direct_layout() -> Arc<TableLayout> {
        let dimensions = serde_json::json!([
            {"name": "s", "dataType": "STRING", "maxLength": 4},
            {"name": "i", "dataType": "INT"},
            {"name": "b", "dataType": "BOOLEAN"},
            {"name": "mv", "dataType": "STRING", "singleValueField": false, "maxLength": 4},
            {"name": "ml", "dataType": "LONG", "singleValueField": false},
            {"name": "f", "dataType": "FLOAT"},
            {"name": "t", "dataType": "TIMESTAMP"},
            {"name": "mi", "dataType": "INT", "singleValueField": false},
            {"name": "md", "dataType": "DOUBLE", "singleValueField": false}
        ]);
        let options =
            LayoutOptions { time_column: Some("ts".into()), row_time_check: true, ..Default::default() };
        layout_of(dimensions, &options)
    }

    /// Records whose every cell goes straight into its builder.
    const DIRECT: &[&str] = &[
        r#"{"s":"ab","i":1,"b":true,"mv":["x","y"],"ml":[1,-2],"l":5,"d":1.5,"ts":1700000000000}"#,
        r#"{"ts":1700000000001,"d":-0.0,"l":-9223372036854775808,"ml":[0],"mv":["hé"],"b":false,"i":-2147483648,"s":""}"#,
        r#"{"s":"abcd","i":2147483647,"b":true,"mv":["abcd"],"ml":[9223372036854775807],"l":0,"d":7,"ts":1700000000002}"#,
        r#"{"s":"é","i":0,"b":false,"mv":["a","a","a"],"ml":[3,3],"l":1,"d":0.1,"x":{"y":[1]},"ts":1700000000003}"#,
        // Integers past i64 and past f64's exact range into the DOUBLE.
        r#"{"s":"a","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":18446744073709551615,"ts":1700000000004}"#,
        r#"{"s":"a","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":9007199254740993,"ts":1700000000005}"#,
        // Escapes: read by serde (the scanner leaves them), then appended straight.
        r#"{"s":"a\"b","i":1,"b":true,"mv":["\u00e9"],"ml":[1],"l":5,"d":1.5,"ts":1700000000006}"#,
        // FLOAT near its largest and from integers, TIMESTAMP at 0, INT and DOUBLE lists at their edges.
        r#"{"s":"a","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"f":3.4e38,"t":0,"mi":[-2147483648,2147483647],"md":[1,18446744073709551615,-0.0],"ts":1700000000007}"#,
        r#"{"s":"a","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"f":16777217,"t":-1,"mi":[0],"md":[0.1],"ts":1700000000008}"#,
    ];

    /// Records with a cell the general way must decide: converted, cut, defaulted or refused.
    const NOT_DIRECT: &[&str] = &[
        // Missing and null cells take the column's default.
        r#"{"s":"ab","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"ts":1700000000010}"#,
        r#"{"s":null,"i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"ts":1700000000011}"#,
        // Longer than maxLength (4 characters): cut, by characters not bytes.
        r#"{"s":"abcde","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"ts":1700000000012}"#,
        r#"{"s":"ééé","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"ts":1700000000013}"#,
        r#"{"s":"a","i":1,"b":true,"mv":["xxxxx","y"],"ml":[1],"l":5,"d":1.5,"ts":1700000000014}"#,
        // Out of INT's range: refused.
        r#"{"s":"a","i":2147483648,"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"ts":1700000000015}"#,
        // Other JSON types, converted.
        r#"{"s":12,"i":"7","b":"true","mv":"x","ml":[1],"l":"5","d":"2.5","ts":1700000000016}"#,
        r#"{"s":"a","i":1.9,"b":1,"mv":["x"],"ml":[1.5],"l":5.5,"d":1.5,"ts":"1700000000017"}"#,
        r#"{"s":"a","i":1,"b":true,"mv":["x"],"ml":[1],"l":18446744073709551615,"d":1.5,"ts":1700000000018}"#,
        // Lists: empty, with a null, of one item in a single-value column.
        r#"{"s":"a","i":1,"b":true,"mv":[],"ml":[1],"l":5,"d":1.5,"ts":1700000000019}"#,
        r#"{"s":"a","i":1,"b":true,"mv":[null,"x"],"ml":[null],"l":5,"d":1.5,"ts":1700000000020}"#,
        r#"{"s":["a"],"i":[1],"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"ts":1700000000021}"#,
        // A time outside Pinot's valid range (rowTimeValueCheck): refused.
        r#"{"s":"a","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"ts":5}"#,
        // Past FLOAT's range, past INT's in a list: refused; an empty DOUBLE list: the default.
        r#"{"s":"a","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"f":3.5e38,"ts":1700000000030}"#,
        r#"{"s":"a","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"mi":[2147483648],"ts":1700000000031}"#,
        r#"{"s":"a","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"md":[],"ts":1700000000032}"#,
        // TIMESTAMP and FLOAT from text, a list item of another type: converted.
        r#"{"s":"a","i":1,"b":true,"mv":["x"],"ml":[1],"l":5,"d":1.5,"t":"2024-01-01 00:00:00","f":"1.5","md":["2.5",true],"ts":1700000000033}"#,
    ];

    /// `record` with the columns it does not name given ordinary values, so that a record
    /// differs from a straight one only where it says.
    fn whole(record: &str) -> String {
        let mut out = record.trim_end_matches('}').to_string();
        for (name, value) in [("f", "1.5"), ("t", "1700000000000"), ("mi", "[1,2]"), ("md", "[0.5,2]")] {
            if !record.contains(&format!("\"{name}\":")) {
                out.push_str(&format!(",\"{name}\":{value}"));
            }
        }
        out.push('}');
        out
    }

    #[test]
    fn records_of_the_tables_own_types_are_appended_straight_and_as_the_general_way_appends_them() {
        let layout = direct_layout();
        let mut decoder = Decoder::new(Arc::clone(&layout));
        let mut builders: Vec<ColumnBuilder> =
            layout.columns.iter().map(|c| ColumnBuilder::new(c, 64)).collect();
        let mut straight = |record: &str, builders: &mut Vec<ColumnBuilder>| {
            let (mut cells, mut items) = (Vec::new(), Vec::new());
            cells.resize_with(decoder.slots, || Cell::Absent);
            // By the scanner, or by serde for the records the scanner leaves.
            decoder.read(record, &mut cells, &mut items).expect("valid JSON");
            decoder.append_direct(&cells, &items, builders).is_some()
        };
        for record in DIRECT.iter().map(|r| whole(r)) {
            assert!(straight(&record, &mut builders), "appended straight: {record}");
        }
        for record in NOT_DIRECT.iter().map(|r| whole(r)) {
            assert!(!straight(&record, &mut builders), "left to the general way: {record}");
        }
        // The same outcomes and rows both ways, floats to the bit.
        let records: Vec<String> = DIRECT.iter().chain(NOT_DIRECT).map(|r| whole(r)).collect();
        let (fast, fast_columns) = decode_all_into(Arc::clone(&layout), &records, true);
        let (general, general_columns) = decode_all_into(Arc::clone(&layout), &records, false);
        for ((record, f), g) in records.iter().zip(&fast).zip(&general) {
            assert_eq!(f, g, "{record}");
        }
        assert_eq!(fast_columns, general_columns);
        let column = |name: &str| layout.columns.iter().position(|c| c.spec.name == name).expect("a column");
        let (d, f, md) = (column("d"), column("f"), column("md"));
        let bits = |columns: &[arrow::array::ArrayRef]| -> (Vec<u64>, Vec<u32>, Vec<u64>) {
            use arrow::array::{AsArray, Float32Array, Float64Array};
            let doubles = |a: &Float64Array| a.values().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let d = columns[d].as_any().downcast_ref::<Float64Array>().expect("d is DOUBLE");
            let f = columns[f].as_any().downcast_ref::<Float32Array>().expect("f is FLOAT");
            let md = columns[md]
                .as_list::<i32>()
                .values()
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("md holds DOUBLEs");
            (doubles(d), f.values().iter().map(|v| v.to_bits()).collect(), doubles(md))
        };
        assert_eq!(bits(&fast_columns), bits(&general_columns));
        // Not vacuous: rows were made both ways, and the general way refused some.
        assert_eq!(fast.iter().filter(|o| o.starts_with("Ok")).count(), fast_columns[0].len());
        assert!(fast_columns[0].len() >= DIRECT.len() + 8, "{fast:?}");
        assert!(fast.iter().any(|o| o.starts_with("Err")), "{fast:?}");
    }

    #[test]
    fn the_scanner_decides_every_record_as_the_general_way_does() {
        let records: Vec<String> =
            COMMON.iter().chain(OTHER).map(|r| r.to_string()).chain([deep()]).collect();
        let (fast, fast_columns) = decode_all(&records, true);
        let (general, general_columns) = decode_all(&records, false);
        for ((record, f), g) in records.iter().zip(&fast).zip(&general) {
            assert_eq!(f, g, "{record}");
        }
        assert_eq!(fast_columns, general_columns);
        // Floats to the bit (-0.0 equals 0.0 above).
        for (f, g) in fast_columns.iter().zip(&general_columns) {
            if let (Some(f), Some(g)) = (
                f.as_any().downcast_ref::<arrow::array::Float64Array>(),
                g.as_any().downcast_ref::<arrow::array::Float64Array>(),
            ) {
                let bits = |a: &arrow::array::Float64Array| {
                    a.values().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                assert_eq!(bits(f), bits(g));
            }
        }
        // Not vacuous: records of the common shape make rows, broken ones are refused.
        assert!(fast[..COMMON.len()].iter().filter(|o| o.starts_with("Ok")).count() >= 12, "{fast:?}");
        assert!(fast[COMMON.len()..].iter().filter(|o| o.starts_with("Err")).count() >= 15, "{fast:?}");
    }
}
