//! A function added through the admin API: its manifest entry, read from
//! the upload's header and checked with the manifest's own rules against the
//! whole app (nimbus.toml plus the functions added before).

use super::{Control, DeployError, Deployer, Track, UPLOAD_ORIGIN, count};
use crate::app::App;
use crate::manifest::{FunctionId, FunctionSpec, Manifest};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// Keys of a function's manifest entry that make no sense for an upload.
const UPLOAD_FORBIDDEN_KEYS: [&str; 3] = ["source", "build", "workdir"];

/// The app's manifest file and its TOML, read again to check new entries
/// against; why not, when it cannot be read.
pub(super) fn read_manifest(file: &Path) -> Result<(PathBuf, toml::Table), String> {
    let unreadable =
        |e: &dyn std::fmt::Display| format!("cannot read {} again: {e}", file.display());
    let text = std::fs::read_to_string(file).map_err(|e| unreadable(&e))?;
    let table = toml::from_str::<toml::Table>(&text).map_err(|e| unreadable(&e))?;
    Ok((file.to_owned(), table))
}

/// Reads a manifest entry sent with an upload.
pub(super) fn parse_entry(id: &str, text: &str) -> Result<toml::Table, DeployError> {
    let bad = |message: String| DeployError::Manifest {
        function: id.to_owned(),
        message,
    };
    let inner = text.trim();
    let inner = inner
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(inner);
    let document: toml::Table = toml::from_str(&format!("entry = {{ {inner} }}")).map_err(|e| {
        bad(format!(
            "invalid TOML (write the keys of its table inline, e.g. `routes = [\"GET /x\"], limits = {{ timeout = \"5s\" }}`): {}",
            e.message().split_whitespace().collect::<Vec<_>>().join(" ")
        ))
    })?;
    let Some(toml::Value::Table(entry)) = document.get("entry") else {
        return Err(bad("is not a table".into()));
    };
    if let Some(key) = UPLOAD_FORBIDDEN_KEYS
        .iter()
        .find(|k| entry.contains_key(**k))
    {
        return Err(bad(format!(
            "`{key}`: leave it out; the component is the request body"
        )));
    }
    Ok(entry.clone())
}

impl Deployer {
    /// A new app with function `id` added, and its bookkeeping; nothing
    /// changes yet.
    pub(super) fn with_function(
        &self,
        control: &Control,
        id: &str,
        entry: &toml::Table,
        bytes: &[u8],
    ) -> Result<(App, Track), DeployError> {
        let bad = |message: String| DeployError::Manifest {
            function: id.to_owned(),
            message,
        };
        let function = FunctionId::parse(id).map_err(|e| bad(format!("the id: {e}")))?;
        let spec = self.check_entry(control, &function, entry)?;
        if spec.queue.is_some() {
            return Err(bad(
                "`queue`: a queue function is added in nimbus.toml, so its consumer starts with the app".into(),
            ));
        }
        let app = self
            .app()
            .with_function(&spec, bytes, Path::new(UPLOAD_ORIGIN))
            .map_err(|e| {
                tracing::warn!(function = id, error = %e, "deployment refused");
                count(id, "rejected");
                DeployError::Rejected(e)
            })?;
        let base = app
            .functions
            .last()
            .and_then(|f| f.traffic())
            .expect("the added function serves")
            .stable
            .clone();
        let track = Track {
            base,
            history: VecDeque::new(),
            shown: Vec::new(),
            fragment: Some(entry.clone()),
        };
        Ok((app, track))
    }

    /// Checks a new function's manifest entry with the manifest's own rules,
    /// against the whole app: nimbus.toml plus the functions added before.
    fn check_entry(
        &self,
        control: &Control,
        id: &FunctionId,
        entry: &toml::Table,
    ) -> Result<FunctionSpec, DeployError> {
        let bad = |message: String| DeployError::Manifest {
            function: id.to_string(),
            message,
        };
        let (file, manifest) = self.manifest.as_ref().map_err(|e| bad(e.clone()))?;
        let mut document = manifest.clone();
        let functions = document
            .entry("functions")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(functions) = functions else {
            return Err(bad("`functions` in nimbus.toml is not a table".into()));
        };
        let app = self.app();
        let added = control
            .tracks
            .iter()
            .zip(app.functions.iter())
            .filter_map(|(t, f)| t.fragment.as_ref().map(|e| (f.id.as_str(), e)));
        for (other, entry) in added.chain([(id.as_str(), entry)]) {
            let mut entry = entry.clone();
            // Not read: the component comes with the upload.
            entry.insert("source".into(), UPLOAD_ORIGIN.into());
            functions.insert(other.to_owned(), toml::Value::Table(entry));
        }
        let text = toml::to_string(&document).map_err(|e| bad(e.to_string()))?;
        let manifest = Manifest::parse(file, &text).map_err(|e| bad(e.message))?;
        manifest
            .functions
            .into_iter()
            .find(|f| f.id == *id)
            .ok_or_else(|| bad("it was not read back".into()))
    }
}
