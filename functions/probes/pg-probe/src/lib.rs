//! `pg-probe`: SQL statements over HTTP against a PostgreSQL database,
//! written with `nimbus-sdk`. Tests drive the host's PostgreSQL through it.
//!
//! Mounted anywhere above a `/pg/` segment (`/pg/...`, `/other/pg/...`):
//! `POST .../pg/{database}` with a JSON body
//! `{"statements": [{"sql": "...", "params": [...], "execute": false}, ...], "mode": M}`
//! runs the statements in order on one connection and answers `200` with
//! one result per statement: `{"columns": [...], "rows": [[...]]}` from
//! `query`, or `{"changed": n}` from `execute` (with `"execute": true`).
//!
//! A parameter is a JSON number (`int64` when it has no fraction, else
//! `floating64`), string (`str`), boolean or null, or an object naming the
//! type: `{"int32": 7}`, `{"decimal": "1.50"}`, `{"uuid": "..."}`,
//! `{"json": any}`, `{"date": [y, m, d]}`, `{"datetime": [y, m, d, h, mi, s, ns]}`,
//! `{"binary": "text"}`, `{"text[]": ["a", null]}`. In rows a value is its
//! JSON form the same way (`{"binary": length}` for bytes). `M` is:
//! - `"plain"` (the default): each statement on its own;
//! - `"transaction"`: all in [`Connection::transaction`], rolled back when one
//!   fails;
//! - `"leave-open"`: `BEGIN` first and never `COMMIT`: the host must roll
//!   the transaction back when the connection ends;
//! - `"leave-open-kept"`: the same, and the connection is kept in a global,
//!   so a reused instance holds it into its next request;
//! - `"on-kept"`: the statements on the connection kept by the last
//!   `leave-open-kept` request of this instance.
//!
//! `GET .../pg/{database}/kv/{key}` answers the `value` of the row of the
//! table `kv (key text PRIMARY KEY, value bytea)` with that key (`404` when
//! none), and `PUT` with a body stores it: a key-value store on SQL, for
//! the benchmark against the key-value capability.
//!
//! `GET .../pg/{database}/typed/{id}` reads `SELECT id, name, price, note
//! FROM items WHERE id = $1` and answers what `row.get::<T>(column)` gave:
//! `{"id": i64, "name": String, "price": String, "note": Option<String>}`.
//!
//! A failing call answers the SDK's error response (`409
//! constraint_violation`, `500 sql_error`, `503 database_unavailable`,
//! `403 access_denied`), with PostgreSQL's SQLSTATE in a header
//! `x-sqlstate` when it refused the statement.

use nimbus_sdk::http::header::{HeaderName, HeaderValue};
use nimbus_sdk::postgres::{self, Connection, Rows, Value};
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
        .split_once("/pg/")
        .ok_or_else(|| Error::not_found("not under /pg/"))?;
    let segments: Vec<&str> = rest.split('/').collect();
    let answer = match (req.method().as_str(), segments.as_slice()) {
        ("POST", [database]) => run(&req, database).map(IntoResponse::into_response),
        ("GET", [database, "typed", id]) => typed(database, id).map(IntoResponse::into_response),
        ("GET", [database, "kv", key]) => (|| {
            let db = Connection::open(database)?;
            let rows = db.query("SELECT value FROM kv WHERE key = $1", &[(*key).into()])?;
            rows.iter()
                .next()
                .map(|row| row.get::<Vec<u8>>("value"))
                .transpose()
        })()
        .map_err(failure)
        .and_then(|value| match value {
            Some(value) => Ok(value.into_response()),
            None => Err(Error::not_found(format!("no key {key}"))),
        }),
        ("PUT", [database, "kv", key]) => (|| {
            let db = Connection::open(database)?;
            db.execute(
                "INSERT INTO kv (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[(*key).into(), req.body().to_vec().into()],
            )
        })()
        .map(|_| StatusCode::NO_CONTENT.into_response())
        .map_err(failure),
        _ => Err(Error::not_found(format!("no route for {path}"))),
    };
    Ok(answer.unwrap_or_else(IntoResponse::into_response))
}

