//! OpenTelemetry traces over OTLP/HTTP (protobuf), off unless
//! `nimbus up --otlp-endpoint URL` turns them on.
//!
//! Each invocation is one span: an HTTP request (a service call is one too,
//! a child of its caller's span) or a queue delivery (a child of the
//! invocation that published the message). Its ids are the W3C
//! `traceparent` the invocation already runs under ([`super::trace`]), so
//! the trace a caller started goes on through Nimbus and out of it. The
//! guest's log records are the span's events.
//!
//! A span is written in OTLP's protobuf form as it happens (`prost`'s
//! encoding, field numbers from `opentelemetry-proto`'s `trace.proto`), its
//! attributes straight from the request's own strings: no span object,
//! no copy of each value, no conversion at export. The envelope around the
//! spans (resource, scope) is encoded once, from `opentelemetry-proto`'s
//! own types, and the tests decode what is sent with those types.
//!
//! A finished span goes into a bounded queue and never waits, nor wakes
//! anything: when the queue is full, or the collector refuses or cannot be
//! reached, spans are dropped and counted (`nimbus_otlp_spans_dropped_total`).
//! One task sends them in batches with `reqwest`.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc, oneshot};

/// Spans waiting to be sent at most; more are dropped.
const QUEUE: usize = 4096;
/// Spans per export request at most.
const BATCH: usize = 512;
/// How often the export task sends what waits (sooner when a batch is full).
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Guest log records kept per span; more are counted as dropped events.
const MAX_EVENTS: usize = 128;
/// At most one warning this often while exports fail.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// Room a span's buffer starts with: a request's span fits.
const SPAN_BYTES: usize = 384;

/// OTLP's field numbers (`opentelemetry/proto/trace/v1/trace.proto` and
/// `common/v1/common.proto`), for what a span is written with.
mod field {
    pub const SCOPE_SPANS_SPANS: u32 = 2;
    pub const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub const REQUEST_RESOURCE_SPANS: u32 = 1;

    pub const TRACE_ID: u32 = 1;
    pub const SPAN_ID: u32 = 2;
    pub const PARENT_SPAN_ID: u32 = 4;
    pub const NAME: u32 = 5;
    pub const KIND: u32 = 6;
    pub const START_TIME: u32 = 7;
    pub const END_TIME: u32 = 8;
    pub const ATTRIBUTES: u32 = 9;
    pub const EVENTS: u32 = 11;
    pub const DROPPED_EVENTS: u32 = 12;
    pub const STATUS: u32 = 15;
    pub const FLAGS: u32 = 16;

    pub const EVENT_TIME: u32 = 1;
    pub const EVENT_NAME: u32 = 2;
    pub const EVENT_ATTRIBUTES: u32 = 3;

    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;
    /// `STATUS_CODE_ERROR`.
    pub const STATUS_ERROR: u64 = 2;

    pub const KEY: u32 = 1;
    pub const VALUE: u32 = 2;
    pub const STRING_VALUE: u32 = 1;
    pub const INT_VALUE: u32 = 3;

    /// `SPAN_KIND_SERVER` and `SPAN_KIND_CONSUMER`.
    pub const KIND_SERVER: u64 = 2;
    pub const KIND_CONSUMER: u64 = 5;

    /// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
    pub const HAS_IS_REMOTE: u32 = 0x100;
    /// `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
    pub const IS_REMOTE: u32 = 0x200;
}

/// Up to [`BATCH`] encoded spans, each a `ScopeSpans.spans` entry.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    spans: usize,
}

/// Finished spans waiting for the export task. A request only appends its
/// bytes under a short lock; the task wakes on its own timer, or once when
/// a batch is full, so no request pays a wake-up.
struct Queue {
    /// Full batches, then the one being filled.
    batches: Mutex<Vec<Batch>>,
    /// A full batch is waiting.
    batch_ready: Notify,
    /// Asks the task to send what waits now, then answer.
    flush: mpsc::Sender<oneshot::Sender<()>>,
}

/// The process's exporter, once installed.
static EXPORTER: OnceLock<Queue> = OnceLock::new();

