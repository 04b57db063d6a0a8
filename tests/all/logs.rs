//! Guest logs reach the host's tracing output with function and request id.

use nimbus_tests::{TestApp, captured_logs};

const APP: &str = r#"
version = 1
[app]
name = "logs"

[functions.logger]
source = "guest:logger"
routes = ["/log"]
"#;

#[tokio::test]
async fn sdk_logs_and_stdio_carry_function_and_request_id() {
    let logs = captured_logs();
    let app = TestApp::start(APP).await;
    let response = app
        .client
        .get(app.url("/log?msg=hi"))
        .header("x-request-id", "log-req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let lines: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("log-req-42"))
        .collect();
    for expected in ["sdk: hi", "stdout: hi", "stderr: hi"] {
        let line = lines
            .iter()
            .find(|l| l.contains(expected))
            .unwrap_or_else(|| panic!("no log line with {expected:?} in {lines:#?}"));
        assert!(line.contains(r#""function":"logger""#), "{line}");
    }
}
