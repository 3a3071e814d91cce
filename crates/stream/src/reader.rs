//! One shard's reader: GetRecords at the configured rate, with backoff on throttling and
//! transient errors, new iterators after expiry, KPL de-aggregation, and end-of-shard detection.
//! It never skips or repeats a record: every record handed on comes after the last one.

use crate::kpl::{Deaggregated, HashKeyRange, UserRecord, deaggregate, effective_hash_key};
use crate::metrics::ShardMetrics;
use crate::record::{Checkpoint, Record};
use crate::sequence::SequenceNumber;
use crate::source::ShardEvent;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_kinesis::types::ShardIteratorType as SdkIteratorType;
use bytes::Bytes;
use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Where a reader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// Right after a checkpoint.
    After(Checkpoint),
    /// LATEST.
    Latest,
    /// TRIM_HORIZON.
    TrimHorizon,
    /// AT_TIMESTAMP, epoch ms.
    AtTimestamp(i64),
    /// AT_SEQUENCE_NUMBER.
    AtSequence(SequenceNumber),
}

/// The reading settings.
#[derive(Debug, Clone)]
pub struct ReadSettings {
    /// GetRecords `Limit`.
    pub limit: u32,
    /// Smallest time between two GetRecords calls.
    pub min_interval: Duration,
    /// How long one fetch may take.
    pub fetch_timeout: Duration,
}

/// Everything a reader needs.
pub struct ShardTask {
    /// The client.
    pub client: Client,
    /// Stream name.
    pub stream: String,
    /// Shard id.
    pub shard: Arc<str>,
    /// Where to start.
    pub start: StartAt,
    /// Settings.
    pub settings: ReadSettings,
    /// The shard's hash key range: a KPL aggregate holding a user record outside it is
    /// dropped whole, as the KCL does. None: every record is kept.
    pub hash_range: Option<HashKeyRange>,
    /// The shard's EndingSequenceNumber once known (from ListShards).
    pub ending: watch::Receiver<Option<SequenceNumber>>,
    /// Where events go.
    pub events: mpsc::Sender<ShardEvent>,
    /// The shard's counters.
    pub metrics: Arc<ShardMetrics>,
    /// Set to stop.
    pub shutdown: watch::Receiver<bool>,
    /// Told when a checkpoint can no longer be resumed (its records expired).
    pub data_loss: mpsc::UnboundedSender<String>,
}

/// Exponential backoff with full jitter.
struct Backoff {
    attempt: u32,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(10);

    fn next(&mut self) -> Duration {
        let ceiling = Self::BASE.saturating_mul(1 << self.attempt.min(10)).min(Self::CAP);
        self.attempt += 1;
        let ms = rand::rng().random_range(ceiling.as_millis() as u64 / 2..=ceiling.as_millis() as u64);
        Duration::from_millis(ms)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

enum Failure {
    Throttled(String),
    Expired,
    Transient(String),
    /// The request was refused for good (access, arguments); retried slowly, loudly.
    Refused(String),
}

fn error_code<E: ProvideErrorMetadata>(e: &E) -> String {
    format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or(""))
}

type HttpResponse = aws_sdk_kinesis::config::http::HttpResponse;

fn classify_sdk<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Option<Failure> {
    match e {
        SdkError::TimeoutError(_) => Some(Failure::Transient("timeout".into())),
        SdkError::DispatchFailure(d) => Some(Failure::Transient(format!("connection: {d:?}"))),
        SdkError::ResponseError(r) => Some(Failure::Transient(format!("unreadable response: {r:?}"))),
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let internal = matches!(
                s.err().code(),
                Some("InternalFailure" | "InternalFailureException" | "ServiceUnavailable")
            );
            (status >= 500 || internal)
                .then(|| Failure::Transient(format!("{status} {}", error_code(s.err()))))
        }
        _ => Some(Failure::Transient(e.to_string())),
    }
}

fn classify_get_records(e: &SdkError<GetRecordsError, HttpResponse>) -> Failure {
    if let SdkError::ServiceError(s) = e {
        match s.err() {
            GetRecordsError::ProvisionedThroughputExceededException(_)
            | GetRecordsError::KmsThrottlingException(_) => {
                return Failure::Throttled(error_code(s.err()));
            }
            GetRecordsError::ExpiredIteratorException(_) => return Failure::Expired,
            _ => {}
        }
        if s.err().code() == Some("LimitExceededException") {
            return Failure::Throttled(error_code(s.err()));
        }
    }
    classify_sdk(e).unwrap_or_else(|| match e {
        SdkError::ServiceError(s) => Failure::Refused(error_code(s.err())),
        other => Failure::Transient(other.to_string()),
    })
}

