//! `kv-draft`: a guest of `wasi:keyvalue@0.2.0-draft`, the version
//! `wasmtime serve -S keyvalue` provides, with bindings made by wit-bindgen
//! from the published draft (not nimbus-sdk, which uses 0.2.0-draft2).
//!
//! Every request opens the store named by `?store=` (default `data`) and
//! answers JSON:
//! - `PUT /kvd/<key>` sets the body; `GET /kvd/<key>` answers `{"value": ...}`
//!   (`null` when unset); `DELETE /kvd/<key>` deletes it;
//! - `POST /kvd/<key>?incr=N` increments and answers `{"value": N}`;
//! - `GET /kvd?cursor=N` answers one page of keys: `{"keys": [...], "cursor": N or null}`;
//! - `POST /kvd-batch` sets every `key=value` line of the body with
//!   `set-many`, then answers what `get-many` reads back for those keys and
//!   `missing` as `{"pairs": [[key, value] or null, ...]}`, then deletes them
//!   with `delete-many` (unless `?keep=1`).
//!
//! A store error answers `500 {"error": "<kind>: <message>"}`.

use probe_util::{JSON, query_param, read_body, respond};
use serde_json::{Value, json};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};

wit_bindgen::generate!({
    path: "../../../host/wit/keyvalue-draft",
    world: "wasi:keyvalue/imports",
    generate_all,
});

use wasi::keyvalue::{atomics, batch, store};

struct KvDraft;

wasip2::http::proxy::export!(KvDraft);

impl Guest for KvDraft {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, body) = match run(&request) {
            Ok(body) => (200, body),
            Err(e) => (500, json!({ "error": describe(&e) })),
        };
        let text = serde_json::to_vec(&body).expect("JSON serializes");
        respond(response_out, status, JSON, &text);
    }
}

fn run(request: &IncomingRequest) -> Result<Value, store::Error> {
    let path_with_query = request.path_with_query().unwrap_or_default();
    let path = path_with_query
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let param = |name: &str| query_param(&path_with_query, name).map(str::to_owned);
    let bucket = store::open(param("store").as_deref().unwrap_or("data"))?;
    let method = request.method();
    if path == "/kvd-batch" {
        let body = String::from_utf8_lossy(&read_body(request)).into_owned();
        let pairs: Vec<(String, Vec<u8>)> = body
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
            .collect();
        let mut keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
        batch::set_many(&bucket, &pairs)?;
        keys.push("missing".into());
        let read = batch::get_many(&bucket, &keys)?;
        if param("keep").is_none() {
            batch::delete_many(&bucket, &keys)?;
        }
        let read: Vec<Value> = read
            .into_iter()
            .map(|pair| match pair {
                Some((k, v)) => json!([k, String::from_utf8_lossy(&v)]),
                None => Value::Null,
            })
            .collect();
        return Ok(json!({ "pairs": read }));
    }
    if path == "/kvd" {
        let cursor = param("cursor").and_then(|c| c.parse().ok());
        let page = bucket.list_keys(cursor)?;
        return Ok(json!({ "keys": page.keys, "cursor": page.cursor }));
    }
    let key = path.strip_prefix("/kvd/").unwrap_or_default().to_owned();
    match method {
        Method::Put => {
            bucket.set(&key, &read_body(request))?;
            Ok(json!({ "set": key }))
        }
        Method::Delete => {
            bucket.delete(&key)?;
            Ok(json!({ "deleted": key, "exists": bucket.exists(&key)? }))
        }
        Method::Post => {
            let delta = param("incr").and_then(|d| d.parse().ok()).unwrap_or(1);
            Ok(json!({ "value": atomics::increment(&bucket, &key, delta)? }))
        }
        _ => {
            let value = bucket.get(&key)?;
            Ok(json!({ "value": value.map(|v| String::from_utf8_lossy(&v).into_owned()) }))
        }
    }
}

fn describe(e: &store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no-such-store".into(),
        store::Error::AccessDenied => "access-denied".into(),
        store::Error::Other(message) => format!("other: {message}"),
    }
}
