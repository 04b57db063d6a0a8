//! The gateway: JWT authentication and authorization with tokens signed by an
//! independent implementation (PyJWT, run by `tests/gateway/make_tokens.py`),
//! rate limits, CORS, and the generated OpenAPI document checked by a real
//! OpenAPI 3.1 validator (`openapi-spec-validator`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_tests::{EVENTUALLY, TestApp, eventually, json};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Keys and tokens made by PyJWT in `dir/keys`.
struct Tokens {
    secret: String,
    tokens: HashMap<String, String>,
}

impl Tokens {
    fn make(dir: &Path) -> Tokens {
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway/make_tokens.py");
        let output = Command::new("python3")
            .arg(&script)
            .arg(&keys)
            .output()
            .expect("python3 runs (`.ci/run` installs PyJWT and cryptography)");
        assert!(
            output.status.success(),
            "make_tokens.py failed (pip install pyjwt cryptography): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let out: Value = serde_json::from_slice(&output.stdout).expect("JSON from make_tokens.py");
        Tokens {
            secret: out["secret"].as_str().unwrap().to_owned(),
            tokens: serde_json::from_value(out["tokens"].clone()).unwrap(),
        }
    }

    fn get(&self, case: &str) -> &str {
        self.tokens
            .get(case)
            .unwrap_or_else(|| panic!("no token `{case}`"))
    }
}

/// A JWKS endpoint over HTTP whose document the test can change, counting
/// the fetches.
struct JwksServer {
    url: String,
    document: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(document: String) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let document = Arc::new(Mutex::new(document));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (doc, count) = (document.clone(), fetches.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (doc, count) = (doc.clone(), count.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = doc.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        JwksServer {
            url,
            document,
            fetches,
        }
    }
}

fn auth_manifest(secret: &str, jwks_url: &str) -> String {
    let provider = |name: &str, key: &str| {
        format!("[auth.{name}]\nissuer = \"nimbus-test\"\naudience = \"api\"\n{key}\n")
    };
    let mut m = String::from("version = 1\n[app]\nname = \"gw\"\n");
    m += &provider("hmac256", &format!("hs256_secret = \"{secret}\""));
    m += &provider("hmac384", &format!("hs384_secret = \"{secret}\""));
    m += &provider("hmac512", &format!("hs512_secret = \"{secret}\""));
    m += &provider("rsa", "public_key_pem = \"keys/rsa.pem\"");
    m += &provider("ec256", "public_key_pem = \"keys/ec256.pem\"");
    m += &provider("ec384", "public_key_pem = \"keys/ec384.pem\"");
    m += &provider("ed", "public_key_pem = \"keys/ed25519.pem\"");
    m += &provider("jwks", "jwks = \"keys/jwks.json\"");
    // HMAC allowed beside RSA: only the key's family stops an HS256 token
    // that names the RSA key's kid.
    m += &provider(
        "jwksmixed",
        "jwks = \"keys/jwks.json\"\nalgorithms = [\"RS256\", \"HS256\"]",
    );
    m += &provider(
        "served",
        &format!("jwks = \"{jwks_url}\"\njwks_min_refresh = \"200ms\""),
    );
    m += r#"
[functions.echo]
source = "guest:echo"
# Every route: a token from `hmac256` with the `write` scope, unless it says.
auth = { require = "hmac256", scopes = ["write"] }
routes = [
    "/hs256",
    { route = "/hs384", auth = { require = "hmac384" } },
    { route = "/hs512", auth = { require = "hmac512" } },
    { route = "/rsa", auth = { require = "rsa" } },
    { route = "/ec256", auth = { require = "ec256" } },
    { route = "/ec384", auth = { require = "ec384" } },
    { route = "/ed", auth = { require = "ed" } },
    { route = "/jwks", auth = { require = "jwks" } },
    { route = "/jwks-mixed", auth = { require = "jwksmixed" } },
    { route = "/served", auth = { require = "served" } },
    { route = "/admin", auth = { require = "hmac256", roles = ["admin"] } },
    { route = "/public", auth = { require = "none" } },
    { route = "/per-user", auth = { require = "hmac256" }, rate_limit = { requests = 1, per = "1m", burst = 1, key = "subject" } },
]
"#;
    m
}

/// The auth app, with tokens for it; its JWKS URL provider is not used.
async fn start_auth_app() -> (TestApp, Tokens) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::make(dir.path());
    let manifest = auth_manifest(&tokens.secret, "http://127.0.0.1:9/unused");
    (
        TestApp::start_in(dir, &manifest, Default::default()).await,
        tokens,
    )
}

/// The auth app with its `served` provider's JWKS on a local HTTP server
/// (the `jwks-served.json` keys); also returns the rotated JWKS document.
async fn start_auth_app_serving_jwks() -> (TestApp, Tokens, JwksServer, String) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::make(dir.path());
    let keys = dir.path().join("keys");
    let read = |name: &str| std::fs::read_to_string(keys.join(name)).unwrap();
    let rotated = read("jwks-rotated.json");
    let jwks = JwksServer::start(read("jwks-served.json")).await;
    let manifest = auth_manifest(&tokens.secret, &jwks.url);
    let app = TestApp::start_in(dir, &manifest, Default::default()).await;
    (app, tokens, jwks, rotated)
}

