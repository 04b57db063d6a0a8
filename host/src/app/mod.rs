//! A loaded app: each function compiled, linked and pre-instantiated once,
//! with its limits and grants, and the routing table over all of them.
//!
//! A function's code is a [`Version`]; what serves it is its [`Traffic`] (a
//! stable version and maybe a canary), which the deployer swaps atomically
//! while requests run.
//!
//! - [`load`]: the checks a component passes before it serves;
//! - [`router`]: method + path to a function and its parameters.

mod load;
pub mod router;

pub use load::LoadError;

use crate::backend::Backends;
use crate::backend::sqlite::{Database, StatementLimits};
use crate::capability::bindings::QueueFunctionPre;
use crate::capability::config::ConfigCtx;
use crate::capability::kv::KvCtx;
use crate::capability::messaging::MessagingCtx;
use crate::capability::outbound::OutboundPolicy;
use crate::capability::postgres::PostgresCtx;
use crate::capability::sqlite::SqliteCtx;
use crate::engine::{EngineKind, Runtime};
use crate::gateway::Gateway;
use crate::manifest::{
    FunctionId, FunctionSpec, Limits, Manifest, QueueSpec, Route, SqliteSpec, StoreName,
};
use crate::state::{Grants, HostState};
use crate::telemetry::FunctionMetrics;
use arc_swap::{ArcSwap, ArcSwapOption};
use router::Router;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// A function's HTTP handler, linked and type-checked once.
#[derive(Clone)]
pub enum HttpPre {
    /// `wasi:http/incoming-handler@0.2.x` (WASI 0.2): one request per call,
    /// one call at a time per instance.
    P2(ProxyPre<HostState>),
    /// `wasi:http/handler@0.3.x` (WASI 0.3): an async call per request, and
    /// with concurrent reuse several at once in one instance.
    P3(ServicePre<HostState>),
}

/// One version of a function: a component, compiled, linked and
/// pre-instantiated, ready to serve.
///
/// Each invocation holds an `Arc` to the version it started on, so a deploy
/// never pulls a component out from under a request in flight.
pub struct Version {
    /// Hex blake3 hash of the component's bytes: the version's name.
    pub digest: String,
    /// When this version started serving (for the manifest's component: when
    /// the app loaded).
    pub deployed_at: SystemTime,
    /// The HTTP handler, linked and type-checked once; instantiated per
    /// request. `None` for a queue-only function.
    pub http: Option<HttpPre>,
    /// The engine the component was compiled for: the WASI 0.3 one when it
    /// exports or imports any WASI 0.3 interface.
    pub engine: EngineKind,
    /// The handler interfaces it exports (`wasi:http/handler@0.3.0`, ...),
    /// as `nimbus check` names them.
    pub handlers: Vec<String>,
    /// The `wasi:messaging/incoming-handler` export, instantiated per
    /// message, for a function with a queue trigger.
    pub queue: Option<QueueFunctionPre<HostState>>,
}

impl Version {
    /// The first [`SHORT_DIGEST_LEN`] characters of the digest, for logs and tables.
    pub fn short_digest(&self) -> &str {
        &self.digest[..SHORT_DIGEST_LEN.min(self.digest.len())]
    }
}

/// Hex characters of a digest shown to people: 64 bits, plenty to tell a
/// function's handful of versions apart.
pub const SHORT_DIGEST_LEN: usize = 16;

/// A version that takes a share of a function's traffic next to the stable one.
pub struct Canary {
    /// The candidate version.
    pub version: Arc<Version>,
    /// Percent of invocations it serves, 0 to 100.
    pub percent: u8,
}

/// What serves a function's invocations: the stable version, and a canary
/// taking a percentage of them, if one is running.
pub struct Traffic {
    /// The version that serves everything the canary does not.
    pub stable: Arc<Version>,
    /// The canary, if any.
    pub canary: Option<Canary>,
}

