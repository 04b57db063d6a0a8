//! Metrics: one registry per process, exported by the admin API at
//! `GET /metrics` in the OpenMetrics text format that Prometheus scrapes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

pub mod otlp;
pub mod recent;

pub use recent::{Recent, RecentView, SecondView};

/// Latency buckets in seconds: from a warm hello (~100 µs) to a slow
/// downstream call (10 s).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// Labels of an HTTP request. Made on every request, so made of shared
/// strings: no label is copied.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The function, or `-` when none was reached.
    pub function: Arc<str>,
    /// The matched route pattern, or `-`.
    pub route: Arc<str>,
    /// The request method.
    pub method: Cow<'static, str>,
    /// The response status.
    pub status: u16,
}

impl RequestLabels {
    /// The labels of a request to `function` by `route` (`-` for none).
    pub fn new(
        function: Option<&Arc<str>>,
        route: Option<&Arc<str>>,
        method: &http::Method,
        status: u16,
    ) -> RequestLabels {
        static NONE: OnceLock<Arc<str>> = OnceLock::new();
        let none = || NONE.get_or_init(|| Arc::from("-")).clone();
        const STANDARD: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
        ];
        let method = match STANDARD.iter().find(|m| **m == method.as_str()) {
            Some(m) => Cow::Borrowed(*m),
            None => Cow::Owned(method.as_str().to_owned()),
        };
        RequestLabels {
            function: function.cloned().unwrap_or_else(none),
            route: route.cloned().unwrap_or_else(none),
            method,
            status,
        }
    }
}

/// A function label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    /// The function.
    pub function: String,
}

/// A function and what happened.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The function.
    pub function: String,
    /// What happened, e.g. `timeout` or `acked`.
    pub kind: String,
}

/// One serving version of a function.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// The function.
    pub function: String,
    /// The version's short digest.
    pub digest: String,
    /// `stable` or `canary`.
    pub track: String,
}

