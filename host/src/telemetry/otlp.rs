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
//! A finished span goes into a bounded queue and never waits, nor wakes
//! anything: when the queue is full, or the collector refuses or cannot be
//! reached, spans are dropped and counted (`nimbus_otlp_spans_dropped_total`).
//! One task sends them in batches through `opentelemetry-otlp`'s exporter.

use opentelemetry::trace::{Event, SpanContext, SpanKind, Status, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue, SpanId, TraceFlags, TraceId};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};
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

/// Finished spans waiting for the export task. A request only pushes onto
/// the list under a short lock; the task wakes on its own timer, or once
/// when the list holds a full batch, so no request pays a wake-up.
struct Queue {
    spans: Mutex<Vec<SpanData>>,
    /// A full batch is waiting.
    batch_ready: Notify,
    /// Asks the task to send what waits now, then answer.
    flush: mpsc::Sender<oneshot::Sender<()>>,
}

/// The process's exporter, once installed.
static EXPORTER: OnceLock<Queue> = OnceLock::new();

impl Queue {
    fn push(&self, span: SpanData) {
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        if spans.len() >= QUEUE {
            drop(spans);
            super::metrics().otlp_dropped.inc();
            return;
        }
        spans.push(span);
        if spans.len() == BATCH {
            self.batch_ready.notify_one();
        }
    }

    /// What waits, leaving room for a batch so pushes do not reallocate.
    fn take(&self) -> Vec<SpanData> {
        let room = Vec::with_capacity(BATCH);
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *spans, room)
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
    if uri.scheme_str() == Some("https") {
        return Err(format!(
            "`{endpoint}`: HTTPS to the collector is not supported yet; use a local collector over http://"
        ));
    }
    Ok(if url.ends_with("/v1/traces") {
        url.to_owned()
    } else {
        format!("{url}/v1/traces")
    })
}

/// Starts sending spans to the collector at `endpoint` as service
/// `service` (the app's name). Call it once, inside the tokio runtime that
/// will run the export task; a second call is an error.
pub fn install(endpoint: &str, service: &str) -> Result<(), String> {
    let url = traces_url(endpoint)?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .with_headers(Default::default())
        .build()
        .map_err(|e| format!("the OTLP exporter for `{endpoint}`: {e}"))?;
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name(service.to_owned())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .with_attribute(KeyValue::new("telemetry.sdk.name", "nimbus"))
            .build(),
    );
    let (flush, flushes) = mpsc::channel(16);
    EXPORTER
        .set(Queue {
            spans: Mutex::new(Vec::with_capacity(BATCH)),
            batch_ready: Notify::new(),
            flush,
        })
        .map_err(|_| "the OTLP exporter is already installed".to_owned())?;
    tokio::spawn(export(exporter, flushes, endpoint.to_owned()));
    Ok(())
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

/// The export task: every [`BATCH_DELAY`], when a batch is full, or when
/// asked to flush, it sends what waits in batches of up to [`BATCH`], each
/// once; a failed batch is dropped and counted.
async fn export(
    exporter: opentelemetry_otlp::SpanExporter,
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
        let mut spans = queue.take();
        while !spans.is_empty() {
            let rest = spans.split_off(spans.len().min(BATCH));
            let count = spans.len() as u64;
            match exporter.export(spans).await {
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
            spans = rest;
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
    events: Vec<Event>,
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
        if notes.events.len() >= MAX_EVENTS {
            notes.dropped_events += 1;
            return;
        }
        notes.events.push(Event::new(
            "log",
            SystemTime::now(),
            vec![
                KeyValue::new("log.severity", level),
                KeyValue::new("log.source", source.to_owned()),
                KeyValue::new("log.message", text.to_owned()),
            ],
            0,
        ));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Notes> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An invocation's span while it runs; [`Span::end`] sends it.
pub struct Span {
    data: SpanData,
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
    /// with the name and attributes `describe` gives; `None` when export is
    /// off (then `describe` is not called) or the trace is not sampled.
    pub fn begin(
        kind: Kind,
        traceparent: &http::HeaderValue,
        parent: Option<&str>,
        describe: impl FnOnce() -> (String, Vec<KeyValue>),
    ) -> Option<Span> {
        EXPORTER.get()?;
        let (trace_id, span_id, flags) = ids(traceparent.to_str().ok()?)?;
        if flags & 1 == 0 {
            return None;
        }
        let now = SystemTime::now();
        let (name, attributes) = describe();
        let parent = parent
            .and_then(ids)
            .filter(|(parent_trace, _, _)| *parent_trace == trace_id);
        let data = SpanData {
            span_context: SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::new(flags),
                false,
                TraceState::default(),
            ),
            parent_span_id: parent.map_or(SpanId::INVALID, |(_, id, _)| id),
            parent_span_is_remote: parent.is_some(),
            span_kind: match kind {
                Kind::Server => SpanKind::Server,
                Kind::Consumer => SpanKind::Consumer,
            },
            name: Cow::Owned(name),
            start_time: now,
            end_time: now,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope(),
        };
        Some(Span {
            data,
            notes: Arc::default(),
        })
    }

    /// What the invocation notes while it runs goes here.
    pub fn notes(&self) -> Arc<SpanNotes> {
        self.notes.clone()
    }

    /// Ends the span with more `attributes` and, for a failure, its
    /// description, and queues it for export (dropped when the queue is full).
    pub fn end(mut self, attributes: impl IntoIterator<Item = KeyValue>, error: Option<String>) {
        let Some(queue) = EXPORTER.get() else {
            return;
        };
        self.data.end_time = SystemTime::now();
        self.data.attributes.extend(attributes);
        let notes = std::mem::take(&mut *self.notes.lock());
        if let Some(version) = notes.version {
            self.data
                .attributes
                .push(KeyValue::new("nimbus.version", version));
        }
        self.data.events.events = notes.events;
        self.data.events.dropped_count = notes.dropped_events;
        if let Some(description) = error {
            self.data.status = Status::Error {
                description: description.into(),
            };
        }
        queue.push(self.data);
    }
}

/// The instrumentation scope of every span: Nimbus itself.
fn scope() -> InstrumentationScope {
    static SCOPE: OnceLock<InstrumentationScope> = OnceLock::new();
    SCOPE
        .get_or_init(|| {
            InstrumentationScope::builder("nimbus")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build()
        })
        .clone()
}

/// The trace id, span id and flags of a version-00 `traceparent`.
fn ids(traceparent: &str) -> Option<(TraceId, SpanId, u8)> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace != TraceId::INVALID && span != SpanId::INVALID).then_some((trace, span, flags))
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
        for bad in [
            "collector:4318",
            "ftp://x",
            "not a url",
            "https://collector:4318",
        ] {
            let e = traces_url(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn ids_come_from_a_valid_traceparent_only() {
        let (trace, span, flags) =
            ids("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(format!("{trace}"), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(format!("{span}"), "00f067aa0ba902b7");
        assert_eq!(flags, 1);
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f35-00f067aa0ba902b7-01",
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
        assert_eq!(notes.events.len(), MAX_EVENTS);
        assert_eq!(notes.dropped_events, 5);
        assert_eq!(notes.version.as_deref(), Some("abc"));
    }
}
