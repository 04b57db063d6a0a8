//! Queue triggers: fan-out, retries with backoff, dead letters and replay,
//! failures of every kind, publish grants. The same suite runs on each
//! broker: the embedded one and NATS JetStream.

use nimbus::backend::{Consumer, Namespace};
use nimbus::trigger::http::ServeOptions;
use nimbus_tests::{Broker, EVENTUALLY, TestApp, eventually, json};
use std::time::{Duration, Instant};

/// Runs each named test once per broker, as `queue::embedded::NAME` and
/// `queue::nats::NAME`.
macro_rules! per_broker {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(nimbus_tests::Broker::Embedded).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let broker = nimbus_tests::Broker::nats_unique();
                    super::$name(broker.clone()).await;
                    broker.cleanup().await;
                }
            )*
        }
    };
}

per_broker!(
    every_subscriber_gets_each_message,
    a_failing_handler_is_retried_with_backoff_then_dead_lettered,
    traps_and_timeouts_are_failures_too,
    replay_delivers_again_once_the_handler_is_fixed,
    publishing_needs_a_grant,
);

async fn start(broker: &Broker) -> TestApp {
    TestApp::start_on(
        tempfile::tempdir().unwrap(),
        APP,
        ServeOptions::default(),
        broker,
    )
    .await
}

const APP: &str = r#"
version = 1
[app]
name = "queues"

[functions.worker]
source = "guest:queue-worker"
routes = ["/worker/..."]
kv = ["deliveries"]
publish = ["jobs.*"]
queue = { topic = "jobs.*", max_attempts = 3, backoff = "100ms", max_backoff = "1s", concurrency = 4 }
[functions.worker.limits]
# Long enough that a trapping handler always finishes first, even in a debug
# build on a loaded machine; the spinning one is stopped at this limit.
timeout = "3s"

[functions.auditor]
source = "guest:queue-worker"
kv = ["audit"]
queue = { topic = "jobs.>", max_attempts = 1 }
[functions.auditor.limits]
timeout = "1s"
"#;

fn consumer(function: &str) -> Consumer {
    Consumer {
        app: "queues".into(),
        function: function.into(),
    }
}

async fn publish(app: &TestApp, topic: &str, payload: &str) -> String {
    app.app
        .backends()
        .queue
        .publish("queues", topic, payload.as_bytes(), &[])
        .await
        .unwrap()
}

async fn kv_get(app: &TestApp, store: &str, key: &str) -> Option<String> {
    let ns = Namespace {
        app: "queues".into(),
        store: store.into(),
    };
    app.app
        .backends()
        .kv
        .get(&ns, key)
        .await
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

async fn every_subscriber_gets_each_message(broker: Broker) {
    let app = start(&broker).await;
    let id = publish(&app, "jobs.ok", "ok").await;
    let key = format!("count/{id}");
    eventually("the worker's delivery", EVENTUALLY, || async {
        kv_get(&app, "deliveries", &key).await
    })
    .await;
    eventually("the auditor's delivery", EVENTUALLY, || async {
        kv_get(&app, "audit", &key).await
    })
    .await;
    // A topic only the wider pattern matches reaches only the auditor.
    let id = publish(&app, "jobs.eu.ok", "ok").await;
    let key = format!("count/{id}");
    eventually("the auditor's delivery", EVENTUALLY, || async {
        kv_get(&app, "audit", &key).await
    })
    .await;
    assert_eq!(kv_get(&app, "deliveries", &key).await, None);
    assert_eq!(
        kv_get(&app, "audit", &format!("count/{id}"))
            .await
            .as_deref(),
        Some("1")
    );
}

async fn a_failing_handler_is_retried_with_backoff_then_dead_lettered(broker: Broker) {
    let app = start(&broker).await;
    let id = publish(&app, "jobs.bad", "fail please").await;
    let queue = app.app.backends().queue.clone();
    let dead = eventually("a dead letter", EVENTUALLY, || async {
        queue
            .dead_letters(&consumer("worker"))
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.message.id == id)
    })
    .await;
    assert_eq!(dead.attempts, 3);
    assert!(dead.error.contains("asked to fail"), "{}", dead.error);
    assert_eq!(
        kv_get(&app, "deliveries", &format!("count/{id}"))
            .await
            .as_deref(),
        Some("3")
    );
    // Two retries: at least half of 100 ms, then half of 200 ms (jitter).
    let spent = dead.failed_ms - dead.message.published_ms;
    assert!(spent >= 150, "retries came after {spent} ms in all");
    let stats = queue.stats(&consumer("worker")).await.unwrap();
    assert_eq!((stats.ready, stats.in_flight, stats.dead), (0, 0, 1));
}