/// Every metric Nimbus keeps.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// HTTP request latency.
    pub request_seconds: Family<FunctionLabels, Histogram>,
    /// Time to instantiate a component.
    pub instantiate_seconds: Family<FunctionLabels, Histogram>,
    /// Wall time inside the guest per invocation, after instantiation.
    pub guest_seconds: Family<FunctionLabels, Histogram>,
    /// The most linear memory an invocation's instance held.
    pub memory_peak_bytes: Family<FunctionLabels, Histogram>,
    /// Instances running now.
    pub in_flight: Family<FunctionLabels, Gauge>,
    /// Instances the pooling allocator holds at most (0 without pooling):
    /// with `in_flight`, the pool's occupancy.
    pub pool_capacity: Gauge,
    /// Invocations that failed or were turned away, by kind.
    pub failures: Family<OutcomeLabels, Counter>,
    /// Requests the gateway refused before the function ran, by reason
    /// (`unauthorized`, `forbidden`, `rate_limited`, ...).
    pub rejections: Family<OutcomeLabels, Counter>,
    /// Queue deliveries by outcome (`acked`, `retried`, `dead_lettered`).
    pub queue_deliveries: Family<OutcomeLabels, Counter>,
    /// Messages published, by publishing function (or `admin`).
    pub queue_published: Family<FunctionLabels, Counter>,
    /// Percent of a function's invocations each serving version takes.
    pub function_version: Family<VersionLabels, Gauge>,
    /// Deployment changes by function and kind (`deploy`, `rollback`, ...).
    pub deployments: Family<OutcomeLabels, Counter>,
    /// Commits of the embedded store, each one sync to disk.
    pub store_commits: Counter,
    /// Writes to the embedded store; per commit, the group commit's batch.
    pub store_writes: Counter,
    /// Spans sent to the OTLP collector.
    pub otlp_exported: Counter,
    /// Spans dropped: the export queue was full, or the collector refused
    /// them or could not be reached.
    pub otlp_dropped: Counter,
    /// Each function's last minutes, by id: kept across deploys (a
    /// function's `Function` is rebuilt when its manifest entry changes).
    recent: std::sync::Mutex<std::collections::HashMap<String, Arc<Recent>>>,
}

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Peak memory buckets in bytes: from one 64 KiB page to 4 GiB, by fours.
fn memory_buckets() -> Histogram {
    Histogram::new((0..10).map(|i| 65536.0 * 4f64.powi(i)))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nimbus");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds =
            Family::<FunctionLabels, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        let instantiate_seconds =
            Family::<FunctionLabels, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        let guest_seconds =
            Family::<FunctionLabels, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        let memory_peak_bytes = Family::<FunctionLabels, Histogram>::new_with_constructor(
            memory_buckets as fn() -> Histogram,
        );
        registry.register(
            "guest_duration_seconds",
            "Wall time inside the guest per invocation, after instantiation (a fresh or reused instance; a shared instance's requests are in http_request_duration_seconds)",
            guest_seconds.clone(),
        );
        registry.register(
            "memory_peak_bytes",
            "The most linear memory an invocation's instance held (a reused or shared instance: over its life so far)",
            memory_peak_bytes.clone(),
        );
        let in_flight = Family::<FunctionLabels, Gauge>::default();
        let pool_capacity = Gauge::default();
        let failures = Family::<OutcomeLabels, Counter>::default();
        let queue_deliveries = Family::<OutcomeLabels, Counter>::default();
        let rejections = Family::<OutcomeLabels, Counter>::default();
        let queue_published = Family::<FunctionLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            request_seconds.clone(),
        );
        registry.register(
            "instantiate_duration_seconds",
            "Time to create a store and instantiate a component",
            instantiate_seconds.clone(),
        );
        registry.register(
            "pool_capacity_instances",
            "Component instances the pooling allocator holds at most (0 without pooling)",
            pool_capacity.clone(),
        );
        registry.register(
            "instances_in_flight",
            "Component instances running now",
            in_flight.clone(),
        );
        registry.register(
            "invocation_failures",
            "Invocations that failed or were turned away, by kind",
            failures.clone(),
        );
        registry.register(
            "gateway_rejections",
            "Requests the gateway refused before the function ran, by reason",
            rejections.clone(),
        );
        registry.register(
            "queue_deliveries",
            "Queue deliveries by outcome",
            queue_deliveries.clone(),
        );
        registry.register(
            "queue_published",
            "Messages published, by publisher",
            queue_published.clone(),
        );
        let function_version = Family::<VersionLabels, Gauge>::default();
        let deployments = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "function_version_percent",
            "Percent of a function's invocations each serving version takes",
            function_version.clone(),
        );
        registry.register(
            "deployments",
            "Deployment changes by kind: deploy, rollback, add, canary, canary_percent, promote, abort, remove, rejected",
            deployments.clone(),
        );
        let store_commits = Counter::default();
        let store_writes = Counter::default();
        registry.register(
            "store_commits",
            "Commits of the embedded store, each one sync to disk",
            store_commits.clone(),
        );
        registry.register(
            "store_writes",
            "Writes to the embedded store (key-value and queue); divided by commits, the writes each sync covers",
            store_writes.clone(),
        );
        let otlp_exported = Counter::default();
        let otlp_dropped = Counter::default();
        registry.register(
            "otlp_spans_exported",
            "Spans sent to the OTLP collector (--otlp-endpoint)",
            otlp_exported.clone(),
        );
        registry.register(
            "otlp_spans_dropped",
            "Spans dropped: the export queue was full, or the collector refused them or could not be reached",
            otlp_dropped.clone(),
        );
        Metrics {
            registry,
            otlp_exported,
            otlp_dropped,
            store_commits,
            store_writes,
            function_version,
            deployments,
            requests,
            request_seconds: Family::clone(&request_seconds),
            instantiate_seconds,
            guest_seconds,
            memory_peak_bytes,
            in_flight,
            pool_capacity,
            failures,
            rejections,
            queue_deliveries,
            queue_published,
            recent: Default::default(),
        }
    }

    /// Function `id`'s last minutes, made on first use.
    pub fn recent(&self, id: &str) -> Arc<Recent> {
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.entry(id.to_owned()).or_default().clone()
    }

    /// The metrics in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// A function label value.
pub fn function(id: &str) -> FunctionLabels {
    FunctionLabels {
        function: id.to_owned(),
    }
}

/// One function's metric handles, resolved when it loads so that an
/// invocation finds them ready (no label lookup per request).
#[derive(Clone)]
pub struct FunctionMetrics {
    /// Its instances running now.
    pub in_flight: Gauge,
    instantiate_seconds: Histogram,
    request_seconds: Histogram,
    guest_seconds: Histogram,
    memory_peak_bytes: Histogram,
    /// Its last minutes, second by second.
    pub recent: Arc<Recent>,
}

impl FunctionMetrics {
    /// The handles of function `id`.
    pub fn new(id: &str) -> FunctionMetrics {
        let metrics = metrics();
        let label = function(id);
        FunctionMetrics {
            in_flight: metrics.in_flight.get_or_create(&label).clone(),
            instantiate_seconds: metrics.instantiate_seconds.get_or_create(&label).clone(),
            request_seconds: metrics.request_seconds.get_or_create(&label).clone(),
            guest_seconds: metrics.guest_seconds.get_or_create(&label).clone(),
            memory_peak_bytes: metrics.memory_peak_bytes.get_or_create(&label).clone(),
            recent: metrics.recent(id),
        }
    }

