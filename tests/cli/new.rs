//! `nimbus new`: each template made into a temporary folder outside the
//! repository, served by `nimbus up --build` as its README says, answering
//! as its README shows, and passing its own test (`cargo test`, Python's
//! `unittest`, `npm test`).

use crate::readme::{Live, console_steps};
use crate::support::{NIMBUS, Server, nimbus, up_command};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The templates `nimbus new --list` must show, in order.
const TEMPLATES: [&str; 4] = ["http-rust", "queue-rust", "http-python", "http-js"];

/// One cargo target folder for every generated app, kept between runs
/// beside the tests' own: the apps share their dependencies (nimbus-sdk and
/// what it needs), so only the first build of a run compiles them. Each app
/// gets a `target` link to it, so its manifest's `target/...` still holds.
pub(crate) fn shared_target() -> PathBuf {
    let profile = Path::new(NIMBUS).parent().expect("target/<profile>");
    profile.parent().expect("target").join("templates")
}

/// `cargo` in `dir` building into `shared_target()` and nowhere else the
/// tests' environment points to.
pub(crate) fn cargo_env(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env("CARGO_TARGET_DIR", shared_target())
}

/// `nimbus new TEMPLATE NAME --path <tmp>/NAME`: the folder it made.
pub(crate) fn generate(template: &str, name: &str, parent: &Path) -> PathBuf {
    let app = parent.join(name);
    let out = nimbus(parent)
        .args(["new", template, name, "--path"])
        .arg(&app)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nimbus new {template} {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("nimbus up --build"), "{printed}");
    if app.join("Cargo.toml").exists() {
        std::fs::create_dir_all(shared_target()).unwrap();
        std::os::unix::fs::symlink(shared_target(), app.join("target")).unwrap();
    }
    app
}

/// The command that runs a generated app's own test, and what its output
/// says when every test passed.
fn own_test(template: &str) -> (Command, &'static str) {
    match template {
        "http-python" => {
            let mut test = Command::new("python3");
            test.args(["-m", "unittest", "discover", "-s", "tests"]);
            (test, "Ran 2 tests")
        }
        "http-js" => {
            let mut test = Command::new("npm");
            test.arg("test");
            (test, "# pass 2")
        }
        _ => {
            let mut test = Command::new(env!("CARGO"));
            test.arg("test");
            cargo_env(&mut test);
            (test, "test result: ok. 1 passed")
        }
    }
}

