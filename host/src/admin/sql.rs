//! The handler of `POST /v1/functions/{id}/sql/{database}`: one SQL
//! statement on a database of the function's, SQLite or PostgreSQL, for
//! operators (`nimbus sql`).
//!
//! The statement runs as the function's own would: under its
//! `limits.sql_*`, on a connection of its own (for SQLite, with the same
//! authorizer; for PostgreSQL, from the grant's pool). It must only read
//! unless the request says `"write": true`: SQLite's own
//! `sqlite3_stmt_readonly` decides, and PostgreSQL runs it in a
//! `READ ONLY` transaction that is rolled back after.

use super::{Admin, AdminError, Answer, ok};
use crate::backend::postgres::{PgError, PgValue};
use crate::backend::sqlite::{SqlError, SqlValue};
use base64::Engine as _;
use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest request body: a statement and its parameters.
const MAX_QUERY_BODY: usize = 1024 * 1024;

/// The request: `{"sql": "...", "params": [...], "write": false}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
    #[serde(default)]
    write: bool,
}

/// The answer: the result's columns and rows (a blob as
/// `{"base64": "..."}`), and the rows the statement changed.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueryView {
    /// The column names.
    pub columns: Vec<String>,
    /// The rows, each value JSON: a number, a string, null or `{"base64": ...}`.
    pub rows: Vec<Vec<Value>>,
    /// Rows inserted, updated or deleted by the statement (0 for a query).
    pub changes: u64,
}

impl Admin {
    /// `POST /v1/functions/{id}/sql/{database}`
    pub(super) async fn sql(&self, id: &str, database: &str, req: Request<Incoming>) -> Answer {
        let body = Limited::new(req.into_body(), MAX_QUERY_BODY)
            .collect()
            .await
            .map_err(|e| AdminError::InvalidQuery(format!("reading the request: {e}")))?
            .to_bytes();
        let query: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
            AdminError::InvalidQuery(format!(
                "the body is {{\"sql\": \"...\", \"params\": [...], \"write\": false}}: {e}"
            ))
        })?;
        let app = self.app();
        let function = app
            .functions
            .iter()
            .find(|f| f.id.as_str() == id)
            .ok_or_else(|| AdminError::NoFunction(id.to_owned()))?;
        if let Some(lease) = function.grants.postgres.lease(database).await {
            return postgres(lease, function.grants.postgres.limits(), query).await;
        }
        let sqlite = &function.grants.sqlite;
        let db = sqlite
            .database(database)
            .ok_or_else(|| AdminError::NoDatabase {
                function: id.to_owned(),
                database: database.to_owned(),
                sqlite: listed(function.spec.sqlite.iter().map(|n| n.as_str())),
                postgres: listed(function.grants.postgres.names().into_iter()),
            })?;
        let params = query
            .params
            .iter()
            .map(param)
            .collect::<Result<Vec<_>, _>>()?;
        let limits = sqlite.limits();
        let write = query.write;
        let run = move || {
            let mut lease = db.lease()?;
            let output = if write {
                lease.execute(&query.sql, params, limits)?
            } else {
                lease.query(&query.sql, params, limits)?
            };
            Ok::<_, SqlError>((output, lease.changes()))
        };
        let (output, changes) = tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| AdminError::Task(e.to_string()))?
            .map_err(|e| match e {
                SqlError::NotReadOnly => AdminError::NotReadOnly,
                e => AdminError::Sql(e.to_string()),
            })?;
        Ok(ok(&QueryView {
            columns: output.columns,
            rows: output
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(json_value).collect())
                .collect(),
            changes: if write { changes } else { 0 },
        }))
    }
}

/// `names` for a message: `a, b`, or `none`.
fn listed<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The statement on a PostgreSQL grant's connection.
async fn postgres(
    lease: Result<crate::backend::postgres::Lease, PgError>,
    limits: crate::backend::StatementLimits,
    query: QueryRequest,
) -> Answer {
    let params: Vec<PgValue> = query
        .params
        .iter()
        .map(pg_param)
        .collect::<Result<_, _>>()?;
    let mut lease = lease.map_err(unavailable_or_sql)?;
    let output = if query.write {
        lease.query(&query.sql, &params, limits).await
    } else {
        lease.query_read_only(&query.sql, &params, limits).await
    }
    .map_err(|e| match e {
        PgError::Db(db) if db.code == "25006" => AdminError::NotReadOnly,
        e => unavailable_or_sql(e),
    })?;
    Ok(ok(&QueryView {
        columns: output.columns.into_iter().map(|(name, _)| name).collect(),
        changes: if query.write { output.changed } else { 0 },
        rows: output
            .rows
            .iter()
            .map(|row| row.iter().map(PgValue::to_json).collect())
            .collect(),
    }))
}

/// A database that cannot be reached is `503`, any other failure the
/// statement's own.
fn unavailable_or_sql(e: PgError) -> AdminError {
    match e {
        PgError::ConnectionFailed(message) => AdminError::DatabaseUnavailable(message),
        e => AdminError::Sql(e.to_string()),
    }
}

/// A JSON parameter for PostgreSQL: a whole number is a `bigint` (it also
/// goes into a narrower integer column it fits, or a numeric or float one),
/// a decimal a `double precision`, and a string `text`, which the host
/// reads as the parameter's type where it is a number, a boolean, a UUID,
/// a date or a time (`$1::date` with `"2026-12-03"`).
fn pg_param(value: &Value) -> Result<PgValue, AdminError> {
    Ok(match param(value)? {
        SqlValue::Null => PgValue::Null,
        SqlValue::Integer(i) if value.is_boolean() => PgValue::Bool(i != 0),
        SqlValue::Integer(i) => PgValue::Int64(i),
        SqlValue::Real(f) => PgValue::Float64(f),
        SqlValue::Text(s) => PgValue::Text(s),
        SqlValue::Blob(b) => PgValue::Binary(b),
    })
}

fn param(value: &Value) -> Result<SqlValue, AdminError> {
    Ok(match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => {
            return Err(AdminError::InvalidQuery(format!(
                "a parameter is a number, a string, a boolean or null, not {other}"
            )));
        }
    })
}

fn json_value(value: SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => i.into(),
        SqlValue::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        SqlValue::Text(s) => s.into(),
        SqlValue::Blob(b) => {
            serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
        }
    }
}