async fn traps_and_timeouts_are_failures_too(broker: Broker) {
    let app = start(&broker).await;
    let trap = publish(&app, "jobs.trap", "trap now").await;
    let spin = publish(&app, "jobs.spin", "spin forever").await;
    let queue = app.app.backends().queue.clone();
    let dead = eventually("two dead letters", EVENTUALLY, || async {
        let dead = queue.dead_letters(&consumer("worker")).await.unwrap();
        (dead.len() == 2).then_some(dead)
    })
    .await;
    let error_of = |id: &str| {
        dead.iter()
            .find(|d| d.message.id == id)
            .unwrap()
            .error
            .clone()
    };
    assert!(error_of(&trap).contains("trapped"), "{}", error_of(&trap));
    assert!(error_of(&spin).contains("timed out"), "{}", error_of(&spin));
    // The server kept serving throughout.
    assert_eq!(
        app.get(&format!("/worker/count/{trap}")).await.status(),
        200
    );
}

async fn replay_delivers_again_once_the_handler_is_fixed(broker: Broker) {
    let app = start(&broker).await;
    let id = publish(&app, "jobs.later", "until-fixed").await;
    let queue = app.app.backends().queue.clone();
    eventually("a dead letter", EVENTUALLY, || async {
        let dead = queue.dead_letters(&consumer("worker")).await.unwrap();
        (!dead.is_empty()).then_some(())
    })
    .await;

    let fixed = app
        .client
        .put(app.url("/worker/fixed"))
        .send()
        .await
        .unwrap();
    assert_eq!(fixed.status(), 204);
    assert_eq!(
        queue.replay(&consumer("worker"), Some(&id)).await.unwrap(),
        1
    );
    eventually("the replayed delivery to succeed", EVENTUALLY, || async {
        let stats = queue.stats(&consumer("worker")).await.unwrap();
        let count = kv_get(&app, "deliveries", &format!("count/{id}")).await;
        (stats.dead == 0
            && stats.ready + stats.in_flight + stats.delayed == 0
            && count.as_deref() == Some("4"))
        .then_some(())
    })
    .await;
}

async fn publishing_needs_a_grant(broker: Broker) {
    let app = start(&broker).await;
    let denied = app
        .client
        .post(app.url("/worker/publish/billing.charge"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let message = json(denied).await["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("may not publish to `billing.charge`"),
        "{message}"
    );

    let allowed = app
        .client
        .post(app.url("/worker/publish/jobs.from-http"))
        .body("ok")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 202);
    // It reached the subscriber: the auditor counts every jobs.> message.
    let queue = app.app.backends().queue.clone();
    eventually(
        "the published message to be consumed",
        EVENTUALLY,
        || async {
            let stats = queue.stats(&consumer("auditor")).await.unwrap();
            let seen = json(app.get("/worker/seen?prefix=jobs.from-http/").await).await;
            (stats.ready + stats.in_flight == 0 && seen.as_array().is_some_and(|a| !a.is_empty()))
                .then_some(())
        },
    )
    .await;
}

/// Messages per second through a handler that does nothing, on each broker.
/// A benchmark, not a test: run it in release mode with
/// `cargo test --release -p nimbus-tests --test all -- --ignored queue_throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; run on purpose, in release mode"]
async fn queue_throughput() {
    const MESSAGES: usize = 2_000;
    const NOOP: &str = r#"
version = 1
[app]
name = "queues"
[functions.noop]
source = "guest:queue-noop"
queue = { topic = "bench.noop", concurrency = 16 }
"#;
    for broker in [Broker::Embedded, Broker::nats_unique()] {
        let app = TestApp::start_on(
            tempfile::tempdir().unwrap(),
            NOOP,
            ServeOptions::default(),
            &broker,
        )
        .await;
        let queue = app.app.backends().queue.clone();
        let started = Instant::now();
        let publishers: Vec<_> = (0..16)
            .map(|p| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    for i in (p..MESSAGES).step_by(16) {
                        queue
                            .publish("queues", "bench.noop", format!("{i}").as_bytes(), &[])
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for p in publishers {
            p.await.unwrap();
        }
        let published = started.elapsed();
        // Ample for 2,000 messages even in a debug build.
        let limit = Duration::from_secs(300);
        eventually("the queue to drain", limit, || async {
            let stats = queue.stats(&consumer("noop")).await.unwrap();
            (stats.ready + stats.delayed + stats.in_flight == 0).then_some(())
        })
        .await;
        let drained = started.elapsed();
        println!(
            "{broker:?}: published {MESSAGES} in {published:?} ({:.0}/s); handled all in {drained:?} ({:.0} msgs/s end to end)",
            MESSAGES as f64 / published.as_secs_f64(),
            MESSAGES as f64 / drained.as_secs_f64()
        );
        drop(app);
        broker.cleanup().await;
    }
}
