//! `wasi:keyvalue@0.2.0-draft` (wasmtime's version), from a guest whose
//! bindings wit-bindgen made from the draft, over the same stores and grants
//! as 0.2.0-draft2 (nimbus-sdk's).

use nimbus_tests::{TestApp, json};
use serde_json::json;

const APP: &str = r#"
version = 1
[app]
name = "kv-draft"

[functions.draft]
source = "guest:kv-draft"
routes = ["/kvd", "/kvd/...", "POST /kvd-batch"]
kv = ["data"]
limits = { kv_value_size = "1KiB" }

[functions.sdk]
source = "guest:kv-store"
routes = ["/kv/..."]
kv = ["data"]
"#;

#[tokio::test]
async fn a_draft_guest_shares_stores_and_grants_with_the_draft2_sdk() {
    let app = TestApp::start(APP).await;
    let client = &app.client;

    // Written through the draft, read through draft2, and back.
    let set = client
        .put(app.url("/kvd/greeting"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(
        app.get("/kv/data/greeting").await.text().await.unwrap(),
        "hello"
    );
    let put = client
        .put(app.url("/kv/data/other"))
        .body("from draft2")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert_eq!(
        json(app.get("/kvd/other").await).await,
        json!({"value": "from draft2"})
    );
    assert_eq!(
        json(app.get("/kvd/unset").await).await,
        json!({"value": null})
    );

    // increment: u64 in this draft, the same counter as draft2's.
    let incr = client
        .post(app.url("/kvd/hits?incr=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(incr).await, json!({"value": 5}));
    let incr = client
        .post(app.url("/kv/data/hits/incr?by=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(incr).await["value"], 7);

    // delete, then exists.
    let deleted = client.delete(app.url("/kvd/other")).send().await.unwrap();
    assert_eq!(
        json(deleted).await,
        json!({"deleted": "other", "exists": false})
    );

    // A store not granted is access-denied, as through draft2.
    let denied = app.get("/kvd/x?store=secret").await;
    assert_eq!(denied.status(), 500);
    assert_eq!(json(denied).await, json!({"error": "access-denied"}));

    // Batch: set-many, get-many (none for a key never set), delete-many.
    let batch = client
        .post(app.url("/kvd-batch"))
        .body("a=1\nb=2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(
        json(batch).await,
        json!({"pairs": [["a", "1"], ["b", "2"], null]})
    );
    assert_eq!(json(app.get("/kvd/a").await).await, json!({"value": null}));

    // A value over the limit fails with the same message as draft2's.
    let big = "v".repeat(1025);
    let refused = client
        .put(app.url("/kvd/big"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 500);
    let error = json(refused).await["error"].as_str().unwrap().to_owned();
    assert!(
        error.starts_with("other: too large: the value is"),
        "{error}"
    );
}

#[tokio::test]
async fn draft_listing_pages_by_count_through_every_key() {
    let app = TestApp::start(APP).await;
    // More keys than one page of the host (1,000), so the cursor is used;
    // set in one `set-many`.
    let keys: Vec<String> = (0..1_500).map(|i| format!("k{i:05}")).collect();
    let body: String = keys.iter().map(|k| format!("{k}=x\n")).collect();
    let set = app
        .client
        .post(app.url("/kvd-batch?keep=1"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let mut listed = Vec::new();
    let mut cursor: Option<u64> = None;
    let mut pages = 0;
    loop {
        let path = match cursor {
            Some(c) => format!("/kvd?cursor={c}"),
            None => "/kvd".to_owned(),
        };
        let page = json(app.get(&path).await).await;
        pages += 1;
        listed.extend(
            page["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_owned()),
        );
        match page["cursor"].as_u64() {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10, "listing does not end: {page}");
    }
    assert_eq!(listed, keys);
    assert_eq!(pages, 2);
}
