//! Loading one version of a function: the checks a component must pass (a
//! component, exporting what the function's triggers need, importing only
//! what Nimbus provides), compiling through the cache, pre-instantiating.

use super::{HttpPre, Version};
use crate::capability::bindings::QueueFunctionPre;
use crate::engine::{EngineKind, Runtime};
use crate::manifest::{FunctionId, FunctionSpec};
use crate::state::HostState;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// The host's linkers, one per engine; the WASI 0.3 one is made the first
/// time a WASI 0.3 component loads. Clones share them.
#[derive(Clone)]
pub(super) struct Linkers {
    runtime: Runtime,
    sync: Linker<HostState>,
    concurrent: Arc<OnceLock<Linker<HostState>>>,
}

impl Linkers {
    pub(super) fn new(runtime: &Runtime) -> Linkers {
        Linkers {
            runtime: runtime.clone(),
            sync: HostState::linker(runtime.engine(), EngineKind::Sync)
                .expect("host interfaces link once"),
            concurrent: Arc::new(OnceLock::new()),
        }
    }

    fn get(&self, kind: EngineKind) -> wasmtime::Result<&Linker<HostState>> {
        match kind {
            EngineKind::Sync => Ok(&self.sync),
            EngineKind::Concurrent => {
                if let Some(linker) = self.concurrent.get() {
                    return Ok(linker);
                }
                let engine = self.runtime.engine_of(kind)?;
                let linker = HostState::linker(engine, kind)?;
                Ok(self.concurrent.get_or_init(|| linker))
            }
        }
    }
}

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
    /// `instance_reuse.concurrent` above 1 on a WASI 0.2 component.
    #[error(
        "function `{function}`: {} is a WASI 0.2 component (`wasi:http/incoming-handler@0.2.x`), which runs one request at a time per instance, so `instance_reuse.concurrent` must be 1, not {concurrent}; only a WASI 0.3 component (`wasi:http/handler@0.3.x`) runs several at once",
        path.display()
    )]
    ConcurrentWasiP2 {
        /// The function.
        function: FunctionId,
        /// The file.
        path: PathBuf,
        /// The manifest's `concurrent`.
        concurrent: u32,
    },
    /// `instance_reuse` on a component whose engine answers only the first
    /// request of an instance.
    #[error(
        "function `{function}`: {} was built by {tool}, whose JavaScript engine (StarlingMonkey) answers only the first request of an instance (bytecodealliance/StarlingMonkey#247: every later one would fail), so it cannot have `instance_reuse`; remove it, and each request gets a fresh instance",
        path.display()
    )]
    ReuseUnsupported {
        /// The function.
        function: FunctionId,
        /// The file.
        path: PathBuf,
        /// The tool and version its producers section names.
        tool: String,
    },
    /// A SQLite database could not be opened or migrated.
    #[error(transparent)]
    Sqlite(#[from] crate::backend::sqlite::MigrationError),
    /// A function lists SQLite databases on a node of a cluster.
    #[error(
        "function `{function}`: `sqlite = [{databases}]`: a SQLite database is a file on one node's disk, so a cluster (`--cluster`) cannot share it; run this app on one node, or keep the data in PostgreSQL (`postgres = {{ name = \"postgres://...\" }}`), which every node of a cluster reaches"
    )]
    SqliteInCluster {
        /// The function.
        function: FunctionId,
        /// The databases it lists.
        databases: String,
    },
    /// The component does not export the HTTP handler.
    #[error(
        "function `{function}`: {} does not export `wasi:http/incoming-handler@0.2.x` or `wasi:http/handler@0.3.x` (it exports: {exports}); an HTTP function must target the `wasi:http/proxy` world of WASI 0.2 or `wasi:http/service` of WASI 0.3",
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
    linkers: &Linkers,
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
    let invalid = |e: wasmtime::Error| LoadError::Invalid {
        function: function.clone(),
        path: path.clone(),
        message: one_line(&format!("{e:#}")),
    };
    let kind = engine_kind(bytes);
    let runtime = &linkers.runtime;
    let component = runtime.compile(kind, bytes).map_err(invalid)?;
    let linker = linkers.get(kind).map_err(invalid)?;
    let engine = runtime.engine_of(kind).map_err(invalid)?;
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
    let http = match kind {
        EngineKind::Sync => ProxyPre::new(pre).ok().map(HttpPre::P2),
        EngineKind::Concurrent => ServicePre::new(pre).ok().map(HttpPre::P3),
    };
    let exports = export_names(engine, &component);
    if http.is_none() && !(queue.is_some() && spec.routes.is_empty()) {
        return Err(LoadError::WrongWorld {
            exports: if exports.is_empty() {
                "nothing".into()
            } else {
                exports.join(", ")
            },
            function,
            path,
        });
    }
    if let (EngineKind::Sync, Some(reuse)) = (kind, spec.instance_reuse)
        && reuse.concurrent.get() > 1
        && http.is_some()
    {
        return Err(LoadError::ConcurrentWasiP2 {
            function,
            path,
            concurrent: reuse.concurrent.get(),
        });
    }
    if spec
        .instance_reuse
        .is_some_and(|reuse| reuse.requests.get() > 1)
        && http.is_some()
        && let Some(tool) = single_request_engine(bytes)
    {
        return Err(LoadError::ReuseUnsupported {
            function,
            path,
            tool,
        });
    }
    let handlers = exports
        .into_iter()
        .filter(|name| HANDLERS.iter().any(|h| name.starts_with(h)))
        .collect();
    Ok(Version {
        digest: blake3::hash(bytes).to_hex().to_string(),
        deployed_at: SystemTime::now(),
        http,
        engine: kind,
        handlers,
        queue,
    })
}

