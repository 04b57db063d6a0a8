//! Standard wasi:http components built with third-party toolchains run unchanged.

use nimbus_tests::TestApp;

const APP: &str = r#"
version = 1
[app]
name = "guests"

[functions.plain]
source = "guest:hello"
routes = ["/plain"]
[functions.plain.env]
GREETING = "Howdy"

[functions.wstd]
source = "guest:wstd-hello"
routes = ["/wstd"]
"#;

#[tokio::test]
async fn a_plain_wasip2_guest_answers_and_sees_granted_env() {
    let app = TestApp::start(APP).await;
    let response = app.get("/plain").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "Howdy, world!\n");
}

#[tokio::test]
async fn a_wstd_guest_answers() {
    let app = TestApp::start(APP).await;
    let response = app.get("/wstd").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "Hello from wstd!\n");
}