impl Queue {
    fn push(&self, span: &[u8]) {
        let mut batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
        let waiting = batches.iter().map(|b| b.spans).sum::<usize>();
        if waiting >= QUEUE {
            drop(batches);
            super::metrics().otlp_dropped.inc();
            return;
        }
        if batches.last().is_none_or(|b| b.spans >= BATCH) {
            batches.push(Batch {
                bytes: Vec::with_capacity(BATCH * SPAN_BYTES),
                spans: 0,
            });
        }
        let batch = batches.last_mut().expect("pushed above");
        message(field::SCOPE_SPANS_SPANS, span, &mut batch.bytes);
        batch.spans += 1;
        if batch.spans == BATCH {
            self.batch_ready.notify_one();
        }
    }

    /// What waits, in batches.
    fn take(&self) -> Vec<Batch> {
        let mut batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *batches)
    }
}

/// The OTLP/HTTP traces URL for `endpoint`: a collector's base URL
/// (`http://127.0.0.1:4318`) gets the standard `/v1/traces` path.
pub fn traces_url(endpoint: &str) -> Result<String, String> {
    let url = endpoint.trim_end_matches('/');
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{endpoint}` is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "`{endpoint}` is not an http:// or https:// URL with a host"
        ));
    }
    Ok(if url.ends_with("/v1/traces") {
        url.to_owned()
    } else {
        format!("{url}/v1/traces")
    })
}

/// What every export request starts with: the `ResourceSpans` of service
/// `service` and the `ScopeSpans` of Nimbus, each without its spans.
struct Envelope {
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Envelope {
    fn new(service: &str) -> Envelope {
        let text = |key: &str, value: &str| KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..KeyValue::default()
        };
        let resource = ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", service),
                    text("service.version", env!("CARGO_PKG_VERSION")),
                    text("telemetry.sdk.name", "nimbus"),
                ],
                ..Resource::default()
            }),
            ..ResourceSpans::default()
        };
        let scope = ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "nimbus".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..InstrumentationScope::default()
            }),
            ..ScopeSpans::default()
        };
        Envelope {
            resource: resource.encode_to_vec(),
            scope: scope.encode_to_vec(),
        }
    }

    /// An `ExportTraceServiceRequest` of `batch`'s spans. Protobuf merges
    /// repeated fields that follow a message's other fields, so the spans
    /// go after the envelope's own bytes.
    fn request(&self, batch: &Batch) -> Vec<u8> {
        let scope_len = self.scope.len() + batch.bytes.len();
        let resource_len =
            self.resource.len() + delimited_len(field::RESOURCE_SPANS_SCOPE_SPANS, scope_len);
        let mut out =
            Vec::with_capacity(delimited_len(field::REQUEST_RESOURCE_SPANS, resource_len));
        delimited(field::REQUEST_RESOURCE_SPANS, resource_len, &mut out);
        out.extend_from_slice(&self.resource);
        delimited(field::RESOURCE_SPANS_SCOPE_SPANS, scope_len, &mut out);
        out.extend_from_slice(&self.scope);
        out.extend_from_slice(&batch.bytes);
        out
    }
}

/// Starts sending spans to the collector at `endpoint` as service
/// `service` (the app's name). An `https://` collector's certificate is
/// checked against the public roots (Mozilla's, from `webpki-roots`) and
/// the PEM certificates in `certificate`, if given (OpenTelemetry's
/// `OTEL_EXPORTER_OTLP_CERTIFICATE`). Call it once, inside the tokio
/// runtime that will run the export task; a second call is an error.
pub fn install(
    endpoint: &str,
    service: &str,
    certificate: Option<&std::path::Path>,
) -> Result<(), String> {
    let url = traces_url(endpoint)?;
    let mut client = reqwest::Client::builder().timeout(EXPORT_TIMEOUT);
    if let Some(path) = certificate {
        if !url.starts_with("https://") {
            return Err(format!(
                "a collector certificate (`{}`) is for an https:// endpoint, not `{endpoint}`",
                path.display()
            ));
        }
        for root in certificates(path)? {
            client = client.add_root_certificate(root);
        }
    }
    let client = client
        .build()
        .map_err(|e| format!("the OTLP client for `{endpoint}`: {e}"))?;
    let (flush, flushes) = mpsc::channel(16);
    EXPORTER
        .set(Queue {
            batches: Mutex::new(Vec::new()),
            batch_ready: Notify::new(),
            flush,
        })
        .map_err(|_| "the OTLP exporter is already installed".to_owned())?;
    let exporter = Exporter {
        client,
        url,
        envelope: Envelope::new(service),
    };
    tokio::spawn(export(exporter, flushes, endpoint.to_owned()));
    Ok(())
}

/// The PEM certificates in the file at `path`: at least one.
fn certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the collector certificate `{shown}`: {e}"))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("the collector certificate `{shown}` is not PEM: {e}"))?;
    if roots.is_empty() {
        return Err(format!(
            "the collector certificate `{shown}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(roots)
}

/// Sends the spans finished so far, waiting at most `limit`: at shutdown.
pub async fn flush(limit: Duration) {
    let Some(queue) = EXPORTER.get() else {
        return;
    };
    let (done, flushed) = oneshot::channel();
    if queue.flush.send(done).await.is_ok() {
        let _ = tokio::time::timeout(limit, flushed).await;
    }
}

/// Where and how batches are sent.
struct Exporter {
    client: reqwest::Client,
    url: String,
    envelope: Envelope,
}

impl Exporter {
    async fn send(&self, batch: &Batch) -> Result<(), String> {
        let response = self
            .client
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(self.envelope.request(batch))
            .send()
            .await
            .map_err(|e| {
                let cause = crate::error_chain(&e);
                let hint = if cause.contains("certificate") {
                    " (trust its CA with --otlp-certificate or OTEL_EXPORTER_OTLP_CERTIFICATE)"
                } else {
                    ""
                };
                format!("cannot reach the collector: {cause}{hint}")
            })?;
        let status = response.status();
        // Read to its end, the connection is kept for the next export.
        let _ = response.bytes().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }
}

/// The export task: every [`BATCH_DELAY`], when a batch is full, or when
/// asked to flush, it sends what waits, a request per batch, each once; a
/// failed batch is dropped and counted.
async fn export(
    exporter: Exporter,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
    endpoint: String,
) {
    let queue = EXPORTER.get().expect("installed before the task starts");
    let metrics = super::metrics();
    let mut warned: Option<Instant> = None;
    let mut tick = tokio::time::interval(BATCH_DELAY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flushed = tokio::select! {
            _ = tick.tick() => None,
            () = queue.batch_ready.notified() => None,
            done = flushes.recv() => Some(done),
        };
        for batch in queue.take() {
            let count = batch.spans as u64;
            match exporter.send(&batch).await {
                Ok(()) => {
                    metrics.otlp_exported.inc_by(count);
                    warned = None;
                }
                Err(e) => {
                    metrics.otlp_dropped.inc_by(count);
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        tracing::warn!(endpoint, error = %e, spans = count, "OTLP export failed; spans dropped");
                        warned = Some(Instant::now());
                    }
                }
            }
        }
        match flushed {
            Some(Some(done)) => {
                let _ = done.send(());
            }
            // Every sender is gone: nobody can ask again.
            Some(None) => return,
            None => {}
        }
    }
}

/// What an invocation learns about itself while it runs: the version that
/// served it and the guest's log records. Shared by the span and the
/// invocation's context.
#[derive(Debug, Default)]
pub struct SpanNotes {
    inner: Mutex<Notes>,
}

#[derive(Debug, Default)]
struct Notes {
    version: Option<String>,
    /// The span's `events` entries, encoded.
    events: Vec<u8>,
    count: usize,
    dropped_events: u32,
}

impl SpanNotes {
    /// The version (digest) that serves the invocation.
    pub fn version(&self, digest: &str) {
        self.lock().version = Some(digest.to_owned());
    }

    /// A log record of the guest: `level` (`info`, ...), the stream or
    /// context it came from, and the text.
    pub fn log(&self, level: &'static str, source: &str, text: &str) {
        let mut notes = self.lock();
        if notes.count >= MAX_EVENTS {
            notes.dropped_events += 1;
            return;
        }
        notes.count += 1;
        let attributes = [
            ("log.severity", Value::Str(level)),
            ("log.source", Value::Str(source)),
            ("log.message", Value::Str(text)),
        ];
        let mut event = Vec::with_capacity(64 + text.len());
        fixed64(field::EVENT_TIME, unix_nanos(SystemTime::now()), &mut event);
        string(field::EVENT_NAME, "log", &mut event);
        for (key, value) in attributes {
            attribute(field::EVENT_ATTRIBUTES, key, value, &mut event);
        }
        message(field::EVENTS, &event, &mut notes.events);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Notes> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An attribute's value.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// A string.
    Str(&'a str),
    /// An integer.
    Int(i64),
}

/// A span being written: its name and attributes go in as they are given.
pub struct SpanWriter {
    bytes: Vec<u8>,
}

impl SpanWriter {
    /// The span's name, the concatenation of `parts`.
    pub fn name(&mut self, parts: &[&str]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        delimited(field::NAME, len, &mut self.bytes);
        for part in parts {
            self.bytes.extend_from_slice(part.as_bytes());
        }
    }

    /// An attribute.
    pub fn attribute(&mut self, key: &str, value: Value<'_>) {
        attribute(field::ATTRIBUTES, key, value, &mut self.bytes);
    }
}

/// An invocation's span while it runs; [`Span::end`] sends it.
pub struct Span {
    writer: SpanWriter,
    notes: Arc<SpanNotes>,
}

/// What kind of invocation a span is.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// An HTTP request, from outside or a service call.
    Server,
    /// A queue delivery.
    Consumer,
}

impl Span {
    /// The span of an invocation that runs under `traceparent` (its own
    /// ids), called from `parent` (the caller's `traceparent`, if valid),
    /// with the name and attributes `describe` writes; `None` when export
    /// is off (then `describe` is not called) or the trace is not sampled.
    pub fn begin(
        kind: Kind,
        traceparent: &http::HeaderValue,
        parent: Option<&str>,
        describe: impl FnOnce(&mut SpanWriter),
    ) -> Option<Span> {
        EXPORTER.get()?;
        Span::write(kind, traceparent.to_str().ok()?, parent, describe)
    }

    /// [`Span::begin`]'s span, whether or not export is on.
    fn write(
        kind: Kind,
        traceparent: &str,
        parent: Option<&str>,
        describe: impl FnOnce(&mut SpanWriter),
    ) -> Option<Span> {
        let (trace_id, span_id, flags) = ids(traceparent)?;
        if flags & 1 == 0 {
            return None;
        }
        let start = unix_nanos(SystemTime::now());
        let parent = parent
            .and_then(ids)
            .filter(|(parent_trace, _, _)| *parent_trace == trace_id);
        let mut bytes = Vec::with_capacity(SPAN_BYTES);
        message(field::TRACE_ID, &trace_id.to_be_bytes(), &mut bytes);
        message(field::SPAN_ID, &span_id.to_be_bytes(), &mut bytes);
        if let Some((_, parent_id, _)) = parent {
            message(field::PARENT_SPAN_ID, &parent_id.to_be_bytes(), &mut bytes);
        }
        let remote = if parent.is_some() {
            field::IS_REMOTE
        } else {
            0
        };
        encode_key(field::FLAGS, WireType::ThirtyTwoBit, &mut bytes);
        bytes.extend_from_slice(&(u32::from(flags) | field::HAS_IS_REMOTE | remote).to_le_bytes());
        let kind = match kind {
            Kind::Server => field::KIND_SERVER,
            Kind::Consumer => field::KIND_CONSUMER,
        };
        varint(field::KIND, kind, &mut bytes);
        fixed64(field::START_TIME, start, &mut bytes);
        let mut writer = SpanWriter { bytes };
        describe(&mut writer);
        Some(Span {
            writer,
            notes: Arc::default(),
        })
    }

    /// What the invocation notes while it runs goes here.
    pub fn notes(&self) -> Arc<SpanNotes> {
        self.notes.clone()
    }

    /// Ends the span with more `attributes` and, for a failure, its
    /// description, and queues it for export (dropped when the queue is full).
    pub fn end(self, attributes: &[(&str, Value<'_>)], error: Option<String>) {
        if let Some(queue) = EXPORTER.get() {
            queue.push(&self.finish(attributes, error));
        }
    }

    /// The span's bytes, ended now with `attributes` and `error`.
    fn finish(mut self, attributes: &[(&str, Value<'_>)], error: Option<String>) -> Vec<u8> {
        let bytes = &mut self.writer.bytes;
        fixed64(field::END_TIME, unix_nanos(SystemTime::now()), bytes);
        for (key, value) in attributes {
            attribute(field::ATTRIBUTES, key, *value, bytes);
        }
        let notes = std::mem::take(&mut *self.notes.lock());
        if let Some(version) = &notes.version {
            attribute(
                field::ATTRIBUTES,
                "nimbus.version",
                Value::Str(version),
                bytes,
            );
        }
        bytes.extend_from_slice(&notes.events);
        if notes.dropped_events > 0 {
            varint(field::DROPPED_EVENTS, notes.dropped_events.into(), bytes);
        }
        if let Some(description) = error {
            let mut status = Vec::with_capacity(8 + description.len());
            string(field::STATUS_MESSAGE, &description, &mut status);
            varint(field::STATUS_CODE, field::STATUS_ERROR, &mut status);
            message(field::STATUS, &status, bytes);
        }
        self.writer.bytes
    }
}

/// The length of a field's key.
fn key_len(tag: u32) -> usize {
    encoded_len_varint(u64::from(tag << 3))
}

/// The bytes a length-delimited field `tag` of `len` bytes takes.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// The key and length of a length-delimited field `tag` of `len` bytes,
/// which the caller writes next.
fn delimited(tag: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

/// A length-delimited field `tag` holding `body`.
fn message(tag: u32, body: &[u8], out: &mut Vec<u8>) {
    delimited(tag, body.len(), out);
    out.extend_from_slice(body);
}

fn varint(tag: u32, value: u64, out: &mut Vec<u8>) {
    encode_key(tag, WireType::Varint, out);
    encode_varint(value, out);
}

fn string(tag: u32, value: &str, out: &mut Vec<u8>) {
    message(tag, value.as_bytes(), out);
}

fn fixed64(tag: u32, value: u64, out: &mut Vec<u8>) {
    encode_key(tag, WireType::SixtyFourBit, out);
    out.extend_from_slice(&value.to_le_bytes());
}

/// A `KeyValue` field `tag`, its value an `AnyValue`.
fn attribute(tag: u32, key: &str, value: Value<'_>, out: &mut Vec<u8>) {
    // int64 is written as its two's complement, ten bytes when negative.
    let any_len = match value {
        Value::Str(s) => delimited_len(field::STRING_VALUE, s.len()),
        Value::Int(i) => key_len(field::INT_VALUE) + encoded_len_varint(i as u64),
    };
    let len = delimited_len(field::KEY, key.len()) + delimited_len(field::VALUE, any_len);
    delimited(tag, len, out);
    string(field::KEY, key, out);
    delimited(field::VALUE, any_len, out);
    match value {
        Value::Str(s) => string(field::STRING_VALUE, s, out),
        Value::Int(i) => varint(field::INT_VALUE, i as u64, out),
    }
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The trace id, span id and flags of a version-00 `traceparent`.
fn ids(traceparent: &str) -> Option<(u128, u64, u8)> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() {
        return None;
    }
    let trace = hex(trace, 32)?;
    let span = u64::try_from(hex(span, 16)?).ok()?;
    let flags = u8::try_from(hex(flags, 2)?).ok()?;
    (trace != 0 && span != 0).then_some((trace, span, flags))
}

/// The number `digits` (exactly `len` hex digits, `len` at most 32) spell,
/// in one pass: this runs twice per span.
fn hex(digits: &str, len: usize) -> Option<u128> {
    if digits.len() != len {
        return None;
    }
    digits.bytes().try_fold(0u128, |value, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some(value << 4 | u128::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collector_base_url_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/v1/traces/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otlp.example.com").unwrap(),
            "https://otlp.example.com/v1/traces"
        );
        for bad in ["collector:4318", "ftp://x", "not a url"] {
            let e = traces_url(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn a_collector_certificate_must_be_pem_and_for_https() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = certificates(&missing).unwrap_err();
        assert!(
            e.contains("cannot read") && e.contains("missing.pem"),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = certificates(&empty).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = install("http://127.0.0.1:4318", "app", Some(&empty)).unwrap_err();
        assert!(e.contains("for an https:// endpoint"), "{e}");
    }

    #[test]
    fn ids_come_from_a_valid_traceparent_only() {
        let (trace, span, flags) =
            ids("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(format!("{trace:032x}"), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(format!("{span:016x}"), "00f067aa0ba902b7");
        assert_eq!(flags, 1);
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f35-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "garbage",
        ] {
            assert!(ids(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn notes_keep_at_most_their_share_of_log_records() {
        let notes = SpanNotes::default();
        for i in 0..MAX_EVENTS + 5 {
            notes.log("info", "stdout", &format!("line {i}"));
        }
        notes.version("abc");
        let notes = notes.lock();
        assert_eq!(notes.count, MAX_EVENTS);
        assert_eq!(notes.dropped_events, 5);
        assert_eq!(notes.version.as_deref(), Some("abc"));
    }

    #[test]
    fn what_is_sent_decodes_as_otlp_with_every_field() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

        const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
        let own = format!("00-{TRACE}-00f067aa0ba902b7-01");
        let caller = format!("00-{TRACE}-b7ad6b7169203331-01");
        let server = Span::write(Kind::Server, &own, Some(&caller), |span| {
            span.name(&["GET", " ", "/hello/:name"]);
            span.attribute("http.route", Value::Str("/hello/:name"));
            span.attribute("nimbus.attempt", Value::Int(-3));
        })
        .unwrap();
        let notes = server.notes();
        notes.version("sha256:abc");
        notes.log("warn", "stderr", "héllo");
        let server = server.finish(
            &[("http.response.status_code", Value::Int(500))],
            Some("status 500".to_owned()),
        );
        // A caller of another trace is no parent.
        let root = Span::write(
            Kind::Consumer,
            "00-0af7651916cd43dd8448eb211c80319c-00000000000000aa-01",
            Some("00-ffffffffffffffffffffffffffffffff-b7ad6b7169203331-01"),
            |span| span.name(&["jobs process"]),
        )
        .unwrap()
        .finish(&[], None);
        let unsampled = own.replace("-01", "-00");
        assert!(Span::write(Kind::Server, &unsampled, None, |_| {}).is_none());

        let mut batch = Batch::default();
        for span in [&server, &root] {
            message(field::SCOPE_SPANS_SPANS, span, &mut batch.bytes);
            batch.spans += 1;
        }
        let body = Envelope::new("shop").request(&batch);
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(request.resource_spans.len(), 1);
        let resource = &request.resource_spans[0];
        let text = |kv: &KeyValue| match kv.value.as_ref().and_then(|v| v.value.clone()) {
            Some(any_value::Value::StringValue(s)) => format!("{}={s}", kv.key),
            Some(any_value::Value::IntValue(i)) => format!("{}={i}", kv.key),
            other => panic!("{other:?}"),
        };
        let attributes = resource
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(text);
        assert_eq!(
            attributes.collect::<Vec<_>>(),
            [
                "service.name=shop".to_owned(),
                format!("service.version={}", env!("CARGO_PKG_VERSION")),
                "telemetry.sdk.name=nimbus".to_owned(),
            ]
        );
        let scope = &resource.scope_spans[0];
        assert_eq!(resource.scope_spans.len(), 1);
        assert_eq!(scope.scope.as_ref().unwrap().name, "nimbus");
        assert_eq!(scope.spans.len(), 2);

        let span = &scope.spans[0];
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(&span.trace_id), TRACE);
        assert_eq!(hex(&span.span_id), "00f067aa0ba902b7");
        assert_eq!(hex(&span.parent_span_id), "b7ad6b7169203331");
        assert_eq!(span.flags, 0x301, "sampled, with a remote parent");
        assert_eq!(span.name, "GET /hello/:name");
        assert_eq!(span.kind, 2);
        assert!(span.start_time_unix_nano > 1_700_000_000_000_000_000);
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
        assert_eq!(
            span.attributes.iter().map(text).collect::<Vec<_>>(),
            [
                "http.route=/hello/:name",
                "nimbus.attempt=-3",
                "http.response.status_code=500",
                "nimbus.version=sha256:abc",
            ]
        );
        assert_eq!(span.events.len(), 1);
        assert_eq!(span.events[0].name, "log");
        assert_eq!(
            span.events[0]
                .attributes
                .iter()
                .map(text)
                .collect::<Vec<_>>(),
            [
                "log.severity=warn",
                "log.source=stderr",
                "log.message=héllo"
            ]
        );
        let status = span.status.as_ref().unwrap();
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "status 500");

        let span = &scope.spans[1];
        assert_eq!(hex(&span.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert!(
            span.parent_span_id.is_empty(),
            "a parent of another trace is none"
        );
        assert_eq!(span.flags, 0x101);
        assert_eq!(span.kind, 5);
        assert_eq!(span.name, "jobs process");
        assert!(span.attributes.is_empty() && span.events.is_empty());
        assert_eq!(span.status, None);
    }
}