async fn get_with(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn jwt_tokens_from_an_independent_signer() {
    let (app, tokens, _jwks, _) = start_auth_app_serving_jwks().await;

    // Every algorithm family, each against its provider: 200.
    for (path, case) in [
        ("/hs256", "hs256"),
        ("/hs256", "expired_within_leeway"),
        ("/hs384", "hs384"),
        ("/hs512", "hs512"),
        ("/rsa", "rs256"),
        ("/rsa", "rs384"),
        ("/rsa", "rs512"),
        ("/rsa", "ps256"),
        ("/ec256", "es256"),
        ("/ec384", "es384"),
        ("/ed", "eddsa"),
        ("/jwks", "jwks_rsa"),
        ("/jwks", "jwks_ec"),
        ("/jwks-mixed", "jwks_rsa"),
        ("/admin", "hs256_admin"),
    ] {
        let response = get_with(&app, path, Some(tokens.get(case))).await;
        assert_eq!(response.status(), 200, "{case} on {path}");
    }

    // Each way a token can be wrong: 401 with a Bearer challenge saying why.
    for (path, case, why) in [
        ("/hs256", "expired", "token expired"),
        ("/hs256", "not_yet_valid", "not yet valid"),
        ("/hs256", "wrong_issuer", "wrong issuer"),
        ("/hs256", "wrong_audience", "wrong audience"),
        ("/hs256", "bad_signature", "invalid signature"),
        ("/hs256", "no_exp", "claim `exp`"),
        ("/hs256", "alg_none", "algorithm none is not accepted"),
        ("/hs256", "rs256", "algorithm RS256 is not accepted"),
        (
            "/rsa",
            "hmac_with_rsa_public_key",
            "algorithm HS256 is not accepted",
        ),
        ("/ec256", "es384", "invalid signature"),
        ("/jwks", "jwks_unknown_kid", "unknown key id `rsa-9`"),
        ("/hs256", "not-a-jwt", "malformed token"),
    ] {
        let token = tokens.tokens.get(case).map_or(case, String::as_str);
        let response = get_with(&app, path, Some(token)).await;
        assert_eq!(response.status(), 401, "{case} on {path}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer realm=\"gw\", error=\"invalid_token\""),
            "{case}: {challenge}"
        );
        let body = json(response).await;
        assert_eq!(body["error"], "unauthorized", "{case}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(why), "{case}: {message}");
        assert!(challenge.contains(why), "{case}: {challenge}");
    }

    // No token at all: 401 with a challenge.
    let missing = get_with(&app, "/hs256", None).await;
    assert_eq!(missing.status(), 401);
    let challenge = missing.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("missing bearer token"), "{challenge}");

    // A valid token without the required scope, or role: 403.
    let read_only = get_with(&app, "/hs256", Some(tokens.get("hs256_read_only"))).await;
    assert_eq!(read_only.status(), 403);
    let challenge = read_only.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"write\""),
        "{challenge}"
    );
    assert!(
        json(read_only).await["message"]
            .as_str()
            .unwrap()
            .contains("scope write")
    );
    let not_admin = get_with(&app, "/admin", Some(tokens.get("hs256"))).await;
    assert_eq!(not_admin.status(), 403);

    // A public route needs nothing.
    assert_eq!(get_with(&app, "/public", None).await.status(), 200);
}