fn classify_iterator(e: &SdkError<GetShardIteratorError, HttpResponse>) -> (Failure, bool) {
    if let SdkError::ServiceError(s) = e {
        match s.err() {
            GetShardIteratorError::ProvisionedThroughputExceededException(_) => {
                return (Failure::Throttled(error_code(s.err())), false);
            }
            GetShardIteratorError::InvalidArgumentException(_) => {
                return (Failure::Refused(error_code(s.err())), true);
            }
            _ => {}
        }
        if s.err().code() == Some("LimitExceededException") {
            return (Failure::Throttled(error_code(s.err())), false);
        }
    }
    let failure = classify_sdk(e).unwrap_or_else(|| match e {
        SdkError::ServiceError(s) => Failure::Refused(error_code(s.err())),
        other => Failure::Transient(other.to_string()),
    });
    (failure, false)
}

impl ShardTask {
    /// Reads the shard until its end, a shutdown, or the engine dropping the reader.
    pub async fn run(mut self) {
        let mut backoff = Backoff { attempt: 0 };
        // The last record handed on: nothing at or before it is handed on again.
        let mut last: Option<Checkpoint> = match &self.start {
            StartAt::After(c) => Some(c.clone()),
            _ => None,
        };
        let mut start = self.start.clone();
        let mut iterator: Option<String> = None;
        let mut next_call = Instant::now();
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let Some(it) = iterator.clone() else {
                let requested_ms = crate::now_ms();
                match self.get_iterator(&start).await {
                    Ok(Some(it)) => {
                        iterator = Some(it);
                        backoff.reset();
                        // A LATEST iterator that expires (or is lost to an error) before a
                        // record arrives is renewed at the moment it was asked for, not at a
                        // new LATEST that would skip what arrived in between.
                        if start == StartAt::Latest {
                            start = StartAt::AtTimestamp(requested_ms);
                        }
                    }
                    Ok(None) => {
                        // A closed shard with nothing left to read.
                        let _ = self.events.send(ShardEvent::End { children: Vec::new() }).await;
                        return;
                    }
                    Err((failure, lost)) => {
                        if lost && matches!(start, StartAt::After(_)) {
                            tracing::error!(stream = %self.stream, shard = %self.shard,
                                "data loss: the checkpoint can no longer be resumed (its records expired); reading on from the oldest record");
                            let _ = self.data_loss.send(self.shard.to_string());
                            start = StartAt::TrimHorizon;
                            continue;
                        }
                        self.wait_after(failure, &mut backoff, "GetShardIterator").await;
                    }
                }
                continue;
            };

            // At most `requests_per_second_limit` calls per second.
            tokio::select! {
                _ = tokio::time::sleep_until(next_call) => {}
                _ = self.shutdown.changed() => return,
            }
            next_call = Instant::now() + self.settings.min_interval;
            self.metrics.get_records_calls.fetch_add(1, Ordering::Relaxed);
            // The client bounds the wait for the answer by the fetch timeout, not the reading
            // of its body (see client.rs): a large page on a slow link is not doomed.
            let call = self.client.get_records().shard_iterator(it).limit(self.settings.limit as i32).send();
            let answer = tokio::select! {
                r = call => r,
                _ = self.shutdown.changed() => return,
            };
            let out = match answer {
                Err(e) => {
                    match classify_get_records(&e) {
                        Failure::Expired => {
                            self.metrics.iterator_renewals.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(shard = %self.shard, "iterator expired: getting a new one after the last record delivered");
                            iterator = None;
                            if let Some(c) = &last {
                                start = StartAt::After(c.clone());
                            }
                        }
                        failure => self.wait_after(failure, &mut backoff, "GetRecords").await,
                    }
                    continue;
                }
                Ok(out) => out,
            };
            backoff.reset();
            self.metrics.last_fetch_ms.store(crate::now_ms(), Ordering::Relaxed);
            let behind = out.millis_behind_latest();
            if let Some(b) = behind {
                self.metrics.millis_behind_latest.store(b, Ordering::Relaxed);
            }
            let fetched = out.records().len();
            let records = self.unpack(out.records(), &last);
            if let Some(r) = records.last() {
                last = Some(r.position());
            }
            let children: Vec<String> = out.child_shards().iter().map(|c| c.shard_id().to_string()).collect();
            iterator = out.next_shard_iterator().map(str::to_string);
            tracing::debug!(shard = %self.shard, fetched = out.records().len(), delivered = records.len(), ?behind,
                next = iterator.is_some(), children = children.len(), last = ?last, "GetRecords");
            if !records.is_empty() {
                self.metrics.records.fetch_add(records.len() as u64, Ordering::Relaxed);
                self.metrics
                    .bytes
                    .fetch_add(records.iter().map(|r| r.data.len() as u64).sum(), Ordering::Relaxed);
                if self
                    .events
                    .send(ShardEvent::Records { records, millis_behind_latest: behind })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // The shard's EndingSequenceNumber is only a hint: some implementations report one
            // below the shard's last record (kinesis-local does), so the end is taken only
            // once a fetch past it comes back empty.
            let at_ending = fetched == 0
                && match (&*self.ending.borrow(), &last) {
                    (Some(end), Some(l)) => &l.sequence >= end,
                    _ => false,
                };
            if iterator.is_none() || !children.is_empty() || at_ending {
                let _ = self.events.send(ShardEvent::End { children }).await;
                return;
            }
        }
    }

