//! The NATS JetStream queue backend against a real server: a nats-server
//! with JetStream on `NIMBUS_TEST_NATS_URL` (default
//! `nats://127.0.0.1:4222`), e.g. `nats-server -a 127.0.0.1 -js`. Each test
//! uses its own stream prefix and deletes its streams when it ends, pass or
//! fail.

use nimbus::backend::nats::NatsBackend;
use nimbus::backend::{BackendError, Consumer, Delivery, QueueBackend, QueueStats};
use nimbus::manifest::TopicPattern;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Longer than any lease a test passes: nothing is redelivered by accident.
const LEASE: Duration = Duration::from_secs(30);

/// How long a test waits for a message it expects.
const EXPECT_WAIT: Duration = Duration::from_secs(5);

/// How long a test waits to be sure a message does not come.
const ABSENT_WAIT: Duration = Duration::from_millis(500);

fn url() -> String {
    std::env::var("NIMBUS_TEST_NATS_URL").unwrap_or_else(|_| nimbus_tests::NATS_URL.into())
}

/// A prefix of its own for each test, and its streams deleted on drop.
struct Broker {
    prefix: String,
}

impl Broker {
    fn new() -> Broker {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Broker {
            prefix: format!(
                "t{}{nanos}n{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    async fn connect(&self) -> NatsBackend {
        NatsBackend::connect(&url(), &self.prefix)
            .await
            .unwrap_or_else(|e| panic!("{e} (start one: nats-server -a 127.0.0.1 -js)"))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        // Drop cannot await, and may run inside the test's runtime: clean up
        // on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let backend = NatsBackend::connect(&url(), &prefix).await?;
                    backend.delete_all().await
                })
        });
        match cleanup.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("cleaning up streams of {}: {e}", self.prefix),
            Err(_) => eprintln!("cleaning up streams of {} panicked", self.prefix),
        }
    }
}

/// How many messages app `shop`'s message stream holds (the stream layout
/// is documented in `backend/nats.rs`).
async fn stored(broker: &Broker) -> u64 {
    let js = async_nats::jetstream::new(async_nats::connect(url()).await.unwrap());
    let mut stream = js
        .get_stream(format!("{}_queue_shop", broker.prefix))
        .await
        .unwrap();
    stream.info().await.unwrap().state.messages
}

fn consumer(function: &str) -> Consumer {
    Consumer {
        app: "shop".into(),
        function: function.into(),
    }
}

