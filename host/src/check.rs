//! `nimbus check`: validates a manifest and every component it names.

use crate::app::{App, LoadError};
use crate::backend::memory::MemoryBackend;
use crate::engine::Runtime;
use crate::manifest::{Manifest, ManifestError};
use std::path::Path;
use std::sync::Arc;

/// Why an app did not pass the check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A component is missing or unusable.
    #[error(transparent)]
    Load(#[from] LoadError),
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
}

/// Loads the manifest at `path` and every component in it, exactly as
/// `nimbus up` would, without serving.
pub fn check(runtime: &Runtime, path: &Path) -> Result<CheckReport, CheckError> {
    let manifest = Manifest::load(path)?;
    // Checking runs no guest code, so it needs no real storage; and it must
    // not lock the state file of an app that is running.
    let app = App::load(runtime, &manifest, Arc::new(MemoryBackend::default()))?;
    Ok(CheckReport {
        app: app.name.clone(),
        functions: app.functions.len(),
        routes: app.router.len(),
    })
}