#[tokio::test]
async fn functions_get_verified_claims_and_never_spoofed_ones() {
    let (app, tokens) = start_auth_app().await;
    let spoof = |request: reqwest::RequestBuilder| {
        request
            .header("x-nimbus-auth-subject", "mallory")
            .header("x-nimbus-auth-provider", "hmac256")
            .header("x-nimbus-auth-scopes", "write admin")
            .header("x-nimbus-auth-roles", "admin")
            .header("x-nimbus-auth-claims", r#"{"sub":"mallory"}"#)
    };

    let verified = spoof(app.client.get(app.url("/hs256")))
        .bearer_auth(tokens.get("hs256"))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    let seen = json(verified).await;
    let headers = &seen["headers"];
    assert_eq!(headers["x-nimbus-auth-subject"], "alice");
    assert_eq!(headers["x-nimbus-auth-provider"], "hmac256");
    assert_eq!(headers["x-nimbus-auth-scopes"], "read write");
    assert_eq!(headers["x-nimbus-auth-roles"], "editor");
    let claims: Value =
        serde_json::from_str(headers["x-nimbus-auth-claims"].as_str().unwrap()).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], "nimbus-test");
    assert_eq!(claims["name"], "Zoë", "non-ASCII claims survive the header");

    // On a public route the spoofed headers are dropped and none are set.
    let public = spoof(app.client.get(app.url("/public")))
        .send()
        .await
        .unwrap();
    let seen = json(public).await;
    let names: Vec<&String> = seen["headers"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("x-nimbus-auth"))
        .collect();
    assert!(names.is_empty(), "{names:?}");

    // An admin role in spoofed headers does not open an admin route.
    let admin = spoof(app.client.get(app.url("/admin")))
        .bearer_auth(tokens.get("hs256"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 403);
}

#[tokio::test]
async fn jwks_over_http_is_fetched_cached_and_refreshed_for_a_new_kid() {
    let (app, tokens, jwks, rotated) = start_auth_app_serving_jwks().await;
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 0, "fetched lazily");

    for _ in 0..5 {
        let ok = get_with(&app, "/served", Some(tokens.get("served_ec1"))).await;
        assert_eq!(ok.status(), 200);
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "cached");

    // A kid the JWKS does not have yet: refused, and a flood of such tokens
    // causes at most one fetch per `jwks_min_refresh`.
    for _ in 0..10 {
        let unknown = get_with(&app, "/served", Some(tokens.get("served_ec2"))).await;
        assert_eq!(unknown.status(), 401);
    }
    assert!(jwks.fetches.load(Ordering::SeqCst) <= 2);

    // The provider rotates its keys: once `jwks_min_refresh` has passed since
    // the last load, the new kid is fetched and accepted; until then it is
    // refused without a fetch.
    *jwks.document.lock().unwrap() = rotated;
    let rotated = eventually("the rotated key to be accepted", EVENTUALLY, || async {
        let response = get_with(&app, "/served", Some(tokens.get("served_ec2"))).await;
        (response.status() != 401).then_some(response)
    })
    .await;
    assert_eq!(rotated.status(), 200);
    assert!(
        jwks.fetches.load(Ordering::SeqCst) <= 3,
        "at most one load per `jwks_min_refresh`"
    );
    let old = get_with(&app, "/served", Some(tokens.get("served_ec1"))).await;
    assert_eq!(old.status(), 200);
}

#[tokio::test]
async fn subject_rate_limits_are_per_user() {
    let (app, tokens) = start_auth_app().await;
    let alice = tokens.get("hs256");
    let bob = tokens.get("hs256_bob");
    assert_eq!(get_with(&app, "/per-user", Some(alice)).await.status(), 200);
    let limited = get_with(&app, "/per-user", Some(alice)).await;
    assert_eq!(limited.status(), 429);
    // One request a minute: 60 s until the next.
    assert_eq!(limited.headers()["retry-after"], "60");
    assert_eq!(get_with(&app, "/per-user", Some(bob)).await.status(), 200);
}

const LIMITS: &str = r#"
version = 1
[app]
name = "limits"
cors = { allow_origins = ["https://shop.example"], allow_headers = ["authorization", "content-type", "x-api-key"], expose_headers = ["x-request-id"], allow_credentials = true, max_age = "10m" }