fn pattern(p: &str) -> TopicPattern {
    TopicPattern::parse(p).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Exactly one delivery, waiting for it.
async fn one(backend: &NatsBackend, c: &Consumer) -> Delivery {
    let mut got = backend.fetch(c, 10, LEASE, EXPECT_WAIT).await.unwrap();
    assert_eq!(got.len(), 1, "{}: expected one delivery", c.function);
    got.pop().unwrap()
}

/// Asserts nothing is delivered within `ABSENT_WAIT`.
async fn none(backend: &NatsBackend, c: &Consumer) {
    let got = backend.fetch(c, 10, LEASE, ABSENT_WAIT).await.unwrap();
    assert!(
        got.is_empty(),
        "{}: expected nothing, got {:?}",
        c.function,
        got.iter().map(|d| &d.message.topic).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn each_matching_consumer_gets_a_message_once() {
    let broker = Broker::new();
    let nats = broker.connect().await;
    let (created, all, users) = (consumer("created"), consumer("all"), consumer("users"));
    nats.subscribe(&created, &pattern("orders.*"))
        .await
        .unwrap();
    nats.subscribe(&all, &pattern("orders.>")).await.unwrap();
    nats.subscribe(&users, &pattern("users.*")).await.unwrap();

    let sent = headers(&[
        ("traceparent", "00-abc-def-01"),
        ("content-type", "text/plain"),
    ]);
    let id = nats
        .publish("shop", "orders.created", b"order 1", &sent)
        .await
        .unwrap();
    assert_eq!(stored(&broker).await, 1);
    for c in [&created, &all] {
        let d = one(&nats, c).await;
        assert_eq!(d.message.id, id);
        assert_eq!(d.message.topic, "orders.created");
        assert_eq!(d.message.payload, b"order 1");
        assert_eq!(
            d.message.headers,
            headers(&[
                ("content-type", "text/plain"),
                ("traceparent", "00-abc-def-01")
            ]),
            "headers come back sorted by name"
        );
        assert_eq!(d.attempt, 1);
        assert!(d.message.published_ms > 0);
        nats.ack(c, &d).await.unwrap();
        // Acking twice is harmless.
        nats.ack(c, &d).await.unwrap();
    }
    none(&nats, &users).await;
    none(&nats, &created).await;
    none(&nats, &all).await;

    // A deeper topic reaches `orders.>` only.
    nats.publish("shop", "orders.eu.created", b"2", &[])
        .await
        .unwrap();
    let d = one(&nats, &all).await;
    assert_eq!(d.message.topic, "orders.eu.created");
    nats.ack(&all, &d).await.unwrap();
    none(&nats, &created).await;

    // An app nobody subscribes in, and a topic nobody matches: accepted,
    // kept for nobody.
    nats.publish("other", "orders.created", b"x", &[])
        .await
        .unwrap();
    nats.publish("shop", "payments.done", b"x", &[])
        .await
        .unwrap();
    for c in [&created, &all, &users] {
        assert_eq!(nats.stats(c).await.unwrap(), QueueStats::default());
    }
    // Interest retention: a message stays until every consumer it reached
    // has acked it, and one nobody consumes is not kept at all.
    assert_eq!(stored(&broker).await, 0);
    nats.publish("shop", "orders.created", b"3", &[])
        .await
        .unwrap();
    let d = one(&nats, &created).await;
    nats.ack(&created, &d).await.unwrap();
    assert_eq!(stored(&broker).await, 1, "`all` has not acked it yet");
    let d = one(&nats, &all).await;
    nats.ack(&all, &d).await.unwrap();
    assert_eq!(stored(&broker).await, 0);
}

#[tokio::test]
async fn bad_input_is_invalid_not_a_storage_failure() {
    let broker = Broker::new();
    let nats = broker.connect().await;
    let c = consumer("f");
    nats.subscribe(&c, &pattern("t")).await.unwrap();
    for bad in [
        headers(&[("with space", "x")]),
        headers(&[("ok", "two\nlines")]),
        headers(&[("Nats-Msg-Id", "mine")]),
    ] {
        let err = nats.publish("shop", "t", b"", &bad).await.unwrap_err();
        assert!(matches!(err, BackendError::Invalid(_)), "{bad:?}: {err}");
    }
    let err = nats.publish("shop", "t.*", b"", &[]).await.unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)), "{err}");

    let d = {
        nats.publish("shop", "t", b"", &[]).await.unwrap();
        one(&nats, &c).await
    };
    let forged = Delivery {
        token: "$JS.ACK.elsewhere.someone.1.1.1.1.0".into(),
        ..d.clone()
    };
    let err = nats.ack(&c, &forged).await.unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)), "{err}");
    let err = nats.ack(&consumer("g"), &d).await.unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)), "{err}");
    let err = nats
        .fetch(&consumer("never"), 1, LEASE, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)), "{err}");
    nats.ack(&c, &d).await.unwrap();

    assert!(matches!(
        NatsBackend::connect(&url(), "bad.prefix").await,
        Err(BackendError::Invalid(_))
    ));
    assert!(matches!(
        NatsBackend::connect("nats://127.0.0.1:1", "p").await,
        Err(BackendError::Storage(_))
    ));
}

#[tokio::test]
async fn a_retry_comes_back_after_its_delay_as_the_next_attempt() {
    let broker = Broker::new();
    let nats = broker.connect().await;
    let c = consumer("worker");
    nats.subscribe(&c, &pattern("jobs.*")).await.unwrap();
    let id = nats.publish("shop", "jobs.run", b"job", &[]).await.unwrap();

    let first = one(&nats, &c).await;
    assert_eq!(first.attempt, 1);
    let delay = Duration::from_millis(1500);
    // The broker counts the delay from when the retry reaches it, which is
    // after the call starts but may be before it returns: measure from the
    // start, the one bound the client knows.
    let retried_at = Instant::now();
    nats.retry(&c, &first, delay, "try again").await.unwrap();

    none(&nats, &c).await;
    let second = one(&nats, &c).await;
    assert!(
        retried_at.elapsed() >= delay,
        "redelivered after {:?}, before the {delay:?} delay",
        retried_at.elapsed()
    );
    assert_eq!(second.message.id, id);
    assert_eq!(second.attempt, 2);
    nats.ack(&c, &second).await.unwrap();
    none(&nats, &c).await;
}

