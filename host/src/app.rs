//! A loaded app: each function compiled, linked and pre-instantiated once,
//! with its limits, and the routing table over all of them.

use crate::backend::Backends;
use crate::capability::bindings::QueueFunctionPre;
use crate::capability::config::ConfigCtx;
use crate::capability::kv::KvCtx;
use crate::capability::messaging::MessagingCtx;
use crate::engine::Runtime;
use crate::manifest::{FunctionId, FunctionSpec, HostPattern, Limits, Manifest, QueueSpec, Route};
use crate::state::HostState;
use crate::trigger::http::router::Router;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// The export every HTTP function must have.
pub const HTTP_HANDLER_EXPORT: &str = "wasi:http/incoming-handler@0.2";

/// Why a function could not be loaded. Each message names the function and
/// the file, and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The component file does not exist.
    #[error("function `{function}`: component file {} does not exist{hint}", path.display())]
    Missing {
        /// The function.
        function: FunctionId,
        /// The file named by `source`.
        path: PathBuf,
        /// A hint about building it.
        hint: String,
    },
    /// The file could not be read.
    #[error("function `{function}`: cannot read {}: {source}", path.display())]
    Read {
        /// The function.
        function: FunctionId,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not WebAssembly at all.
    #[error("function `{function}`: {} is not a WebAssembly file", path.display())]
    NotWasm {
        /// The function.
        function: FunctionId,
        /// The file.
        path: PathBuf,
    },
    /// The file is a core module, not a component.
    #[error(
        "function `{function}`: {} is a core wasm module, not a component; build for `wasm32-wasip2`, or run `wasm-tools component new` on it",
        path.display()
    )]
    CoreModule {
        /// The function.
        function: FunctionId,
        /// The file.
        path: PathBuf,
    },
    /// wasmtime rejected the component.
    #[error("function `{function}`: {} is not a valid component: {message}", path.display())]
    Invalid {
        /// The function.
        function: FunctionId,
        /// The file.
        path: PathBuf,
        /// wasmtime's explanation.
        message: String,
    },
    /// The component imports something the host does not provide.
    #[error("function `{function}`: {} {message}", path.display())]
    UnsupportedImport {
        /// The function.
        function: FunctionId,
        /// The file.
        path: PathBuf,
        /// wasmtime's explanation, naming the import.
        message: String,
    },
    /// The function has a queue trigger but no message handler.
    #[error(
        "function `{function}`: {} does not export `wasi:messaging/incoming-handler@0.2.0-draft`, which a function with `queue` needs (use `#[queue_handler]` from nimbus-sdk)",
        path.display()
    )]
    NoQueueHandler {
        /// The function.
        function: FunctionId,
        /// The file.
        path: PathBuf,
    },
    /// The component does not export the HTTP handler.
    #[error(
        "function `{function}`: {} does not export `wasi:http/incoming-handler@0.2.x` (it exports: {exports}); an HTTP function must target the `wasi:http/proxy` world",
        path.display()
    )]
    WrongWorld {
        /// The function.
        function: FunctionId,
        /// The file.
        path: PathBuf,
        /// What it does export.
        exports: String,
    },
}

/// One function, ready to instantiate, with everything each invocation
/// needs prepared once.
pub struct Function {
    /// The function's id.
    pub id: FunctionId,
    /// The id as a shared string, for logs.
    pub id_str: Arc<str>,
    /// Its limits.
    pub limits: Limits,
    /// Environment variables for the guest.
    pub env: Arc<[(String, String)]>,
    /// Its key-value grants.
    pub kv: KvCtx,
    /// Its configuration.
    pub config: ConfigCtx,
    /// Indices of the functions it may call.
    pub services: Arc<[usize]>,
    /// Hosts it may reach over the network.
    pub outbound: Arc<[HostPattern]>,
    /// Its own routes, for service calls; a catch-all when it has none, so
    /// an internal-only service is reachable by its callers.
    pub routes: Router,
    /// Hex content hash of the component: the function's version.
    pub digest: String,
    /// The HTTP handler, linked and type-checked once; instantiated per
    /// request. `None` for a queue-only function.
    pub http: Option<ProxyPre<HostState>>,
    /// The queue trigger, if the function has one.
    pub queue: Option<QueueTrigger>,
    /// Its publishing grants.
    pub messaging: MessagingCtx,
    /// Permits for `limits.concurrency` instances at once.
    pub slots: Arc<Semaphore>,
    /// What the executor prepared for it: metric handles and, with
    /// `instance_reuse`, the idle instances.
    pub instances: crate::executor::Instances,
}

/// A function's queue trigger: its policy and its pre-instantiated handler.
pub struct QueueTrigger {
    /// Topic and retry policy.
    pub spec: QueueSpec,
    /// The `wasi:messaging/incoming-handler` export, instantiated per message.
    pub pre: QueueFunctionPre<HostState>,
}

/// A loaded app.
pub struct App {
    /// The app's name.
    pub name: String,
    /// Functions in id order; [`Router`] targets index into this.
    pub functions: Vec<Function>,
    /// The routing table.
    pub router: Router,
    runtime: Runtime,
    backends: Backends,
}

