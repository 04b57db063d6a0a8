//! Guest logs reach the host's tracing output with function and request id.

use nimbus_tests::{EVENTUALLY, TestApp, captured_logs, eventually};

const APP: &str = r#"
version = 1
[app]
name = "logs"

[functions.logger]
source = "guest:logger"
routes = ["/log"]
"#;

/// Asks the logger to log `msg` as request `request_id`.
async fn log(app: &TestApp, msg: &str, request_id: &str) {
    let response = app
        .client
        .get(app.url(&format!("/log?msg={msg}")))
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn sdk_logs_and_stdio_carry_function_and_request_id() {
    let logs = captured_logs();
    let app = TestApp::start(APP).await;
    log(&app, "hi", "log-req-42").await;
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

/// The messages of the stdout records logged for `request_id`, in order.
fn stdout_records(logs: &nimbus_tests::Logs, request_id: &str) -> Vec<String> {
    logs.lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| {
            let fields = &record["fields"];
            fields["request_id"] == request_id && fields["stream"] == "stdout"
        })
        .map(|record| {
            record["fields"]["message"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn one_line_through_several_handles_is_one_record_and_a_partial_line_is_kept() {
    let logs = captured_logs();
    let app = TestApp::start(APP).await;
    log(&app, "joined", "log-req-pieces").await;
    // The unfinished line is logged when the instance ends, which may be just
    // after the response.
    let records = eventually("the unfinished line to be logged", EVENTUALLY, || {
        let records = stdout_records(&logs, "log-req-pieces");
        async move { (records.len() >= 3).then_some(records) }
    })
    .await;
    assert_eq!(
        records,
        [
            "stdout: joined",
            "pieces: joined and more",
            "unfinished: joined"
        ],
        "one record per line of the instance's stdout"
    );
}