    /// Turns Kinesis records into user records after `last`, de-aggregating KPL blobs.
    fn unpack(&self, records: &[aws_sdk_kinesis::types::Record], last: &Option<Checkpoint>) -> Vec<Record> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let Some(sequence_number) = SequenceNumber::parse(r.sequence_number()) else {
                tracing::error!(shard = %self.shard, sequence = r.sequence_number(), "record with an unreadable sequence number skipped");
                continue;
            };
            let arrival_ms = r.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()).unwrap_or(0);
            let data = Bytes::copy_from_slice(r.data().as_ref());
            let key = r.partition_key().unwrap_or_default();
            let mut push = |sub: Option<u64>, partition_key: String, data: Bytes| {
                let record = Record {
                    shard_id: Arc::clone(&self.shard),
                    sequence_number: sequence_number.clone(),
                    sub_sequence: sub,
                    arrival_ms,
                    partition_key,
                    data,
                };
                if last.as_ref().is_none_or(|c| c.is_before(&record)) {
                    out.push(record);
                }
            };
            match deaggregate(&data) {
                Deaggregated::Plain => push(None, key.to_string(), data),
                Deaggregated::Aggregate(users) if self.holds_another_shards(&users) => {
                    self.metrics.kpl_foreign_records.fetch_add(users.len() as u64, Ordering::Relaxed);
                    tracing::warn!(shard = %self.shard, sequence = %sequence_number, records = users.len(),
                        "a KPL aggregate holds a record of another shard (put before a reshard): dropped whole, as the KCL does; the producer puts its records again");
                }
                Deaggregated::Aggregate(users) => {
                    for (i, user) in users.into_iter().enumerate() {
                        push(Some(i as u64), user.partition_key, user.data);
                    }
                }
            }
        }
        out
    }

    /// True when a user record of the aggregate hashes outside this shard. The KPL groups
    /// records by the shard it predicts; after a split or merge its prediction can be stale,
    /// and it then puts every record of such an aggregate again (its Retrier checks each
    /// record's shard), so the aggregate is dropped whole, exactly as the KCL does
    /// (`AggregatorUtil.deaggregate` in amazon-kinesis-client): keeping its in-range records
    /// would count them twice. A record whose hash key cannot be read is not proof of another
    /// shard.
    fn holds_another_shards(&self, users: &[UserRecord]) -> bool {
        let Some(range) = self.hash_range else { return false };
        users.iter().any(|u| {
            effective_hash_key(&u.partition_key, u.explicit_hash_key.as_deref())
                .is_some_and(|k| !range.contains(k))
        })
    }

    /// Gets an iterator for `start`; Ok(None) when the shard has nothing left.
    async fn get_iterator(&self, start: &StartAt) -> Result<Option<String>, (Failure, bool)> {
        let mut request =
            self.client.get_shard_iterator().stream_name(&self.stream).shard_id(self.shard.as_ref());
        request = match start {
            StartAt::Latest => request.shard_iterator_type(SdkIteratorType::Latest),
            StartAt::TrimHorizon => request.shard_iterator_type(SdkIteratorType::TrimHorizon),
            StartAt::AtTimestamp(ms) => request
                .shard_iterator_type(SdkIteratorType::AtTimestamp)
                .timestamp(aws_smithy_types::DateTime::from_millis(*ms)),
            StartAt::AtSequence(s) => request
                .shard_iterator_type(SdkIteratorType::AtSequenceNumber)
                .starting_sequence_number(s.as_str()),
            // Inside a KPL aggregate the aggregate is read again and its delivered user
            // records are skipped; otherwise reading resumes after the record.
            StartAt::After(c) if c.sub_sequence.is_some() => request
                .shard_iterator_type(SdkIteratorType::AtSequenceNumber)
                .starting_sequence_number(c.sequence.as_str()),
            StartAt::After(c) => request
                .shard_iterator_type(SdkIteratorType::AfterSequenceNumber)
                .starting_sequence_number(c.sequence.as_str()),
        };
        match tokio::time::timeout(self.settings.fetch_timeout, request.send()).await {
            Err(_) => Err((Failure::Transient("GetShardIterator timed out".into()), false)),
            Ok(Ok(out)) => Ok(out.shard_iterator().map(str::to_string)),
            Ok(Err(e)) => Err(classify_iterator(&e)),
        }
    }

    async fn wait_after(&mut self, failure: Failure, backoff: &mut Backoff, call: &str) {
        let delay = backoff.next();
        match &failure {
            Failure::Throttled(why) => {
                self.metrics.throttles.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(shard = %self.shard, call, %why, ?delay, "throttled; backing off");
            }
            Failure::Transient(why) => {
                self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(shard = %self.shard, call, %why, ?delay, "transient error; retrying");
            }
            Failure::Refused(why) => {
                self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                tracing::error!(shard = %self.shard, call, %why, ?delay, "request refused; retrying");
            }
            Failure::Expired => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.shutdown.changed() => {}
        }
    }
}
