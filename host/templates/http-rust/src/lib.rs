//! `{{name}}`: an HTTP function, made by `nimbus new http-rust`.
//!
//! `GET /hello/:name` greets `name` and counts its visits in the key-value
//! store `{{name}}` (granted by `kv = ["{{name}}"]` in nimbus.toml).

use nimbus_sdk::{Error, Request, RequestExt, http_handler, kv};

/// The key-value store the manifest grants this function.
const STORE: &str = "{{name}}";

#[http_handler]
fn hello(req: Request) -> Result<String, Error> {
    let name = req.param("name").unwrap_or_else(|| "world".to_owned());
    let visits = kv::Store::open(STORE)?.increment(&format!("visits/{name}"), 1)?;
    Ok(format!("Hello, {name}! (visit {visits})\n"))
}
