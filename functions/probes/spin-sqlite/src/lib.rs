//! `spin-sqlite`: a component written for Spin, with Spin's own Rust SDK
//! (`spin-sdk` 7, a `wasi:http@0.3.0` component), that Nimbus must run
//! unchanged. It keeps items in Spin's SQLite (`spin:sqlite@3.1.0`, the
//! database `default`):
//! - `POST /spin-sql/items` with a name as the body: inserts it, answers
//!   `201 <id>` (from `last-insert-rowid`);
//! - `GET /spin-sql/items`: every item as `id name` lines, by id;
//! - `GET /spin-sql/other`: opens the database `other`, which it is not
//!   granted: `500` with the error.
//!
//! A SQLite error answers `500` with the error.

use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Method, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::sqlite::{Connection, Value};

const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)";

#[http_service]
async fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if path == "/spin-sql/other" {
        return Ok(match Connection::open("other").await {
            Ok(_) => (StatusCode::OK, "opened".to_owned()),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("open: {e:?}")),
        });
    }
    if path != "/spin-sql/items" {
        return Ok((StatusCode::NOT_FOUND, "not found".to_owned()));
    }
    let db = match Connection::open_default().await {
        Ok(db) => db,
        Err(e) => return Ok((StatusCode::INTERNAL_SERVER_ERROR, format!("open: {e:?}"))),
    };
    let answer = async {
        db.execute(SCHEMA, []).await?.result().await?;
        if method == Method::POST {
            let name = String::from_utf8(request.into_body().bytes().await?.to_vec())?;
            db.execute("INSERT INTO items (name) VALUES (?)", [Value::Text(name)])
                .await?
                .result()
                .await?;
            return Ok::<_, anyhow::Error>((
                StatusCode::CREATED,
                db.last_insert_rowid().await.to_string(),
            ));
        }
        let rows = db
            .execute("SELECT id, name FROM items ORDER BY id", [])
            .await?
            .collect()
            .await?;
        let lines: Vec<String> = rows
            .iter()
            .map(|row| {
                let id: i64 = row.get(0).unwrap_or_default();
                let name: &str = row.get(1).unwrap_or_default();
                format!("{id} {name}")
            })
            .collect();
        Ok((StatusCode::OK, lines.join("\n")))
    };
    Ok(answer
        .await
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}"))))
}
