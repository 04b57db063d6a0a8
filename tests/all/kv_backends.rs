//! The key-value backend trait, one suite run on each backend: the embedded
//! store (`kv_backends::embedded::NAME`) and JetStream KV buckets on the real
//! NATS server (`kv_backends::nats::NAME`, each test with buckets of its own,
//! deleted when it ends). Both must answer alike, keys the NATS server would
//! refuse as they are included.

use nimbus::backend::nats::NatsBackend;
use nimbus::backend::{BackendError, KeyPage, KvBackend, Namespace};
use nimbus_tests::{Broker, NATS_URL};
use std::sync::Arc;

macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = nimbus::backend::embedded::EmbeddedBackend::open(
                        &dir.path().join("state.redb"),
                    )
                    .unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let broker = nimbus_tests::Broker::cluster_unique();
                    super::$name(super::nats(&broker).await).await;
                    broker.cleanup().await;
                }
            )*
        }
    };
}

per_backend!(
    set_get_exists_delete,
    keys_nats_refuses_as_they_are_still_work,
    prefix_listing_comes_in_pages,
    stores_and_apps_are_isolated,
    increment_counts_from_zero_and_refuses_non_numbers,
    compare_and_swap_checks_the_current_value,
    concurrent_increments_and_swaps_lose_no_update,
);

async fn nats(broker: &Broker) -> Arc<dyn KvBackend> {
    let Broker::Cluster { name } = broker else {
        unreachable!("a cluster broker")
    };
    Arc::new(
        NatsBackend::connect(NATS_URL, name)
            .await
            .unwrap_or_else(|e| panic!("{e} (.ci/run starts nats-server -js)")),
    )
}

fn ns(app: &str, store: &str) -> Namespace {
    Namespace {
        app: app.into(),
        store: store.into(),
    }
}

async fn text(kv: &Arc<dyn KvBackend>, ns: &Namespace, key: &str) -> Option<String> {
    kv.get(ns, key)
        .await
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

async fn set_get_exists_delete(kv: Arc<dyn KvBackend>) {
    let data = ns("shop", "data");
    assert_eq!(kv.get(&data, "greeting").await.unwrap(), None);
    assert!(!kv.exists(&data, "greeting").await.unwrap());
    kv.set(&data, "greeting", b"hello").await.unwrap();
    assert_eq!(text(&kv, &data, "greeting").await.as_deref(), Some("hello"));
    assert!(kv.exists(&data, "greeting").await.unwrap());
    kv.set(&data, "greeting", b"hello again").await.unwrap();
    assert_eq!(
        text(&kv, &data, "greeting").await.as_deref(),
        Some("hello again")
    );
    // An empty value is a value.
    kv.set(&data, "empty", b"").await.unwrap();
    assert_eq!(kv.get(&data, "empty").await.unwrap(), Some(Vec::new()));
    assert!(kv.exists(&data, "empty").await.unwrap());

    kv.delete(&data, "greeting").await.unwrap();
    assert_eq!(kv.get(&data, "greeting").await.unwrap(), None);
    assert!(!kv.exists(&data, "greeting").await.unwrap());
    // Deleting what is not there is not an error.
    kv.delete(&data, "greeting").await.unwrap();
    kv.delete(&data, "never-set").await.unwrap();
    // A deleted key can be set again.
    kv.set(&data, "greeting", b"back").await.unwrap();
    assert_eq!(text(&kv, &data, "greeting").await.as_deref(), Some("back"));
}

/// NATS keys allow only `[-/_=.A-Za-z0-9]`, and no `.` at either end: the
/// NATS backend encodes the rest, so every one of these round-trips, and
/// lists back as written.
async fn keys_nats_refuses_as_they_are_still_work(kv: Arc<dyn KvBackend>) {
    let data = ns("shop", "data");
    let keys = [
        "user.42",
        ".leading-dot",
        "trailing-dot.",
        "a..b",
        "with space",
        "star*",
        "greater>",
        "equals=sign",
        "=41",
        "ünïcödé ✓",
        "tab\there",
        "slash/and-dash_under",
        "UPPER.lower",
    ];
    for (i, key) in keys.iter().enumerate() {
        kv.set(&data, key, format!("value {i}").as_bytes())
            .await
            .unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            text(&kv, &data, key).await,
            Some(format!("value {i}")),
            "{key:?}"
        );
    }
    let page = kv.list(&data, "", None, 100).await.unwrap();
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort();
    assert_eq!(page.keys, sorted);
    assert!(!page.more);
    // Prefixes made of escaped characters match as written.
    let page = kv.list(&data, "user.", None, 100).await.unwrap();
    assert_eq!(page.keys, ["user.42"]);
    let page = kv.list(&data, "=", None, 100).await.unwrap();
    assert_eq!(page.keys, ["=41"]);
    let page = kv.list(&data, "ü", None, 100).await.unwrap();
    assert_eq!(page.keys, ["ünïcödé ✓"]);
    kv.delete(&data, "user.42").await.unwrap();
    assert_eq!(kv.get(&data, "user.42").await.unwrap(), None);
}

async fn prefix_listing_comes_in_pages(kv: Arc<dyn KvBackend>) {
    let data = ns("shop", "data");
    // Written out of order: a page is in key order whatever the write order.
    for i in (0..25).rev() {
        kv.set(&data, &format!("p-{i:02}"), b"x").await.unwrap();
    }
    for key in ["q-1", "p", "o-9"] {
        kv.set(&data, key, b"x").await.unwrap();
    }
    kv.delete(&data, "p-13").await.unwrap();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let KeyPage { keys, more } = kv.list(&data, "p-", after.as_deref(), 10).await.unwrap();
        pages += 1;
        assert!(keys.len() <= 10);
        after = keys.last().cloned();
        seen.extend(keys);
        if !more {
            break;
        }
    }
    let expected: Vec<String> = (0..25)
        .filter(|&i| i != 13)
        .map(|i| format!("p-{i:02}"))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    // An exact page has no more after it.
    let page = kv.list(&data, "p-2", None, 5).await.unwrap();
    assert_eq!(page.keys, ["p-20", "p-21", "p-22", "p-23", "p-24"]);
    assert!(!page.more);
    // No match is an empty page.
    let page = kv.list(&data, "zzz", None, 10).await.unwrap();
    assert_eq!(
        page,
        KeyPage {
            keys: Vec::new(),
            more: false
        }
    );
}

