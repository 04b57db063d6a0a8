//! `nimbus check`: validates a manifest and every component it names.

use crate::app::{App, LoadError};
use crate::backend::Backends;
use crate::backend::embedded::EmbeddedBackend;
use crate::backend::sqlite::Databases;
use crate::engine::Runtime;
use crate::manifest::{Manifest, ManifestError};
use std::path::Path;

/// Why an app did not pass the check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A component is missing or unusable.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The scratch folder could not be made.
    #[error("cannot create a scratch folder: {0}")]
    Scratch(std::io::Error),
    /// The scratch store could not be opened.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
}

/// What a passing check found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The app's name.
    pub app: String,
    /// Functions loaded.
    pub functions: usize,
    /// Routes in the routing table.
    pub routes: usize,
    /// Each function's id with the handler interfaces its component exports
    /// (`wasi:http/handler@0.3.0`, ...).
    pub handlers: Vec<(String, Vec<String>)>,
}

/// Loads the manifest at `path` and every component in it, exactly as
/// `nimbus up` would, without serving.
pub fn check(runtime: &Runtime, path: &Path) -> Result<CheckReport, CheckError> {
    let manifest = Manifest::load(path)?;
    // Checking runs no guest code, and must not lock the state file of an
    // app that is running: it loads against a scratch store.
    let scratch = tempfile::tempdir().map_err(CheckError::Scratch)?;
    let store = EmbeddedBackend::open(&scratch.path().join("check.redb"))?;
    // Migrations run too, on scratch databases: a broken one fails the check.
    let mut backends = Backends::embedded(store);
    backends.sqlite = Some(std::sync::Arc::new(Databases::new(
        &scratch.path().join("sqlite"),
    )));
    let app = App::load(runtime, &manifest, backends)?;
    Ok(CheckReport {
        app: app.name.clone(),
        functions: app.functions.len(),
        routes: app.router.len(),
        handlers: app
            .functions
            .iter()
            .map(|f| {
                let handlers = f.version().map(|v| v.handlers.clone()).unwrap_or_default();
                (f.id.to_string(), handlers)
            })
            .collect(),
    })
}