#[tokio::test]
async fn dead_letters_replay_to_their_consumer_only_and_purge() {
    let broker = Broker::new();
    let nats = broker.connect().await;
    let (failing, other) = (consumer("failing"), consumer("other"));
    nats.subscribe(&failing, &pattern("orders.*"))
        .await
        .unwrap();
    nats.subscribe(&other, &pattern("orders.>")).await.unwrap();
    let sent = headers(&[("x-tenant", "acme")]);
    let id = nats
        .publish("shop", "orders.created", b"order", &sent)
        .await
        .unwrap();

    let d = one(&nats, &other).await;
    nats.ack(&other, &d).await.unwrap();
    let d = one(&nats, &failing).await;
    nats.retry(&failing, &d, Duration::ZERO, "first")
        .await
        .unwrap();
    let d = one(&nats, &failing).await;
    assert_eq!(d.attempt, 2);
    let published_ms = d.message.published_ms;
    nats.dead_letter(&failing, &d, "boom\nat line 2")
        .await
        .unwrap();
    none(&nats, &failing).await;

    let dead = nats.dead_letters(&failing).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message.id, id);
    assert_eq!(dead[0].message.topic, "orders.created");
    assert_eq!(dead[0].message.payload, b"order");
    assert_eq!(dead[0].message.headers, sent);
    assert_eq!(dead[0].message.published_ms, published_ms);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].error, "boom\nat line 2");
    assert!(dead[0].failed_ms >= published_ms);
    assert!(nats.dead_letters(&other).await.unwrap().is_empty());
    assert_eq!(nats.stats(&failing).await.unwrap().dead, 1);

    assert_eq!(nats.replay(&failing, Some("no-such-id")).await.unwrap(), 0);
    assert_eq!(nats.replay(&failing, None).await.unwrap(), 1);
    assert!(nats.dead_letters(&failing).await.unwrap().is_empty());
    let again = one(&nats, &failing).await;
    assert_eq!(again.attempt, 1, "a replay starts its attempts afresh");
    assert_eq!(again.message.id, id);
    assert_eq!(again.message.topic, "orders.created");
    assert_eq!(again.message.headers, sent);
    assert_eq!(again.message.published_ms, published_ms);
    assert_eq!(again.message.payload, b"order");
    none(&nats, &other).await;

    // Dead again (a replayed delivery dead-letters like any other), then
    // purged by id.
    nats.dead_letter(&failing, &again, "still broken")
        .await
        .unwrap();
    let dead = nats.dead_letters(&failing).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].attempts, dead[0].error.as_str()),
        (1, "still broken")
    );
    assert_eq!(nats.purge(&failing, Some("no-such-id")).await.unwrap(), 0);
    assert_eq!(nats.purge(&failing, Some(&id)).await.unwrap(), 1);
    assert!(nats.dead_letters(&failing).await.unwrap().is_empty());

    // Several, oldest first; purged all at once.
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            nats.publish("shop", "orders.created", format!("{n}").as_bytes(), &[])
                .await
                .unwrap(),
        );
    }
    let mut fetched = Vec::new();
    while fetched.len() < 3 {
        let got = nats.fetch(&failing, 3, LEASE, EXPECT_WAIT).await.unwrap();
        assert!(!got.is_empty());
        fetched.extend(got);
    }
    for d in &fetched {
        nats.dead_letter(&failing, d, "no").await.unwrap();
    }
    let dead: Vec<String> = nats
        .dead_letters(&failing)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.message.id)
        .collect();
    assert_eq!(dead, ids);
    assert_eq!(nats.purge(&failing, None).await.unwrap(), 3);
    assert_eq!(nats.stats(&failing).await.unwrap().dead, 0);
    assert!(nats.dead_letters(&failing).await.unwrap().is_empty());
}

