//! The process-wide wasmtime [`Engine`]: pooling allocator, one epoch ticker
//! thread, and the on-disk cache of compiled components.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A running guest yields to the scheduler at
/// each tick, so this bounds how late a timeout can fire and how long a
/// busy guest can hold a worker thread; 10 ms costs nothing measurable.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Component instances the pool holds at once, across all functions.
/// wasmtime's default; each idle slot costs address space, not memory.
pub const DEFAULT_POOL_INSTANCES: u32 = 1_000;

/// Core instances, memories and tables per component instance in the pool.
/// A Rust `wasm32-wasip2` component has one memory and a few small shim
/// modules; this leaves room for components built by other toolchains.
const CORE_PER_COMPONENT: u32 = 4;

/// Bytes of each linear memory reset by copying instead of `madvise` when an
/// instance ends. With `PAGEMAP_SCAN` (Linux 6.7+) only the pages the guest
/// wrote are copied back from the image, so the next instance in the slot
/// takes no page faults and the free path no `madvise`; a page fault and an
/// `madvise` each cost microseconds in a VM, a 4 KiB copy well under one. A
/// hello guest writes about a dozen pages; 1 MiB covers guests that use a
/// few hundred KiB per request, and beyond it the rest is `madvise`d as
/// before, so a memory-hungry guest never makes the free path copy megabytes.
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 1 << 20;

/// The same for tables (function references of the guest and its shims):
/// they dirty a page or two per instance.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Settings for [`Runtime::new`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling allocator if the address space can be reserved.
    pub pooling: bool,
    /// Component instances the pool holds at once.
    pub pool_instances: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            pooling: true,
            pool_instances: DEFAULT_POOL_INSTANCES,
        }
    }
}

/// The engines and what goes with them: one per process, shared by every app.
///
/// WASI 0.2 components run on an engine without the component model's
/// concurrency support, which makes every call cheaper; WASI 0.3 components
/// need it, and get an engine of their own, built the first time one loads.
///
/// Dropping the last clone stops the epoch ticker threads.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

/// Which of the runtime's engines a component is compiled for and runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// WASI 0.2: one call at a time per instance, on a plain fiber.
    Sync,
    /// WASI 0.3: the component model's async runtime, several calls at once.
    Concurrent,
}

struct RuntimeInner {
    config: RuntimeConfig,
    sync: Flavor,
    concurrent: OnceLock<Flavor>,
}

/// One engine with its epoch ticker and compile cache.
struct Flavor {
    engine: Engine,
    pooling: bool,
    cache: Option<CompileCache>,
    _ticker: EpochTicker,
}

impl Flavor {
    /// Builds an engine, falling back to on-demand allocation where the
    /// pooling allocator cannot reserve its address space.
    fn new(config: &RuntimeConfig, kind: EngineKind) -> wasmtime::Result<Flavor> {
        let (engine, pooling) = if config.pooling {
            match Engine::new(&engine_config(kind, Some(config.pool_instances))) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(
                        error = %format!("{e:#}"),
                        "pooling allocator unavailable; instances will be allocated on demand"
                    );
                    (Engine::new(&engine_config(kind, None))?, false)
                }
            }
        } else {
            (Engine::new(&engine_config(kind, None))?, false)
        };
        let cache = config
            .cache_dir
            .as_ref()
            .map(|dir| CompileCache::new(dir, &engine));
        let ticker = EpochTicker::start(&engine);
        Ok(Flavor {
            engine,
            pooling,
            cache,
            _ticker: ticker,
        })
    }
}

impl Runtime {
    /// Builds the WASI 0.2 engine; the WASI 0.3 one waits for its first
    /// component.
    pub fn new(config: &RuntimeConfig) -> wasmtime::Result<Runtime> {
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                config: config.clone(),
                sync: Flavor::new(config, EngineKind::Sync)?,
                concurrent: OnceLock::new(),
            }),
        })
    }

    /// The wasmtime engine for WASI 0.2 components.
    pub fn engine(&self) -> &Engine {
        &self.inner.sync.engine
    }

    /// The engine of `kind`, built now if it is the first use.
    pub fn engine_of(&self, kind: EngineKind) -> wasmtime::Result<&Engine> {
        Ok(&self.flavor(kind)?.engine)
    }

    fn flavor(&self, kind: EngineKind) -> wasmtime::Result<&Flavor> {
        match kind {
            EngineKind::Sync => Ok(&self.inner.sync),
            EngineKind::Concurrent => {
                if let Some(flavor) = self.inner.concurrent.get() {
                    return Ok(flavor);
                }
                let flavor = Flavor::new(&self.inner.config, kind)?;
                // Two first uses at once: one engine wins, the other is dropped.
                Ok(self.inner.concurrent.get_or_init(|| flavor))
            }
        }
    }

    /// Whether the pooling allocator is in use.
    pub fn is_pooling(&self) -> bool {
        self.inner.sync.pooling
    }

    /// Compiles a component for the engine of `kind`, or loads it from the
    /// cache when these exact bytes were compiled before with that engine's
    /// settings.
    pub fn compile(&self, kind: EngineKind, bytes: &[u8]) -> wasmtime::Result<Component> {
        let flavor = self.flavor(kind)?;
        match &flavor.cache {
            Some(cache) => cache.get_or_compile(&flavor.engine, bytes),
            None => Component::new(&flavor.engine, bytes),
        }
    }
}

fn engine_config(kind: EngineKind, pool_instances: Option<u32>) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // A WASI 0.2 guest runs one call at a time per instance. For it the
    // component-model-async runtime (WASI 0.3) would make every call and
    // every host import a task in a per-store scheduler, and leave a fiber to
    // unwind when the store is dropped: most of the instructions of a hello
    // request. Without it, calls run on a plain fiber.
    config.concurrency_support(kind == EngineKind::Concurrent);
    if let Some(instances) = pool_instances {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances * CORE_PER_COMPONENT)
            .total_memories(instances * CORE_PER_COMPONENT)
            .total_tables(instances * CORE_PER_COMPONENT)
            .total_stacks(instances);
        // Reset only the pages an instance wrote, by copying, where the kernel
        // can tell which those are. Without `PAGEMAP_SCAN` keep-resident would
        // `memset` the lowest addresses of every memory, which for a Rust guest
        // is the unused bottom of its stack: all cost, no saved fault.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
                .table_keep_resident(TABLE_KEEP_RESIDENT);
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on one thread, stopping
/// when dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let thread = std::thread::Builder::new()
            .name("nimbus-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match weak.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Compiled components on disk, keyed by the component's content hash and a
/// hash of the engine's settings and version.
struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    fn new(dir: &Path, engine: &Engine) -> CompileCache {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        CompileCache {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn get_or_compile(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        let digest = blake3::hash(bytes).to_hex();
        let path = self
            .dir
            .join(format!("{}-{}.cwasm", &digest[..32], self.engine_key));
        if path.is_file() {
            // SAFETY: only Nimbus writes this folder, and only with bytes that
            // wasmtime serialized for an engine with this exact key. A file
            // that fails wasmtime's own header checks is recompiled below.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %format!("{e:#}"),
                    "ignoring unusable compile cache entry"
                ),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "could not write the compile cache; the next start will compile again"
            );
        }
        Ok(component)
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        std::fs::create_dir_all(&self.dir)?;
        // Write then rename, so a crash never leaves a half-written entry.
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path)?;
        Ok(())
    }
}