/// Every file `nimbus new` wrote, but the WIT (copied as it is) and the
/// shared target folder's link.
fn written_files(app: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![app.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap();
            if name == "target" || name == "wit" {
                continue;
            }
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Makes `template` as app `name` and replays its README's sessions against
/// `nimbus up --build` in the new folder; then runs its own test.
fn serves_as_its_readme_shows(template: &str, name: &str) {
    let parent = tempfile::tempdir().unwrap();
    let app = generate(template, name, parent.path());
    let files = written_files(&app);
    assert!(files.len() >= 5, "{template}: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("{{"),
            "{template}: {} has a placeholder left",
            file.display()
        );
    }
    // One compile cache for both servers: the app's own test starts from
    // what the first one compiled (a Python or JavaScript component holds
    // a whole interpreter).
    let cache = parent.path().join("cache");

    let log = parent.path().join("nimbus.log");
    let mut up = up_command(&app);
    up.arg("--build").env("NIMBUS_CACHE_DIR", &cache);
    cargo_env(&mut up);
    let server = Server::start_with_stderr(up, std::fs::File::create(&log).unwrap());
    let readme = std::fs::read_to_string(app.join("README.md")).unwrap();
    let file = format!("{template}/README.md");
    let steps = console_steps(&file, &readme);
    assert!(!steps.is_empty(), "{file} shows no console session");
    Live::attach(&file, &steps, server, log, &app).run();

    let (mut test, passed) = own_test(template);
    let out = test
        .current_dir(&app)
        .env("NIMBUS", NIMBUS)
        .env("NIMBUS_CACHE_DIR", &cache)
        .output()
        .unwrap();
    // unittest reports on stderr, cargo and node on stdout.
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{template}: its own test failed:\n{printed}"
    );
    assert!(printed.contains(passed), "{template}: {printed}");
}

#[test]
fn http_rust_serves_as_its_readme_shows_and_passes_its_test() {
    serves_as_its_readme_shows("http-rust", "greeter");
}

#[test]
fn queue_rust_serves_as_its_readme_shows_and_passes_its_test() {
    serves_as_its_readme_shows("queue-rust", "tally");
}

#[test]
fn http_python_serves_as_its_readme_shows_and_passes_its_test() {
    serves_as_its_readme_shows("http-python", "greeter-py");
}

#[test]
fn http_js_serves_as_its_readme_shows_and_passes_its_test() {
    serves_as_its_readme_shows("http-js", "greeter-js");
}

#[test]
fn list_names_every_template() {
    let out = nimbus(Path::new("."))
        .args(["new", "--list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = printed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(names, TEMPLATES, "{printed}");
}

#[test]
fn a_bad_name_a_taken_folder_or_no_sdk_is_an_error_and_writes_nothing() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::create_dir(parent.path().join("taken")).unwrap();
    std::fs::write(parent.path().join("taken/keep.txt"), "mine").unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["http-rust", "Hello"],
            "must start with a lowercase letter",
        ),
        (&["http-rust", "my_app"], "`my_app` cannot name an app"),
        (&["http-rust", "self"], "reserved name in Rust"),
        (&["http-rust", "taken"], "`taken` already exists"),
        (&["rust-http", "fine"], "no template `rust-http`"),
        (
            &["http-rust", "fine", "--sdk", "/nonexistent/guest-sdk"],
            "cannot find the nimbus-sdk crate at `/nonexistent/guest-sdk`",
        ),
    ];
    for (args, message) in cases {
        let out = nimbus(parent.path())
            .arg("new")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(stderr.contains("nothing was written"), "{args:?}: {stderr}");
    }
    let mut left: Vec<String> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["taken"], "only what was there before");
    assert_eq!(
        std::fs::read_to_string(parent.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );
}

/// What `nimbus.Database` and `Postgres` answer in each of the next two
/// tests' apps, for the second request (`bob`'s): the rows of every type,
/// the rowid, the changes, and the refusal of a database the function does
/// not list; from PostgreSQL, its rows (a numeric, a jsonb, a timestamp)
/// and the count `execute` returned.
fn sqlite_expected() -> serde_json::Value {
    serde_json::json!({
        "rows": [
            {"id": 1, "body": "ada", "n": 1.5, "b": "xy", "z": null},
            {"id": 2, "body": "bob", "n": 1.5, "b": "xy", "z": null},
        ],
        "id": 2,
        "changes": 1,
        "denied": "AccessDenied",
        "pg": [
            {"id": 1, "body": "ada", "price": "2.50", "extra": {"by": "ada"}, "at": "2026-12-03T17:45:09"},
            {"id": 2, "body": "bob", "price": "2.50", "extra": {"by": "bob"}, "at": "2026-12-03T17:45:09"},
        ],
        "pg_changed": 1,
    })
}

/// Makes `template` as app `name`, grants it the SQLite database `notes`
/// (with a migration) and a PostgreSQL database `pgnotes` of the test's
/// own (with a table `notes`), replaces its handler `file` with `handler`,
/// serves it with `nimbus up --build`, sends `/hello/ada` and `/hello/bob`,
/// and returns the second answer.
fn serve_with_sqlite(template: &str, name: &str, file: &str, handler: &str) -> serde_json::Value {
    let pg = crate::support::PgDatabase::create();
    pg.run(
        "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL, price numeric(6, 2), extra jsonb, at timestamp)",
    );
    let parent = tempfile::tempdir().unwrap();
    let app = generate(template, name, parent.path());
    let manifest = std::fs::read_to_string(app.join("nimbus.toml")).unwrap();
    let grant = format!("kv = [\"{name}\"]");
    assert!(manifest.contains(&grant), "{manifest}");
    let manifest = manifest.replace(
        &grant,
        &format!(
            "{grant}\nsqlite = [\"notes\"]\npostgres = {{ pgnotes = \"{}\" }}",
            pg.url
        ),
    );
    std::fs::write(
        app.join("nimbus.toml"),
        format!("{manifest}\n[sqlite.notes]\nmigrations = \"notes.sql\"\n"),
    )
    .unwrap();
    std::fs::write(
        app.join("notes.sql"),
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, n REAL, b BLOB);\n",
    )
    .unwrap();
    std::fs::write(app.join(file), handler).unwrap();
    let mut up = up_command(&app);
    up.arg("--build")
        .env("NIMBUS_CACHE_DIR", parent.path().join("cache"));
    let server = Server::start(up);
    let get = |name: &str| -> serde_json::Value {
        crate::crash::runtime().block_on(async {
            reqwest::get(format!("{}/hello/{name}", server.url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    get("ada");
    get("bob")
}

/// The Python template's `nimbus.Database` and `nimbus.Postgres` over granted databases.
#[test]
fn the_python_template_s_helpers_use_granted_sqlite_and_postgres_databases() {
    let answer = serve_with_sqlite(
        "http-python",
        "notes-py",
        "app.py",
        r#"import nimbus

import datetime
import decimal

def hello(request):
    pg = nimbus.Postgres.open("pgnotes")
    name = request.params["name"]
    pg.query(
        "INSERT INTO notes (body, price, extra, at) VALUES ($1, $2, $3, $4) RETURNING id",
        [name, decimal.Decimal("2.50"), {"by": name}, datetime.datetime(2026, 12, 3, 17, 45, 9)],
    )
    pg_changed = pg.execute("UPDATE notes SET body = body WHERE body = $1", [name])
    pg_rows = [
        {**r, "price": str(r["price"]), "at": r["at"].isoformat()}
        for r in pg.query("SELECT id, body, price, extra, at FROM notes ORDER BY id")
    ]
    db = nimbus.Database.open("notes")
    db.execute("INSERT INTO notes (body, n, b) VALUES (?, ?, ?)", [request.params["name"], 1.5, b"xy"])
    rows = db.execute("SELECT id, body, n, b, NULL AS z FROM notes ORDER BY id")
    try:
        nimbus.Database.open("other")
        denied = "opened"
    except nimbus.Error as e:
        denied = str(e)
    rows = [{k: (v.decode() if isinstance(v, bytes) else v) for k, v in r.items()} for r in rows]
    return nimbus.Response.json({"rows": rows, "id": db.last_insert_rowid(), "changes": db.changes(), "denied": denied, "pg": pg_rows, "pg_changed": pg_changed})

IncomingHandler = nimbus.http_handler(hello)
"#,
    );
    assert_eq!(answer, sqlite_expected());
}

/// The JavaScript template's `Database` and `Postgres` over granted databases.
#[test]
fn the_javascript_template_s_helpers_use_granted_sqlite_and_postgres_databases() {
    let answer = serve_with_sqlite(
        "http-js",
        "notes-js",
        "app.js",
        r#"import { Database, Postgres, serve } from "./nimbus.js";

serve(async (request, { params }) => {
  const pg = Postgres.open("pgnotes");
  pg.query("INSERT INTO notes (body, price, extra, at) VALUES ($1, $2, $3, $4) RETURNING id", [
    params.name,
    "2.50",
    { by: params.name },
    new Date(Date.UTC(2026, 11, 3, 17, 45, 9)),
  ]);
  const pgChanged = pg.execute("UPDATE notes SET body = body WHERE body = $1", [params.name]);
  const pgRows = pg
    .query("SELECT id, body, price, extra, at FROM notes ORDER BY id")
    .map((row) => ({ ...row, at: row.at.toISOString().slice(0, 19) }));
  const db = Database.open("notes");
  db.execute("INSERT INTO notes (body, n, b) VALUES (?, ?, ?)", [params.name, 1.5, new TextEncoder().encode("xy")]);
  const rows = db
    .execute("SELECT id, body, n, b, NULL AS z FROM notes ORDER BY id")
    .map((row) => ({ ...row, b: new TextDecoder().decode(row.b) }));
  let denied = "opened";
  try {
    Database.open("other");
  } catch (error) {
    denied = error.payload?.tag === "access-denied" ? "AccessDenied" : String(error);
  }
  return Response.json({ rows, id: db.lastInsertRowid(), changes: db.changes(), denied, pg: pgRows, pg_changed: pgChanged });
});
"#,
    );
    assert_eq!(answer, sqlite_expected());
}
