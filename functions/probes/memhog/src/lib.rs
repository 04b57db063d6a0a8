//! `memhog`: allocates and touches memory.
//!
//! With `?mb=N` it allocates N MiB, writing to every 4 KiB page so the memory is really
//! committed, and answers `200 allocated N MiB\n`. Without `mb` it keeps allocating 1 MiB
//! chunks until an allocation fails, at which point Rust's allocation-failure handler
//! aborts the guest (a trap). Tests use it to check the host's per-instance memory limit.
//! A non-numeric `mb` gets a `400`.

use std::hint::black_box;

use probe_util::{TEXT, query_param, respond};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

/// Memory is allocated in chunks of this size.
const CHUNK_BYTES: usize = 1 << 20;
/// One byte is written per host page, so that every page of a chunk is really committed.
const PAGE_BYTES: usize = 4 << 10;

struct Memhog;

wasip2::http::proxy::export!(Memhog);

impl Guest for Memhog {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let mut held = Vec::new();
        match query_param(&path_with_query, "mb").map(str::parse::<usize>) {
            Some(Ok(mb)) => {
                for _ in 0..mb {
                    held.push(black_box(touched_chunk()));
                }
                let body = format!("allocated {mb} MiB\n");
                respond(response_out, 200, TEXT, body.as_bytes());
            }
            Some(Err(err)) => {
                let body = format!("bad `mb`: {err}\n");
                respond(response_out, 400, TEXT, body.as_bytes());
            }
            None => loop {
                held.push(black_box(touched_chunk()));
            },
        }
    }
}

/// Allocates one chunk and writes to each of its pages.
fn touched_chunk() -> Vec<u8> {
    let mut chunk = vec![0_u8; CHUNK_BYTES];
    for offset in (0..CHUNK_BYTES).step_by(PAGE_BYTES) {
        chunk[offset] = 1;
    }
    chunk
}
