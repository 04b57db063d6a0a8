//! Test a function as its callers see it: [`App::up`] serves the app with
//! `nimbus up --build` on a free port, with a fresh state folder, and sends
//! it real HTTP requests; dropping the [`App`] stops the server. Compiled
//! components are kept where `nimbus up` keeps them (`.nimbus/cache` in the
//! app's folder, or `NIMBUS_CACHE_DIR`), so only a changed component is
//! compiled again.
//!
//! Enable the `testing` feature in `[dev-dependencies]` (native builds only):
//!
//! ```toml
//! [dev-dependencies]
//! nimbus-sdk = { version = "0.1", features = ["testing"] }
//! ```
//!
//! ```no_run
//! use nimbus_sdk::testing::App;
//!
//! let app = App::up(env!("CARGO_MANIFEST_DIR"));
//! let reply = app.get("/hello/ada");
//! assert_eq!(reply.status, 200);
//! assert_eq!(reply.body, "Hello, ada! (visit 1)\n");
//! ```
//!
//! The server is the `nimbus` command on `PATH`, or the one the `NIMBUS`
//! environment variable names. Its log goes to the test's stderr: warnings
//! and errors only, unless `NIMBUS_LOG` says otherwise (`NIMBUS_LOG=info`
//! adds a line per request).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The environment variable naming the `nimbus` executable to run.
pub const NIMBUS_ENV: &str = "NIMBUS";

/// A running `nimbus up` of one app; stopped when dropped.
pub struct App {
    child: Child,
    url: String,
    agent: ureq::Agent,
    /// The state folder (key-value stores, queues), removed with the app.
    _state: tempfile::TempDir,
}

/// An answer: its status, headers and body (as text, lossily).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code, e.g. `200`.
    pub status: u16,
    /// The headers, names in lowercase, in the order they came.
    pub headers: Vec<(String, String)>,
    /// The body, as UTF-8 (invalid bytes replaced).
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (any case), if the answer has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The compile cache a test uses: `NIMBUS_CACHE_DIR`, else the one `nimbus
/// up` keeps in the app's `.nimbus` folder, so a component that `nimbus up`
/// or an earlier test compiled starts at once.
fn cache_dir(dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("NIMBUS_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let app = if dir.is_file() {
        dir.parent().unwrap_or(Path::new("."))
    } else {
        dir
    };
    app.join(".nimbus").join("cache")
}

impl App {
    /// Builds and serves the app whose `nimbus.toml` is in `dir` (or is
    /// `dir`), and waits until it listens.
    ///
    /// # Panics
    ///
    /// If `nimbus` cannot be run, or exits before it listens (a build that
    /// fails, a bad manifest); the message says which, and the server's log
    /// is on stderr.
    pub fn up(dir: impl AsRef<Path>) -> App {
        let dir = dir.as_ref();
        let nimbus = std::env::var_os(NIMBUS_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("nimbus"));
        let state = tempfile::Builder::new()
            .prefix("nimbus-test-")
            .tempdir()
            .expect("a temporary state folder");
        let mut child = Command::new(&nimbus)
            .arg("up")
            .arg(dir)
            .args(["--build", "--listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state.path())
            .arg("--cache-dir")
            .arg(cache_dir(dir))
            .env(
                "NIMBUS_LOG",
                std::env::var("NIMBUS_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run `{}`: {err}; put nimbus on PATH or name it with {NIMBUS_ENV}=/path/to/nimbus",
                    nimbus.display()
                )
            });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            panic!(
                "`nimbus up {}` did not start ({status}; read {read:?}): its log above says why",
                dir.display()
            );
        };
        let url = url.to_owned();
        // Keep reading stdout, so the server never blocks writing to it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stdout.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        App {
            child,
            url,
            agent,
            _state: state,
        }
    }

    /// The app's base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Reply {
        self.answer(path, self.agent.get(self.url_of(path)).call())
    }

    /// `POST path` with `body`.
    pub fn post(&self, path: &str, body: impl AsRef<[u8]>) -> Reply {
        self.answer(path, self.agent.post(self.url_of(path)).send(body.as_ref()))
    }

    /// `method path` with `body` (empty for none) and `headers`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl AsRef<[u8]>,
    ) -> Reply {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url_of(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.as_ref().to_vec())
            .unwrap_or_else(|err| panic!("{method} {path}: not a valid request: {err}"));
        self.answer(path, self.agent.run(request))
    }

    fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn answer(
        &self,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Reply {
        let mut response = response.unwrap_or_else(|err| panic!("{path}: no answer: {err}"));
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let body = response
            .body_mut()
            .read_to_vec()
            .unwrap_or_else(|err| panic!("{path}: cannot read the body: {err}"));
        Reply {
            status: response.status().as_u16(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
