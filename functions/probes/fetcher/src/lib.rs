//! `fetcher`: fetches a URL with outbound HTTP, written with `nimbus-sdk`.
//!
//! `GET /fetch?url=U` sends `GET U` through `nimbus_sdk::http::get`. When a
//! response arrives, whatever its status, it answers `200` with
//! `{"status": <upstream status>, "body": "<upstream body as lossy UTF-8>"}`; when
//! the request fails it answers with the SDK's `502 bad_gateway` JSON error,
//! whose message names the wasi:http error code (e.g. `HttpRequestDenied`); a URL
//! that cannot be sent (`?url=nope`) is a `502` too.
//! Without `url` it is a `400`. Tests use it to check the outbound allow-list.

use nimbus_sdk::{Error, Json, Request, RequestExt, http, http_handler};

#[http_handler]
fn handle(req: Request) -> Result<Json<serde_json::Value>, Error> {
    let url = req
        .query("url")
        .ok_or_else(|| Error::bad_request("pass the URL to fetch as `?url=`"))?;
    // Every failure, a bad URL included, is the upstream's: a 502 naming it.
    let response = http::get(&url).map_err(|err| Error::bad_gateway(err.to_string()))?;
    Ok(Json(serde_json::json!({
        "status": response.status().as_u16(),
        "body": String::from_utf8_lossy(response.body()),
    })))
}
