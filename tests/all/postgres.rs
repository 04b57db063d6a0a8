//! PostgreSQL databases for functions, over real HTTP against the machine's
//! PostgreSQL server, each test in databases of its own (made for it and
//! dropped after): `pg-probe` (nimbus-sdk, `spin:postgres@4.1.0`, WASI 0.2)
//! runs statements sent as JSON, and `spin-postgres` (Spin's own SDK,
//! `spin:postgres@4.2.0`, WASI 0.3) shares the same database unchanged.

use nimbus_tests::{Broker, PgDatabase, TestApp, eventually};
use serde_json::{Value, json};
use std::time::Duration;

/// The app, with `{MAIN}` (the database `probe`, `kept` and `spin` are
/// granted as `main`) and `{SECOND}` (the one `other` is granted as `main`)
/// to fill in.
const APP: &str = r#"
version = 1
[app]
name = "pg"

[functions.probe]
source = "guest:pg-probe"
routes = ["/pg/..."]
postgres = { main = { url = "{MAIN}", pool = 8 } }
limits = { sql_timeout = "500ms", sql_rows = 100, sql_result_size = "64KiB" }

[functions.other]
source = "guest:pg-probe"
routes = ["/other/pg/..."]
postgres = { main = "{SECOND}" }

[functions.single]
source = "guest:pg-probe"
routes = ["/single/pg/..."]
postgres = { main = { url = "{MAIN}", pool = 1 } }

[functions.none]
source = "guest:pg-probe"
routes = ["/none/pg/..."]

[functions.kept]
source = "guest:pg-probe"
routes = ["/kept/pg/..."]
postgres = { main = "{MAIN}" }
instance_reuse = 1000

[functions.spin]
source = "guest:spin-postgres"
routes = ["/spin-pg/..."]
postgres = { main = "{MAIN}" }
config = { db_url = "{MAIN}", other_url = "{SECOND}" }
"#;

const ITEMS: &str = "CREATE TABLE items (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    price numeric(10, 2) NOT NULL DEFAULT 0 CHECK (price >= 0),
    note text
)";

/// The app on two fresh databases, with `items` made in the first.
struct Pg {
    app: TestApp,
    main: PgDatabase,
    second: PgDatabase,
}

async fn start() -> Pg {
    let main = PgDatabase::create().await;
    let second = PgDatabase::create().await;
    main.connect().await.batch_execute(ITEMS).await.unwrap();
    let manifest = APP
        .replace("{MAIN}", &main.url)
        .replace("{SECOND}", &second.url);
    let app = TestApp::start(&manifest).await;
    Pg { app, main, second }
}