impl App {
    /// Loads every function of the manifest: read, compile (or fetch from the
    /// cache), link and pre-instantiate. Fails on the first bad function.
    pub fn load(
        runtime: &Runtime,
        manifest: &Manifest,
        backends: Backends,
    ) -> Result<App, LoadError> {
        let linker = HostState::linker(runtime.engine()).expect("host interfaces link once");
        let mut functions = Vec::with_capacity(manifest.functions.len());
        for spec in &manifest.functions {
            functions.push(load_function(runtime, &linker, manifest, spec, &backends)?);
        }
        let router = Router::new(
            manifest
                .functions
                .iter()
                .enumerate()
                .flat_map(|(i, f)| f.routes.iter().map(move |r| (i, r))),
        );
        Ok(App {
            name: manifest.name.clone(),
            functions,
            router,
            runtime: runtime.clone(),
            backends,
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
}

fn load_function(
    runtime: &Runtime,
    linker: &Linker<HostState>,
    manifest: &Manifest,
    spec: &FunctionSpec,
    backends: &Backends,
) -> Result<Function, LoadError> {
    let function = spec.id.clone();
    let path = spec.source.clone();
    let bytes = read_component(&function, &path, spec.build.is_some())?;
    let component = runtime.compile(&bytes).map_err(|e| LoadError::Invalid {
        function: function.clone(),
        path: path.clone(),
        message: one_line(&format!("{e:#}")),
    })?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::UnsupportedImport {
            function: function.clone(),
            path: path.clone(),
            message: unsupported_import(&format!("{e:#}")),
        })?;
    let queue = match &spec.queue {
        Some(queue) => Some(QueueTrigger {
            spec: queue.clone(),
            pre: QueueFunctionPre::new(pre.clone()).map_err(|_| LoadError::NoQueueHandler {
                function: function.clone(),
                path: path.clone(),
            })?,
        }),
        None => None,
    };
    // HTTP is required unless the function is only a queue consumer.
    let http = match ProxyPre::new(pre) {
        Ok(http) => Some(http),
        Err(_) if queue.is_some() && spec.routes.is_empty() => None,
        Err(_) => {
            return Err(LoadError::WrongWorld {
                exports: export_names(runtime, &component),
                function: function.clone(),
                path: path.clone(),
            });
        }
    };
    let own_routes: Vec<Route> = if spec.routes.is_empty() {
        vec![Route::parse("/...").expect("a valid route")]
    } else {
        spec.routes.clone()
    };
    Ok(Function {
        id_str: function.as_str().into(),
        id: function,
        limits: spec.limits,
        env: spec.env.clone().into(),
        kv: KvCtx::new(
            backends.kv.clone(),
            &manifest.name,
            &spec.kv,
            spec.limits.kv_key_size,
            spec.limits.kv_value_size,
        ),
        config: ConfigCtx::new(spec.config.clone().into()),
        services: spec
            .services
            .iter()
            .filter_map(|s| manifest.functions.iter().position(|f| &f.id == s))
            .collect(),
        outbound: spec.allowed_outbound_hosts.clone().into(),
        routes: Router::new(own_routes.iter().map(|r| (0, r))),
        digest: blake3::hash(&bytes).to_hex()[..16].to_string(),
        http,
        queue,
        messaging: MessagingCtx::new(
            backends.queue.clone(),
            &manifest.name,
            spec.id.as_str(),
            &spec.publish,
        ),
        slots: Arc::new(Semaphore::new(spec.limits.concurrency as usize)),
        instances: crate::executor::Instances::new(
            &spec.id,
            spec.instance_reuse,
            spec.limits.concurrency,
        ),
    })
}

fn read_component(
    function: &FunctionId,
    path: &Path,
    has_build: bool,
) -> Result<Vec<u8>, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            LoadError::Missing {
                function: function.clone(),
                path: path.to_owned(),
                hint: if has_build {
                    "; run `nimbus build` (or `nimbus up --build`) first".into()
                } else {
                    String::new()
                },
            }
        } else {
            LoadError::Read {
                function: function.clone(),
                path: path.to_owned(),
                source,
            }
        }
    })?;
    if wasmparser::Parser::is_core_wasm(&bytes) {
        return Err(LoadError::CoreModule {
            function: function.clone(),
            path: path.to_owned(),
        });
    }
    if !wasmparser::Parser::is_component(&bytes) {
        return Err(LoadError::NotWasm {
            function: function.clone(),
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

fn export_names(runtime: &Runtime, component: &Component) -> String {
    let names: Vec<String> = component
        .component_type()
        .exports(runtime.engine())
        .map(|(name, _)| name.to_string())
        .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

/// Names the missing import when wasmtime's message does, else passes the
/// message on.
fn unsupported_import(message: &str) -> String {
    let named = message
        .split_once("imports instance `")
        .or_else(|| message.split_once("imports function `"))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name);
    match named {
        Some(name) => format!(
            "imports `{name}`, which Nimbus does not provide (it provides WASI 0.2 and wasi:http)"
        ),
        None => format!("cannot be linked: {}", one_line(message)),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