/// The handler interfaces a function may export, by name without version.
const HANDLERS: &[&str] = &[
    "wasi:http/incoming-handler@",
    "wasi:http/handler@",
    "wasi:messaging/incoming-handler@",
];

/// The tool that built `bytes`, when its engine serves only one HTTP
/// request per instance: componentize-js (StarlingMonkey's `fetch` event
/// keeps the first request's state, bytecodealliance/StarlingMonkey#247),
/// named in the component's own `producers` section as `processed-by`.
fn single_request_engine(bytes: &[u8]) -> Option<String> {
    outer_payloads(bytes).find_map(|payload| {
        let wasmparser::Payload::CustomSection(section) = payload else {
            return None;
        };
        let wasmparser::KnownCustom::Producers(producers) = section.as_known() else {
            return None;
        };
        producers
            .into_iter()
            .flatten()
            .filter(|field| field.name == "processed-by")
            .flat_map(|field| field.values.into_iter().flatten())
            .find(|value| value.name == "ComponentizeJS")
            .map(|value| format!("{} {}", value.name, value.version))
    })
}

/// The engine a component needs: the WASI 0.3 one when it imports or
/// exports any interface of a WASI 0.3 package (`wasi:http/handler@0.3.0`,
/// `wasi:clocks/monotonic-clock@0.3.0`, ...) or of Spin's 3.x packages (their
/// functions are async), read from its outermost import and export sections
/// before compiling it.
fn engine_kind(bytes: &[u8]) -> EngineKind {
    use wasmparser::Payload;
    let is_p3 = |name: &str| {
        let Some((path, version)) = name.split_once('@') else {
            return false;
        };
        // Spin's 3.x interfaces and PostgreSQL's 4.2 have async functions;
        // SQLite's 3.0.0 and PostgreSQL's 4.0 and 4.1, which WASI 0.2
        // components (nimbus-sdk's) import, have none.
        (path.starts_with("wasi:") && version.starts_with("0.3."))
            || (path.starts_with("spin:")
                && version.starts_with("3.")
                && !(path == "spin:sqlite/sqlite" && version.starts_with("3.0.")))
            || (path == "spin:postgres/postgres"
                && !(version.starts_with("4.0.") || version.starts_with("4.1.")))
    };
    let p3 = outer_payloads(bytes).any(|payload| match payload {
        Payload::ComponentImportSection(imports) => imports
            .into_iter()
            .flatten()
            .any(|import| is_p3(import.name.name)),
        Payload::ComponentExportSection(exports) => exports
            .into_iter()
            .flatten()
            .any(|export| is_p3(export.name.name)),
        _ => false,
    });
    if p3 {
        EngineKind::Concurrent
    } else {
        EngineKind::Sync
    }
}

