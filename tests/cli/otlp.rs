//! OpenTelemetry export against an independent receiver
//! (`tests/otlp/receiver.py`, built on the `opentelemetry-proto` package):
//! a request through a two-function service chain arrives as one trace,
//! each span the child of its caller with the invocation's attributes and
//! the guest's log records as events; with the receiver gone, requests
//! still succeed and the dropped-span counter moves; an HTTPS collector is
//! trusted through the certificate it is given, and refused without it.

use crate::support::{Server, app_dir, block_on, client, up_command};
use nimbus_tests::eventually;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The receiver, killed when dropped.
struct Receiver {
    child: Child,
    url: String,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::with_args(&[], "http")
    }

    /// The receiver run with `args`, reached over `scheme`.
    fn with_args(args: &[&Path], scheme: &str) -> Receiver {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/otlp/receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().strip_prefix("listening on ").unwrap_or_else(|| {
            panic!("the receiver did not start (pip install opentelemetry-proto; .ci/run does): {line:?}")
        });
        Receiver {
            url: format!("{scheme}://127.0.0.1:{port}"),
            child,
        }
    }

    async fn spans(&self, client: &reqwest::Client) -> Vec<Value> {
        let spans = client.get(format!("{}/spans", self.url)).send().await;
        spans.unwrap().json().await.unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A counter's value in the Prometheus text of `admin`'s `/metrics`.
async fn counter(client: &reqwest::Client, admin: &str, name: &str) -> f64 {
    let text = client.get(format!("{admin}/metrics")).send().await.unwrap();
    let text = text.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

#[test]
fn a_service_chain_is_one_trace_and_a_lost_collector_costs_no_request() {
    let receiver = Receiver::start();
    let dir = app_dir(
        "[functions.caller]\nsource = @caller@\nroutes = [\"/call/...\"]\nservices = [\"logger\"]\n\
         [functions.logger]\nsource = @logger@\nroutes = [\"GET /log\"]\n",
    );
    let mut up = up_command(dir.path());
    up.args(["--otlp-endpoint", &receiver.url])
        .env("NIMBUS_LOG", "warn");
    let server = Server::start(up);
    block_on(async {
        let client = client();
        let response = client
            .get(format!("{}/call/logger/log?msg=traced", server.url))
            .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
            .header("x-request-id", "otlp-chain-1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "logged\n");

        let spans = eventually(
            "both spans at the receiver",
            Duration::from_secs(20),
            || async {
                let spans: Vec<Value> = receiver
                    .spans(&client)
                    .await
                    .into_iter()
                    .filter(|s| s["trace_id"] == TRACE_ID)
                    .collect();
                (spans.len() >= 2).then_some(spans)
            },
        )
        .await;
        assert_eq!(spans.len(), 2, "one span per invocation: {spans:#?}");
        let by_function = |f: &str| {
            spans
                .iter()
                .find(|s| attribute(s, "nimbus.function") == f)
                .unwrap_or_else(|| panic!("no span of {f}: {spans:#?}"))
        };
        let (caller, logger) = (by_function("caller"), by_function("logger"));

        // The caller's span is the child of the client's, the callee's of the caller's.
        assert_eq!(caller["parent_span_id"], CLIENT_SPAN);
        assert_eq!(logger["parent_span_id"], caller["span_id"]);
        assert_ne!(caller["span_id"], logger["span_id"]);
        for span in [caller, logger] {
            assert_eq!(span["kind"], 2, "server spans: {span}");
            assert_eq!(span["resource"]["service.name"], "cli");
            assert_eq!(span["scope"], "nimbus");
            assert_eq!(attribute(span, "http.request.method"), "GET");
            assert_eq!(attribute(span, "http.response.status_code"), 200);
            assert_eq!(attribute(span, "nimbus.request_id"), "otlp-chain-1");
            let version = attribute(span, "nimbus.version").as_str().unwrap();
            assert_eq!(version.len(), 64, "the version's digest: {version}");
            assert!(span["end_unix_nano"].as_u64() >= span["start_unix_nano"].as_u64());
        }
        assert_eq!(caller["name"], "GET /call/...");
        assert_eq!(attribute(caller, "http.route"), "/call/...");
        assert_eq!(attribute(caller, "url.path"), "/call/logger/log");
        assert_eq!(logger["name"], "GET /log");
        assert_eq!(attribute(logger, "nimbus.caller"), "caller");
        // The guest's log records are the events of its span.
        let messages: Vec<&str> = logger["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["attributes"]["log.message"].as_str())
            .collect();
        for line in ["sdk: traced", "stdout: traced", "stderr: traced"] {
            assert!(messages.contains(&line), "{line:?} in {messages:?}");
        }
        // The span ended before the guest could tell its unfinished line.
        assert!(caller["events"].as_array().unwrap().is_empty(), "{caller}");

        // The collector goes away: requests go on, spans are dropped and counted.
        drop(receiver);
        let dropped = "nimbus_otlp_spans_dropped_total";
        let before = counter(&client, &server.admin, dropped).await;
        for i in 0..20 {
            let response = client
                .get(format!("{}/call/logger/log?msg=lost{i}", server.url))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "request {i} without a collector");
        }
        let after = eventually("dropped spans counted", Duration::from_secs(30), || async {
            let now = counter(&client, &server.admin, dropped).await;
            (now >= before + 40.0).then_some(now)
        })
        .await;
        assert!(
            after >= before + 40.0,
            "40 spans of 20 requests: {before} -> {after}"
        );
    });
}

/// A CA of the test's own and a certificate it signed for 127.0.0.1, made
/// with `openssl` in `dir`: (the CA's certificate, the server's, its key).
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Nimbus test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn an_https_collector_is_trusted_through_the_certificate_it_is_given() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, server_cert, server_key) = test_ca(certs.path());
    let receiver = Receiver::with_args(&[Path::new("--tls"), &server_cert, &server_key], "https");
    let ca_pem = std::fs::read(&ca).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .build()
        .unwrap();
    let dir = app_dir("[functions.logger]\nsource = @logger@\nroutes = [\"GET /log\"]\n");
    let start = |certificate: Option<&Path>| {
        let mut up = up_command(dir.path());
        up.args(["--otlp-endpoint", &receiver.url])
            .env("NIMBUS_LOG", "error")
            .env_remove("OTEL_EXPORTER_OTLP_CERTIFICATE");
        if let Some(path) = certificate {
            // OpenTelemetry's own variable for it.
            up.env("OTEL_EXPORTER_OTLP_CERTIFICATE", path);
        }
        Server::start(up)
    };
    const TRUSTED: &str = "0af7651916cd43dd8448eb211c80319c";
    const REFUSED: &str = "5b8efff798038103d269b633813fc60c";
    let server = start(Some(&ca));
    block_on(async {
        traced(&server.url, TRUSTED).await;
        let span = eventually(
            "the span at the HTTPS receiver",
            Duration::from_secs(20),
            || async {
                let spans = receiver.spans(&trusting).await;
                spans.into_iter().find(|s| s["trace_id"] == TRUSTED)
            },
        )
        .await;
        assert_eq!(span["parent_span_id"], CLIENT_SPAN);
        assert_eq!(attribute(&span, "nimbus.function"), "logger");
    });
    drop(server);

    // Without the CA, the receiver's certificate is refused: the span is
    // dropped and counted, and the request is answered all the same.
    let server = start(None);
    block_on(async {
        traced(&server.url, REFUSED).await;
        let client = client();
        eventually(
            "the refused span counted",
            Duration::from_secs(20),
            || async {
                let dropped =
                    counter(&client, &server.admin, "nimbus_otlp_spans_dropped_total").await;
                (dropped >= 1.0).then_some(())
            },
        )
        .await;
        let spans = receiver.spans(&trusting).await;
        assert!(spans.iter().all(|s| s["trace_id"] != REFUSED), "{spans:#?}");
    });
}

/// Sends one traced request of trace `trace` to the logger at `url`.
async fn traced(url: &str, trace: &str) {
    let response = client()
        .get(format!("{url}/log?msg=tls"))
        .header("traceparent", format!("00-{trace}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
