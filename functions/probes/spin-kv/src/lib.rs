//! `spin-kv`: a component written for Spin, with Spin's own Rust SDK
//! (`spin-sdk` 7, a `wasi:http@0.3.0` component), that Nimbus must run
//! unchanged. It uses Spin's key-value store (`spin:key-value@3.0.0`, the
//! store labelled `default`) and variables (`spin:variables@3.0.0`):
//! - `GET /spin/var/<name>`: the variable's value, or `404 undefined: ...`;
//! - `PUT /spin/kv/<key>` stores the body; `GET /spin/kv/<key>` answers it
//!   (`404` when unset); `DELETE /spin/kv/<key>` deletes it;
//!   `GET /spin/exists/<key>` answers `true` or `false`;
//! - `GET /spin/keys`: every key, one per line, sorted.
//!
//! A store error answers `500` with the error.

use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Method, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::key_value::Store;

#[http_service]
async fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if let Some(name) = path.strip_prefix("/spin/var/") {
        return Ok(match spin_sdk::variables::get(name).await {
            Ok(value) => (StatusCode::OK, value),
            Err(e) => (StatusCode::NOT_FOUND, format!("{e:?}")),
        });
    }
    let store = match Store::open_default().await {
        Ok(store) => store,
        Err(e) => return Ok((StatusCode::INTERNAL_SERVER_ERROR, format!("open: {e:?}"))),
    };
    if path == "/spin/keys" {
        let mut keys = match store.get_keys().await.collect().await {
            Ok(keys) => keys,
            Err(e) => return Ok((StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}"))),
        };
        keys.sort();
        return Ok((StatusCode::OK, keys.join("\n")));
    }
    if let Some(key) = path.strip_prefix("/spin/exists/") {
        return Ok(match store.exists(key).await {
            Ok(exists) => (StatusCode::OK, exists.to_string()),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}")),
        });
    }
    let Some(key) = path.strip_prefix("/spin/kv/") else {
        return Ok((StatusCode::NOT_FOUND, "not found".to_owned()));
    };
    let key = key.to_owned();
    let answer = match method {
        Method::PUT => {
            let body = request.into_body().bytes().await?;
            store
                .set(&key, &body)
                .await
                .map(|()| (StatusCode::OK, "stored".to_owned()))
        }
        Method::DELETE => store
            .delete(&key)
            .await
            .map(|()| (StatusCode::OK, "deleted".to_owned())),
        _ => store.get(&key).await.map(|value| match value {
            Some(value) => (StatusCode::OK, String::from_utf8_lossy(&value).into_owned()),
            None => (StatusCode::NOT_FOUND, "unset".to_owned()),
        }),
    };
    Ok(answer.unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}"))))
}
