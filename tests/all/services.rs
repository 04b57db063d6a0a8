//! Service calls: `http://<function>.internal/` dispatched in-process, only
//! to listed services, with the request id carried along.

use nimbus_tests::{TestApp, json};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const APP: &str = r#"
version = 1
[app]
name = "services"

[functions.caller]
source = "guest:caller"
routes = ["/call/..."]
services = ["echo", "caller"]

[functions.stranger]
source = "guest:caller"
routes = ["/stranger/call/..."]

[functions.echo]
source = "guest:echo"
"#;

#[tokio::test]
async fn a_listed_service_is_called_in_process_with_the_request_id() {
    let app = TestApp::start(APP).await;
    let response = app
        .client
        .post(app.url("/call/echo/orders/7?x=1"))
        .header("x-request-id", "svc-req-1")
        .header("traceparent", TRACEPARENT)
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "svc-req-1");
    let echo = json(response).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path_with_query"], "/orders/7?x=1");
    assert_eq!(echo["body"], "payload");
    let headers = &echo["headers"];
    assert_eq!(headers["x-request-id"], "svc-req-1");
    // The callee runs in the same trace, as a span of its own.
    let traceparent = headers["traceparent"].as_str().unwrap();
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "not a new span: {traceparent}"
    );
    assert_eq!(headers["x-nimbus-caller"], "caller");
    assert_eq!(headers["x-nimbus-function"], "echo");
    // echo has no routes of its own, so it takes every path.
    assert_eq!(headers["x-nimbus-route"], "/...");
}

#[tokio::test]
async fn an_unlisted_service_is_refused() {
    let app = TestApp::start(APP).await;
    let response = app.get("/stranger/call/echo/x").await;
    assert_eq!(response.status(), 502);
    assert!(
        json(response).await["message"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied")
    );
}

#[tokio::test]
async fn a_cycle_is_stopped() {
    let app = TestApp::start(APP).await;
    // caller -> caller: the second hop would re-enter a function already in the chain.
    let response = app.get("/call/caller/call/echo/x").await;
    assert_eq!(response.status(), 502);
    assert!(
        json(response).await["message"]
            .as_str()
            .unwrap()
            .contains("LoopDetected")
    );
}
