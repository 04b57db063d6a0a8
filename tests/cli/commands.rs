//! `nimbus check`, `up` and `build`: what each prints, its exit status, its
//! signals, its flags and environment variables, its logs and metrics.

use crate::support::{Server, app_dir, block_on, client, get, nimbus, up_command};
use nimbus_tests::{EVENTUALLY, eventually};
use std::time::Duration;

#[test]
fn check_passes_a_good_app_and_names_the_problem_in_a_bad_one() {
    let dir = app_dir("[functions.hello]\nsource = @hello@\nroutes = [\"GET /\"]\n");
    let out = nimbus(dir.path()).arg("check").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: app `cli`: 1 function(s), 1 route(s)\n  hello: exports wasi:http/incoming-handler@0.2.12\n"
    );

    let dir =
        app_dir("[functions.hello]\nsource = @hello@\nroutes = [\"GET /\"]\ncolour = \"blue\"\n");
    let out = nimbus(dir.path()).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("unknown field `colour`"), "{stderr}");
}

#[test]
fn up_prints_its_address_serves_and_stops_gracefully_on_sigterm() {
    let dir = app_dir(
        "[functions.hello]\nsource = @hello@\nroutes = [\"GET /hello/:name\"]\n\
         [functions.sleeper]\nsource = @sleeper@\nroutes = [\"/sleep\"]\n",
    );
    let mut server = Server::start(up_command(dir.path()));
    assert_eq!(get(&server, "/hello/cli"), (200, "Hello, cli!\n".into()));

    block_on(async {
        let client = client();

        // SIGTERM while a request is in flight: it still completes.
        let slow = tokio::spawn(client.get(format!("{}/sleep?ms=800", server.url)).send());
        let sleeper = format!("{}/v1/functions/sleeper", server.admin);
        eventually("the slow request to be in flight", EVENTUALLY, || async {
            let answer: serde_json::Value =
                client.get(&sleeper).send().await.ok()?.json().await.ok()?;
            (answer["in_flight"] == 1).then_some(())
        })
        .await;
        server.terminate();
        let slow = slow.await.unwrap().expect("in-flight request finished");
        assert_eq!(slow.status(), 200);
    });
    let status = server.wait(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    // The compile cache went into .nimbus/ beside the manifest.
    assert!(dir.path().join(".nimbus/cache").is_dir());
}

#[test]
fn a_sigterm_as_soon_as_the_address_is_printed_is_a_graceful_stop() {
    // An orchestrator may stop a server the moment it is up: the signal
    // handlers are in place before the address is printed, so the process
    // exits 0 rather than being killed by the signal's default action.
    let dir = app_dir("[functions.hello]\nsource = @hello@\nroutes = [\"GET /\"]\n");
    for _ in 0..3 {
        let mut server = Server::start(up_command(dir.path()));
        server.terminate();
        let status = server.wait(Duration::from_secs(10));
        assert!(status.success(), "exit status {status}");
    }
}

#[test]
fn the_access_log_has_one_json_line_per_request() {
    let dir = app_dir("[functions.hello]\nsource = @hello@\nroutes = [\"GET /hello/:name\"]\n");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = up_command(dir.path());
    cmd.args(["--log-format", "json"]);
    let mut server = Server::start_with_stderr(cmd, log.reopen().unwrap());
    let generated = block_on(async {
        let client = client();
        let ok = client
            .get(format!("{}/hello/log", server.url))
            .header("x-request-id", "id-with-\"quote\"")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let missing = client
            .get(format!("{}/nope", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        missing.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned()
    });
    server.terminate();
    assert!(server.wait(Duration::from_secs(10)).success());

    let text = std::fs::read_to_string(log.path()).unwrap();
    let access: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .filter(|v: &serde_json::Value| v["target"] == "nimbus::access")
        .collect();
    assert_eq!(access.len(), 2, "{text}");
    let fields = &access[0]["fields"];
    assert_eq!(access[0]["level"], "INFO");
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], "/hello/log");
    assert_eq!(fields["route"], "/hello/:name");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["function"], "hello");
    assert_eq!(fields["request_id"], "id-with-\"quote\"");
    assert!(fields["duration_us"].as_u64().is_some(), "{fields}");
    let fields = &access[1]["fields"];
    assert_eq!(fields["status"], 404);
    assert_eq!(fields["route"], "-");
    assert_eq!(fields["request_id"], generated.as_str());
}

#[test]
fn flags_can_come_from_nimbus_environment_variables() {
    let dir = app_dir("[functions.hello]\nsource = @hello@\nroutes = [\"GET /\"]\n");
    let state = tempfile::tempdir().unwrap();
    let mut cmd = nimbus(dir.path());
    cmd.arg("up")
        .env("NIMBUS_LISTEN", "127.0.0.1:0")
        .env("NIMBUS_ADMIN_LISTEN", "127.0.0.1:0")
        .env("NIMBUS_STATE_DIR", state.path());
    let mut server = Server::start(cmd);
    assert!(
        server.admin.starts_with("http://127.0.0.1:"),
        "{}",
        server.admin
    );
    server.terminate();
    assert!(server.wait(Duration::from_secs(10)).success());
    assert!(state.path().join("cache").is_dir());
}

#[test]
fn build_runs_each_build_command_once_with_progress() {
    let dir = app_dir(
        "[functions.hello]\nsource = @hello@\nbuild = \"echo built >> marker.txt\"\n\
         [functions.again]\nsource = @hello@\nbuild = \"echo built >> marker.txt\"\n",
    );
    let out = nimbus(dir.path()).arg("build").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("[1/1] building `again`, `hello`: echo built >> marker.txt"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("marker.txt")).unwrap(),
        "built\n"
    );

    let dir = app_dir("[functions.hello]\nsource = @hello@\nbuild = \"exit 3\"\n");
    let out = nimbus(dir.path()).arg("build").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: building `hello`: `exit 3` failed (exit status: 3)"),
        "{stderr}"
    );
}