/// One function, ready to instantiate, with everything each invocation
/// needs prepared once.
pub struct Function {
    /// The function's id.
    pub id: FunctionId,
    /// The id as a shared string, for logs and metric labels.
    pub id_str: Arc<str>,
    /// The id as the guest's `x-nimbus-function` header, made once.
    pub id_header: Option<http::HeaderValue>,
    /// Its manifest entry.
    pub spec: FunctionSpec,
    /// Its limits.
    pub limits: Limits,
    /// What its instances are given: environment, key-value, config,
    /// messaging and outbound grants, memory cap.
    pub grants: Grants,
    /// Its own routes, for service calls; a catch-all when it has none, so
    /// an internal-only service is reachable by its callers.
    pub routes: Router,
    /// The queue trigger, if the function has one.
    pub queue: Option<QueueTrigger>,
    /// Permits for `limits.concurrency` instances at once. Shared by all
    /// its versions: a deploy does not double the limit.
    pub slots: Arc<Semaphore>,
    /// Its metric handles, resolved once (no label lookup per request).
    pub metrics: FunctionMetrics,
    /// The versions serving it; `None` once the function was removed.
    /// Swapped atomically by the deployer, read lock-free per invocation.
    traffic: ArcSwapOption<Traffic>,
}

impl Function {
    /// The version one invocation runs on: the canary for its percentage of
    /// calls, else the stable version; `None` when the function was removed.
    /// The caller keeps the `Arc` for the whole invocation.
    pub fn version(&self) -> Option<Arc<Version>> {
        let traffic = self.traffic.load();
        let traffic = traffic.as_ref()?;
        Some(match &traffic.canary {
            Some(canary) if fastrand::u8(0..100) < canary.percent => canary.version.clone(),
            _ => traffic.stable.clone(),
        })
    }

    /// What serves the function now; `None` when it was removed.
    pub fn traffic(&self) -> Option<Arc<Traffic>> {
        self.traffic.load_full()
    }

    /// Replaces what serves the function, atomically: invocations already
    /// running finish on the version they hold, new ones see `traffic`.
    pub(crate) fn set_traffic(&self, traffic: Option<Traffic>) {
        self.traffic.store(traffic.map(Arc::new));
    }
}

/// A function's queue trigger: topic and retry policy.
pub struct QueueTrigger {
    /// Topic and retry policy.
    pub spec: QueueSpec,
}

/// A loaded app: one snapshot of its functions and routing table. Adding a
/// function makes a new snapshot ([`App::with_function`]) that shares the
/// existing functions, published through [`LiveApp`].
pub struct App {
    /// The app's name.
    pub name: String,
    /// The manifest's functions in id order, then functions added through
    /// the admin API; [`Router`] targets index into this.
    pub functions: Vec<Arc<Function>>,
    /// The routing table.
    pub router: Router,
    /// Auth, rate limits, CORS and API docs for every route.
    pub gateway: Arc<Gateway>,
    /// The manifest the app serves, with functions added through the admin
    /// API: the gateway's policies and API document are built from it.
    manifest: Arc<Manifest>,
    runtime: Runtime,
    backends: Backends,
    /// The app's SQLite databases, opened and migrated.
    databases: Databases,
    linker: load::Linkers,
    manifest_file: PathBuf,
}

/// An app's open SQLite databases by name.
type Databases = Arc<BTreeMap<StoreName, Arc<Database>>>;

