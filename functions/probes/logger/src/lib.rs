//! `logger`: writes one message to every log channel a guest has, written with
//! `nimbus-sdk`.
//!
//! `GET /log?msg=M` logs `sdk: M` at info level through `wasi:logging`
//! (`nimbus_sdk::log::info`), prints `stdout: M` to stdout and `stderr: M` to
//! stderr, and answers `200 logged\n`. Tests use it to check that all three reach
//! the host's log tagged with the function and the request id.

use nimbus_sdk::{Request, RequestExt, http_handler};

#[http_handler]
fn handle(req: Request) -> &'static str {
    let msg = req.query("msg").unwrap_or_default();
    nimbus_sdk::log::info(&format!("sdk: {msg}"));
    println!("stdout: {msg}");
    eprintln!("stderr: {msg}");
    "logged\n"
}
