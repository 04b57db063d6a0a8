//! Where deployments live on disk, inside the state folder:
//!
//! - `deploy/components/<digest>.wasm`: each deployed component, by the
//!   blake3 hash of its bytes;
//! - `deploy/deployments.json`: what serves each function that differs from
//!   the manifest (a [`Record`]).
//!
//! Every file is written to a temporary file in the same folder, synced, then
//! renamed over the old one, and the folder is synced: a crash leaves the old
//! file or the new one, never half of either.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The folder under the state folder that holds deployments.
pub const DEPLOY_DIR: &str = "deploy";

/// The record's file name.
const RECORD_FILE: &str = "deployments.json";

/// The components folder's name.
const COMPONENTS_DIR: &str = "components";

/// The record format this Nimbus writes and reads.
const RECORD_FORMAT: u32 = 1;

/// A storage failure, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct StoreError {
    /// The file or folder.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

impl StoreError {
    fn new(path: &Path, message: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

/// Every function whose serving versions differ from the manifest's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The record's format (1), so a later Nimbus can tell an old record.
    pub format: u32,
    /// By function id.
    pub functions: BTreeMap<String, FunctionRecord>,
}

/// What serves one function, and what served it before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// Digest of the manifest's component when these deployments were made;
    /// if the manifest's component differs at the next start, it wins.
    pub base: String,
    /// The stable version; `None` when the function was removed.
    pub stable: Option<VersionRecord>,
    /// The canary, if one runs.
    pub canary: Option<CanaryRecord>,
    /// Earlier stable versions, oldest first.
    pub history: Vec<VersionRecord>,
    /// For a function added through the admin API: its manifest entry as a
    /// TOML inline table; its first component is `base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment: Option<String>,
}

/// One version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Hex blake3 digest of the component.
    pub digest: String,
    /// When it started serving, in milliseconds since the Unix epoch.
    pub deployed_ms: u64,
}

/// A canary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryRecord {
    /// The version.
    pub version: VersionRecord,
    /// Its share of traffic, in percent.
    pub percent: u8,
}

impl FunctionRecord {
    /// Every digest this record needs kept.
    pub fn digests(&self) -> impl Iterator<Item = &str> {
        let added_base = self.fragment.as_ref().map(|_| self.base.as_str());
        self.stable
            .iter()
            .chain(self.canary.iter().map(|c| &c.version))
            .chain(&self.history)
            .map(|v| v.digest.as_str())
            .chain(added_base)
    }
}

/// The deployments folder of one state folder.
#[derive(Debug, Clone)]
pub struct DeployStore {
    dir: PathBuf,
}

impl DeployStore {
    /// The store in `state_dir/deploy`; nothing is created until written.
    pub fn new(state_dir: &Path) -> DeployStore {
        DeployStore {
            dir: state_dir.join(DEPLOY_DIR),
        }
    }

    fn components(&self) -> PathBuf {
        self.dir.join(COMPONENTS_DIR)
    }

    fn component_path(&self, digest: &str) -> PathBuf {
        self.components().join(format!("{digest}.wasm"))
    }

    /// The record, or an empty one when none was written yet.
    pub fn load(&self) -> Result<Record, StoreError> {
        let path = self.dir.join(RECORD_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Record {
                    format: RECORD_FORMAT,
                    functions: BTreeMap::new(),
                });
            }
            Err(e) => return Err(StoreError::new(&path, format!("cannot read: {e}"))),
        };
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::new(&path, format!("is not a deployments record: {e}")))?;
        if record.format != RECORD_FORMAT {
            return Err(StoreError::new(
                &path,
                format!(
                    "has format {}, this Nimbus reads format {RECORD_FORMAT}",
                    record.format
                ),
            ));
        }
        Ok(record)
    }

    /// Replaces the record, atomically and durably.
    pub fn save(&self, record: &Record) -> Result<(), StoreError> {
        let mut record = record.clone();
        record.format = RECORD_FORMAT;
        let mut bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| StoreError::new(&self.dir, format!("cannot encode the record: {e}")))?;
        bytes.push(b'\n');
        write_atomic(&self.dir, RECORD_FILE, &bytes)
    }

    /// Keeps a component's bytes under its digest (once; a second write of
    /// the same digest is skipped).
    pub fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if self.component_path(digest).is_file() {
            return Ok(());
        }
        write_atomic(&self.components(), &format!("{digest}.wasm"), bytes)
    }

    /// A kept component's bytes, checked against their digest.
    pub fn get_component(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.component_path(digest);
        let bytes = std::fs::read(&path)
            .map_err(|e| StoreError::new(&path, format!("cannot read: {e}")))?;
        if blake3::hash(&bytes).to_hex().as_str() != digest {
            return Err(StoreError::new(
                &path,
                "its content does not match its digest (the file was changed or damaged)",
            ));
        }
        Ok(bytes)
    }

    /// Deletes kept components that no function needs any more; returns how
    /// many. Failures are logged: a stray file costs only disk space.
    pub fn collect_garbage(&self, record: &Record) -> usize {
        let keep: BTreeSet<&str> = record
            .functions
            .values()
            .flat_map(FunctionRecord::digests)
            .collect();
        let Ok(entries) = std::fs::read_dir(self.components()) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(digest) = name.to_str().and_then(|n| n.strip_suffix(".wasm")) else {
                continue;
            };
            if keep.contains(digest) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(
                    path = %entry.path().display(), error = %e,
                    "could not delete a component no version needs"
                ),
            }
        }
        removed
    }
}

/// Writes `dir/name` through a synced temporary file and a rename, then syncs
/// the folder so the rename itself survives a power loss.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::new(dir, format!("cannot create: {e}")))?;
    let path = dir.join(name);
    let fail = |e: std::io::Error| StoreError::new(&path, format!("cannot write: {e}"));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(&path).map_err(|e| fail(e.error))?;
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::new(dir, format!("cannot sync: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_round_trip_and_garbage_is_collected() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeployStore::new(dir.path());
        assert_eq!(store.load().unwrap().functions.len(), 0);
        let keep = blake3::hash(b"keep").to_hex().to_string();
        let drop = blake3::hash(b"drop").to_hex().to_string();
        store.put_component(&keep, b"keep").unwrap();
        store.put_component(&drop, b"drop").unwrap();
        let mut record = Record::default();
        record.functions.insert(
            "hello".into(),
            FunctionRecord {
                base: "b".into(),
                stable: Some(VersionRecord {
                    digest: keep.clone(),
                    deployed_ms: 1,
                }),
                canary: None,
                history: vec![],
                fragment: None,
            },
        );
        store.save(&record).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.functions, record.functions);
        assert_eq!(store.collect_garbage(&loaded), 1);
        assert_eq!(store.get_component(&keep).unwrap(), b"keep");
        assert!(store.get_component(&drop).is_err());
    }

    #[test]
    fn a_damaged_component_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeployStore::new(dir.path());
        let digest = blake3::hash(b"good").to_hex().to_string();
        store.put_component(&digest, b"good").unwrap();
        std::fs::write(store.component_path(&digest), b"evil").unwrap();
        let err = store.get_component(&digest).unwrap_err();
        assert!(
            err.to_string().contains("does not match its digest"),
            "{err}"
        );
    }
}
