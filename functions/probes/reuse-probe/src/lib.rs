//! `reuse-probe`: shows whether an instance serves more than one request, written
//! with `nimbus-sdk`.
//!
//! | request | response |
//! |---|---|
//! | `GET .../trap` | traps (a panic), so the instance must not serve again |
//! | `GET .../spin` | loops until the host stops it at the function's timeout |
//! | anything else | `200` with the number of requests this instance has served, this one included |
//!
//! The count lives in a global of the guest, so it is `1` on every request when each
//! request gets a fresh instance, and grows when instances are reused. Tests use it to
//! check Nimbus's `instance_reuse` mode.

use std::sync::atomic::{AtomicU64, Ordering};

use nimbus_sdk::{Error, Request, Response, http_handler};

/// Requests this instance has served.
static SERVED: AtomicU64 = AtomicU64::new(0);

#[http_handler]
fn handle(req: Request) -> Result<Response, Error> {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    match req.uri().path().rsplit('/').next() {
        Some("trap") => panic!("reuse-probe was asked to trap"),
        Some("spin") => spin(),
        _ => Ok(Response::new(format!("{served}\n").into_bytes().into())),
    }
}

/// Never returns; the host's timeout ends it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
