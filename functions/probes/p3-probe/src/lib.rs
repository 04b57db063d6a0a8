//! `p3-probe`: a `wasi:http@0.3.0` (WASI p3) function written on the `wasip3`
//! crate alone (0.9, which targets 0.3.0), with no Nimbus SDK in between, so
//! the tests see what the host does for any p3 component. Routes:
//! - `GET /p3/hello` (and `GET /hello`, for the deploy tests): `hello from
//!   p3` as plain text;
//! - `POST /p3/echo`: streams the request body back as it arrives, chunk by
//!   chunk, never holding the whole body;
//! - `GET /p3/headers`: `{"path_with_query": ..., "headers": {...}}`, the
//!   request as the guest saw it (names lowercase, repeats joined by `, `);
//! - `GET /p3/kv/<key>` answers `{"value": ...}` from key-value store `data`
//!   (`null` when unset); `PUT /p3/kv/<key>` sets the body;
//! - `GET /p3/config/<key>`: `{"value": ...}` from `wasi:config`;
//! - `GET /p3/call/<service>/<rest>`: calls `http://<service>.internal/<rest>`
//!   through `wasi:http/client`, passing on `x-request-id` and `traceparent`,
//!   and answers `{"status": N, "body": "..."}` (a failed call: `502` with the
//!   error code);
//! - `GET /p3/wait?ms=N`: waits N milliseconds, then answers
//!   `{"max_in_flight": M, "served": S}`: the most requests this instance has
//!   had in flight at once and how many it has taken, for the reuse tests;
//! - `GET /p3/trap?ms=N`: waits N milliseconds (default 0), then panics;
//! - `GET /p3/spin`: loops forever.
//!
//! Anything else is `404`.

use std::cell::Cell;
use std::collections::BTreeMap;

use serde_json::{Value, json};
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

wit_bindgen::generate!({
    inline: "
        package nimbus-probe:p3;
        world capabilities {
            import wasi:keyvalue/store@0.2.0-draft2;
            import wasi:config/store@0.2.0-rc.1;
        }
    ",
    path: ["../../../guest-sdk/wit/deps/keyvalue", "../../../guest-sdk/wit/deps/config"],
    world: "nimbus-probe:p3/capabilities",
    generate_all,
});

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

thread_local! {
    static IN_FLIGHT: Cell<u32> = const { Cell::new(0) };
    static MAX_IN_FLIGHT: Cell<u32> = const { Cell::new(0) };
    static SERVED: Cell<u32> = const { Cell::new(0) };
}

struct P3Probe;

wasip3::http::service::export!(P3Probe);

impl wasip3::exports::http::handler::Guest for P3Probe {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        SERVED.set(SERVED.get() + 1);
        let path = request.get_path_with_query().unwrap_or_default();
        let (route, query) = path.split_once('?').unwrap_or((&path, ""));
        let route = route.to_owned();
        let method = request.get_method();
        match (&method, route.as_str()) {
            (Method::Get, "/p3/hello" | "/hello") => {
                Ok(respond(200, TEXT, b"hello from p3".to_vec()))
            }
            (Method::Post, "/p3/echo") => Ok(echo(request)),
            (Method::Get, "/p3/headers") => {
                let seen =
                    json!({ "path_with_query": path, "headers": headers(&request.get_headers()) });
                Ok(json_response(200, &seen))
            }
            (Method::Get, "/p3/spin") =>
            {
                #[allow(clippy::empty_loop)]
                loop {}
            }
            (Method::Get, "/p3/trap") => {
                wait(millis(query)).await;
                panic!("p3-probe: /p3/trap asked for a panic");
            }
            (Method::Get, "/p3/wait") => {
                let now = IN_FLIGHT.get() + 1;
                IN_FLIGHT.set(now);
                MAX_IN_FLIGHT.set(MAX_IN_FLIGHT.get().max(now));
                wait(millis(query)).await;
                IN_FLIGHT.set(IN_FLIGHT.get() - 1);
                let seen = json!({ "max_in_flight": MAX_IN_FLIGHT.get(), "served": SERVED.get() });
                Ok(json_response(200, &seen))
            }
            _ => {
                if let Some(key) = route.strip_prefix("/p3/kv/") {
                    return Ok(kv(request, method, key).await);
                }
                if let Some(key) = route.strip_prefix("/p3/config/") {
                    let value = match wasi::config::store::get(key) {
                        Ok(value) => json!({ "value": value }),
                        Err(e) => json!({ "error": format!("{e:?}") }),
                    };
                    return Ok(json_response(200, &value));
                }
                if let Some(rest) = route.strip_prefix("/p3/call/") {
                    return Ok(call(&request, rest, query).await);
                }
                Ok(respond(404, TEXT, b"not found".to_vec()))
            }
        }
    }
}