/// Runs `statements` (`(sql, params)`, each a `query`, or an `execute` when
/// its SQL starts with `!`) through `path` in `mode`: the status, the
/// `x-sqlstate` header, and the JSON answer.
async fn sql(
    app: &TestApp,
    path: &str,
    mode: &str,
    statements: &[(&str, Value)],
) -> (u16, Option<String>, Value) {
    let statements: Vec<Value> = statements
        .iter()
        .map(|(sql, params)| match sql.strip_prefix('!') {
            Some(sql) => json!({ "sql": sql, "params": params, "execute": true }),
            None => json!({ "sql": sql, "params": params }),
        })
        .collect();
    let response = app
        .client
        .post(app.url(path))
        .json(&json!({ "statements": statements, "mode": mode }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let sqlstate = response
        .headers()
        .get("x-sqlstate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, sqlstate, response.json().await.unwrap())
}

/// One query through the probe's `main`: its rows, or a panic with the error.
async fn rows(app: &TestApp, statement: &str, params: Value) -> Value {
    let (status, _, body) = sql(app, "/pg/main", "plain", &[(statement, params)]).await;
    assert_eq!(status, 200, "{statement}: {body}");
    body[0]["rows"].clone()
}

/// One failing statement: the status, the SQLSTATE, the error code and
/// message.
async fn fails(
    app: &TestApp,
    path: &str,
    statement: &str,
    params: Value,
) -> (u16, Option<String>, String, String) {
    let (status, sqlstate, body) = sql(app, path, "plain", &[(statement, params)]).await;
    assert_ne!(status, 200, "{statement} should fail: {body}");
    (
        status,
        sqlstate,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The database's item names, read by the test itself.
async fn names(db: &PgDatabase) -> Vec<String> {
    db.connect()
        .await
        .query("SELECT name FROM items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn a_function_creates_reads_updates_and_deletes_rows_with_typed_values() {
    let pg = start().await;
    let app = &pg.app;
    let (status, _, body) = sql(
        app,
        "/pg/main",
        "plain",
        &[
            (
                "!INSERT INTO items (name, price) VALUES ($1, $2)",
                json!(["tea", {"decimal": "2.50"}]),
            ),
            (
                "INSERT INTO items (name, price, note) VALUES ($1, $2, $3) RETURNING id",
                json!(["cake", {"decimal": "4"}, "lemon"]),
            ),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["changed"], 1);
    assert_eq!(body[1]["rows"], json!([[2]]));
    assert_eq!(body[1]["columns"], json!(["id"]));

    assert_eq!(
        rows(
            app,
            "SELECT id, name, price, note FROM items ORDER BY id",
            json!([])
        )
        .await,
        json!([
            [1, "tea", {"decimal": "2.50"}, null],
            [2, "cake", {"decimal": "4.00"}, "lemon"]
        ])
    );
    // Typed through `row.get::<T>(column)` in the guest.
    let typed: Value = app.get("/pg/main/typed/2").await.json().await.unwrap();
    assert_eq!(
        typed,
        json!({"id": 2, "name": "cake", "price": "4.00", "note": "lemon"})
    );
    assert_eq!(app.get("/pg/main/typed/9").await.status(), 404);

    let (status, _, body) = sql(
        app,
        "/pg/main",
        "plain",
        &[(
            "!UPDATE items SET price = price * 2 WHERE name = $1",
            json!(["tea"]),
        )],
    )
    .await;
    assert_eq!((status, &body[0]["changed"]), (200, &json!(1)));
    assert_eq!(
        rows(app, "SELECT price FROM items WHERE name = 'tea'", json!([])).await,
        json!([[{"decimal": "5.00"}]])
    );
    rows(
        app,
        "DELETE FROM items WHERE id = $1 RETURNING id",
        json!([1]),
    )
    .await;
    assert_eq!(names(&pg.main).await, ["cake"]);

    // Each type of Spin's interface, out and back in.
    assert_eq!(
        rows(
            app,
            "SELECT $1::int4, $2::int8, $3::float8, $4::bool, $5::text, $6::uuid, $7::jsonb, \
             $8::date, $9::timestamp, $10::text[], $11::bytea, $12::int4, $13::numeric",
            json!([
                {"int32": -7}, 1_i64 << 40, 0.25, true, "text",
                {"uuid": "0193a5c2-7d4e-7000-8000-0123456789ab"}, {"json": {"a": [1, 2]}},
                {"date": [2026, 12, 3]}, {"datetime": [2026, 12, 3, 17, 45, 9, 123_456_000]},
                {"text[]": ["a", null]}, {"binary": "four"}, null, {"decimal": "-0.000120"}
            ])
        )
        .await,
        json!([[
            -7, 1_i64 << 40, 0.25, true, "text",
            {"uuid": "0193a5c2-7d4e-7000-8000-0123456789ab"}, {"json": {"a": [1, 2]}},
            {"date": [2026, 12, 3]}, {"datetime": [2026, 12, 3, 17, 45, 9, 123_456_000]},
            {"text[]": ["a", null]}, {"binary": 4}, null, {"decimal": "-0.000120"}
        ]])
    );
    assert_eq!(
        rows(
            app,
            "SELECT '1 year 2 days 3 microseconds'::interval, int8range(1, 10), \
             '12:30:00'::time, 'x'::char(3), array[1, 2]::int8[], point(1, 2)",
            json!([])
        )
        .await,
        json!([[
            {"interval": [3, 2, 12]},
            {"range": [[1, true], [10, false]]},
            {"time": [12, 30, 0, 0]},
            "x  ",
            {"int64[]": [1, 2]},
            {"unsupported": 16}
        ]])
    );
    // An integer widens into a wider column; a narrower one is refused by name.
    assert_eq!(
        rows(app, "SELECT $1::int8 + 1", json!([{"int32": 1}])).await,
        json!([[2]])
    );
    let (status, _, code, message) = fails(
        app,
        "/pg/main",
        "SELECT $1::int4",
        json!([5_000_000_000_i64]),
    )
    .await;
    assert_eq!((status, code.as_str()), (500, "sql_error"), "{message}");
    assert!(
        message.contains("parameter $1 is a int64 value, and the statement takes a int4 there"),
        "{message}"
    );
    let (_, _, _, message) = fails(app, "/pg/main", "SELECT $1::int4, $2::int4", json!([1])).await;
    assert!(
        message.contains("takes 2 parameters ($1 to $2) and was given 1"),
        "{message}"
    );
}

#[tokio::test]
async fn postgres_errors_reach_the_guest_typed_by_sqlstate() {
    let pg = start().await;
    let app = &pg.app;
    let (status, sqlstate, code, message) = fails(app, "/pg/main", "SELEC 1", json!([])).await;
    assert_eq!((status, code.as_str()), (500, "sql_error"), "{message}");
    assert_eq!(sqlstate.as_deref(), Some("42601"));
    assert!(message.contains("syntax error"), "{message}");

    let (_, sqlstate, _, message) =
        fails(app, "/pg/main", "SELECT * FROM nowhere", json!([])).await;
    assert_eq!(sqlstate.as_deref(), Some("42P01"), "{message}");

    rows(
        app,
        "INSERT INTO items (name) VALUES ('tea') RETURNING id",
        json!([]),
    )
    .await;
    let (status, sqlstate, code, message) = fails(
        app,
        "/pg/main",
        "INSERT INTO items (name) VALUES ($1)",
        json!(["tea"]),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (409, "constraint_violation"),
        "{message}"
    );
    assert_eq!(sqlstate.as_deref(), Some("23505"));
    assert!(message.contains("items_name_key"), "{message}");

    let (status, sqlstate, code, _) =
        fails(app, "/pg/main", "UPDATE items SET price = -1", json!([])).await;
    assert_eq!(
        (status, code.as_str(), sqlstate.as_deref()),
        (409, "constraint_violation", Some("23514"))
    );
}

#[tokio::test]
async fn a_transaction_is_all_or_nothing_and_never_outlives_its_connection() {
    let pg = start().await;
    let app = &pg.app;
    // The second statement fails: the first is rolled back with it.
    let (status, _, _) = sql(
        app,
        "/pg/main",
        "transaction",
        &[
            ("!INSERT INTO items (name) VALUES ('tea')", json!([])),
            ("!INSERT INTO items (name) VALUES ('tea')", json!([])),
        ],
    )
    .await;
    assert_eq!(status, 409);
    assert!(names(&pg.main).await.is_empty());

    let (status, _, body) = sql(
        app,
        "/pg/main",
        "transaction",
        &[
            ("!INSERT INTO items (name) VALUES ('tea')", json!([])),
            ("!INSERT INTO items (name) VALUES ('cake')", json!([])),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&pg.main).await, ["tea", "cake"]);

    // Begun and never committed, holding a row lock: the host rolls it back
    // when the guest's connection ends, so the write is gone and nothing
    // waits on the lock.
    let (status, _, body) = sql(
        app,
        "/pg/main",
        "leave-open",
        &[(
            "!UPDATE items SET note = 'left' WHERE name = 'tea'",
            json!([]),
        )],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let db = pg.main.connect().await;
    db.batch_execute("SET lock_timeout = '3s'").await.unwrap();
    db.execute("UPDATE items SET price = 1 WHERE name = 'tea'", &[])
        .await
        .expect("the row lock was released");
    let note: Option<String> = db
        .query_one("SELECT note FROM items WHERE name = 'tea'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, None);

    // A reused instance keeps its connection in a global: the host ends the
    // transaction when the request ends, and the next request starts clean.
    let (status, _, body) = sql(
        app,
        "/kept/pg/main",
        "leave-open-kept",
        &[(
            "!UPDATE items SET note = 'kept' WHERE name = 'cake'",
            json!([]),
        )],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    db.execute("UPDATE items SET price = 2 WHERE name = 'cake'", &[])
        .await
        .expect("the kept connection's lock was released");
    let (status, _, body) = sql(
        app,
        "/kept/pg/main",
        "plain",
        &[("SELECT note FROM items WHERE name = 'cake'", json!([]))],
    )
    .await;
    assert_eq!(
        (status, &body[0]["rows"]),
        (200, &json!([[null]])),
        "{body}"
    );
}

#[tokio::test]
async fn statements_past_their_limits_are_stopped_and_cancelled_on_the_server() {
    let pg = start().await;
    let app = &pg.app;
    let (status, _, code, message) = fails(app, "/pg/main", "SELECT pg_sleep(30)", json!([])).await;
    assert_eq!((status, code.as_str()), (500, "sql_error"));
    assert!(
        message.contains("ran longer than 500ms (limits.sql_timeout) and was cancelled"),
        "{message}"
    );
    // Cancelled on the server, not only abandoned.
    let db = pg.main.connect().await;
    eventually("the sleep is cancelled", Duration::from_secs(5), || async {
        let sleeping: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND query LIKE 'SELECT pg_sleep%' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (sleeping == 0).then_some(())
    })
    .await;
    // The connection serves the next statement.
    assert_eq!(rows(app, "SELECT 1::int4", json!([])).await, json!([[1]]));

    let (_, _, _, message) = fails(
        app,
        "/pg/main",
        "SELECT generate_series(1, 1000)",
        json!([]),
    )
    .await;
    assert!(
        message.contains("more than 100 rows (limits.sql_rows)"),
        "{message}"
    );
    let (_, _, _, message) = fails(app, "/pg/main", "SELECT repeat('x', 100000)", json!([])).await;
    assert!(message.contains("(limits.sql_result_size)"), "{message}");
    // A write whose returned rows are refused keeps nothing.
    let (_, _, _, message) = fails(
        app,
        "/pg/main",
        "INSERT INTO items (name) SELECT 'n' || i FROM generate_series(1, 500) i RETURNING id",
        json!([]),
    )
    .await;
    assert!(message.contains("(limits.sql_rows)"), "{message}");
    assert!(names(&pg.main).await.is_empty());
}

#[tokio::test]
async fn a_function_reaches_only_the_databases_it_is_granted() {
    let pg = start().await;
    let app = &pg.app;
    rows(
        app,
        "INSERT INTO items (name) VALUES ('tea') RETURNING id",
        json!([]),
    )
    .await;
    // `other` is granted another database under the same name.
    let (status, _, body) = sql(
        app,
        "/other/pg/main",
        "plain",
        &[("SELECT count(*) FROM items", json!([]))],
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("\"items\" does not exist"),
        "{body}"
    );
    // A name it is not granted, and a URL of a database it is not granted.
    let (status, _, code, message) = fails(app, "/other/pg/orders", "SELECT 1", json!([])).await;
    assert_eq!((status, code.as_str()), (403, "access_denied"), "{message}");
    assert!(message.contains("it grants main"), "{message}");
    let (status, _, code, message) = fails(app, "/none/pg/main", "SELECT 1", json!([])).await;
    assert_eq!((status, code.as_str()), (403, "access_denied"), "{message}");
    assert!(message.contains("it grants none"), "{message}");
    // By URL: a grant's own URL is that grant; another database's is refused
    // without its password ever being echoed.
    let spin = app.get("/spin-pg/other").await;
    assert_eq!(spin.status(), 500);
    let text = spin.text().await.unwrap();
    assert!(
        text.contains("may not connect to postgres://postgres@127.0.0.1:5432/"),
        "{text}"
    );
    assert!(text.contains(&pg.second.name), "{text}");
}

#[tokio::test]
async fn the_pool_recovers_from_connections_postgres_dropped() {
    let pg = start().await;
    let app = &pg.app;
    for _ in 0..3 {
        rows(app, "SELECT 1::int4", json!([])).await;
    }
    // An operator (or a restart) ends every connection the host holds.
    let db = pg.main.connect().await;
    let ended: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'nimbus') t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ended >= 1, "the host held a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..10 {
        let (status, _, body) =
            sql(app, "/pg/main", "plain", &[("SELECT $1::int8", json!([i]))]).await;
        assert_eq!(
            status, 200,
            "request {i} after the connections were ended: {body}"
        );
        assert_eq!(body[0]["rows"], json!([[i]]));
    }
}

#[tokio::test]
async fn fifty_concurrent_requests_share_a_pool_of_eight_connections() {
    let pg = start().await;
    let app = &pg.app;
    let db = pg.main.connect().await;
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let most = {
        let watching = watching.clone();
        let db = pg.main.connect().await;
        tokio::spawn(async move {
            let mut most = 0i64;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let open: i64 = db
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                         AND application_name = 'nimbus'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                most = most.max(open);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    let requests = (0..50).map(|i| {
        let name = format!("item{i}");
        async move {
            sql(
                app,
                "/pg/main",
                "transaction",
                &[
                    ("SELECT pg_sleep(0.05)::text", json!([])),
                    ("!INSERT INTO items (name) VALUES ($1)", json!([name])),
                ],
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    for (status, _, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let most = most.await.unwrap();
    assert!((1..=8).contains(&most), "{most} connections open at once");
    let count: i64 = db
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 50);
}

#[tokio::test]
async fn a_spin_sdk_component_uses_postgres_unchanged() {
    let pg = start().await;
    let app = &pg.app;
    let added = app
        .client
        .post(app.url("/spin-pg/items"))
        .body("tea")
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    assert_eq!(added.text().await.unwrap(), "1");
    let listed = app.get("/spin-pg/items").await;
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.text().await.unwrap(), "1 tea 2.50");
    let types = app.get("/spin-pg/types").await.text().await.unwrap();
    assert_eq!(
        types,
        "added=2026-12-03 17:45:09\nday=2026-12-03\ntag=0193a5c2-7d4e-7000-8000-0123456789ab\n\
         extra={\"colour\":\"green\"}\nnumbers=[Some(1), None, Some(3)]\nprice=2.50"
    );
    // The nimbus-sdk function sees the Spin component's row.
    assert_eq!(
        rows(app, "SELECT name FROM spin_items", json!([])).await,
        json!([["tea"]])
    );
}

#[tokio::test]
async fn two_cluster_nodes_share_one_postgres_database() {
    let db = PgDatabase::create().await;
    db.connect().await.batch_execute(ITEMS).await.unwrap();
    let manifest = format!(
        r#"
version = 1
[app]
name = "pg"

[functions.probe]
source = "guest:pg-probe"
routes = ["/pg/..."]
postgres = {{ main = "{}" }}
"#,
        db.url
    );
    let broker = Broker::cluster_unique();
    let one = TestApp::start_on(
        tempfile::tempdir().unwrap(),
        &manifest,
        Default::default(),
        &broker,
    )
    .await;
    let two = TestApp::start_on(
        tempfile::tempdir().unwrap(),
        &manifest,
        Default::default(),
        &broker,
    )
    .await;
    rows(
        &one,
        "INSERT INTO items (name) VALUES ('from one') RETURNING id",
        json!([]),
    )
    .await;
    assert_eq!(
        rows(&two, "SELECT name FROM items", json!([])).await,
        json!([["from one"]])
    );
    drop((one, two));
    broker.cleanup().await;
}

#[tokio::test]
async fn no_session_state_outlives_the_connection_that_made_it() {
    let pg = start().await;
    let app = &pg.app;
    // `single`'s pool has one connection, so its next request gets the
    // very connection this one changed.
    let (status, _, body) = sql(
        app,
        "/single/pg/main",
        "plain",
        &[
            ("!SET app.tenant = 'a'", json!([])),
            ("!SET statement_timeout = 0", json!([])),
            ("SELECT pg_advisory_lock(42)::text", json!([])),
            ("!CREATE TEMP TABLE scratch (n int)", json!([])),
            ("!BEGIN", json!([])),
            ("!COMMIT AND CHAIN", json!([])),
            ("!INSERT INTO items (name) VALUES ('chained')", json!([])),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = sql(
        app,
        "/single/pg/main",
        "plain",
        &[
            (
                "SELECT current_setting('app.tenant', true), current_setting('statement_timeout'), \
                 to_regclass('scratch')::text, pg_backend_pid()::int8",
                json!([]),
            ),
            ("SELECT count(*)::int8 FROM items", json!([])),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let row = &body[0]["rows"][0];
    // RESET ALL leaves a setting the session once made empty, not unknown.
    assert_eq!(row[0], json!(""), "the setting was reset: {body}");
    assert_eq!(row[1], json!("0"), "the server's default: {body}");
    assert_eq!(row[2], json!(null), "the temporary table is gone: {body}");
    // The write after `COMMIT AND CHAIN` was in a transaction that never
    // committed.
    assert_eq!(body[1]["rows"], json!([[0]]), "{body}");
    // The advisory lock was released: the test's own session takes it.
    let db = pg.main.connect().await;
    let locked: bool = db
        .query_one("SELECT pg_try_advisory_lock(42)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(locked);

    // Statements that look plain still get what they left cleaned up: an
    // advisory lock taken by a lone SELECT, and a transaction left open.
    let (status, _, body) = sql(
        app,
        "/single/pg/main",
        "plain",
        &[
            ("SELECT pg_advisory_lock(43)::text", json!([])),
            ("!BEGIN", json!([])),
            ("!INSERT INTO items (name) VALUES ('left open')", json!([])),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = sql(
        app,
        "/single/pg/main",
        "plain",
        &[("SELECT count(*)::int8 FROM items", json!([]))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["rows"], json!([[0]]), "rolled back: {body}");
    let locked: bool = db
        .query_one("SELECT pg_try_advisory_lock(43)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(locked, "the advisory lock was released");

    // A reused instance's kept connection starts each request reset too.
    sql(
        app,
        "/kept/pg/main",
        "leave-open-kept",
        &[("!SET app.tenant = 'b'", json!([]))],
    )
    .await;
    let (_, _, body) = sql(
        app,
        "/kept/pg/main",
        "on-kept",
        &[("SELECT current_setting('app.tenant', true)", json!([]))],
    )
    .await;
    assert_eq!(body[0]["rows"], json!([[""]]), "{body}");
}

#[tokio::test]
async fn text_parameters_are_read_as_the_column_s_type_and_decoding_keeps_to_the_cap() {
    let pg = start().await;
    let app = &pg.app;
    assert_eq!(
        rows(
            app,
            "SELECT $1::date, $2::numeric, $3::uuid, $4::timestamptz, $5::bool, $6::int4, $7::float8",
            json!(["2026-12-03", "1.50", "0193A5C2-7D4E-7000-8000-0123456789AB",
                   "2026-12-03T17:45:09Z", "true", "7", 2])
        )
        .await,
        json!([[
            {"date": [2026, 12, 3]}, {"decimal": "1.50"},
            {"uuid": "0193a5c2-7d4e-7000-8000-0123456789ab"},
            {"datetime": [2026, 12, 3, 17, 45, 9, 0]}, true, 7, 2.0
        ]])
    );
    let (_, _, _, message) = fails(app, "/pg/main", "SELECT $1::date", json!(["2026-02-30"])).await;
    assert!(
        message.contains("parameter $1 (str for a date): 2026-02-30 is not a date"),
        "{message}"
    );
    // A few wire bytes a numeric, thousands of characters as text: the
    // decoded size counts.
    let (_, _, _, message) = fails(
        app,
        "/pg/main",
        "SELECT array_fill(1e5000::numeric, ARRAY[100])",
        json!([]),
    )
    .await;
    assert!(message.contains("(limits.sql_result_size)"), "{message}");
}
