//! `not-http`: an ordinary command-line program, not an HTTP handler.
//!
//! Built for wasm32-wasip2 it becomes a `wasi:cli/command` component, which exports
//! `wasi:cli/run` instead of `wasi:http/incoming-handler`. Tests use it to check the
//! error for a component that exports the wrong world.

fn main() {
    println!("I am a command, not an HTTP handler");
}
