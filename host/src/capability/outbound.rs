//! Outbound HTTP from guests (`wasi:http/outgoing-handler`).
//!
//! Denied by default: every request a guest sends gets the standard
//! `HttpRequestDenied` error code, which guests see as an ordinary error.

use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

/// Per-instance outbound HTTP policy.
#[derive(Debug, Default)]
pub struct OutboundCtx {
    _private: (),
}

impl WasiHttpHooks for OutboundCtx {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::debug!(uri = %request.uri(), "outbound HTTP denied: not granted in the manifest");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
