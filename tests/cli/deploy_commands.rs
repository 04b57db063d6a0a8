//! `nimbus deploy`, `ls`, `rollback`, `canary` and `rm` against a running
//! `nimbus up`, as an operator types them: real processes, real HTTP over
//! loopback, the token from the environment.

use crate::support::{Server, app_dir, get, nimbus, up_command};
use std::process::Output;
use std::time::Duration;

const TOKEN: &str = "t0ken-for-tests";
const OLD: &str = "Hello, world!\n";
const NEW: &str = "Hello from wstd!\n";

fn guest(name: &str) -> &'static str {
    nimbus_test_artifacts::GUESTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, path)| *path)
        .unwrap()
}

fn up(dir: &std::path::Path) -> Server {
    let mut cmd = up_command(dir);
    cmd.env("NIMBUS_ADMIN_TOKEN", TOKEN);
    Server::start(cmd)
}

/// Runs `nimbus ARGS --admin URL` with the token in the environment.
fn operator(dir: &std::path::Path, server: &Server, args: &[&str]) -> Output {
    nimbus(dir)
        .env("NIMBUS_ADMIN_TOKEN", TOKEN)
        .args(args)
        .args(["--admin", &server.admin])
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

fn hello(server: &Server) -> (u16, String) {
    get(server, "/hello")
}

#[test]
fn deploy_ls_rollback_canary_and_rm_drive_the_running_app() {
    let dir = app_dir("[functions.hello]\nsource = @hello@\nroutes = [\"GET /hello\"]\n");
    let d = dir.path();
    let mut server = up(d);
    assert_eq!(hello(&server), (200, OLD.into()));

    let out = ok(&operator(
        d,
        &server,
        &["deploy", "hello", guest("wstd-hello")],
    ));
    assert!(out.starts_with("hello: deploy: now "), "{out}");
    assert_eq!(hello(&server), (200, NEW.into()));

    let table = ok(&operator(d, &server, &["ls"]));
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in [
        "FUNCTION", "VERSION", "DEPLOYED", "CANARY", "HISTORY", "ROUTES",
    ] {
        assert!(header.contains(column), "{table}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with("hello "), "{table}");
    assert!(row.ends_with("GET /hello"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&operator(d, &server, &["ls", "--json"]))).unwrap();
    assert_eq!(json[0]["history"], 1);
    let deployed = json[0]["version"].as_str().unwrap().to_owned();
    assert!(row.contains(&deployed[..12]), "{table}");

    let out = ok(&operator(d, &server, &["rollback", "hello"]));
    assert!(out.starts_with("hello: rollback: now "), "{out}");
    assert!(out.contains(&format!("(was {})", &deployed[..12])), "{out}");
    assert_eq!(hello(&server), (200, OLD.into()));

    // A bad component: one line naming the problem; the old version serves on.
    let err = failed(&operator(
        d,
        &server,
        &["deploy", "hello", guest("not-http")],
    ));
    assert!(err.contains("422"), "{err}");
    assert!(
        err.contains("does not export `wasi:http/incoming-handler@0.2.x`"),
        "{err}"
    );
    assert_eq!(hello(&server), (200, OLD.into()));
    let err = failed(&operator(d, &server, &["deploy", "hello", "missing.wasm"]));
    assert!(err.contains("cannot read missing.wasm"), "{err}");

    // Without the token, or with a wrong one: refused.
    let out = nimbus(d)
        .args(["ls", "--admin", &server.admin])
        .output()
        .unwrap();
    assert!(failed(&out).contains("401"));
    let out = nimbus(d)
        .env("NIMBUS_ADMIN_TOKEN", "wrong")
        .args(["ls", "--admin", &server.admin])
        .output()
        .unwrap();
    assert!(failed(&out).contains("401"));

    // Canary: all traffic, abort, then promote.
    let out = ok(&operator(
        d,
        &server,
        &["canary", "hello", guest("wstd-hello"), "--percent", "100"],
    ));
    assert!(out.contains("takes 100% of the traffic"), "{out}");
    assert_eq!(hello(&server), (200, NEW.into()));
    let table = ok(&operator(d, &server, &["ls"]));
    assert!(table.contains(" 100%"), "{table}");
    ok(&operator(d, &server, &["canary", "abort", "hello"]));
    assert_eq!(hello(&server), (200, OLD.into()));
    let err = failed(&operator(d, &server, &["canary", "promote", "hello"]));
    assert!(err.contains("no canary running"), "{err}");
    ok(&operator(
        d,
        &server,
        &["canary", "hello", guest("wstd-hello"), "--percent", "30"],
    ));
    let out = ok(&operator(
        d,
        &server,
        &["canary", "hello", "--percent", "100"],
    ));
    assert!(out.contains("takes 100%"), "{out}");
    ok(&operator(d, &server, &["canary", "promote", "hello"]));
    assert_eq!(hello(&server), (200, NEW.into()));
    let err = failed(&operator(
        d,
        &server,
        &["canary", "hello", guest("hello"), "--percent", "250"],
    ));
    assert!(err.contains("0 to 100"), "{err}");

    // rm, and back.
    let out = ok(&operator(d, &server, &["rm", "hello"]));
    assert!(out.contains("removed"), "{out}");
    assert_eq!(hello(&server).0, 404);
    assert!(ok(&operator(d, &server, &["ls"])).contains("(removed)"));
    ok(&operator(d, &server, &["rollback", "hello"]));
    assert_eq!(hello(&server), (200, NEW.into()));

    // A new function, with its manifest entry from a file.
    std::fs::write(
        d.join("extra.toml"),
        "routes = [\"GET /extra\"]\n[limits]\ntimeout = \"5s\"\n",
    )
    .unwrap();
    let out = ok(&operator(
        d,
        &server,
        &[
            "deploy",
            "extra",
            guest("hello"),
            "--manifest",
            "extra.toml",
        ],
    ));
    assert!(out.starts_with("extra: added, version "), "{out}");
    assert_eq!(get(&server, "/extra"), (200, OLD.into()));
    let table = ok(&operator(d, &server, &["ls"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("extra ") && l.ends_with("GET /extra")),
        "{table}"
    );
    std::fs::write(d.join("clash.toml"), "routes = [\"GET /hello\"]\n").unwrap();
    let err = failed(&operator(
        d,
        &server,
        &[
            "deploy",
            "other",
            guest("hello"),
            "--manifest",
            "clash.toml",
        ],
    ));
    assert!(err.contains("matches the same requests"), "{err}");

    // A restart keeps the deployed version (state in .nimbus beside the manifest).
    server.terminate();
    assert!(server.wait(Duration::from_secs(10)).success());
    let server = up(d);
    assert_eq!(hello(&server), (200, NEW.into()));
    assert_eq!(get(&server, "/extra"), (200, OLD.into()));
    assert!(d.join(".nimbus/deploy/deployments.json").is_file());
}