#[tokio::test]
async fn stats_count_ready_in_flight_and_dead() {
    let broker = Broker::new();
    let nats = broker.connect().await;
    let c = consumer("counted");
    nats.subscribe(&c, &pattern("e")).await.unwrap();
    for _ in 0..3 {
        nats.publish("shop", "e", b"", &[]).await.unwrap();
    }
    let stats = |ready, in_flight, dead| QueueStats {
        ready,
        delayed: 0,
        in_flight,
        dead,
    };
    assert_eq!(nats.stats(&c).await.unwrap(), stats(3, 0, 0));
    let mut got = nats.fetch(&c, 2, LEASE, EXPECT_WAIT).await.unwrap();
    assert_eq!(got.len(), 2, "fetch takes what is there, up to max");
    assert_eq!(nats.stats(&c).await.unwrap(), stats(1, 2, 0));
    nats.dead_letter(&c, &got.pop().unwrap(), "x")
        .await
        .unwrap();
    nats.ack(&c, &got.pop().unwrap()).await.unwrap();
    assert_eq!(nats.stats(&c).await.unwrap(), stats(1, 0, 1));
    // Never subscribed: nothing, not an error.
    assert_eq!(
        nats.stats(&consumer("nobody")).await.unwrap(),
        QueueStats::default()
    );
}

#[tokio::test]
async fn a_consumer_survives_a_restart() {
    let broker = Broker::new();
    let c = consumer("durable");
    let lease = Duration::from_secs(1);
    let id = {
        let nats = broker.connect().await;
        nats.subscribe(&c, &pattern("jobs.*")).await.unwrap();
        let id = nats.publish("shop", "jobs.a", b"a", &[]).await.unwrap();
        let d = nats.fetch(&c, 1, lease, EXPECT_WAIT).await.unwrap();
        assert_eq!(d.len(), 1);
        // Dropped with the message in hand, unacknowledged.
        id
    };
    // Published while no node runs: the durable consumer keeps it.
    let nats = broker.connect().await;
    let while_down = nats.publish("shop", "jobs.b", b"b", &[]).await.unwrap();

    nats.subscribe(&c, &pattern("jobs.*")).await.unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 2 && started.elapsed() < EXPECT_WAIT {
        for d in nats.fetch(&c, 10, lease, EXPECT_WAIT).await.unwrap() {
            seen.push((d.message.id.clone(), d.attempt));
            nats.ack(&c, &d).await.unwrap();
        }
    }
    seen.sort();
    let mut expected = vec![(id, 2), (while_down, 1)];
    expected.sort();
    assert_eq!(seen, expected, "the unacked one again, and the new one");

    // A new pattern on restart moves the consumer to it.
    nats.subscribe(&c, &pattern("tasks.>")).await.unwrap();
    nats.publish("shop", "jobs.c", b"", &[]).await.unwrap();
    let new = nats.publish("shop", "tasks.x.y", b"", &[]).await.unwrap();
    let d = one(&nats, &c).await;
    assert_eq!(d.message.id, new);
    nats.ack(&c, &d).await.unwrap();
    none(&nats, &c).await;
}

/// Publishes 1,000 messages, then fetches and acks them the way the trigger
/// does (acks in parallel); prints the rates (`--nocapture` shows them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput() {
    const N: usize = 1000;
    const BATCH: usize = 100;
    let broker = Broker::new();
    let nats = std::sync::Arc::new(broker.connect().await);
    let c = consumer("fast");
    nats.subscribe(&c, &pattern("load")).await.unwrap();

    let start = Instant::now();
    for _ in 0..N {
        nats.publish("shop", "load", b"0123456789abcdef", &[])
            .await
            .unwrap();
    }
    let publish = start.elapsed();

    let start = Instant::now();
    let mut done = 0;
    while done < N {
        let batch = nats.fetch(&c, BATCH, LEASE, EXPECT_WAIT).await.unwrap();
        assert!(!batch.is_empty(), "stalled after {done}");
        let mut acks = Vec::new();
        for d in batch {
            let nats = nats.clone();
            let c = c.clone();
            acks.push(tokio::spawn(async move { nats.ack(&c, &d).await }));
        }
        for ack in acks {
            ack.await.unwrap().unwrap();
            done += 1;
        }
    }
    let consume = start.elapsed();
    let rate = |d: Duration| N as f64 / d.as_secs_f64();
    println!(
        "publish (sequential, each awaiting its ack): {:.0} msg/s; fetch {BATCH} + ack: {:.0} msg/s; end to end {:.0} msg/s",
        rate(publish),
        rate(consume),
        rate(publish + consume)
    );
    assert_eq!(nats.stats(&c).await.unwrap(), QueueStats::default());
}