/// A response with a complete body, written by a task of its own after the
/// handler has returned the response head.
fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    let headers =
        Fields::from_list(&[("content-type".to_owned(), content_type.as_bytes().to_vec())])
            .expect("content-type is a valid header");
    let (mut writer, contents) = wit_stream::new();
    let (response, _sent) = Response::new(headers, Some(contents), no_trailers());
    response
        .set_status_code(status)
        .expect("the status is a valid HTTP status");
    wasip3::spawn_local(async move {
        writer.write_all(body).await;
    });
    response
}

fn json_response(status: u16, value: &Value) -> Response {
    let body = serde_json::to_vec(value).expect("a JSON value always serializes");
    respond(status, JSON, body)
}

/// A trailers future that resolves to "no trailers".
fn no_trailers() -> wit_bindgen::rt::async_support::FutureReader<Result<Option<Fields>, ErrorCode>>
{
    let (writer, reader) = wit_future::new(|| Ok(None));
    drop(writer);
    reader
}

/// Streams the request body back: each chunk is written out before the next
/// one is read.
fn echo(request: Request) -> Response {
    let (_result_writer, result) = wit_future::new(|| Ok(()));
    let (mut body, _trailers) = Request::consume_body(request, result);
    let (mut writer, contents) = wit_stream::new();
    let headers = Fields::from_list(&[(
        "content-type".to_owned(),
        b"application/octet-stream".to_vec(),
    )])
    .expect("content-type is a valid header");
    let (response, _sent) = Response::new(headers, Some(contents), no_trailers());
    wasip3::spawn_local(async move {
        loop {
            let (status, chunk) = body.read(Vec::with_capacity(64 << 10)).await;
            match status {
                StreamResult::Complete(_) => {
                    if !writer.write_all(chunk).await.is_empty() {
                        break; // the caller went away
                    }
                }
                StreamResult::Dropped | StreamResult::Cancelled => break,
            }
        }
    });
    response
}

async fn kv(request: Request, method: Method, key: &str) -> Response {
    let bucket = match wasi::keyvalue::store::open("data") {
        Ok(bucket) => bucket,
        Err(e) => return json_response(500, &json!({ "error": format!("{e:?}") })),
    };
    let result = match method {
        Method::Put => {
            let value = read_body(request).await;
            bucket
                .set(key, &value)
                .map(|()| json!({ "value": String::from_utf8_lossy(&value) }))
        }
        _ => bucket
            .get(key)
            .map(|v| json!({ "value": v.map(|v| String::from_utf8_lossy(&v).into_owned()) })),
    };
    match result {
        Ok(value) => json_response(200, &value),
        Err(e) => json_response(500, &json!({ "error": format!("{e:?}") })),
    }
}

/// Calls `http://<service>.internal/<path>?<query>` and reports what came back.
async fn call(incoming: &Request, rest: &str, query: &str) -> Response {
    let (service, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = if query.is_empty() {
        format!("/{path}")
    } else {
        format!("/{path}?{query}")
    };
    let seen = incoming.get_headers();
    let headers = Fields::new();
    for name in ["x-request-id", "traceparent"] {
        for value in seen.get(name) {
            headers
                .append(name, &value)
                .expect("a header the host sent is valid");
        }
    }
    let (request, _sent) = Request::new(headers, None, no_trailers(), None);
    request.set_method(&Method::Get).expect("GET is valid");
    request
        .set_scheme(Some(&Scheme::Http))
        .expect("http is valid");
    request
        .set_authority(Some(&format!("{service}.internal")))
        .expect("a service name is a valid authority");
    request
        .set_path_with_query(Some(&path))
        .expect("the path is valid");
    match wasip3::http::client::send(request).await {
        Ok(response) => {
            let status = response.get_status_code();
            let (_result_writer, result) = wit_future::new(|| Ok(()));
            let (body, _trailers) = Response::consume_body(response, result);
            let body = body.collect().await;
            json_response(
                200,
                &json!({ "status": status, "body": String::from_utf8_lossy(&body) }),
            )
        }
        Err(code) => json_response(502, &json!({ "error": format!("{code:?}") })),
    }
}

async fn read_body(request: Request) -> Vec<u8> {
    let (_result_writer, result) = wit_future::new(|| Ok(()));
    let (body, _trailers) = Request::consume_body(request, result);
    body.collect().await
}

fn headers(fields: &Fields) -> BTreeMap<String, String> {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in fields.copy_all() {
        let value = String::from_utf8_lossy(&value).into_owned();
        joined
            .entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    joined
}

fn millis(query: &str) -> u64 {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

async fn wait(ms: u64) {
    if ms > 0 {
        wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
    }
}
