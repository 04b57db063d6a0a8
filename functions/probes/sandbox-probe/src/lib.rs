//! `sandbox-probe`: reports which files and environment variables the sandbox lets it see.
//!
//! `?file=PATH&env=NAME` (`%2F` decodes to `/`; a missing parameter counts as empty)
//! tries `std::fs::read_to_string(PATH)` and `std::env::var(NAME)` and answers
//! `200 application/json`:
//! `{"file": {"path": "...", "ok": bool, "error": "msg" | null, "len": N | null},
//! "env": {"name": "...", "value": "..." | null}, "env_count": N}`, where `env_count` is
//! the number of environment variables the guest can see. Tests use it to check that a
//! function reaches only the files and variables its manifest grants.

use probe_util::{JSON, query_param, respond};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct SandboxProbe;

wasip2::http::proxy::export!(SandboxProbe);

impl Guest for SandboxProbe {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let file = decode_slashes(query_param(&path_with_query, "file").unwrap_or_default());
        let env = decode_slashes(query_param(&path_with_query, "env").unwrap_or_default());

        let file_report = match std::fs::read_to_string(&file) {
            Ok(contents) => serde_json::json!({
                "path": file, "ok": true, "error": null, "len": contents.len(),
            }),
            Err(err) => serde_json::json!({
                "path": file, "ok": false, "error": err.to_string(), "len": null,
            }),
        };
        let report = serde_json::json!({
            "file": file_report,
            "env": { "name": env, "value": std::env::var(&env).ok() },
            "env_count": std::env::vars().count(),
        });
        let json = serde_json::to_vec(&report).expect("a JSON value always serializes");
        respond(response_out, 200, JSON, &json);
    }
}

/// The only percent-decoding the probe needs: `%2F` (either case) to `/`.
fn decode_slashes(value: &str) -> String {
    value.replace("%2F", "/").replace("%2f", "/")
}
