//! Configuration: per-function values, templated from the host environment.

use nimbus_tests::{TestApp, json};

const APP: &str = r#"
version = 1
[app]
name = "config"

[functions.settings]
source = "guest:config-echo"
routes = ["/config", "/config/:key"]
[functions.settings.config]
currency = "EUR"
package = "pkg-{{ env.CARGO_PKG_NAME }}"
"#;

#[tokio::test]
async fn values_and_env_templates_reach_the_guest() {
    let app = TestApp::start(APP).await;
    assert_eq!(
        app.get("/config/currency").await.text().await.unwrap(),
        "EUR"
    );
    assert_eq!(
        app.get("/config/package").await.text().await.unwrap(),
        "pkg-nimbus-tests"
    );
    assert_eq!(
        json(app.get("/config").await).await,
        serde_json::json!({"currency": "EUR", "package": "pkg-nimbus-tests"})
    );
}

#[tokio::test]
async fn a_missing_key_is_a_typed_error() {
    let app = TestApp::start(APP).await;
    let response = app.get("/config/colour").await;
    assert_eq!(response.status(), 404);
    assert!(
        json(response).await["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
}