[functions.echo]
source = "guest:echo"
routes = [
    { route = "GET /client", rate_limit = { requests = 2, per = "1s", burst = 3, key = "client" } },
    { route = "GET /keyed", rate_limit = { requests = 1, per = "10s", burst = 2, key = "header:x-api-key" } },
    "GET /free",
    "GET /cors",
    "POST /cors",
]

[functions.hello]
source = "guest:hello"
routes = ["GET /hello", "GET /hi"]
cors = { allow_origins = ["*"] }
# One bucket for both routes.
rate_limit = { requests = 1, per = "10s", burst = 2 }
"#;

fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(ip))
        .build()
        .unwrap()
}

#[tokio::test]
async fn rate_limits_allow_a_burst_then_429_with_retry_after_then_recover() {
    let app = TestApp::start(LIMITS).await;
    let url = app.url("/client");
    for i in 0..3 {
        let ok = app.client.get(&url).send().await.unwrap();
        assert_eq!(ok.status(), 200, "request {i} of the burst");
    }
    let limited = app.client.get(&url).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    // 2 a second: the next request fits in 0.5 s, rounded up to 1.
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, 1);
    let body = json(limited).await;
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["status"], 429);

    // Another client address has its own bucket.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 2));
    for _ in 0..3 {
        assert_eq!(other.get(&url).send().await.unwrap().status(), 200);
    }
    assert_eq!(other.get(&url).send().await.unwrap().status(), 429);

    // After Retry-After, the first client is let through again, once. The
    // wait is the behaviour under test (a client that honours Retry-After
    // gets in at its first try), so it is a sleep, not a poll: polling
    // would pass however late the bucket refilled.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);

    // A header-keyed limit: each key its own bucket.
    let keyed = |key: &'static str| app.client.get(app.url("/keyed")).header("x-api-key", key);
    assert_eq!(keyed("a").send().await.unwrap().status(), 200);
    assert_eq!(keyed("a").send().await.unwrap().status(), 200);
    let limited = keyed("a").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "10");
    assert_eq!(keyed("b").send().await.unwrap().status(), 200);

    // A function's limit is one bucket for all its routes.
    assert_eq!(app.get("/hello").await.status(), 200);
    assert_eq!(app.get("/hi").await.status(), 200);
    assert_eq!(app.get("/hello").await.status(), 429);
    assert_eq!(app.get("/hi").await.status(), 429);

    // Routes without a limit are not limited.
    for _ in 0..20 {
        assert_eq!(app.get("/free").await.status(), 200);
    }
}