/// The sections of the outermost component in `bytes`, not those of the
/// modules and components nested in it (each comes with its own, between
/// its header and its `End`). Stops at the first error: wasmtime names the
/// problem when it compiles the component.
fn outer_payloads(bytes: &[u8]) -> impl Iterator<Item = wasmparser::Payload<'_>> {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    Parser::new(0)
        .parse_all(bytes)
        .map_while(Result::ok)
        .filter_map(move |payload| match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                depth += 1;
                None
            }
            Payload::End(_) => {
                depth = depth.saturating_sub(1);
                None
            }
            payload if depth == 0 => Some(payload),
            _ => None,
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

fn export_names(engine: &wasmtime::Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The packages of interfaces the host provides, each with the versions it
/// takes, separated by `, `: one version, or `A to B` for every patch
/// release from `A` to `B` (the linker takes any WASI 0.2 release up to the
/// one wasmtime provides).
/// The tests link a component importing each to keep the list true.
pub const PROVIDED: &[(&str, &str)] = &[
    ("wasi:cli", WASI_P2_P3),
    ("wasi:clocks", WASI_P2_P3),
    ("wasi:filesystem", WASI_P2_P3),
    ("wasi:io", WASI_P2),
    ("wasi:random", WASI_P2_P3),
    ("wasi:sockets", WASI_P2_P3),
    ("wasi:http", WASI_P2_P3),
    ("wasi:keyvalue", "0.2.0-draft2, 0.2.0-draft"),
    ("wasi:config", "0.2.0-rc.1"),
    ("wasi:logging", "0.1.0-draft"),
    ("wasi:messaging", "0.2.0-draft"),
    ("nimbus:function", "0.1.0"),
    ("spin:key-value", "3.0.0"),
    ("spin:variables", "3.0.0"),
    ("spin:sqlite", "3.0.0, 3.1.0"),
    ("spin:postgres", "4.1.0, 4.2.0"),
];

/// The WASI 0.2 releases wasmtime-wasi and wasmtime-wasi-http 48 provide.
const WASI_P2: &str = "0.2.0 to 0.2.12";

/// The same, and WASI 0.3.0 (which has no `wasi:io`: streams and futures
/// are built into the component model), for WASI 0.3 components.
const WASI_P2_P3: &str = "0.2.0 to 0.2.12, 0.3.0";

/// Whether `versions` (an entry of [`PROVIDED`]) takes `version`.
fn takes(versions: &str, version: &str) -> bool {
    versions.split(", ").any(|one| takes_one(one, version))
}

/// Whether `versions` (one version, or a range `A to B`) takes `version`.
fn takes_one(versions: &str, version: &str) -> bool {
    let Some((low, high)) = versions.split_once(" to ") else {
        return versions == version;
    };
    let patch = |v: &str| {
        let (minor, patch) = v.rsplit_once('.')?;
        Some((minor.to_owned(), patch.parse::<u32>().ok()?))
    };
    match (patch(low), patch(high), patch(version)) {
        (Some((minor, low)), Some((_, high)), Some((wanted, n))) => {
            wanted == minor && (low..=high).contains(&n)
        }
        _ => false,
    }
}

/// Names the missing import when wasmtime's message does, with what the host
/// provides instead: the versions of the import's package it has, or every
/// package it has; else passes the message on.
fn unsupported_import(message: &str) -> String {
    let named = message
        .split_once("imports instance `")
        .or_else(|| message.split_once("imports function `"))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name);
    let Some(name) = named else {
        return format!("cannot be linked: {}", one_line(message));
    };
    // `wasi:keyvalue/store@0.2.0-draft`: interface `store` of package
    // `wasi:keyvalue`, version `0.2.0-draft`.
    let (path, version) = name.split_once('@').unwrap_or((name, ""));
    let package = path.split('/').next().unwrap_or(path);
    match PROVIDED.iter().find(|(provided, _)| *provided == package) {
        Some((_, versions)) if !takes(versions, version) => {
            format!("imports `{name}`, but Nimbus provides {package} only at {versions}")
        }
        Some(_) => format!(
            "imports `{name}`, which Nimbus does not provide: its {package}@{version} has no such interface"
        ),
        None => format!(
            "imports `{name}`, which Nimbus does not provide; it provides {}",
            provided_list()
        ),
    }
}

