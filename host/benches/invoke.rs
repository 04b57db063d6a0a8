//! In-process costs on the hot path: a whole invocation of the hello
//! component (store + instantiate + call + body), and routing among 1,000
//! routes.
//!
//! Run with: cargo bench -p nimbus --bench invoke

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use nimbus::app::App;
use nimbus::engine::{Runtime, RuntimeConfig};
use nimbus::manifest::{Manifest, Route};
use nimbus::trigger::http::router::{Match, Router};
use std::hint::black_box;
use std::path::Path;

fn load_hello() -> App {
    let text = format!(
        "version = 1\n[app]\nname = \"bench\"\n[functions.hello]\nsource = {:?}\nroutes = [\"GET /\"]\n",
        nimbus_test_artifacts::guest("hello").display().to_string()
    );
    let manifest = Manifest::parse(Path::new("/bench/nimbus.toml"), &text).unwrap();
    let runtime = Runtime::new(&RuntimeConfig::default()).unwrap();
    App::load(
        &runtime,
        &manifest,
        nimbus::backend::Backends::embedded(
            nimbus::backend::embedded::EmbeddedBackend::open(
                &std::env::temp_dir().join(format!("nimbus-bench-{}.redb", std::process::id())),
            )
            .unwrap(),
        ),
    )
    .unwrap()
}

fn invoke(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = std::sync::Arc::new(load_hello());
    c.bench_function("invoke/hello", |b| {
        b.to_async(&rt).iter(|| async {
            let request = http::Request::builder()
                .uri("/")
                .header("host", "localhost")
                .body(
                    Empty::<Bytes>::new()
                        .map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
                )
                .unwrap();
            let call = nimbus::executor::CallCtx::new("bench", None, 0);
            let response = nimbus::executor::invoke_http(&app, 0, request, call)
                .await
                .unwrap();
            black_box(response.into_body().collect().await.unwrap().to_bytes())
        })
    });
}

fn route(c: &mut Criterion) {
    let routes: Vec<(usize, Route)> = (0..1000)
        .map(|i| {
            let text = match i % 4 {
                0 => format!("GET /service{i}/items"),
                1 => format!("GET /service{i}/items/:id"),
                2 => format!("POST /service{i}/items/:id/notes/:note"),
                _ => format!("/service{i}/static/..."),
            };
            (i, Route::parse(&text).unwrap())
        })
        .collect();
    let router = Router::new(routes.iter().map(|(i, r)| (*i, r)));
    let method = http::Method::GET;
    c.bench_function("route/1000-routes", |b| {
        b.iter(|| {
            let m = router.route(black_box(&method), black_box("/service501/items/42"));
            assert!(matches!(m, Match::Found { .. }));
            black_box(m);
        })
    });
}

criterion_group!(benches, invoke, route);
criterion_main!(benches);
