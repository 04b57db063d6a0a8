//! SQLite databases for functions, over real HTTP: `sql-probe` (nimbus-sdk,
//! `spin:sqlite@3.0.0`, WASI 0.2) runs statements sent as JSON, and
//! `spin-sqlite` (Spin's own SDK, `spin:sqlite@3.1.0`, WASI 0.3) shares the
//! same database unchanged.

use nimbus::node::{self, Listeners, NodeConfig};
use nimbus_tests::{TestApp, loopback, runtime, write_manifest};
use serde_json::{Value, json};
use std::path::Path;

const APP: &str = r#"
version = 1
[app]
name = "sql"

[sqlite.default]
migrations = "sql"

[sqlite.small]
max_size = "96KiB"

[functions.probe]
source = "guest:sql-probe"
routes = ["/sql/..."]
sqlite = ["default", "reports", "small"]
limits = { sql_timeout = "300ms", sql_rows = 100, sql_result_size = "64KiB" }

[functions.other]
source = "guest:sql-probe"
routes = ["/other/sql/..."]
sqlite = ["reports"]

[functions.kept]
source = "guest:sql-probe"
routes = ["/kept/sql/..."]
sqlite = ["default"]
instance_reuse = 1000

[functions.spin]
source = "guest:spin-sqlite"
routes = ["/spin-sql/..."]
sqlite = ["default"]
"#;

const ITEMS: &str = "CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    price REAL NOT NULL DEFAULT 0,
    note TEXT
);\n";

const ORDERS: &str = "CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    item INTEGER NOT NULL REFERENCES items(id),
    quantity INTEGER NOT NULL CHECK (quantity > 0)
);\n";

/// A folder holding the app's migrations, `sql/001_items.sql` and
/// `sql/002_orders.sql`.
fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sql")).unwrap();
    std::fs::write(dir.path().join("sql/001_items.sql"), ITEMS).unwrap();
    std::fs::write(dir.path().join("sql/002_orders.sql"), ORDERS).unwrap();
    dir
}

async fn start(dir: tempfile::TempDir) -> TestApp {
    TestApp::start_in(dir, APP, Default::default()).await
}

