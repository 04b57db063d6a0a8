//! `wstd-hello`: a hello handler written with the third-party `wstd` SDK, exactly as a
//! `wstd` user would write it: the "typed main" idiom in `src/main.rs` of a bin crate.
//!
//! It answers every request with `200 Hello from wstd!\n`. Tests use it to check that
//! components built with an SDK other than Nimbus's own run on Nimbus unchanged. Being a
//! bin, the component also exports `wasi:cli/run` (which `wstd` makes unreachable) next
//! to `wasi:http/incoming-handler`, as real `wstd` components do.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    Ok(Response::new("Hello from wstd!\n".into()))
}