#[test]
fn the_admin_api_beyond_loopback_needs_a_token() {
    let dir = app_dir("[functions.hello]\nsource = @hello@\nroutes = [\"GET /\"]\n");
    let out = nimbus(dir.path())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("beyond loopback without a token"),
        "{stderr}"
    );
}

/// Parses OpenMetrics text with the Python `prometheus_client` parser (an
/// independent implementation) and returns every sample as JSON.
fn parse_with_prometheus_client(text: &str) -> Vec<serde_json::Value> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the metrics (or is missing: pip install prometheus_client):\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_parse_with_a_real_prometheus_parser_and_count_requests() {
    let dir = app_dir("[functions.hello]\nsource = @hello@\nroutes = [\"GET /hello/:name\"]\n");
    let server = Server::start(up_command(dir.path()));
    let text = block_on(async {
        let client = client();
        for _ in 0..3 {
            let r = client
                .get(format!("{}/hello/m", server.url))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let r = client
            .get(format!("{}/nope", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        client
            .get(format!("{}/metrics", server.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let samples = parse_with_prometheus_client(&text);
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .and_then(|s| s["value"].as_f64())
    };
    let ok = [
        ("function", "hello"),
        ("route", "/hello/:name"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(
        value("nimbus_http_requests_total", &ok),
        Some(3.0),
        "{text}"
    );
    let missing = [("function", "-"), ("status", "404")];
    assert_eq!(
        value("nimbus_http_requests_total", &missing),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            "nimbus_http_request_duration_seconds_count",
            &[("function", "hello")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            "nimbus_instantiate_duration_seconds_count",
            &[("function", "hello")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value("nimbus_instances_in_flight", &[("function", "hello")]),
        Some(0.0)
    );
    // What each invocation cost: time in the guest, its instance's memory.
    let hello = [("function", "hello")];
    assert_eq!(
        value("nimbus_guest_duration_seconds_count", &hello),
        Some(3.0)
    );
    assert!(value("nimbus_guest_duration_seconds_sum", &hello).unwrap() > 0.0);
    assert_eq!(value("nimbus_memory_peak_bytes_count", &hello), Some(3.0));
    let peak = value("nimbus_memory_peak_bytes_sum", &hello).unwrap() / 3.0;
    assert!(
        (65536.0..64.0 * 1048576.0).contains(&peak),
        "at least one page, at most the limit: {peak}"
    );
    // The default pool, when the pooling allocator could reserve its space.
    let capacity = value("nimbus_pool_capacity_instances", &[]);
    assert!(
        capacity == Some(1000.0) || capacity == Some(0.0),
        "{capacity:?}"
    );
}

#[test]
fn stats_count_each_functions_requests_failures_and_memory() {
    let dir = app_dir(
        "[functions.hello]\nsource = @hello@\nroutes = [\"GET /hello/:name\"]\n\
         [functions.boom]\nsource = @panicker@\nroutes = [\"GET /boom\"]\n",
    );
    let server = Server::start(up_command(dir.path()));
    block_on(async {
        let client = client();
        for (path, status, times) in [("/hello/s", 200, 4), ("/boom", 500, 2)] {
            for _ in 0..times {
                let r = client.get(format!("{}{path}", server.url)).send().await;
                assert_eq!(r.unwrap().status(), status, "{path}");
            }
        }
        let get = |query: &'static str| {
            let client = client.clone();
            let url = format!("{}/v1/stats{query}", server.admin);
            async move {
                let r = client.get(url).send().await.unwrap();
                (
                    r.status().as_u16(),
                    r.json::<serde_json::Value>().await.unwrap(),
                )
            }
        };
        let (status, stats) = get("?window=60").await;
        assert_eq!(status, 200, "{stats}");
        assert_eq!(stats["window_seconds"], 60);
        let function = |id: &str| {
            stats["functions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["function"] == id)
                .unwrap_or_else(|| panic!("no {id} in {stats}"))
                .clone()
        };
        let (hello, boom) = (function("hello"), function("boom"));
        assert_eq!(
            (&hello["count"], &hello["errors"]),
            (&4.into(), &0.into()),
            "{hello}"
        );
        assert_eq!(
            (&boom["count"], &boom["errors"]),
            (&2.into(), &2.into()),
            "{boom}"
        );
        assert_eq!(boom["error_rate"], 1.0);
        let (p50, p99) = (
            hello["p50_ms"].as_f64().unwrap(),
            hello["p99_ms"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p99 >= p50, "{hello}");
        assert!(
            hello["peak_memory_bytes"].as_u64().unwrap() >= 65536,
            "{hello}"
        );
        assert_eq!(hello["in_flight"], 0);
        let seconds = hello["seconds"].as_array().unwrap();
        assert_eq!(seconds.len(), 60);
        let counted: u64 = seconds.iter().map(|s| s["count"].as_u64().unwrap()).sum();
        assert_eq!(counted, 4, "the series adds up to the count");
        // The default window is a minute.
        assert_eq!(get("").await.1["window_seconds"], 60);
        for bad in ["?window=0", "?window=301", "?window=soon"] {
            let (status, error) = get(bad).await;
            assert_eq!(status, 400, "{bad}: {error}");
            assert_eq!(error["error"], "invalid_window");
        }
    });
}
