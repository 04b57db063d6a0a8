//! `logger`: writes one message to every log channel a guest has, written with
//! `nimbus-sdk`.
//!
//! `GET /log?msg=M` logs `sdk: M` at info level through `wasi:logging`
//! (`nimbus_sdk::log::info`), prints `stdout: M` to stdout and `stderr: M` to
//! stderr, and answers `200 logged\n`. Tests use it to check that all three reach
//! the host's log tagged with the function and the request id.
//!
//! It also writes one stdout line in three pieces, `pieces: M`, ` and` and
//! ` more\n`, each through a stdout handle of its own (as toolchains that ask
//! for the stream on every write do), which the host must join into one
//! record. Last it writes `unfinished: M` with no newline, which the host logs
//! when the instance ends.

use nimbus_sdk::{Request, RequestExt, http_handler};

#[http_handler]
fn handle(req: Request) -> &'static str {
    let msg = req.query("msg").unwrap_or_default();
    nimbus_sdk::log::info(&format!("sdk: {msg}"));
    println!("stdout: {msg}");
    eprintln!("stderr: {msg}");
    let pieces = [format!("pieces: {msg}"), " and".into(), " more\n".into()];
    for piece in pieces {
        write_stdout(&piece);
    }
    write_stdout(&format!("unfinished: {msg}"));
    "logged\n"
}

/// Writes `text` through a stdout handle of its own, dropped right after.
fn write_stdout(text: &str) {
    let stdout = wasip2::cli::stdout::get_stdout();
    stdout
        .blocking_write_and_flush(text.as_bytes())
        .expect("stdout takes the write");
}