#[tokio::test]
async fn cors_preflights_are_answered_by_the_gateway() {
    let app = TestApp::start(LIMITS).await;
    let preflight = |origin: &str, method: &str, headers: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/cors"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
    };

    let ok = preflight("https://shop.example", "POST", "content-type, x-api-key")
        .await
        .unwrap();
    assert_eq!(ok.status(), 204);
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example");
    assert_eq!(h["access-control-allow-methods"], "POST");
    assert_eq!(h["access-control-allow-headers"], "content-type, x-api-key");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["vary"].to_str().unwrap().contains("Origin"));
    assert!(
        ok.text().await.unwrap().is_empty(),
        "the function did not run"
    );

    for (origin, method, headers) in [
        ("https://evil.example", "POST", "content-type"),
        ("https://shop.example", "POST", "x-secret"),
    ] {
        let refused = preflight(origin, method, headers).await.unwrap();
        assert_eq!(refused.status(), 403, "{origin} {method} {headers}");
        assert_eq!(refused.headers()["vary"], "Origin");
        assert!(
            !refused
                .headers()
                .contains_key("access-control-allow-origin")
        );
        assert_eq!(json(refused).await["error"], "cors_rejected");
    }
    // A method no route takes is not allowed either.
    let delete = preflight("https://shop.example", "DELETE", "")
        .await
        .unwrap();
    assert!(!delete.status().is_success());
    assert!(!delete.headers().contains_key("access-control-allow-origin"));

    // Any origin, without credentials: `*`.
    let star = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/hello"))
        .header("origin", "https://anyone.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(star.status(), 204);
    assert_eq!(star.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn cors_headers_on_simple_requests_and_gateway_errors() {
    let app = TestApp::start(LIMITS).await;
    let from = |path: &str, origin: &str| app.client.get(app.url(path)).header("origin", origin);

    let allowed = from("/cors", "https://shop.example").send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-expose-headers"], "x-request-id");
    assert!(h["vary"].to_str().unwrap().contains("Origin"));

    let other = from("/cors", "https://evil.example").send().await.unwrap();
    assert_eq!(
        other.status(),
        200,
        "the browser, not the server, enforces CORS"
    );
    assert!(!other.headers().contains_key("access-control-allow-origin"));

    // A 429 from the gateway still carries the CORS headers, so the page can
    // read why.
    let mut last = None;
    for _ in 0..4 {
        last = Some(
            from("/client", "https://shop.example")
                .send()
                .await
                .unwrap(),
        );
    }
    let limited = last.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(
        limited.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
}

/// Runs `openapi-spec-validator` (a real OpenAPI 3.1 validator) on `document`.
fn validate_openapi(document: &Value, dir: &Path) {
    let file = dir.join("openapi.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import OpenAPIV31SpecValidator, validate\n\
             spec = json.load(open(sys.argv[1]))\n\
             assert spec['openapi'].startswith('3.1'), spec['openapi']\n\
             validate(spec, cls=OpenAPIV31SpecValidator)\n\
             print('valid')",
        ])
        .arg(&file)
        .output()
        .expect("python3 runs (`.ci/run` installs openapi-spec-validator)");
    assert!(
        output.status.success(),
        "the OpenAPI document is invalid: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_shop_openapi_document_is_valid_and_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = nimbus_tests::example_manifest(
        "shop",
        dir.path(),
        &[("{{ env.SHOP_SIGNING_KEY }}", "openapi-test-key")],
    );
    let loaded = nimbus::manifest::Manifest::parse(&dir.path().join("nimbus.toml"), &manifest)
        .expect("the manifest parses");
    let app = TestApp::start_in(dir, &manifest, Default::default()).await;
    let response = app.get("/.well-known/nimbus/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document = json(response).await;
    let scratch = tempfile::tempdir().unwrap();
    validate_openapi(&document, scratch.path());

    // Every route of every function, with its method.
    let mut routes = 0;
    for function in &loaded.functions {
        for route in &function.routes {
            routes += 1;
            let path: String = route
                .pattern
                .as_str()
                .split('/')
                .map(|s| match s.strip_prefix(':') {
                    Some(p) => format!("{{{p}}}"),
                    None => s.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/");
            let method = route.method.as_ref().expect("shop routes name a method");
            let op = &document["paths"][&path][method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{route} is not in the document");
            assert_eq!(op["tags"][0], function.id.as_str());
        }
    }
    assert_eq!(routes, 13);
    let paths = document["paths"].as_object().unwrap();
    let operations: usize = paths
        .values()
        .map(|item| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
                .count()
        })
        .sum();
    assert_eq!(operations, routes, "nothing but the manifest's routes");

    // Auth from the manifest: orders need `orders:write`, catalog writes the
    // admin role, reads are public; the scheme is a JWT bearer.
    assert_eq!(
        document["paths"]["/orders"]["post"]["security"],
        serde_json::json!([{ "users": ["orders:write"] }])
    );
    assert_eq!(
        document["paths"]["/products"]["post"]["security"],
        serde_json::json!([{ "users": ["admin"] }])
    );
    assert_eq!(
        document["paths"]["/products"]["get"]["security"],
        serde_json::json!([])
    );
    assert_eq!(
        document["components"]["securitySchemes"]["users"]["bearerFormat"],
        "JWT"
    );
    // Bodies from the manifest, inline and from files; documented errors.
    let login = &document["paths"]["/users/login"]["post"];
    assert_eq!(
        login["requestBody"]["content"]["application/json"]["schema"]["required"],
        serde_json::json!(["username", "password"])
    );
    assert!(
        login["responses"]["429"].is_object(),
        "login is rate limited"
    );
    assert!(document["paths"]["/orders/{id}"]["get"]["responses"]["401"].is_object());
    assert_eq!(
        document["paths"]["/orders/{id}"]["parameters"][0]["name"],
        "id"
    );

    // The human-readable page: the same document, no external assets.
    let page = app.get("/.well-known/nimbus/docs").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>shop API</title>"));
    assert!(html.contains("\"/products/{id}\""));
    for external in ["src=\"http", "href=\"http", "<link", "@import"] {
        assert!(!html.contains(external), "the page loads `{external}`");
    }
}
