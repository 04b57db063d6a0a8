//! `spin-postgres`: a component written for Spin, with Spin's own Rust SDK
//! (`spin-sdk` 7, a `wasi:http@0.3.0` component), that Nimbus must run
//! unchanged. As a Spin component does, it reads the database's address
//! from its variable `db_url` (`spin:variables@3.0.0`) and opens it with
//! `spin:postgres@4.2.0`; it keeps items in the table `spin_items (id serial,
//! name text, price numeric, added timestamp, tag uuid, extra jsonb)`:
//! - `POST /spin-pg/items` with a name as the body: inserts it with a
//!   price of 2.50 and answers `201 <id>` (from `RETURNING id`);
//! - `GET /spin-pg/items`: every item as `id name price` lines, by id;
//! - `GET /spin-pg/types`: one row of typed values decoded through the
//!   SDK's `row.get::<T>`, one `column=value` line each;
//! - `GET /spin-pg/other`: opens the address in the variable `other_url`,
//!   which it is not granted: `500` with the error.
//!
//! A PostgreSQL error answers `500` with the error.

use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Method, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::pg::{Connection, ParameterValue, Row};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS spin_items (
    id serial PRIMARY KEY,
    name text NOT NULL,
    price numeric(10, 2) NOT NULL,
    added timestamp NOT NULL DEFAULT '2026-12-03 17:45:09',
    tag uuid NOT NULL DEFAULT '0193a5c2-7d4e-7000-8000-0123456789ab',
    extra jsonb NOT NULL DEFAULT '{\"colour\": \"green\"}'
)";

async fn rows(db: &Connection, sql: &str, params: Vec<ParameterValue>) -> anyhow::Result<Vec<Row>> {
    Ok(db.query(sql, params).await?.collect().await?)
}

#[http_service]
async fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let variable = if path == "/spin-pg/other" {
        "other_url"
    } else {
        "db_url"
    };
    let address = spin_sdk::variables::get(variable).await?;
    let db = match Connection::open(address).await {
        Ok(db) => db,
        Err(e) => return Ok((StatusCode::INTERNAL_SERVER_ERROR, format!("open: {e:?}"))),
    };
    let answer = async {
        db.execute(SCHEMA, []).await?;
        match (method, path.as_str()) {
            (Method::POST, "/spin-pg/items") => {
                let name = String::from_utf8(request.into_body().bytes().await?.to_vec())?;
                let price = rust_decimal::Decimal::new(250, 2);
                let inserted = rows(
                    &db,
                    "INSERT INTO spin_items (name, price) VALUES ($1, $2) RETURNING id",
                    vec![name.into(), price.into()],
                )
                .await?;
                let id: i32 = inserted[0].get("id").unwrap_or_default();
                Ok::<_, anyhow::Error>((StatusCode::CREATED, id.to_string()))
            }
            (Method::GET, "/spin-pg/items") => {
                let all = rows(
                    &db,
                    "SELECT id, name, price FROM spin_items ORDER BY id",
                    vec![],
                )
                .await?;
                let lines: Vec<String> = all
                    .iter()
                    .map(|row| {
                        let id: i32 = row.get("id").unwrap_or_default();
                        let name: String = row.get("name").unwrap_or_default();
                        let price: rust_decimal::Decimal = row.get("price").unwrap_or_default();
                        format!("{id} {name} {price}")
                    })
                    .collect();
                Ok((StatusCode::OK, lines.join("\n")))
            }
            (Method::GET, "/spin-pg/types") => {
                let one = rows(
                    &db,
                    "SELECT name, price, added, tag, extra, added::date AS day, \
                     array[1, NULL, 3]::int4[] AS numbers \
                     FROM spin_items ORDER BY id LIMIT 1",
                    vec![],
                )
                .await?;
                let row = one.first().ok_or_else(|| anyhow::anyhow!("no items"))?;
                let added: chrono::NaiveDateTime = row.get("added").unwrap_or_default();
                let day: chrono::NaiveDate = row.get("day").unwrap_or_default();
                let tag: uuid::Uuid = row.get("tag").unwrap_or_default();
                let extra: serde_json::Value = row.get("extra").unwrap_or_default();
                let numbers: Vec<Option<i32>> = row.get("numbers").unwrap_or_default();
                let price: rust_decimal::Decimal = row.get("price").unwrap_or_default();
                Ok((
                    StatusCode::OK,
                    format!(
                        "added={added}\nday={day}\ntag={tag}\nextra={extra}\nnumbers={numbers:?}\nprice={price}"
                    ),
                ))
            }
            _ => Ok((StatusCode::NOT_FOUND, "not found".to_owned())),
        }
    };
    Ok(answer
        .await
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}"))))
}
