//! `sandbox-probe`: reports which files and environment variables the sandbox lets it see.
//!
//! `?file=PATH&env=NAME` (`%2F` decodes to `/`; a missing parameter counts as empty)
//! tries `std::fs::read_to_string(PATH)` and `std::env::var(NAME)` and answers
//! `200 application/json`:
//! `{"file": {"path": "...", "ok": bool, "error": "msg" | null, "len": N | null},
//! "env": {"name": "...", "value": "..." | null}, "env_count": N}`, where `env_count` is
//! the number of environment variables the guest can see. Tests use it to check that a
//! function reaches only the files and variables its manifest grants.

use std::io::Write as _;

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct SandboxProbe;

wasip2::http::proxy::export!(SandboxProbe);

impl Guest for SandboxProbe {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let file = decode_slashes(query_param(&path_with_query, "file").unwrap_or_default());
        let env = decode_slashes(query_param(&path_with_query, "env").unwrap_or_default());

        let file_report = match std::fs::read_to_string(&file) {
            Ok(contents) => serde_json::json!({
                "path": file, "ok": true, "error": null, "len": contents.len(),
            }),
            Err(err) => serde_json::json!({
                "path": file, "ok": false, "error": err.to_string(), "len": null,
            }),
        };
        let report = serde_json::json!({
            "file": file_report,
            "env": { "name": env, "value": std::env::var(&env).ok() },
            "env_count": std::env::vars().count(),
        });
        let json = serde_json::to_vec(&report).expect("a JSON value always serializes");
        respond(response_out, "application/json", &json);
    }
}

/// The only percent-decoding the probe needs: `%2F` (either case) to `/`.
fn decode_slashes(value: &str) -> String {
    value.replace("%2F", "/").replace("%2f", "/")
}

/// Returns the (undecoded) value of `key` in the query string of `path_with_query`.
fn query_param<'a>(path_with_query: &'a str, key: &str) -> Option<&'a str> {
    let (_, query) = path_with_query.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == key).then_some(value)
    })
}

/// Sends a `200` response with the given content type and a complete body.
fn respond(response_out: ResponseOutparam, content_type: &str, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".to_owned(), content_type.into())])
        .expect("content-type is a valid header");
    let response = OutgoingResponse::new(headers);
    let outgoing_body = response.body().expect("the body is taken only once");
    ResponseOutparam::set(response_out, Ok(response));

    let mut stream = outgoing_body
        .write()
        .expect("the stream is taken only once");
    stream.write_all(body).expect("write the response body");
    stream.flush().expect("flush the response body");
    // The stream must be dropped before the body is finished.
    drop(stream);
    OutgoingBody::finish(outgoing_body, None).expect("finish the response body");
}