/// Runs `statements` (`(sql, params)`) through `path` in `mode`; the status
/// and the JSON answer.
async fn sql(app: &TestApp, path: &str, mode: &str, statements: &[(&str, Value)]) -> (u16, Value) {
    let statements: Vec<Value> = statements
        .iter()
        .map(|(sql, params)| json!({ "sql": sql, "params": params }))
        .collect();
    let response = app
        .client
        .post(app.url(path))
        .json(&json!({ "statements": statements, "mode": mode }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// One statement through the probe's `default` database; its rows, or a
/// panic with the error.
async fn rows(app: &TestApp, statement: &str, params: Value) -> Value {
    let (status, body) = sql(app, "/sql/default", "plain", &[(statement, params)]).await;
    assert_eq!(status, 200, "{statement}: {body}");
    body[0]["rows"].clone()
}

/// One failing statement: the status and the error message.
async fn fails(app: &TestApp, path: &str, statement: &str) -> (u16, String) {
    let (status, body) = sql(app, path, "plain", &[(statement, json!([]))]).await;
    assert_ne!(status, 200, "{statement} should fail: {body}");
    (
        status,
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_function_creates_reads_updates_and_deletes_rows() {
    let app = start(app_dir()).await;
    let (status, body) = sql(
        &app,
        "/sql/default",
        "plain",
        &[
            (
                "INSERT INTO items (name, price) VALUES (?, ?)",
                json!(["tea", 2.5]),
            ),
            (
                "INSERT INTO items (name, price, note) VALUES (?, ?, ?)",
                json!(["cake", 4, "lemon"]),
            ),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["last_insert_rowid"], 1);
    assert_eq!(body[1]["last_insert_rowid"], 2);
    assert_eq!(body[1]["changes"], 1);

    assert_eq!(
        rows(
            &app,
            "SELECT id, name, price, note FROM items ORDER BY id",
            json!([])
        )
        .await,
        json!([[1, "tea", 2.5, null], [2, "cake", 4.0, "lemon"]])
    );
    // Typed through `row.get::<T>(column)` in the guest.
    let typed: Value = app.get("/sql/default/typed/2").await.json().await.unwrap();
    assert_eq!(
        typed,
        json!({"id": 2, "name": "cake", "price": 4.0, "note": "lemon"})
    );
    let missing = app.get("/sql/default/typed/9").await;
    assert_eq!(missing.status(), 404);

    let (status, body) = sql(
        &app,
        "/sql/default",
        "plain",
        &[(
            "UPDATE items SET price = price * 2 WHERE name = ?",
            json!(["tea"]),
        )],
    )
    .await;
    assert_eq!((status, &body[0]["changes"]), (200, &json!(1)));
    assert_eq!(
        rows(
            &app,
            "SELECT price FROM items WHERE name = 'tea'",
            json!([])
        )
        .await,
        json!([[5.0]])
    );
    rows(&app, "DELETE FROM items WHERE id = ?", json!([1])).await;
    assert_eq!(
        rows(&app, "SELECT name FROM items", json!([])).await,
        json!([["cake"]])
    );

    // Every SQLite type both ways, and a blob parameter.
    assert_eq!(
        rows(
            &app,
            "SELECT ?, ?, ?, ?, length(?), typeof(?)",
            json!([null, -7, 0.25, "text", {"blob": "four"}, {"blob": "x"}])
        )
        .await,
        json!([[null, -7, 0.25, "text", 4, "blob"]])
    );
    assert_eq!(
        rows(&app, "SELECT zeroblob(3)", json!([])).await,
        json!([[{"blob": 3}]])
    );
}

#[tokio::test]
async fn sql_errors_and_constraints_reach_the_guest_as_errors() {
    let app = start(app_dir()).await;
    let (status, message) = fails(&app, "/sql/default", "SELEC 1").await;
    assert_eq!(status, 500);
    assert!(message.contains("syntax error"), "{message}");
    let (_, message) = fails(&app, "/sql/default", "SELECT * FROM nowhere").await;
    assert!(message.contains("no such table: nowhere"), "{message}");
    // Foreign keys are enforced.
    let (_, message) = fails(
        &app,
        "/sql/default",
        "INSERT INTO orders (item, quantity) VALUES (42, 1)",
    )
    .await;
    assert!(
        message.contains("FOREIGN KEY constraint failed"),
        "{message}"
    );
    let (_, message) = fails(&app, "/sql/default", "SELECT 1; SELECT 2").await;
    assert!(
        message.to_lowercase().contains("multiple statements"),
        "{message}"
    );
}

#[tokio::test]
async fn a_failed_transaction_and_an_unfinished_one_leave_nothing_written() {
    let app = start(app_dir()).await;
    rows(&app, "INSERT INTO items (name) VALUES ('tea')", json!([])).await;
    // The second insert breaks the UNIQUE name: the first is rolled back.
    let (status, body) = sql(
        &app,
        "/sql/default",
        "transaction",
        &[
            ("INSERT INTO items (name) VALUES ('cake')", json!([])),
            (
                "INSERT INTO orders (item, quantity) VALUES (1, 3)",
                json!([]),
            ),
            ("INSERT INTO items (name) VALUES ('tea')", json!([])),
        ],
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("UNIQUE constraint failed"),
        "{body}"
    );
    assert_eq!(
        rows(&app, "SELECT name FROM items", json!([])).await,
        json!([["tea"]])
    );
    assert_eq!(
        rows(&app, "SELECT count(*) FROM orders", json!([])).await,
        json!([[0]])
    );

    // A transaction the request never commits ends with it.
    let (status, body) = sql(
        &app,
        "/sql/default",
        "leave-open",
        &[("INSERT INTO items (name) VALUES ('scone')", json!([]))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rows(&app, "SELECT name FROM items", json!([])).await,
        json!([["tea"]])
    );
    // And its lock went with it: the next writer is not kept waiting.
    rows(&app, "INSERT INTO items (name) VALUES ('bun')", json!([])).await;

    // A committed transaction is kept whole.
    let (status, _) = sql(
        &app,
        "/sql/default",
        "transaction",
        &[
            ("INSERT INTO items (name) VALUES ('jam')", json!([])),
            (
                "INSERT INTO orders (item, quantity) VALUES (last_insert_rowid(), 2)",
                json!([]),
            ),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        rows(
            &app,
            "SELECT i.name, o.quantity FROM orders o JOIN items i ON i.id = o.item",
            json!([])
        )
        .await,
        json!([["jam", 2]])
    );
}

#[tokio::test]
async fn functions_see_only_the_databases_they_list() {
    let app = start(app_dir()).await;
    // `other` does not list `default`.
    let (status, body) = sql(
        &app,
        "/other/sql/default",
        "plain",
        &[("SELECT 1", json!([]))],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "access_denied");
    // Both list `reports`: one database.
    sql(
        &app,
        "/other/sql/reports",
        "plain",
        &[
            ("CREATE TABLE r (x)", json!([])),
            ("INSERT INTO r VALUES (7)", json!([])),
        ],
    )
    .await;
    let (status, body) = sql(
        &app,
        "/sql/reports",
        "plain",
        &[("SELECT x FROM r", json!([]))],
    )
    .await;
    assert_eq!((status, &body[0]["rows"]), (200, &json!([[7]])));
    // `default` and `reports` are separate files.
    let (_, message) = fails(&app, "/sql/default", "SELECT x FROM r").await;
    assert!(message.contains("no such table: r"), "{message}");

    // Two apps with the same database name never share it: another app
    // on the same state folder's layout gets a file of its own.
    let dir = app.stop().await;
    let databases = nimbus::backend::sqlite::Databases::new(&dir.path().join(".nimbus/sqlite"));
    assert_ne!(
        databases.file("sql", "default"),
        databases.file("shop", "default")
    );
    assert!(databases.file("sql", "default").is_file());
    assert!(!databases.file("shop", "default").exists());
}

#[tokio::test]
async fn a_guest_cannot_reach_other_files_or_change_the_host_s_settings() {
    let app = start(app_dir()).await;
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("stolen.db");
    for statement in [
        format!("ATTACH DATABASE '{}' AS x", target.display()),
        format!("VACUUM INTO '{}'", target.display()),
        "PRAGMA max_page_count = 1000000000".to_owned(),
        "PRAGMA journal_mode = delete".to_owned(),
        "PRAGMA foreign_keys = off".to_owned(),
        "PRAGMA writable_schema = on".to_owned(),
        "DELETE FROM _nimbus_migrations".to_owned(),
        "DROP TABLE _nimbus_migrations".to_owned(),
        "UPDATE _nimbus_migrations SET digest = 'x'".to_owned(),
    ] {
        let (status, message) = fails(&app, "/sql/default", &statement).await;
        assert_eq!(status, 500, "{statement}");
        assert!(!message.is_empty(), "{statement}");
    }
    assert!(
        !target.exists(),
        "a guest wrote a file outside its database"
    );
    // Reading the schema is allowed.
    let table = rows(&app, "PRAGMA table_info(items)", json!([])).await;
    assert_eq!(table.as_array().unwrap().len(), 4, "{table}");
}

#[tokio::test]
async fn statements_are_held_to_the_function_s_limits() {
    let app = start(app_dir()).await;
    // A statement that would run forever is stopped at `sql_timeout`.
    let started = std::time::Instant::now();
    let (status, message) = fails(
        &app,
        "/sql/default",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    )
    .await;
    assert_eq!(status, 500);
    assert!(message.contains("limits.sql_timeout"), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // Rows: 100 pass, 101 are refused.
    let count = |n: u32| {
        format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) SELECT x FROM c"
        )
    };
    assert_eq!(
        rows(&app, &count(100), json!([]))
            .await
            .as_array()
            .unwrap()
            .len(),
        100
    );
    let (_, message) = fails(&app, "/sql/default", &count(101)).await;
    assert!(
        message.contains("more than 100 rows (limits.sql_rows)"),
        "{message}"
    );
    // Bytes: one value over the 64 KiB result cap.
    let (_, message) = fails(&app, "/sql/default", "SELECT zeroblob(70000)").await;
    assert!(message.contains("limits.sql_result_size"), "{message}");

    // A database at its `max_size` refuses the write that would pass it.
    sql(
        &app,
        "/sql/small",
        "plain",
        &[("CREATE TABLE b (x BLOB)", json!([]))],
    )
    .await;
    let mut full = None;
    for _ in 0..20 {
        let (status, body) = sql(
            &app,
            "/sql/small",
            "plain",
            &[("INSERT INTO b VALUES (zeroblob(16000))", json!([]))],
        )
        .await;
        if status != 200 {
            full = Some((status, body));
            break;
        }
    }
    let (status, body) = full.expect("96 KiB fills up within 20 inserts of 16 kB");
    assert_eq!(
        (status, &body["error"]),
        (507, &json!("database_full")),
        "{body}"
    );
    // Still readable, and what fit is there.
    let (status, body) = sql(
        &app,
        "/sql/small",
        "plain",
        &[("SELECT count(*) FROM b", json!([]))],
    )
    .await;
    assert_eq!(status, 200);
    assert!(body[0]["rows"][0][0].as_i64().unwrap() >= 2, "{body}");
}

#[tokio::test]
async fn fifty_concurrent_writers_all_commit() {
    let app = start(app_dir()).await;
    // Through `other`, whose `sql_timeout` is the default: 50 transactions
    // queue for the write lock, each waiting within it.
    let (status, body) = sql(
        &app,
        "/other/sql/reports",
        "plain",
        &[
            (
                "CREATE TABLE items (name TEXT UNIQUE, price REAL NOT NULL DEFAULT 0)",
                json!([]),
            ),
            (
                "INSERT INTO items (name, price) VALUES ('counter', 0)",
                json!([]),
            ),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (client, url) = (app.client.clone(), app.url("/other/sql/reports"));
            tokio::spawn(async move {
                let body = json!({"mode": "transaction", "statements": [
                    {"sql": "UPDATE items SET price = price + 1 WHERE name = 'counter'", "params": []},
                    {"sql": "INSERT INTO items (name) VALUES (?)", "params": [format!("n{i}")]},
                ]});
                let response = client.post(url).json(&body).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.text().await.unwrap())
            })
        })
        .collect();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (_, body) = sql(
        &app,
        "/other/sql/reports",
        "plain",
        &[(
            "SELECT price, (SELECT count(*) FROM items) FROM items WHERE name = 'counter'",
            json!([]),
        )],
    )
    .await;
    assert_eq!(body[0]["rows"], json!([[50.0, 51]]));
}

#[tokio::test]
async fn migrations_apply_once_and_a_changed_one_stops_the_start() {
    let app = start(app_dir()).await;
    rows(&app, "INSERT INTO items (name) VALUES ('tea')", json!([])).await;
    assert_eq!(
        rows(
            &app,
            "SELECT name FROM _nimbus_migrations ORDER BY name",
            json!([])
        )
        .await,
        json!([["001_items.sql"], ["002_orders.sql"]])
    );
    let dir = app.stop().await;

    // A second start applies nothing again (the tables exist, so applying
    // would fail) and keeps the data; a new file is applied.
    std::fs::write(
        dir.path().join("sql/003_stock.sql"),
        "ALTER TABLE items ADD COLUMN stock INTEGER NOT NULL DEFAULT 0;\n",
    )
    .unwrap();
    let app = start(dir).await;
    assert_eq!(
        rows(&app, "SELECT name, stock FROM items", json!([])).await,
        json!([["tea", 0]])
    );
    assert_eq!(
        rows(&app, "SELECT count(*) FROM _nimbus_migrations", json!([])).await,
        json!([[3]])
    );
    let dir = app.stop().await;

    // An applied migration edited afterwards: the node does not start, and
    // the error names the file.
    std::fs::write(
        dir.path().join("sql/001_items.sql"),
        format!("{ITEMS}-- edited\n"),
    )
    .unwrap();
    let error = start_error(dir.path()).await;
    assert!(error.contains("001_items.sql"), "{error}");
    assert!(error.contains("has changed since"), "{error}");

    // A migration may not end the transaction they all run in.
    std::fs::write(dir.path().join("sql/001_items.sql"), ITEMS).unwrap();
    std::fs::write(
        dir.path().join("sql/004_commit.sql"),
        "CREATE TABLE early (x);\nCOMMIT;\n",
    )
    .unwrap();
    let error = start_error(dir.path()).await;
    assert!(
        error.contains("004_commit.sql") && error.contains("may not BEGIN, COMMIT"),
        "{error}"
    );
    std::fs::remove_file(dir.path().join("sql/004_commit.sql")).unwrap();

    // A failing new migration applies nothing of itself.
    std::fs::write(dir.path().join("sql/001_items.sql"), ITEMS).unwrap();
    std::fs::write(
        dir.path().join("sql/004_bad.sql"),
        "CREATE TABLE fine (x);\nCREATE TABLE broken (;\n",
    )
    .unwrap();
    let error = start_error(dir.path()).await;
    assert!(
        error.contains("004_bad.sql") && error.contains("none of the pending migrations"),
        "{error}"
    );
    std::fs::remove_file(dir.path().join("sql/004_bad.sql")).unwrap();
    let app = TestApp::start_in(dir, APP, Default::default()).await;
    let (_, message) = fails(&app, "/sql/default", "SELECT * FROM fine").await;
    assert!(message.contains("no such table: fine"), "{message}");
}

/// Starts the app in `dir` and returns why it failed to start.
async fn start_error(dir: &Path) -> String {
    let file = write_manifest(dir, APP);
    let manifest = nimbus::manifest::Manifest::load(&file).unwrap();
    let mut config = NodeConfig::new(manifest);
    config.runtime = Some(runtime());
    let listeners = Listeners::bind(loopback(), None).await.unwrap();
    match node::start(config, listeners, std::future::pending()).await {
        Ok(_) => panic!("the node started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_spin_sdk_component_uses_sqlite_unchanged() {
    let app = start(app_dir()).await;
    for name in ["tea", "cake"] {
        let response = app
            .client
            .post(app.url("/spin-sql/items"))
            .body(name)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let listed = app.get("/spin-sql/items").await;
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.text().await.unwrap(), "1 tea\n2 cake");
    // The same table through nimbus-sdk.
    assert_eq!(
        rows(&app, "SELECT name FROM items ORDER BY id", json!([])).await,
        json!([["tea"], ["cake"]])
    );
    let other = app.get("/spin-sql/other").await;
    assert_eq!(other.status(), 500);
    assert_eq!(other.text().await.unwrap(), "open: Error::AccessDenied");
}

#[tokio::test]
async fn a_cluster_refuses_an_app_with_sqlite() {
    let broker = nimbus_tests::Broker::cluster_unique();
    let dir = app_dir();
    let file = write_manifest(dir.path(), APP);
    let manifest = nimbus::manifest::Manifest::load(&file).unwrap();
    let mut config = NodeConfig::new(manifest);
    config.runtime = Some(runtime());
    let nimbus_tests::Broker::Cluster { name } = &broker else {
        unreachable!()
    };
    config.cluster = Some(node::Cluster::new(nimbus_tests::NATS_URL, name).unwrap());
    let listeners = Listeners::bind(loopback(), None).await.unwrap();
    let error = match node::start(config, listeners, std::future::pending()).await {
        Ok(_) => panic!("a cluster node started an app with SQLite"),
        Err(e) => e.to_string(),
    };
    broker.cleanup().await;
    assert!(error.contains("sqlite = ["), "{error}");
    assert!(error.contains("cluster"), "{error}");
    assert!(error.contains("keep the data in PostgreSQL"), "{error}");
}

#[tokio::test]
async fn a_reused_instance_carries_no_transaction_into_its_next_request() {
    let app = start(app_dir()).await;
    // `kept` begins a transaction, writes, and keeps the connection in a
    // global of its reused instance.
    let (status, body) = sql(
        &app,
        "/kept/sql/default",
        "leave-open-kept",
        &[("INSERT INTO items (name) VALUES ('held')", json!([]))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.idle("kept"), 1);
    // Rolled back when the request ended: not there, and no lock is held,
    // so another function writes at once.
    assert_eq!(
        rows(&app, "SELECT name FROM items", json!([])).await,
        json!([])
    );
    rows(&app, "INSERT INTO items (name) VALUES ('free')", json!([])).await;
    // The same instance's next request sees the committed row only.
    let (status, body) = sql(
        &app,
        "/kept/sql/default",
        "plain",
        &[("SELECT name FROM items", json!([]))],
    )
    .await;
    assert_eq!(
        (status, &body[0]["rows"]),
        (200, &json!([["free"]])),
        "{body}"
    );
}

#[tokio::test]
async fn an_instance_holds_a_bounded_number_of_connections() {
    let app = start(app_dir()).await;
    let opened = app.get("/sql/default/connections/16").await;
    assert_eq!(opened.status(), 200);
    let refused = app.get("/sql/default/connections/17").await;
    assert_eq!(refused.status(), 500);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("too many open connections"),
        "{body}"
    );
}

#[tokio::test]
async fn results_and_values_are_capped_before_they_are_made_and_a_capped_write_is_undone() {
    let app = start(app_dir()).await;
    // SQLite refuses to make a value past the cap, rather than allocating it.
    let (_, message) = fails(&app, "/sql/default", "SELECT length(randomblob(500000000))").await;
    assert!(message.contains("limits.sql_result_size"), "{message}");
    // 101 rows inserted with RETURNING: over sql_rows, so none is kept.
    let (_, message) = fails(
        &app,
        "/sql/default",
        "INSERT INTO items (name) SELECT 'n' || x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 101) SELECT x FROM c) RETURNING id",
    )
    .await;
    assert!(message.contains("limits.sql_rows"), "{message}");
    assert_eq!(
        rows(&app, "SELECT count(*) FROM items", json!([])).await,
        json!([[0]])
    );
    // TEMP objects would outlive the request on a pooled connection.
    for statement in [
        "CREATE TEMP TABLE scratch (x)",
        "CREATE TEMP VIEW items AS SELECT 1 AS id",
        "CREATE TRIGGER t AFTER INSERT ON _nimbus_migrations BEGIN SELECT 1; END",
    ] {
        let (status, _) = fails(&app, "/sql/default", statement).await;
        assert_eq!(status, 500, "{statement}");
    }
}
