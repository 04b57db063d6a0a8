//! The queue trigger: one consumer loop per queue-triggered function.
//!
//! Each loop leases as many ready messages as the function has free slots
//! (`queue.concurrency`), with up to eight leases on their way at once, runs
//! each message in a fresh instance, and then
//! acknowledges it (success), schedules a retry with exponential backoff and
//! jitter (failure), or moves it to dead letters (failure on the last
//! attempt). A trap, a timeout and a returned error are all failures. The
//! slot is free again once the instance is done; the outcome is recorded
//! meanwhile, and shutdown waits for it. A lease outlives the function's
//! timeout, so a message is only redelivered early if the host died while
//! handling it.

use crate::app::App;
use crate::backend::{BackendError, Consumer, Delivery};
use crate::call::CallCtx;
use crate::capability::outbound::Services;
use crate::executor::Executor;
use crate::manifest::QueueSpec;
use crate::telemetry::otlp::{Kind, Span, Value};
use crate::wire::TRACEPARENT;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

/// Longest a consumer waits for messages before checking for shutdown again.
pub const POLL_WAIT: Duration = Duration::from_secs(1);

/// How far a lease outlasts the function's timeout: time to record the
/// outcome after the handler returns.
pub const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// Pause after the broker fails, so a broken broker is not hammered.
const BROKER_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// The running consumer loops of one app.
pub struct QueueTriggers {
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<()>>,
}

impl QueueTriggers {
    /// Subscribes every queue-triggered function of `app` and starts its
    /// loop, running handlers on `executor`; their service calls go through
    /// `services`.
    pub async fn start(
        app: &Arc<App>,
        executor: Arc<Executor>,
        services: Arc<dyn Services>,
    ) -> Result<QueueTriggers, BackendError> {
        let runner = Arc::new(Runner { executor, services });
        let (stop, stopped) = watch::channel(false);
        let mut loops = Vec::new();
        for (index, function) in app.functions.iter().enumerate() {
            let Some(trigger) = &function.queue else {
                continue;
            };
            let consumer = consumer(app, index);
            app.backends()
                .queue
                .subscribe(&consumer, &trigger.spec.topic)
                .await?;
            tracing::info!(function = %function.id, topic = %trigger.spec.topic, "consuming");
            loops.push(tokio::spawn(consume(
                app.clone(),
                runner.clone(),
                index,
                stopped.clone(),
            )));
        }
        Ok(QueueTriggers { stop, loops })
    }

    /// Stops fetching and waits up to `grace` for in-flight messages; any
    /// still running after that are redelivered on the next start.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = futures_join(self.loops);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                ?grace,
                "queue handlers still running at the end of the grace period; they will be redelivered"
            );
        }
    }
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

fn consumer(app: &App, index: usize) -> Consumer {
    Consumer {
        app: app.name.clone(),
        function: app.functions[index].id.to_string(),
    }
}

/// What runs a queue function's deliveries.
struct Runner {
    executor: Arc<Executor>,
    services: Arc<dyn Services>,
}

async fn consume(
    app: Arc<App>,
    runner: Arc<Runner>,
    index: usize,
    mut stop: watch::Receiver<bool>,
) {
    let function = &app.functions[index];
    let spec = function
        .queue
        .as_ref()
        .expect("a queue function")
        .spec
        .clone();
    let slots = Arc::new(Semaphore::new(spec.concurrency as usize));
    let fetches = Arc::new(Semaphore::new(FETCHES_IN_FLIGHT));
    let recording = Arc::new(Semaphore::new(spec.concurrency as usize));
    let fetcher = Arc::new(Fetcher {
        consumer: consumer(&app, index),
        lease: function.limits.timeout + LEASE_MARGIN,
        app: app.clone(),
        runner,
        index,
        spec: spec.clone(),
        slots: slots.clone(),
        recording: recording.clone(),
    });
    loop {
        if *stop.borrow() {
            break;
        }
        let (fetching, first) = tokio::select! {
            permits = async {
                let fetching = fetches.clone().acquire_owned().await.expect("never closed");
                let first = slots.clone().acquire_owned().await.expect("never closed");
                (fetching, first)
            } => permits,
            _ = stop.changed() => break,
        };
        // Every slot free now joins this fetch.
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        tokio::spawn(fetcher.clone().run(permits, fetching, stop.clone()));
    }
    // Every slot back means every fetch and every invocation has finished;
    // every recording permit back, every outcome is recorded.
    let _ = slots.acquire_many(spec.concurrency).await;
    let _ = recording.acquire_many(spec.concurrency).await;
}

/// Fetches one consumer may have on their way at once: while leases are
/// being committed, the slots that free up meanwhile go into the next, so
/// handlers do not wait for each other's leases. On a disk whose sync takes
/// a millisecond, a lease is answered about two commits after it was asked
/// for; with two fetches a freed slot waited up to a lease of its own plus
/// the one ahead of it, and the consumer fell behind the publishers. The
/// leases in flight at once share commits, so more of them cost little.
const FETCHES_IN_FLIGHT: usize = 8;

/// One consumer's fetches: a lease of as many messages as it has slots.
struct Fetcher {
    app: Arc<App>,
    runner: Arc<Runner>,
    index: usize,
    consumer: Consumer,
    spec: QueueSpec,
    lease: Duration,
    slots: Arc<Semaphore>,
    /// Outcomes being recorded (ack, retry, dead letter) after their
    /// instance gave back its slot; as many as there are slots.
    recording: Arc<Semaphore>,
}