async fn stores_and_apps_are_isolated(kv: Arc<dyn KvBackend>) {
    let (a, b, other_app) = (ns("shop", "a"), ns("shop", "b"), ns("blog", "a"));
    kv.set(&a, "key", b"shop a").await.unwrap();
    kv.set(&b, "key", b"shop b").await.unwrap();
    assert_eq!(text(&kv, &other_app, "key").await, None);
    kv.set(&other_app, "key", b"blog a").await.unwrap();
    assert_eq!(text(&kv, &a, "key").await.as_deref(), Some("shop a"));
    assert_eq!(text(&kv, &b, "key").await.as_deref(), Some("shop b"));
    assert_eq!(
        text(&kv, &other_app, "key").await.as_deref(),
        Some("blog a")
    );
    kv.delete(&a, "key").await.unwrap();
    assert_eq!(text(&kv, &b, "key").await.as_deref(), Some("shop b"));
    assert_eq!(kv.list(&b, "", None, 10).await.unwrap().keys, ["key"]);
    assert!(kv.list(&a, "", None, 10).await.unwrap().keys.is_empty());
}

async fn increment_counts_from_zero_and_refuses_non_numbers(kv: Arc<dyn KvBackend>) {
    let counters = ns("shop", "counters");
    assert_eq!(kv.increment(&counters, "hits", 1).await.unwrap(), 1);
    assert_eq!(kv.increment(&counters, "hits", 41).await.unwrap(), 42);
    assert_eq!(kv.increment(&counters, "hits", -50).await.unwrap(), -8);
    assert_eq!(text(&kv, &counters, "hits").await.as_deref(), Some("-8"));
    // A deleted counter starts from zero again.
    kv.delete(&counters, "hits").await.unwrap();
    assert_eq!(kv.increment(&counters, "hits", 5).await.unwrap(), 5);

    kv.set(&counters, "word", b"not a number").await.unwrap();
    let refused = kv.increment(&counters, "word", 1).await.unwrap_err();
    assert!(
        matches!(&refused, BackendError::Invalid(m) if m.contains("not a decimal integer")),
        "{refused:?}"
    );
    assert_eq!(
        text(&kv, &counters, "word").await.as_deref(),
        Some("not a number")
    );
    kv.set(&counters, "max", i64::MAX.to_string().as_bytes())
        .await
        .unwrap();
    let overflow = kv.increment(&counters, "max", 1).await.unwrap_err();
    assert!(
        matches!(&overflow, BackendError::Invalid(m) if m.contains("overflows")),
        "{overflow:?}"
    );
}

async fn compare_and_swap_checks_the_current_value(kv: Arc<dyn KvBackend>) {
    let data = ns("shop", "data");
    // `None`: only if still unset.
    assert!(kv.compare_and_swap(&data, "k", None, b"v1").await.unwrap());
    assert!(!kv.compare_and_swap(&data, "k", None, b"v2").await.unwrap());
    assert_eq!(text(&kv, &data, "k").await.as_deref(), Some("v1"));
    assert!(
        !kv.compare_and_swap(&data, "k", Some(b"wrong"), b"v2")
            .await
            .unwrap()
    );
    assert!(
        kv.compare_and_swap(&data, "k", Some(b"v1"), b"v2")
            .await
            .unwrap()
    );
    assert_eq!(text(&kv, &data, "k").await.as_deref(), Some("v2"));
    // A deleted key is unset again.
    kv.delete(&data, "k").await.unwrap();
    assert!(
        !kv.compare_and_swap(&data, "k", Some(b"v2"), b"v3")
            .await
            .unwrap()
    );
    assert!(kv.compare_and_swap(&data, "k", None, b"v3").await.unwrap());
    assert_eq!(text(&kv, &data, "k").await.as_deref(), Some("v3"));
}

/// Many writers on one key at once, as several nodes of a cluster would
/// be: every increment counts, and a compare-and-swap loop (read, swap,
/// retry on a lost race) counts every one of its writers once.
async fn concurrent_increments_and_swaps_lose_no_update(kv: Arc<dyn KvBackend>) {
    let counters = ns("shop", "counters");
    let increments = (0..60).map(|_| {
        let kv = kv.clone();
        let counters = counters.clone();
        tokio::spawn(async move { kv.increment(&counters, "hits", 1).await.unwrap() })
    });
    let mut results = Vec::new();
    for task in increments {
        results.push(task.await.unwrap());
    }
    results.sort_unstable();
    assert_eq!(results, (1..=60).collect::<Vec<i64>>());

    let swaps = (0..30).map(|_| {
        let kv = kv.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            loop {
                let current = kv.get(&counters, "swaps").await.unwrap();
                let n: u64 = current
                    .as_deref()
                    .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
                let next = (n + 1).to_string();
                if kv
                    .compare_and_swap(&counters, "swaps", current.as_deref(), next.as_bytes())
                    .await
                    .unwrap()
                {
                    return;
                }
            }
        })
    });
    for task in swaps {
        task.await.unwrap();
    }
    assert_eq!(text(&kv, &counters, "swaps").await.as_deref(), Some("30"));
}
