//! A component built with Spin's own Rust SDK (spin-sdk 7 from crates.io, a
//! `wasi:http@0.3.0` component) runs unchanged: Spin's key-value
//! (`spin:key-value@3.0.0`) over the same stores and grants as
//! `wasi:keyvalue`, Spin's variables (`spin:variables@3.0.0`) from the
//! function's `config`.

use nimbus_tests::TestApp;

const APP: &str = r#"
version = 1
[app]
name = "spin"

[functions.spin]
source = "guest:spin-kv"
routes = ["/spin/..."]
kv = ["default"]
[functions.spin.config]
greeting = "hello from a variable"

[functions.ungranted]
source = "guest:spin-kv"
routes = ["/other/spin/..."]

[functions.sdk]
source = "guest:kv-store"
routes = ["/kv/..."]
kv = ["default"]
"#;

async fn text(app: &TestApp, path: &str) -> (u16, String) {
    let response = app.get(path).await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_spin_sdk_component_reads_its_variables() {
    let app = TestApp::start(APP).await;
    assert_eq!(
        text(&app, "/spin/var/greeting").await,
        (200, "hello from a variable".into())
    );
    let (status, body) = text(&app, "/spin/var/colour").await;
    assert_eq!(status, 404);
    assert!(body.starts_with("Error::Undefined("), "{body}");
    let (status, body) = text(&app, "/spin/var/Greeting").await;
    assert_eq!(status, 404);
    assert!(body.starts_with("Error::InvalidName("), "{body}");
}

#[tokio::test]
async fn a_spin_sdk_component_shares_key_value_with_a_nimbus_function() {
    let app = TestApp::start(APP).await;
    let client = &app.client;
    assert_eq!(text(&app, "/spin/kv/fruit").await, (404, "unset".into()));
    let put = client
        .put(app.url("/spin/kv/fruit"))
        .body("apple")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(text(&app, "/spin/kv/fruit").await, (200, "apple".into()));
    // The same store through wasi:keyvalue and nimbus-sdk, both ways.
    assert_eq!(text(&app, "/kv/default/fruit").await, (200, "apple".into()));
    let put = client
        .put(app.url("/kv/default/veg"))
        .body("leek")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert_eq!(text(&app, "/spin/keys").await, (200, "fruit\nveg".into()));
    assert_eq!(text(&app, "/spin/exists/veg").await, (200, "true".into()));
    let delete = client.delete(app.url("/spin/kv/veg")).send().await.unwrap();
    assert_eq!(delete.status(), 200);
    assert_eq!(text(&app, "/spin/exists/veg").await, (200, "false".into()));

    // A function without the grant is refused the store.
    let (status, body) = text(&app, "/other/spin/kv/fruit").await;
    assert_eq!(status, 500);
    assert_eq!(body, "open: Error::AccessDenied");
}
