//! A deterministic generator of realistic page-view events, the data of Shoal's benchmarks,
//! comparisons and quickstart. Each event has the ten fields of
//! `examples/config/events.schema.json` and is about 200 bytes of JSON.

use std::fmt::Write;

/// A page-view event generator (xorshift; the same seed gives the same events).
pub struct EventGenerator {
    state: u64,
    next_id: u64,
    /// Epoch ms of the next event; advances a few ms per event.
    pub time_ms: i64,
    /// Add a nested `context` object (referrer, campaign) to each event.
    pub with_context: bool,
}

const EVENT_TYPES: [&str; 5] = ["page_view", "click", "add_to_cart", "purchase", "scroll"];
const COUNTRIES: [&str; 12] = ["US", "DE", "GB", "FR", "BR", "IN", "JP", "NZ", "CA", "MX", "ES", "IT"];
const DEVICES: [&str; 4] = ["mobile", "desktop", "tablet", "tv"];
const PAGES: [&str; 8] =
    ["/", "/products", "/products/42", "/cart", "/checkout", "/search", "/blog/launch", "/account"];
const REFERRERS: [&str; 5] = ["google", "direct", "newsletter", "twitter", "partner"];
const CAMPAIGNS: [&str; 4] = ["none", "spring_sale", "retargeting", "launch"];
const TAGS: [&str; 6] = ["new", "returning", "promo", "organic", "paid", "email"];

impl EventGenerator {
    /// A generator starting at `time_ms`.
    pub fn new(seed: u64, time_ms: i64) -> EventGenerator {
        EventGenerator { state: seed.max(1), next_id: 0, time_ms, with_context: false }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    /// Writes the next event's JSON into `out` (cleared first).
    pub fn write_next(&mut self, out: &mut String) {
        out.clear();
        let id = self.next_id;
        self.next_id += 1;
        self.time_ms += (self.next() % 4) as i64;
        let user = self.next() % 1_000_000;
        let event_type = self.pick(&EVENT_TYPES);
        let country = self.pick(&COUNTRIES);
        let device = self.pick(&DEVICES);
        let page = self.pick(&PAGES);
        let (t1, t2) = (self.pick(&TAGS), self.pick(&TAGS));
        let duration = self.next() % 30_000;
        let revenue_cents = if event_type == "purchase" { self.next() % 50_000 } else { 0 };
        let _ = write!(
            out,
            r#"{{"event_id":"evt-{id:012}","event_type":"{event_type}","user_id":"user-{user:07}","country":"{country}","device":"{device}","page":"{page}","tags":["{t1}","{t2}"],"duration_ms":{duration},"revenue":{}.{:02},"timestamp":{}}}"#,
            revenue_cents / 100,
            revenue_cents % 100,
            self.time_ms
        );
        if self.with_context {
            out.pop();
            let referrer = self.pick(&REFERRERS);
            let campaign = self.pick(&CAMPAIGNS);
            let _ = write!(out, r#","context":{{"referrer":"{referrer}","campaign":"{campaign}"}}}}"#);
        }
    }

    /// The next event as a new string.
    pub fn next_event(&mut self) -> String {
        let mut s = String::with_capacity(256);
        self.write_next(&mut s);
        s
    }
}

/// The events' columns stored dictionary-encoded in the benchmarks: every single-value STRING
/// but the two near-unique ones, as Shoal lays out a table whose Pinot config says
/// `"noDictionaryColumns": ["event_id", "user_id"]`.
pub const EVENTS_DICTIONARY: [&str; 4] = ["event_type", "country", "device", "page"];

/// [`EVENTS_DICTIONARY`] as a layout wants it.
pub fn events_dictionary() -> std::collections::HashSet<String> {
    EVENTS_DICTIONARY.iter().map(|c| c.to_string()).collect()
}

/// The schema of the generated events (the same as `examples/config/events.schema.json`).
pub const EVENTS_SCHEMA: &str = r#"{
  "schemaName": "events",
  "dimensionFieldSpecs": [
    {"name": "event_id", "dataType": "STRING"},
    {"name": "event_type", "dataType": "STRING"},
    {"name": "user_id", "dataType": "STRING"},
    {"name": "country", "dataType": "STRING"},
    {"name": "device", "dataType": "STRING"},
    {"name": "page", "dataType": "STRING"},
    {"name": "tags", "dataType": "STRING", "singleValueField": false}
  ],
  "metricFieldSpecs": [
    {"name": "duration_ms", "dataType": "LONG"},
    {"name": "revenue", "dataType": "DOUBLE"}
  ],
  "dateTimeFieldSpecs": [
    {"name": "timestamp", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}
  ]
}"#;

/// Fills the placeholders of the comparison's query set (`benches/compare/queries.json`) for a
/// table of `rows` rows: `{t0}` and `{t1}` (the time range), and `{p90}`, the fraction that
/// makes DuckDB's `quantile_disc` (the sorted value at index `floor((n - 1) * q)`) pick the row
/// Pinot's `PERCENTILE(x, 90)` picks (index `floor(n * 0.9)`): `(floor(n * 0.9) + 0.5) / (n - 1)`.
pub fn fill_query(sql: &str, t0: i64, t1: i64, rows: usize) -> String {
    let n = rows.max(2) as f64;
    let p90 = (((n * 0.9).floor() + 0.5) / (n - 1.0)).min(1.0);
    sql.replace("{t0}", &t0.to_string())
        .replace("{t1}", &t1.to_string())
        .replace("{p90}", &format!("{p90:.15}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_about_200_bytes_and_deterministic() {
        let mut a = EventGenerator::new(7, 1_700_000_000_000);
        let mut b = EventGenerator::new(7, 1_700_000_000_000);
        let events: Vec<String> = (0..1000).map(|_| a.next_event()).collect();
        assert_eq!(events[999], (0..1000).map(|_| b.next_event()).last().unwrap());
        let avg = events.iter().map(String::len).sum::<usize>() / events.len();
        assert!((180..=240).contains(&avg), "{avg}");
        for e in &events[..10] {
            serde_json::from_str::<serde_json::Value>(e).unwrap();
        }
    }
}
