//! Loading one version of a function: the checks a component must pass (a
//! component, exporting what the function's triggers need, importing only
//! what Nimbus provides), compiling through the cache, pre-instantiating.

use super::Version;
use crate::capability::bindings::QueueFunctionPre;
use crate::engine::Runtime;
use crate::manifest::{FunctionId, FunctionSpec};
use crate::state::HostState;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

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
    /// A JWT provider's keys could not be loaded.
    #[error(transparent)]
    Auth(crate::gateway::ProviderError),
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

/// Checks, compiles and pre-instantiates `bytes` as a version of `spec`.
pub(super) fn prepare(
    runtime: &Runtime,
    linker: &Linker<HostState>,
    spec: &FunctionSpec,
    bytes: &[u8],
    path: &Path,
) -> Result<Version, LoadError> {
    let function = spec.id.clone();
    let path = path.to_owned();
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(LoadError::CoreModule { function, path });
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err(LoadError::NotWasm { function, path });
    }
    let component = runtime.compile(bytes).map_err(|e| LoadError::Invalid {
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
        Some(_) => {
            Some(
                QueueFunctionPre::new(pre.clone()).map_err(|_| LoadError::NoQueueHandler {
                    function: function.clone(),
                    path: path.clone(),
                })?,
            )
        }
        None => None,
    };
    // HTTP is required unless the function is only a queue consumer.
    let http = match ProxyPre::new(pre) {
        Ok(http) => Some(http),
        Err(_) if queue.is_some() && spec.routes.is_empty() => None,
        Err(_) => {
            return Err(LoadError::WrongWorld {
                exports: export_names(runtime, &component),
                function,
                path,
            });
        }
    };
    Ok(Version {
        digest: blake3::hash(bytes).to_hex().to_string(),
        deployed_at: SystemTime::now(),
        http,
        queue,
    })
}

pub(super) fn read_component(
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
