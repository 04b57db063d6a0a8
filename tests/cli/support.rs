//! Helpers shared by the CLI tests: an app folder, the command, and a
//! running server that is killed if a test ends early.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nimbus_tests::eventually_blocking;

pub const NIMBUS: &str = env!("CARGO_BIN_EXE_nimbus");

/// A folder with a `nimbus.toml` of app `cli` and the given function tables;
/// `@name@` stands for the path of guest `name`.
pub fn app_dir(functions: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!("version = 1\n[app]\nname = \"cli\"\n{functions}");
    for (name, path) in nimbus_test_artifacts::GUESTS {
        text = text.replace(&format!("@{name}@"), &format!("{path:?}"));
    }
    std::fs::write(dir.path().join("nimbus.toml"), text).unwrap();
    dir
}

/// The `nimbus` command in `dir`, without NIMBUS_* settings from outside.
pub fn nimbus(dir: &Path) -> Command {
    let mut cmd = Command::new(NIMBUS);
    cmd.current_dir(dir).env_remove("RUST_BACKTRACE");
    for (k, _) in std::env::vars() {
        if k.starts_with("NIMBUS_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `nimbus up` in `dir` on free ports, public and admin.
pub fn up_command(dir: &Path) -> Command {
    let mut cmd = nimbus(dir);
    cmd.args([
        "up",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    cmd
}

/// Runs `test` to its end on a runtime of its own, for a blocking test.
pub fn block_on<F: std::future::Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test)
}

/// An HTTP client for loopback servers (no proxy from the environment).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `GET` `path` from `server`, blocking: the status and the body.
pub fn get(server: &Server, path: &str) -> (u16, String) {
    block_on(async {
        let r = client()
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

/// A running `nimbus up`, killed if the test ends early.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub admin: String,
}

impl Server {
    pub fn start(cmd: Command) -> Server {
        Server::start_with_stderr(cmd, Stdio::inherit())
    }

    /// Starts `cmd` with its stderr (the log) going to `stderr`.
    pub fn start_with_stderr(mut cmd: Command, stderr: impl Into<Stdio>) -> Server {
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(!url.ends_with(":0"), "the real port is printed: {url}");
        line.clear();
        stdout.read_line(&mut line).unwrap();
        let admin = line
            .trim()
            .strip_prefix("admin listening on ")
            .unwrap_or_else(|| panic!("unexpected second line: {line:?}"))
            .to_string();
        Server { child, url, admin }
    }

    pub fn signal(&mut self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn terminate(&mut self) {
        self.signal("-TERM");
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        eventually_blocking("nimbus to exit", limit, || self.child.try_wait().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL database of the test's own on the machine's server (`.ci/run`
/// starts it if it stopped; trust authentication), dropped with what it
/// holds when this is dropped.
pub struct PgDatabase {
    /// Its name.
    pub name: String,
    /// Its URL, as a manifest grants it.
    pub url: String,
}

/// The machine's PostgreSQL server, at its database `database`.
fn pg_url(database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{database}")
}

/// Runs `sql` (one or more statements) on `url`.
fn pg_run(url: &str, sql: &str) {
    crate::crash::runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} answers (`.ci/run` starts it): {e}"));
        tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
    });
}

impl PgDatabase {
    /// A new, empty database.
    pub fn create() -> PgDatabase {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("nimbus_cli_{}_{n}_{nanos}", std::process::id());
        pg_run(&pg_url("test"), &format!("CREATE DATABASE {name}"));
        PgDatabase {
            url: pg_url(&name),
            name,
        }
    }

    /// Runs `sql` in it.
    pub fn run(&self, sql: &str) {
        pg_run(&self.url, sql);
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        pg_run(
            &pg_url("test"),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}