impl Fetcher {
    /// Leases up to one message per permit and runs each with its permit;
    /// the permits left over are freed.
    async fn run(
        self: Arc<Self>,
        mut permits: Vec<OwnedSemaphorePermit>,
        fetching: OwnedSemaphorePermit,
        mut stop: watch::Receiver<bool>,
    ) {
        let queue = &self.app.backends().queue;
        let fetched = tokio::select! {
            fetched = queue.fetch(&self.consumer, permits.len(), self.lease, POLL_WAIT) => fetched,
            _ = stop.changed() => return,
        };
        drop(fetching);
        let deliveries = match fetched {
            Ok(deliveries) => deliveries,
            Err(e) => {
                let function = &self.app.functions[self.index].id;
                tracing::warn!(%function, error = %e, "fetching messages failed");
                // Holding the permits, so the next fetch waits too.
                tokio::time::sleep(BROKER_ERROR_BACKOFF).await;
                return;
            }
        };
        for delivery in deliveries {
            let permit = match permits.pop() {
                Some(permit) => permit,
                // A backend that returned more than asked for: wait for a slot.
                None => self
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("never closed"),
            };
            let fetcher = self.clone();
            tokio::spawn(async move {
                handle(&fetcher, delivery, permit).await;
            });
        }
    }
}

/// Runs one delivery in its slot, then records its outcome.
async fn handle(fetcher: &Fetcher, delivery: Delivery, slot: OwnedSemaphorePermit) {
    let Fetcher {
        app,
        runner,
        index,
        consumer,
        spec,
        recording,
        ..
    } = fetcher;
    let index = *index;
    let function = &app.functions[index].id;
    let message = &delivery.message;
    let traceparent = message
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(TRACEPARENT.as_str()))
        .map(|(_, v)| v.as_str());
    // The delivery is a span of the publisher's trace (or starts one); the
    // guest's service calls are its children.
    let own = crate::telemetry::trace::child_of(traceparent);
    let span = Span::begin(Kind::Consumer, &own, traceparent, |span| {
        span.name(&[&message.topic, " process"]);
        span.attribute("nimbus.function", Value::Str(&app.functions[index].id_str));
        span.attribute("messaging.system", Value::Str("nimbus"));
        span.attribute("messaging.operation.type", Value::Str("process"));
        span.attribute("messaging.destination.name", Value::Str(&message.topic));
        span.attribute("messaging.message.id", Value::Str(&message.id));
        span.attribute("nimbus.attempt", Value::Int(i64::from(delivery.attempt)));
    });
    let mut call = CallCtx::new(message.id.as_str(), None, index);
    call.traceparent = Some(own);
    call.span = span.as_ref().map(Span::notes);
    let queue = &app.backends().queue;
    let metrics = crate::telemetry::metrics();
    let count = |kind: &str| {
        metrics
            .queue_deliveries
            .get_or_create(&crate::telemetry::outcome(function.as_str(), kind))
            .inc();
    };
    let started = std::time::Instant::now();
    let result = runner
        .executor
        .invoke_queue(app, index, &delivery, call, &runner.services)
        .await;
    app.functions[index]
        .metrics
        .delivered(started.elapsed(), result.is_ok());
    // The instance is gone: its slot goes to the next message while this
    // outcome is recorded (a commit the next message need not wait for).
    let _recording = recording
        .clone()
        .acquire_owned()
        .await
        .expect("never closed");
    drop(slot);
    if let Some(span) = span {
        let (kind, error) = match &result {
            Ok(()) => ("acked", None),
            Err(e) if delivery.attempt >= spec.max_attempts => {
                ("dead_lettered", Some(e.to_string()))
            }
            Err(e) => ("retried", Some(e.to_string())),
        };
        span.end(&[("nimbus.outcome", Value::Str(kind))], error);
    }
    if let Err(e) = &result {
        metrics
            .failures
            .get_or_create(&crate::telemetry::outcome(function.as_str(), e.kind()))
            .inc();
    }
    let outcome = match result {
        Ok(()) => {
            count("acked");
            tracing::debug!(%function, message_id = message.id, attempt = delivery.attempt, "message handled");
            queue.ack(consumer, &delivery).await
        }
        Err(e) if delivery.attempt >= spec.max_attempts => {
            count("dead_lettered");
            tracing::warn!(
                %function, message_id = message.id, topic = message.topic,
                attempts = delivery.attempt, error = %e,
                "message moved to dead letters"
            );
            queue.dead_letter(consumer, &delivery, &e.to_string()).await
        }
        Err(e) => {
            count("retried");
            let delay = backoff(spec, delivery.attempt);
            tracing::info!(
                %function, message_id = message.id, attempt = delivery.attempt,
                retry_in_ms = delay.as_millis() as u64, error = %e,
                "message handler failed; will retry"
            );
            queue
                .retry(consumer, &delivery, delay, &e.to_string())
                .await
        }
    };
    if let Err(e) = outcome {
        // The lease will run out and the message will be delivered again.
        tracing::error!(%function, message_id = message.id, error = %e, "recording a delivery outcome failed");
    }
}

/// The delay before retry number `attempt`: `backoff` doubled per attempt,
/// capped at `max_backoff`, then "equal jitter" (between half and all of it)
/// so retries of a burst of failures spread out.
pub fn backoff(spec: &QueueSpec, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(30);
    let full = spec
        .backoff
        .saturating_mul(1 << doublings)
        .min(spec.max_backoff);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::TopicPattern;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let spec = QueueSpec {
            topic: TopicPattern::parse("t").unwrap(),
            max_attempts: 10,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            concurrency: 1,
        };
        for _ in 0..100 {
            let first = backoff(&spec, 1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff(&spec, 3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let capped = backoff(&spec, 9);
            assert!(capped >= Duration::from_millis(500) && capped <= Duration::from_millis(1000));
        }
    }
}
