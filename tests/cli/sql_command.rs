//! `nimbus sql`: an operator's statement on a function's SQLite or
//! PostgreSQL database, through the admin API of a running `nimbus up`.

use crate::support::{PgDatabase, Server, app_dir, nimbus, up_command};

const APP: &str = r#"
[sqlite.shop]
migrations = "shop.sql"

[functions.sql]
source = @sql-probe@
routes = ["/sql/..."]
sqlite = ["shop"]
"#;

/// Runs `nimbus sql ARGS` against `server`: the exit status, stdout and stderr.
fn sql(dir: &std::path::Path, server: &Server, args: &[&str]) -> (bool, String, String) {
    let out = nimbus(dir)
        .arg("sql")
        .args(args)
        .args(["--admin", server.admin.as_str()])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_operator_queries_a_function_s_database_and_writes_only_when_asked() {
    let dir = app_dir(APP);
    std::fs::write(
        dir.path().join("shop.sql"),
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL);\n\
         INSERT INTO products (name, price) VALUES ('tea', 2.5), ('cake', NULL);\n",
    )
    .unwrap();
    let server = Server::start(up_command(dir.path()));
    let d = dir.path();

    let (ok, out, err) = sql(
        d,
        &server,
        &[
            "sql",
            "shop",
            "SELECT id, name, price FROM products ORDER BY id",
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "id  name  price",
            "1   tea   2.5",
            "2   cake  NULL",
            "(2 rows)"
        ],
        "{out}"
    );

    // Parameters, and JSON.
    let (ok, out, err) = sql(
        d,
        &server,
        &[
            "sql",
            "shop",
            "SELECT name FROM products WHERE id = ?",
            "--param",
            "2",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["rows"], serde_json::json!([["cake"]]));

    // A write is refused unless asked for, and nothing changes.
    let update = "UPDATE products SET price = 3 WHERE name = 'tea'";
    let (ok, _, err) = sql(d, &server, &["sql", "shop", update]);
    assert!(!ok);
    assert!(err.contains("--write"), "{err}");
    let (_, out, _) = sql(
        d,
        &server,
        &["sql", "shop", "SELECT price FROM products WHERE id = 1"],
    );
    assert!(out.contains("2.5"), "{out}");
    let (ok, out, err) = sql(d, &server, &["sql", "shop", update, "--write"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1 rows changed");
    // The function sees the operator's change.
    let body: serde_json::Value = crate::crash::runtime().block_on(async {
        reqwest::Client::new()
            .post(format!("{}/sql/shop", server.url))
            .json(&serde_json::json!({"statements": [{"sql": "SELECT price FROM products WHERE id = 1"}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(body[0]["rows"], serde_json::json!([[3.0]]));

    // Errors name the problem.
    let (ok, _, err) = sql(d, &server, &["sql", "shop", "SELECT * FROM nowhere"]);
    assert!(!ok && err.contains("no such table: nowhere"), "{err}");
    let (ok, _, err) = sql(d, &server, &["sql", "other", "SELECT 1"]);
    assert!(
        !ok && err.contains(
            "has no database `other`: its `sqlite` lists shop, its `postgres` grants none"
        ),
        "{err}"
    );
    let (ok, _, err) = sql(d, &server, &["nobody", "shop", "SELECT 1"]);
    assert!(!ok && err.contains("nobody"), "{err}");
}

#[test]
fn an_operator_queries_a_postgres_grant_read_only_unless_asked() {
    let db = PgDatabase::create();
    db.run(
        "CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, price numeric(6, 2), added date);\n\
         INSERT INTO products VALUES (1, 'tea', 2.5, '2026-12-03'), (2, 'cake', NULL, NULL);",
    );
    let dir = app_dir(&format!(
        r#"
[functions.pg]
source = @pg-probe@
routes = ["/pg/..."]
postgres = {{ shop = "{}", down = "postgres://postgres@127.0.0.1:1/nowhere" }}
"#,
        db.url
    ));
    let server = Server::start(up_command(dir.path()));
    let d = dir.path();

    let (ok, out, err) = sql(
        d,
        &server,
        &[
            "pg",
            "shop",
            "SELECT id, name, price, added FROM products ORDER BY id",
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "id  name  price  added",
            "1   tea   2.50   2026-12-03",
            "2   cake  NULL   NULL",
            "(2 rows)"
        ],
        "{out}"
    );
    // A whole-number parameter goes into the int column.
    let (ok, out, err) = sql(
        d,
        &server,
        &[
            "pg",
            "shop",
            "SELECT name FROM products WHERE id = $1",
            "--param",
            "2",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["rows"], serde_json::json!([["cake"]]));

    // A write is refused by PostgreSQL's own read-only transaction, and
    // nothing changes, unless asked for.
    let update = "UPDATE products SET price = 3 WHERE name = 'tea'";
    let (ok, _, err) = sql(d, &server, &["pg", "shop", update]);
    assert!(!ok && err.contains("--write"), "{err}");
    let (_, out, _) = sql(
        d,
        &server,
        &["pg", "shop", "SELECT price FROM products WHERE id = 1"],
    );
    assert!(out.contains("2.50"), "{out}");
    let (ok, out, err) = sql(d, &server, &["pg", "shop", update, "--write"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1 rows changed");
    let (_, out, _) = sql(
        d,
        &server,
        &["pg", "shop", "SELECT price FROM products WHERE id = 1"],
    );
    assert!(out.contains("3.00"), "{out}");

    let (ok, _, err) = sql(d, &server, &["pg", "shop", "SELECT * FROM nowhere"]);
    assert!(
        !ok && err.contains("relation \"nowhere\" does not exist"),
        "{err}"
    );

    // A database that cannot be reached is the server's trouble, not the
    // statement's: 503, and the message names the grant (never its URL).
    let (status, body) = crate::support::block_on(async {
        let response = crate::support::client()
            .post(format!("{}/v1/functions/pg/sql/down", server.admin))
            .json(&serde_json::json!({ "sql": "SELECT 1" }))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json::<serde_json::Value>().await.unwrap())
    });
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "database_unavailable", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("could not connect to") && message.contains("database `down`"),
        "{message}"
    );
    let (ok, _, err) = sql(d, &server, &["pg", "down", "SELECT 1"]);
    assert!(!ok && err.contains("could not connect to"), "{err}");
}