/// [`PROVIDED`] for a person: packages of the same versions together, as
/// `wasi:cli, wasi:io 0.2.0 to 0.2.12; wasi:keyvalue 0.2.0-draft2`.
fn provided_list() -> String {
    let mut groups: Vec<(Vec<&str>, &str)> = Vec::new();
    for &(package, versions) in PROVIDED {
        match groups.last_mut() {
            Some((packages, v)) if *v == versions => packages.push(package),
            _ => groups.push((vec![package], versions)),
        }
    }
    groups
        .iter()
        .map(|(packages, versions)| format!("{} {versions}", packages.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Runtime, RuntimeConfig};
    use crate::state::HostState;

    /// One interface of each package [`PROVIDED`] names, and one of its
    /// members as a component type declares it, so that linking checks the
    /// host really defines that interface.
    const INTERFACE_OF: &[(&str, &str, &str)] = &[
        (
            "wasi:cli",
            "environment",
            r#"(export "get-arguments" (func (result (list string))))"#,
        ),
        (
            "wasi:clocks",
            "monotonic-clock",
            r#"(export "now" (func (result u64)))"#,
        ),
        (
            "wasi:filesystem",
            "types",
            r#"(export "descriptor" (type (sub resource)))"#,
        ),
        (
            "wasi:io",
            "streams",
            r#"(export "output-stream" (type (sub resource)))"#,
        ),
        (
            "wasi:random",
            "random",
            r#"(export "get-random-u64" (func (result u64)))"#,
        ),
        (
            "wasi:sockets",
            "tcp",
            r#"(export "tcp-socket" (type (sub resource)))"#,
        ),
        (
            "wasi:http",
            "types",
            r#"(export "fields" (type (sub resource)))"#,
        ),
        (
            "wasi:keyvalue",
            "store",
            r#"(export "bucket" (type (sub resource)))"#,
        ),
        (
            "wasi:config",
            "store",
            r#"(type $e0 (variant (case "upstream" string) (case "io" string)))
               (export "error" (type $e (eq $e0)))
               (export "get" (func (param "key" string) (result (result (option string) (error $e)))))"#,
        ),
        (
            "wasi:logging",
            "logging",
            r#"(type $l0 (enum "trace" "debug" "info" "warn" "error" "critical"))
               (export "level" (type $l (eq $l0)))
               (export "log" (func (param "level" $l) (param "context" string) (param "message" string)))"#,
        ),
        (
            "wasi:messaging",
            "types",
            r#"(export "client" (type (sub resource)))"#,
        ),
        // Its one function takes the key-value types, too long to spell
        // here; the key-value tests call it through the linker.
        ("nimbus:function", "keyvalue-ext", ""),
        (
            "spin:key-value",
            "key-value",
            r#"(export "store" (type (sub resource)))"#,
        ),
        (
            "spin:variables",
            "variables",
            r#"(type $e0 (variant (case "invalid-name" string) (case "undefined" string) (case "provider" string) (case "other" string)))
               (export "error" (type $e (eq $e0)))"#,
        ),
        (
            "spin:sqlite",
            "sqlite",
            r#"(export "connection" (type (sub resource)))"#,
        ),
        (
            "spin:postgres",
            "postgres",
            r#"(export "connection" (type (sub resource)))"#,
        ),
    ];

    /// Links a component importing the instance `name` with `member`, on
    /// the engine a WASI 0.3 import needs if it is one.
    fn link(runtime: &Runtime, name: &str, member: &str) -> Result<(), String> {
        let wat = format!(r#"(component (import "{name}" (instance {member})))"#);
        let bytes = wat::parse_str(&wat).map_err(|e| format!("{e:#}"))?;
        let kind = engine_kind(&bytes);
        let engine = runtime.engine_of(kind).map_err(|e| format!("{e:#}"))?;
        let component =
            wasmtime::component::Component::new(engine, bytes).map_err(|e| format!("{e:#}"))?;
        let linker = HostState::linker(engine, kind).map_err(|e| format!("{e:#}"))?;
        linker
            .instantiate_pre(&component)
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn every_provided_version_links_and_others_are_refused_by_name() {
        let runtime = Runtime::new(&RuntimeConfig {
            pooling: false,
            ..RuntimeConfig::default()
        })
        .unwrap();
        assert_eq!(PROVIDED.len(), INTERFACE_OF.len());
        let member = |package: &str| {
            let (_, _, member) = INTERFACE_OF.iter().find(|(p, ..)| *p == package).unwrap();
            *member
        };
        for ((package, versions), (same, interface, member)) in PROVIDED.iter().zip(INTERFACE_OF) {
            assert_eq!(package, same);
            let ends = versions
                .split(", ")
                .flat_map(|range| [range.split(" to ").next(), range.rsplit(" to ").next()])
                .flatten();
            for version in ends {
                // WASI 0.3 put the sockets in one interface.
                let interface = match (*package, version) {
                    ("wasi:sockets", "0.3.0") => "types",
                    _ => interface,
                };
                let name = format!("{package}/{interface}@{version}");
                link(&runtime, &name, member)
                    .unwrap_or_else(|e| panic!("{name} does not link: {e}"));
            }
        }
        let refused = |name: &str| {
            let package = name.split('/').next().unwrap();
            let member = if package.starts_with("wasi:") {
                member(package)
            } else {
                r#"(export "charge" (func))"#
            };
            unsupported_import(&link(&runtime, name, member).expect_err(name))
        };
        assert_eq!(
            refused("wasi:keyvalue/store@0.1.0"),
            "imports `wasi:keyvalue/store@0.1.0`, but Nimbus provides wasi:keyvalue only at 0.2.0-draft2, 0.2.0-draft"
        );
        assert_eq!(
            refused("wasi:http/types@0.4.0"),
            "imports `wasi:http/types@0.4.0`, but Nimbus provides wasi:http only at 0.2.0 to 0.2.12, 0.3.0"
        );
        assert_eq!(
            refused("wasi:io/streams@0.3.0"),
            "imports `wasi:io/streams@0.3.0`, but Nimbus provides wasi:io only at 0.2.0 to 0.2.12"
        );
        assert_eq!(
            refused("wasi:keyvalue/batch@0.2.0-draft2"),
            "imports `wasi:keyvalue/batch@0.2.0-draft2`, which Nimbus does not provide: its wasi:keyvalue@0.2.0-draft2 has no such interface"
        );
        let other = refused("acme:billing/charge@1.0.0");
        assert!(
            other.starts_with("imports `acme:billing/charge@1.0.0`, which Nimbus does not provide; it provides wasi:cli, wasi:clocks, wasi:filesystem 0.2.0 to 0.2.12, 0.3.0; wasi:io 0.2.0 to 0.2.12; wasi:random, wasi:sockets, wasi:http 0.2.0 to 0.2.12, 0.3.0; wasi:keyvalue 0.2.0-draft2, 0.2.0-draft;"),
            "{other}"
        );
    }
}