    /// Counts an HTTP request answered after `elapsed` with `status`.
    pub fn answered(&self, elapsed: std::time::Duration, status: u16) {
        self.request_seconds.observe(elapsed.as_secs_f64());
        self.recent.record(elapsed, status >= 500);
    }

    /// Counts a queue delivery handled in `elapsed`, acknowledged or not.
    pub fn delivered(&self, elapsed: std::time::Duration, acked: bool) {
        self.recent.record(elapsed, !acked);
    }

    /// Counts what one invocation cost: `guest` inside the guest (none
    /// for a request of a shared instance) and the instance's peak linear
    /// memory in bytes.
    pub fn ran(&self, guest: Option<std::time::Duration>, peak_memory: u64) {
        if let Some(guest) = guest {
            self.guest_seconds.observe(guest.as_secs_f64());
        }
        self.memory_peak_bytes.observe(peak_memory as f64);
        self.recent.memory(peak_memory);
    }

    /// Counts an instantiation that began at `started`; how long it took.
    pub fn instantiated(&self, started: std::time::Instant) -> std::time::Duration {
        let took = started.elapsed();
        self.instantiate_seconds.observe(took.as_secs_f64());
        took
    }
}

/// An outcome label value.
pub fn outcome(function: &str, kind: &str) -> OutcomeLabels {
    OutcomeLabels {
        function: function.to_owned(),
        kind: kind.to_owned(),
    }
}

/// W3C trace context (`traceparent`): each invocation is a span of the
/// caller's trace, or the root of a new one.
pub mod trace {
    use http::HeaderValue;

    /// Length of a version-00 `traceparent`: `00-` trace id `-` span id `-` flags.
    const LEN: usize = 2 + 1 + 32 + 1 + 16 + 1 + 2;

    /// The `traceparent` an invocation runs under: a child of `incoming`
    /// when that is a valid W3C `traceparent` (same trace id and flags, a new
    /// span id), else the root of a new sampled trace.
    pub fn child_of(incoming: Option<&str>) -> HeaderValue {
        // Written byte by byte: this runs on every request, and `format!`
        // with hex padding cost ten times as much.
        let mut out = [0u8; LEN];
        out[..3].copy_from_slice(b"00-");
        match incoming.and_then(parse) {
            Some((trace_id, flags)) => {
                out[3..35].copy_from_slice(trace_id.as_bytes());
                out[LEN - 2..].copy_from_slice(flags.as_bytes());
            }
            None => {
                hex(nonzero(|| fastrand::u128(..)), &mut out[3..35]);
                out[LEN - 2..].copy_from_slice(b"01");
            }
        }
        out[35] = b'-';
        hex(nonzero(|| u128::from(fastrand::u64(..))), &mut out[36..52]);
        out[52] = b'-';
        HeaderValue::from_bytes(&out).expect("lowercase hex and dashes")
    }

    /// Writes the low `out.len()` hex digits of `value`, lowercase.
    fn hex(mut value: u128, out: &mut [u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for byte in out.iter_mut().rev() {
            *byte = DIGITS[(value & 0xf) as usize];
            value >>= 4;
        }
    }

    /// The trace id and flags of a valid version-00 `traceparent`.
    fn parse(value: &str) -> Option<(&str, &str)> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let valid = version == "00"
            && parts.next().is_none()
            && hex(trace_id, 32)
            && hex(parent_id, 16)
            && hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && parent_id.bytes().any(|b| b != b'0');
        valid.then_some((trace_id, flags))
    }

    /// A random id from `draw`, never zero (an all-zero id is invalid).
    /// Drawn once per id: this runs on every request.
    fn nonzero(draw: impl Fn() -> u128) -> u128 {
        loop {
            let id = draw();
            if id != 0 {
                return id;
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_valid_parent_keeps_its_trace_and_gets_a_new_span() {
            let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let child = child_of(Some(parent));
            let child = child.to_str().unwrap();
            assert!(
                child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{child}"
            );
            assert!(child.ends_with("-01"));
            assert_ne!(child, parent);
            assert!(parse(child).is_some());
        }

        #[test]
        fn anything_else_starts_a_new_trace() {
            for bad in [
                None,
                Some("garbage"),
                Some("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
                Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            ] {
                let root = child_of(bad);
                let root = root.to_str().unwrap();
                assert!(parse(root).is_some(), "{root}");
                assert!(root.ends_with("-01"));
            }
        }
    }
}
