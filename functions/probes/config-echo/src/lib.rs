//! `config-echo`: answers with the function's configuration, written with `nimbus-sdk`.
//!
//! - `GET /config/{key}` (the route's `:key` parameter, or the last path segment):
//!   `200 text/plain` with the value, or a `404` JSON error naming the key when it
//!   is not configured.
//! - `GET /config`: `200` JSON object of every key and value.
//!
//! Tests use it to check that `[functions.<id>.config]` values, and the
//! `{{ env.NAME }}` templates in them, reach the guest through `wasi:config`.

use std::collections::BTreeMap;

use nimbus_sdk::{Error, IntoResponse, Json, Request, RequestExt, Response, config, http_handler};

#[http_handler]
fn handle(req: Request) -> Result<Response, Error> {
    match requested_key(&req) {
        Some(key) => {
            let value = config::try_get(&key)?
                .ok_or_else(|| Error::not_found(format!("config key `{key}` is not set")))?;
            Ok(value.into_response())
        }
        None => {
            let all: BTreeMap<String, String> = config::all()?;
            Ok(Json(all).into_response())
        }
    }
}

/// The key asked for: the `:key` route parameter, else what follows `/config/`.
fn requested_key(req: &Request) -> Option<String> {
    if let Some(key) = req.param("key") {
        return Some(key);
    }
    let rest = req.uri().path().strip_prefix("/config/")?;
    let rest = rest.trim_end_matches('/');
    (!rest.is_empty()).then(|| nimbus_sdk::percent_decode(rest))
}