/// The SDK's error response, with PostgreSQL's SQLSTATE in `x-sqlstate`.
fn failure(e: postgres::Error) -> Error {
    let code = e.db().map(|db| db.code.clone());
    let error = Error::from(e);
    match code.and_then(|c| HeaderValue::from_str(&c).ok()) {
        Some(code) => error.with_header(HeaderName::from_static("x-sqlstate"), code),
        None => error,
    }
}

fn run(req: &Request, database: &str) -> Result<Json<JsonValue>, Error> {
    let body: JsonValue = req.json()?;
    let statements = body["statements"]
        .as_array()
        .ok_or_else(|| Error::bad_request("`statements` is a list"))?
        .clone();
    let all = |db: &Connection| -> Result<Vec<JsonValue>, Error> {
        statements.iter().map(|s| statement(db, s)).collect()
    };
    if body["mode"] == "on-kept" {
        return KEPT.with(|kept| match &*kept.borrow() {
            Some(db) => all(db).map(|r| Json(JsonValue::Array(r))),
            None => Err(Error::bad_request("no connection is kept")),
        });
    }
    let db = Connection::open(database).map_err(failure)?;
    let results = match body["mode"].as_str().unwrap_or("plain") {
        "plain" => all(&db)?,
        "transaction" => db.transaction(all)?,
        "leave-open" => {
            db.execute("BEGIN", &[]).map_err(failure)?;
            all(&db)?
        }
        "leave-open-kept" => {
            db.execute("BEGIN", &[]).map_err(failure)?;
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
    if s["execute"].as_bool().unwrap_or(false) {
        let changed = db.execute(sql, &params).map_err(failure)?;
        return Ok(json!({ "changed": changed }));
    }
    let rows = db.query(sql, &params).map_err(failure)?;
    Ok(json!({ "columns": rows.columns(), "rows": rows_json(&rows) }))
}

fn numbers<T: TryFrom<i64>>(v: &JsonValue) -> Option<Vec<T>> {
    v.as_array()?
        .iter()
        .map(|n| T::try_from(n.as_i64()?).ok())
        .collect()
}

fn param(p: &JsonValue) -> Result<Value, Error> {
    let bad = || Error::bad_request(format!("not a parameter this probe knows: {p}"));
    Ok(match p {
        JsonValue::Null => Value::Null,
        JsonValue::Bool(b) => Value::Bool(*b),
        JsonValue::Number(n) => match n.as_i64() {
            Some(i) => Value::Int64(i),
            None => Value::Float64(n.as_f64().unwrap_or(f64::NAN)),
        },
        JsonValue::String(s) => Value::Text(s.clone()),
        JsonValue::Object(o) => {
            let (kind, v) = o.iter().next().ok_or_else(bad)?;
            match kind.as_str() {
                "int32" => {
                    Value::Int32(v.as_i64().and_then(|i| i.try_into().ok()).ok_or_else(bad)?)
                }
                "int16" => {
                    Value::Int16(v.as_i64().and_then(|i| i.try_into().ok()).ok_or_else(bad)?)
                }
                "float32" => Value::Float32(v.as_f64().ok_or_else(bad)? as f32),
                "decimal" => Value::Decimal(v.as_str().ok_or_else(bad)?.to_owned()),
                "uuid" => Value::Uuid(v.as_str().ok_or_else(bad)?.to_owned()),
                "json" => Value::from(v.clone()),
                "binary" => Value::Binary(v.as_str().ok_or_else(bad)?.as_bytes().to_vec()),
                "date" => match numbers::<i64>(v).as_deref() {
                    Some([y, m, d]) => Value::Date(*y as i32, *m as u8, *d as u8),
                    _ => return Err(bad()),
                },
                "datetime" => match numbers::<i64>(v).as_deref() {
                    Some([y, mo, d, h, mi, s, ns]) => Value::DateTime(
                        *y as i32, *mo as u8, *d as u8, *h as u8, *mi as u8, *s as u8, *ns as u32,
                    ),
                    _ => return Err(bad()),
                },
                "timestamp" => Value::Timestamp(v.as_i64().ok_or_else(bad)?),
                "text[]" => Value::ArrayText(
                    v.as_array()
                        .ok_or_else(bad)?
                        .iter()
                        .map(|s| s.as_str().map(str::to_owned))
                        .collect(),
                ),
                "int32[]" => Value::ArrayInt32(
                    v.as_array()
                        .ok_or_else(bad)?
                        .iter()
                        .map(|n| n.as_i64().and_then(|i| i.try_into().ok()))
                        .collect(),
                ),
                _ => return Err(bad()),
            }
        }
        JsonValue::Array(_) => return Err(bad()),
    })
}

fn value_json(v: &Value) -> JsonValue {
    match v {
        Value::Null => JsonValue::Null,
        Value::Bool(b) => json!(b),
        Value::Int8(i) => json!(i),
        Value::Int16(i) => json!(i),
        Value::Int32(i) => json!(i),
        Value::Int64(i) => json!(i),
        Value::Float32(f) => json!(f),
        Value::Float64(f) => json!(f),
        Value::Text(s) => json!(s),
        Value::Binary(b) => json!({ "binary": b.len() }),
        Value::Date(y, m, d) => json!({ "date": [y, m, d] }),
        Value::Time(h, m, s, ns) => json!({ "time": [h, m, s, ns] }),
        Value::DateTime(y, mo, d, h, mi, s, ns) => {
            json!({ "datetime": [y, mo, d, h, mi, s, ns] })
        }
        Value::Timestamp(t) => json!({ "timestamp": t }),
        Value::Uuid(u) => json!({ "uuid": u }),
        Value::Json(b) => json!({ "json": serde_json::from_slice::<JsonValue>(b).ok() }),
        Value::Decimal(d) => json!({ "decimal": d }),
        Value::RangeInt32(lo, hi) => json!({ "range": [lo, hi] }),
        Value::RangeInt64(lo, hi) => json!({ "range": [lo, hi] }),
        Value::RangeDecimal(lo, hi) => json!({ "range": [lo, hi] }),
        Value::ArrayInt32(a) => json!({ "int32[]": a }),
        Value::ArrayInt64(a) => json!({ "int64[]": a }),
        Value::ArrayDecimal(a) => json!({ "decimal[]": a }),
        Value::ArrayText(a) => json!({ "text[]": a }),
        Value::Interval {
            micros,
            days,
            months,
        } => json!({ "interval": [micros, days, months] }),
        Value::Unsupported(b) => json!({ "unsupported": b.len() }),
    }
}

fn rows_json(rows: &Rows) -> JsonValue {
    rows.iter()
        .map(|row| row.values().iter().map(value_json).collect::<JsonValue>())
        .collect()
}

fn typed(database: &str, id: &str) -> Result<Json<JsonValue>, Error> {
    let id: i64 = id
        .parse()
        .map_err(|_| Error::bad_request("the id is a number"))?;
    let db = Connection::open(database).map_err(failure)?;
    let rows = db
        .query(
            "SELECT id, name, price, note FROM items WHERE id = $1",
            &[id.into()],
        )
        .map_err(failure)?;
    let row = rows
        .iter()
        .next()
        .ok_or_else(|| Error::not_found(format!("no item {id}")))?;
    Ok(Json(json!({
        "id": row.get::<i64>("id")?,
        "name": row.get::<String>("name")?,
        "price": row.get::<String>("price")?,
        "note": row.get::<Option<String>>("note")?,
    })))
}
