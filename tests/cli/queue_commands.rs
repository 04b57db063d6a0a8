//! The operator's queue commands (`publish`, `dead-letters`, `queues`)
//! against a running `nimbus up`.

use crate::support::{Server, app_dir, nimbus, up_command};
use nimbus_tests::{EVENTUALLY, eventually_blocking};

const APP: &str = r#"
[functions.worker]
source = @queue-worker@
routes = ["/worker/..."]
kv = ["deliveries"]
queue = { topic = "jobs.*", max_attempts = 2, backoff = "50ms", concurrency = 8 }
"#;

#[test]
fn operators_publish_list_replay_and_purge_from_the_cli() {
    let dir = app_dir(APP);
    let server = Server::start(up_command(dir.path()));
    let admin = ["--admin", server.admin.as_str()];

    let out = nimbus(dir.path())
        .args(["publish", "jobs.cli", "--data", "fail on purpose"])
        .args(admin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("published "));

    let listing = eventually_blocking("a dead letter to appear", EVENTUALLY, || {
        let out = nimbus(dir.path())
            .args(["dead-letters", "list", "worker"])
            .args(admin)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("asked to fail").then_some(text)
    });
    assert!(
        listing.contains("jobs.cli") && listing.contains("attempts=2"),
        "{listing}"
    );

    let out = nimbus(dir.path())
        .args(["queues"])
        .args(admin)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("worker") && l.trim_end().ends_with('1')),
        "{table}"
    );

    let out = nimbus(dir.path())
        .args(["dead-letters", "purge", "worker"])
        .args(admin)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "purged 1 message(s)\n"
    );

    let out = nimbus(dir.path())
        .args(["publish", "not a topic!", "--data", "x"])
        .args(admin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid topic"));
}