/// Opens (and migrates) each database of `specs` not in `open` yet, for
/// functions of `app` that list them; refused on a node without SQLite (a
/// cluster's).
fn open_databases(
    app: &str,
    backends: &Backends,
    open: &Databases,
    specs: &[SqliteSpec],
    functions: &[&FunctionSpec],
) -> Result<Databases, LoadError> {
    let Some(sqlite) = &backends.sqlite else {
        return match functions.iter().find(|f| !f.sqlite.is_empty()) {
            Some(f) => Err(LoadError::SqliteInCluster {
                function: f.id.clone(),
                databases: f
                    .sqlite
                    .iter()
                    .map(|d| format!("\"{d}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            None => Ok(open.clone()),
        };
    };
    let mut databases = (**open).clone();
    let listed = functions.iter().flat_map(|f| &f.sqlite);
    let defaults: Vec<SqliteSpec> = listed
        .filter(|name| !specs.iter().any(|s| &s.name == *name))
        .map(|name| SqliteSpec::with_defaults(name.clone()))
        .collect();
    for spec in specs.iter().chain(&defaults) {
        if !databases.contains_key(&spec.name) {
            let db = sqlite.open(app, spec.name.as_str(), spec)?;
            databases.insert(spec.name.clone(), db);
        }
    }
    Ok(Arc::new(databases))
}

/// The app as it serves now: triggers take a snapshot ([`LiveApp::current`])
/// per request, lock-free, and keep it for the whole request.
#[derive(Clone)]
pub struct LiveApp(Arc<ArcSwap<App>>);

impl LiveApp {
    /// Serves `app`.
    pub fn new(app: Arc<App>) -> LiveApp {
        LiveApp(Arc::new(ArcSwap::new(app)))
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<App> {
        self.0.load_full()
    }

    /// Publishes a new snapshot; requests already running keep theirs.
    pub(crate) fn replace(&self, app: Arc<App>) {
        self.0.store(app);
    }
}

impl From<Arc<App>> for LiveApp {
    fn from(app: Arc<App>) -> LiveApp {
        LiveApp::new(app)
    }
}

/// The routing table over `functions`, leaving out removed ones. Every
/// table is built here, at load and whenever a deployment adds or removes a
/// function, so route policies have one place to hook in.
pub fn routing_table(functions: &[Arc<Function>]) -> Router {
    Router::new(
        functions
            .iter()
            .enumerate()
            .filter(|(_, f)| f.traffic.load().is_some())
            .flat_map(|(i, f)| f.spec.routes.iter().map(move |r| (i, r))),
    )
}

impl App {
    /// Loads every function of the manifest: read, compile (or fetch from the
    /// cache), link and pre-instantiate. Fails on the first bad function.
    pub fn load(
        runtime: &Runtime,
        manifest: &Manifest,
        backends: Backends,
    ) -> Result<App, LoadError> {
        let linker = load::Linkers::new(runtime);
        let ids: Vec<&FunctionId> = manifest.functions.iter().map(|f| &f.id).collect();
        let databases = open_databases(
            &manifest.name,
            &backends,
            &Databases::default(),
            &manifest.sqlite,
            &manifest.functions.iter().collect::<Vec<_>>(),
        )?;
        let mut functions = Vec::with_capacity(manifest.functions.len());
        for spec in &manifest.functions {
            let bytes = load::read_component(&spec.id, &spec.source, spec.build.is_some())?;
            let version = load::prepare(&linker, spec, &bytes, &spec.source)?;
            functions.push(Arc::new(new_function(
                &manifest.name,
                &ids,
                spec,
                version,
                &backends,
                &databases,
            )));
        }
        let router = routing_table(&functions);
        let gateway = Arc::new(Gateway::new(manifest).map_err(LoadError::Auth)?);
        Ok(App {
            name: manifest.name.clone(),
            functions,
            router,
            gateway,
            manifest: Arc::new(manifest.clone()),
            runtime: runtime.clone(),
            backends,
            databases,
            linker,
            manifest_file: manifest.file.clone(),
        })
    }

    /// The runtime the app was loaded into.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The storage the app runs on.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// A new snapshot of this app with function `spec` added, serving
    /// `bytes` (checked as [`App::prepare`] checks). `spec` was validated
    /// against the app's manifest. Blocking: the component is compiled.
    pub fn with_function(
        &self,
        spec: &FunctionSpec,
        bytes: &[u8],
        origin: &Path,
    ) -> Result<App, LoadError> {
        let version = load::prepare(&self.linker, spec, bytes, origin)?;
        let databases = open_databases(
            &self.name,
            &self.backends,
            &self.databases,
            &self.manifest.sqlite,
            &[spec],
        )?;
        let mut ids: Vec<&FunctionId> = self.functions.iter().map(|f| &f.id).collect();
        ids.push(&spec.id);
        let function = new_function(&self.name, &ids, spec, version, &self.backends, &databases);
        let mut functions = self.functions.clone();
        functions.push(Arc::new(function));
        let mut manifest = (*self.manifest).clone();
        manifest.functions.push(spec.clone());
        Ok(App {
            name: self.name.clone(),
            router: routing_table(&functions),
            gateway: Arc::new(self.gateway.extended(&manifest).map_err(LoadError::Auth)?),
            manifest: Arc::new(manifest),
            functions,
            runtime: self.runtime.clone(),
            backends: self.backends.clone(),
            databases,
            linker: self.linker.clone(),
            manifest_file: self.manifest_file.clone(),
        })
    }

    /// The manifest the app was loaded from.
    pub fn manifest_file(&self) -> &Path {
        &self.manifest_file
    }

    /// A new snapshot with the same functions and the routing table built
    /// again, after a function was removed or brought back.
    pub fn rerouted(&self) -> App {
        App {
            name: self.name.clone(),
            router: routing_table(&self.functions),
            gateway: self.gateway.clone(),
            manifest: self.manifest.clone(),
            functions: self.functions.clone(),
            runtime: self.runtime.clone(),
            backends: self.backends.clone(),
            databases: self.databases.clone(),
            linker: self.linker.clone(),
            manifest_file: self.manifest_file.clone(),
        }
    }

    /// The index of function `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.functions.iter().position(|f| f.id.as_str() == id)
    }

    /// Checks `bytes` as a new version of `functions[index]` with the same
    /// rules as [`App::load`] (a component, exporting what the function's
    /// triggers need, importing only what Nimbus provides), then compiles
    /// (through the compile cache) and pre-instantiates it. `origin` names
    /// the bytes in errors. Blocking: compiling can take a second.
    pub fn prepare(&self, index: usize, bytes: &[u8], origin: &Path) -> Result<Version, LoadError> {
        load::prepare(&self.linker, &self.functions[index].spec, bytes, origin)
    }
}

/// A function of app `app` serving `version`; `ids` are the app's function
/// ids in index order, for its service grants.
fn new_function(
    app: &str,
    ids: &[&FunctionId],
    spec: &FunctionSpec,
    version: Version,
    backends: &Backends,
    databases: &Databases,
) -> Function {
    let id_str: Arc<str> = spec.id.as_str().into();
    let own_routes: Vec<Route> = if spec.routes.is_empty() {
        vec![Route::parse("/...").expect("a valid route")]
    } else {
        spec.routes.clone()
    };
    let services = spec
        .services
        .iter()
        .filter_map(|s| Some((s.as_str().into(), ids.iter().position(|id| *id == s)?)))
        .collect();
    let limits = spec.limits;
    let sql_limits = StatementLimits {
        timeout: limits.sql_timeout,
        max_rows: limits.sql_rows,
        max_bytes: limits.sql_result_size,
    };
    let grants = Grants {
        function: id_str.clone(),
        env: spec.env.clone().into(),
        kv: KvCtx::new(
            backends.kv.clone(),
            app,
            &spec.kv,
            limits.kv_key_size,
            limits.kv_value_size,
        ),
        sqlite: SqliteCtx::new(
            spec.sqlite
                .iter()
                .filter_map(|name| Some((name.clone(), databases.get(name)?.clone())))
                .collect(),
            sql_limits,
        ),
        postgres: PostgresCtx::new(&id_str, &spec.postgres, sql_limits),
        config: ConfigCtx::new(spec.config.clone().into()),
        messaging: MessagingCtx::new(backends.queue.clone(), app, spec.id.as_str(), &spec.publish),
        outbound: Arc::new(OutboundPolicy {
            function: id_str.clone(),
            services,
            hosts: spec.allowed_outbound_hosts.clone().into(),
            timeout: limits.outbound_timeout,
        }),
        memory: limits.memory,
    };
    Function {
        metrics: FunctionMetrics::new(&id_str),
        id_header: http::HeaderValue::from_str(&id_str).ok(),
        id_str,
        id: spec.id.clone(),
        spec: spec.clone(),
        limits,
        grants,
        routes: Router::new(own_routes.iter().map(|r| (0, r))),
        queue: spec.queue.clone().map(|spec| QueueTrigger { spec }),
        slots: Arc::new(Semaphore::new(limits.concurrency as usize)),
        traffic: ArcSwapOption::from_pointee(Traffic {
            stable: Arc::new(version),
            canary: None,
        }),
    }
}
