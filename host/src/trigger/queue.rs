//! The queue trigger: one consumer loop per queue-triggered function.
//!
//! Each loop leases as many ready messages as the function has free slots
//! (`queue.concurrency`), runs each in a fresh instance, and then
//! acknowledges it (success), schedules a retry with exponential backoff and
//! jitter (failure), or moves it to dead letters (failure on the last
//! attempt). A trap, a timeout and a returned error are all failures. A
//! lease outlives the function's timeout, so a message is only redelivered
//! early if the host died while handling it.

use crate::app::App;
use crate::backend::{BackendError, Consumer, Delivery};
use crate::call::CallCtx;
use crate::capability::outbound::Services;
use crate::executor::Executor;
use crate::manifest::QueueSpec;
use crate::wire::TRACEPARENT;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
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
    let consumer = consumer(&app, index);
    let queue = app.backends().queue.clone();
    let slots = Arc::new(Semaphore::new(spec.concurrency as usize));
    let lease = function.limits.timeout + LEASE_MARGIN;
    loop {
        if *stop.borrow() {
            break;
        }
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            _ = stop.changed() => break,
        };
        let want = 1 + slots.available_permits();
        let fetched = tokio::select! {
            fetched = queue.fetch(&consumer, want, lease, POLL_WAIT) => fetched,
            _ = stop.changed() => break,
        };
        let deliveries = match fetched {
            Ok(deliveries) => deliveries,
            Err(e) => {
                tracing::warn!(function = %function.id, error = %e, "fetching messages failed");
                tokio::time::sleep(BROKER_ERROR_BACKOFF).await;
                continue;
            }
        };
        let mut first = Some(first);
        for delivery in deliveries {
            let permit = match first.take() {
                Some(permit) => permit,
                None => slots.clone().acquire_owned().await.expect("never closed"),
            };
            let app = app.clone();
            let runner = runner.clone();
            let consumer = consumer.clone();
            let spec = spec.clone();
            tokio::spawn(async move {
                handle(&app, &runner, index, &consumer, &spec, delivery).await;
                drop(permit);
            });
        }
    }
    // Let in-flight handlers finish: they hold every permit until then.
    let _ = slots.acquire_many(spec.concurrency).await;
}

async fn handle(
    app: &Arc<App>,
    runner: &Runner,
    index: usize,
    consumer: &Consumer,
    spec: &QueueSpec,
    delivery: Delivery,
) {
    let function = &app.functions[index].id;
    let message = &delivery.message;
    let traceparent = message
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(TRACEPARENT.as_str()))
        .map(|(_, v)| v.as_str());
    let call = CallCtx::new(message.id.as_str(), traceparent, index);
    let queue = &app.backends().queue;
    let metrics = crate::telemetry::metrics();
    let count = |kind: &str| {
        metrics
            .queue_deliveries
            .get_or_create(&crate::telemetry::outcome(function.as_str(), kind))
            .inc();
    };
    let result = runner
        .executor
        .invoke_queue(app, index, &delivery, call, &runner.services)
        .await;
    if let Err(e) = &result {
        metrics
            .failures
            .get_or_create(&crate::telemetry::outcome(function.as_str(), e.kind()))
            .inc();
    }
    let outcome = match result {
        Ok(()) => {
            count("acked");
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
