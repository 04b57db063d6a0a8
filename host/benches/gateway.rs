//! The gateway's checks on the hot path: verifying an HS256 bearer token and
//! its scope, a rate-limit check, and a CORS preflight answer.
//!
//! Run with: cargo bench -p nimbus --bench gateway

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use nimbus::gateway::{Gateway, Preflight};
use nimbus::manifest::Manifest;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

const SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";

const MANIFEST: &str = r#"
version = 1
[app]
name = "bench"
cors = { allow_origins = ["https://app.example"] }
[auth.users]
issuer = "bench"
audience = "api"
hs256_secret = "bench-secret-0123456789abcdef0123456789abcdef"
[functions.api]
source = "api.wasm"
routes = [
    { route = "GET /private", auth = { require = "users", scopes = ["read"] } },
    { route = "GET /limited", rate_limit = { requests = 1000000000, per = "1s" } },
]
"#;

fn token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "bench", "aud": "api", "sub": "alice", "scope": "read write",
        "iat": now, "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn gateway(c: &mut Criterion) {
    let manifest = Manifest::parse(Path::new("/bench/nimbus.toml"), MANIFEST).unwrap();
    let gateway = Gateway::new(&manifest).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", token())).unwrap(),
    );
    let private = gateway.policy(0, 0).unwrap();
    c.bench_function("gateway/jwt_hs256_verify_and_scope", |b| {
        b.iter(|| {
            let claims = rt
                .block_on(private.authenticate(black_box(&headers)))
                .unwrap();
            black_box(claims);
        })
    });

    let limited = gateway.policy(0, 1).unwrap();
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let empty = HeaderMap::new();
    c.bench_function("gateway/rate_limit_check", |b| {
        b.iter(|| {
            limited
                .limit_before_auth(black_box(&empty), client)
                .unwrap()
        })
    });

    let cors = gateway.cors(0).unwrap();
    let mut preflight_headers = HeaderMap::new();
    preflight_headers.insert("origin", HeaderValue::from_static("https://app.example"));
    preflight_headers.insert(
        "access-control-request-method",
        HeaderValue::from_static("GET"),
    );
    c.bench_function("gateway/cors_preflight", |b| {
        b.iter(|| {
            let preflight = Preflight::of(&Method::OPTIONS, black_box(&preflight_headers)).unwrap();
            black_box(cors.preflight(&preflight, &[Method::GET]).unwrap());
        })
    });
}

criterion_group!(benches, gateway);
criterion_main!(benches);
