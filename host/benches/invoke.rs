//! In-process costs on the hot path: a whole invocation of the hello
//! component (store + instantiate + call + body), fresh and with instance
//! reuse, and routing among 1,000 routes.
//!
//! Run with: cargo bench -p nimbus --bench invoke
//!
//! With `NIMBUS_BENCH_LOOP=N` set, the binary instead runs N fresh-instance
//! invocations of hello (`NIMBUS_BENCH_REUSE=1`: with instance reuse) and
//! prints the mean time per call, without criterion. `benches/profile.sh`
//! runs it under callgrind for instruction counts, which stay the same on a
//! busy machine where wall-clock timings do not.

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use http_body_util::{BodyExt, Empty};
use nimbus::app::App;
use nimbus::app::router::{Match, Router};
use nimbus::call::CallCtx;
use nimbus::capability::outbound::Services;
use nimbus::engine::{Runtime, RuntimeConfig};
use nimbus::executor::Executor;
use nimbus::manifest::{Manifest, Route};
use nimbus::trigger::http::HttpTrigger;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

/// The allocator the `nimbus` binary runs with, so the numbers are its own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Requests each reused instance serves in the reuse benchmark, as in the
/// load script's `wasmtime serve --max-instance-reuse-count`.
const REUSE_MAX_REQUESTS: u32 = 1000;

/// Invocations the loop mode runs before it starts counting, so one-time
/// costs (first use of a pool slot, lazy initialisation) stay out of the mean.
const LOOP_WARMUP: u32 = 100;

fn load_hello(reuse: bool) -> Hello {
    let reuse = if reuse {
        format!("instance_reuse = {REUSE_MAX_REQUESTS}\n")
    } else {
        String::new()
    };
    let text = format!(
        "version = 1\n[app]\nname = \"bench\"\n[functions.hello]\nsource = {:?}\nroutes = [\"GET /\"]\n{reuse}",
        nimbus_test_artifacts::guest("hello").display().to_string()
    );
    let manifest = Manifest::parse(Path::new("/bench/nimbus.toml"), &text).unwrap();
    // valgrind cannot reserve the address space of the default pool; the
    // profile script runs with a small one (the per-instance work is the same).
    let pool_instances = std::env::var("NIMBUS_BENCH_POOL_INSTANCES")
        .map_or(nimbus::engine::DEFAULT_POOL_INSTANCES, |n| {
            n.parse().expect("NIMBUS_BENCH_POOL_INSTANCES is a count")
        });
    let runtime = Runtime::new(&RuntimeConfig {
        pool_instances,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let app = App::load(
        &runtime,
        &manifest,
        nimbus::backend::Backends::embedded(
            nimbus::backend::embedded::EmbeddedBackend::open(&std::env::temp_dir().join(format!(
                "nimbus-bench-{}-{}.redb",
                std::process::id(),
                u8::from(reuse.is_empty())
            )))
            .unwrap(),
        ),
    )
    .unwrap();
    let app = Arc::new(app);
    let executor = Arc::new(Executor::new());
    let services = Arc::new(HttpTrigger::new(app.clone(), executor.clone()));
    Hello {
        app,
        executor,
        services,
    }
}

/// hello, loaded, with what runs it.
struct Hello {
    app: Arc<App>,
    executor: Arc<Executor>,
    services: Arc<dyn Services>,
}

/// One whole invocation of hello: the body is read to the end.
async fn hello_once(hello: &Hello) -> Bytes {
    let request = http::Request::builder()
        .uri("/")
        .header("host", "localhost")
        .body(
            Empty::<Bytes>::new().map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
        )
        .unwrap();
    let call = CallCtx::new("bench", None, 0);
    let response = hello
        .executor
        .invoke_http(&hello.app, 0, request, call, &hello.services)
        .await
        .unwrap();
    response.into_body().collect().await.unwrap().to_bytes()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn invoke(c: &mut Criterion) {
    let rt = runtime();
    for (name, reuse) in [("invoke/hello", false), ("invoke/hello-reuse", true)] {
        // Loaded inside, so a filtered-out benchmark loads nothing.
        c.bench_function(name, |b| {
            let hello = load_hello(reuse);
            b.to_async(&rt)
                .iter(|| async { black_box(hello_once(&hello).await) })
        });
    }
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

// Gateway checks (auth, rate limit, CORS): their benchmarks go in a
// `fn gateway(c: &mut Criterion)` here, added to the group below.

criterion_group!(benches, invoke, route);

/// Runs `iterations` invocations after a warm-up and prints the mean.
fn fixed_loop(iterations: u32, reuse: bool) {
    let rt = runtime();
    let hello = load_hello(reuse);
    rt.block_on(async {
        for _ in 0..LOOP_WARMUP {
            black_box(hello_once(&hello).await);
        }
        let started = std::time::Instant::now();
        for _ in 0..iterations {
            black_box(hello_once(&hello).await);
        }
        let per_call = started.elapsed() / iterations.max(1);
        let pooling = hello.app.runtime().is_pooling();
        println!(
            "{iterations} invocations (reuse: {reuse}, pooling: {pooling}): {per_call:?} per call"
        );
    });
}

fn main() {
    match std::env::var("NIMBUS_BENCH_LOOP") {
        Ok(n) => {
            let iterations = n.parse().expect("NIMBUS_BENCH_LOOP is a count");
            let reuse = std::env::var("NIMBUS_BENCH_REUSE").is_ok_and(|v| v == "1");
            fixed_loop(iterations, reuse);
        }
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
