//! `sql-probe`: SQL statements over HTTP against a SQLite database, written
//! with `nimbus-sdk`. Tests drive the host's SQLite through it.
//!
//! Mounted anywhere above a `/sql/` segment (`/sql/...`, `/other/sql/...`):
//! `POST .../sql/{database}` with a JSON body
//! `{"statements": [{"sql": "...", "params": [...]}, ...], "mode": M}` runs
//! the statements in order on one connection and answers `200` with one
//! result per statement: `{"columns": [...], "rows": [[...]], "changes": n,
//! "last_insert_rowid": n}`. A parameter is a JSON number (an integer when
//! it has no fraction), string or null, or `{"blob": "text"}` for the text's
//! bytes; in rows a blob is `{"blob": length}`. `M` is:
//! - `"plain"` (the default): each statement on its own;
//! - `"transaction"`: all in [`Connection::transaction`], rolled back when one
//!   fails;
//! - `"leave-open"`: `BEGIN` first and never `COMMIT`: the host must roll
//!   the transaction back when the request ends;
//! - `"leave-open-kept"`: the same, and the connection is kept in a global,
//!   so a reused instance holds it into its next request.
//!
//! `GET .../sql/{database}/connections/{n}` opens `n` connections at once.
//!
//! A failing statement answers the SDK's error response (`500 sql_error`
//! with the host's message, `403 access_denied`, `507 database_full`).
//!
//! `GET .../sql/{database}/kv/{key}` answers the `value` of the row of the
//! table `kv (key TEXT PRIMARY KEY, value BLOB)` with that key (`404` when
//! none), and `PUT` with a body stores it: a key-value store on SQL, for
//! the benchmark against the key-value capability.
//!
//! `GET .../sql/{database}/typed/{id}` reads `SELECT id, name, price, note FROM
//! items WHERE id = ?` and answers the typed values it got through
//! `row.get::<T>(column)`: `{"id": i64, "name": String, "price": f64,
//! "note": Option<String>}`.

use nimbus_sdk::sqlite::{Connection, Rows, Value};
use nimbus_sdk::{
    Error, IntoResponse, Json, Request, RequestExt, Response, StatusCode, http_handler,
};
use serde_json::{Value as JsonValue, json};

thread_local! {
    /// The connection of the last `leave-open-kept` request: kept by the
    /// instance, as a guest that stores its connection in a global would.
    static KEPT: std::cell::RefCell<Option<Connection>> = const { std::cell::RefCell::new(None) };
}

#[http_handler]
fn handle(req: Request) -> Result<Response, Error> {
    let path = req.uri().path().to_owned();
    let (_, rest) = path
        .split_once("/sql/")
        .ok_or_else(|| Error::not_found("not under /sql/"))?;
    let segments: Vec<&str> = rest.split('/').collect();
    match (req.method().as_str(), segments.as_slice()) {
        ("POST", [database]) => Ok(run(&req, database)?.into_response()),
        ("GET", [database, "typed", id]) => Ok(typed(database, id)?.into_response()),
        ("GET", [database, "connections", n]) => {
            let n: usize = n.parse().map_err(|_| Error::bad_request("a number"))?;
            let open = (0..n)
                .map(|_| Connection::open(database))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(format!("{} open\n", open.len()).into_response())
        }
        ("GET", [database, "kv", key]) => {
            let db = Connection::open(database)?;
            let rows = db.execute("SELECT value FROM kv WHERE key = ?", &[(*key).into()])?;
            match rows.iter().next() {
                Some(row) => Ok(row.get::<Vec<u8>>("value")?.into_response()),
                None => Err(Error::not_found(format!("no key {key}"))),
            }
        }
        ("PUT", [database, "kv", key]) => {
            let db = Connection::open(database)?;
            db.execute(
                "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                &[(*key).into(), req.body().to_vec().into()],
            )?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(Error::not_found(format!("no route for {path}"))),
    }
}

fn run(req: &Request, database: &str) -> Result<Json<JsonValue>, Error> {
    let body: JsonValue = req.json()?;
    let statements = body["statements"]
        .as_array()
        .ok_or_else(|| Error::bad_request("`statements` is a list"))?
        .clone();
    let db = Connection::open(database)?;
    let all = |db: &Connection| -> Result<Vec<JsonValue>, Error> {
        statements
            .iter()
            .map(|s| statement(db, s))
            .collect::<Result<Vec<_>, _>>()
    };
    let results = match body["mode"].as_str().unwrap_or("plain") {
        "plain" => all(&db)?,
        "transaction" => db.transaction(all)?,
        "leave-open" => {
            db.execute("BEGIN", &[])?;
            all(&db)?
        }
        "leave-open-kept" => {
            db.execute("BEGIN", &[])?;
            let results = all(&db)?;
            KEPT.with(|kept| kept.replace(Some(db)));
            results
        }
        other => return Err(Error::bad_request(format!("unknown mode `{other}`"))),
    };
    Ok(Json(JsonValue::Array(results)))
}

fn statement(db: &Connection, s: &JsonValue) -> Result<JsonValue, Error> {
    let sql = s["sql"]
        .as_str()
        .ok_or_else(|| Error::bad_request("a statement's `sql` is a string"))?;
    let params = s["params"]
        .as_array()
        .map(|p| p.iter().map(param).collect::<Result<Vec<_>, _>>())
        .transpose()?
        .unwrap_or_default();
    let rows = db.execute(sql, &params)?;
    Ok(json!({
        "columns": rows.columns(),
        "rows": rows_json(&rows),
        "changes": db.changes(),
        "last_insert_rowid": db.last_insert_rowid(),
    }))
}

fn param(p: &JsonValue) -> Result<Value, Error> {
    Ok(match p {
        JsonValue::Null => Value::Null,
        JsonValue::Bool(b) => (*b).into(),
        JsonValue::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        JsonValue::String(s) => Value::Text(s.clone()),
        JsonValue::Object(o) => match o.get("blob").and_then(JsonValue::as_str) {
            Some(text) => Value::Blob(text.as_bytes().to_vec()),
            None => {
                return Err(Error::bad_request(
                    "an object parameter is {\"blob\": \"text\"}",
                ));
            }
        },
        JsonValue::Array(_) => return Err(Error::bad_request("a parameter cannot be a list")),
    })
}

fn rows_json(rows: &Rows) -> JsonValue {
    rows.iter()
        .map(|row| {
            row.values()
                .iter()
                .map(|v| match v {
                    Value::Null => JsonValue::Null,
                    Value::Integer(i) => json!(i),
                    Value::Real(f) => json!(f),
                    Value::Text(s) => json!(s),
                    Value::Blob(b) => json!({ "blob": b.len() }),
                })
                .collect::<JsonValue>()
        })
        .collect()
}

fn typed(database: &str, id: &str) -> Result<Json<JsonValue>, Error> {
    let id: i64 = id
        .parse()
        .map_err(|_| Error::bad_request("the id is a number"))?;
    let db = Connection::open(database)?;
    let rows = db.execute(
        "SELECT id, name, price, note FROM items WHERE id = ?",
        &[id.into()],
    )?;
    let row = rows
        .iter()
        .next()
        .ok_or_else(|| Error::not_found(format!("no item {id}")))?;
    Ok(Json(json!({
        "id": row.get::<i64>("id")?,
        "name": row.get::<String>("name")?,
        "price": row.get::<f64>("price")?,
        "note": row.get::<Option<String>>("note")?,
    })))
}
