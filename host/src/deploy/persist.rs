//! What goes to the state folder and comes back from it: the record applied
//! at startup, the record of a function as it serves (the conversions
//! between the deployer's bookkeeping and the [`store`](super::store)
//! records), and components kept and loaded again.

use super::entry::parse_entry;
use super::store::{CanaryRecord, FunctionRecord, Record, StoreError, VersionRecord};
use super::{
    Control, DeployError, Deployer, HISTORY_LIMIT, MAX_PERCENT, Past, Track, UPLOAD_ORIGIN, short,
};
use crate::app::{Canary, Traffic, Version};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

impl Deployer {
    /// Keeps a component's bytes in the state folder, if there is one.
    pub(super) fn keep_component(&self, digest: &str, bytes: &[u8]) -> Result<(), DeployError> {
        if let Some(store) = &self.store {
            store.put_component(digest, bytes)?;
        }
        Ok(())
    }

    /// An earlier version, loaded from disk when it was restored unloaded.
    pub(super) fn resolve(
        &self,
        base: &Arc<Version>,
        index: usize,
        past: &Past,
    ) -> Result<Arc<Version>, DeployError> {
        if let Some(version) = &past.version {
            return Ok(version.clone());
        }
        if past.digest == base.digest {
            return Ok(base.clone());
        }
        let unavailable = |message: String| DeployError::Unavailable {
            function: self.app().functions[index].id.to_string(),
            digest: short(&past.digest).to_owned(),
            message,
        };
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| unavailable("no state folder".into()))?;
        let bytes = store
            .get_component(&past.digest)
            .map_err(|e| unavailable(e.to_string()))?;
        let mut version = self
            .app()
            .prepare(index, &bytes, Path::new(UPLOAD_ORIGIN))
            .map_err(|e| unavailable(e.to_string()))?;
        version.deployed_at = past.deployed_at;
        Ok(Arc::new(version))
    }

    /// Applies a record read at startup; see [`Deployer::open`].
    pub(super) fn restore(&self, record: Record) -> Result<(), StoreError> {
        let mut control = self.lock();
        for (id, entry) in &record.functions {
            self.restore_entry(&mut control, id, entry);
        }
        if let Some(store) = &self.store {
            if control.record.functions != record.functions {
                store.save(&control.record)?;
            }
            store.collect_garbage(&control.record);
        }
        Ok(())
    }

    /// Applies the record of function `id`; one that no longer fits the
    /// app is logged and forgotten.
    fn restore_entry(&self, control: &mut Control, id: &str, entry: &FunctionRecord) {
        if let Some(fragment) = &entry.fragment {
            if self.app().index_of(id).is_some() {
                tracing::info!(
                    function = id,
                    "nimbus.toml now defines this function, which was added through the admin API; the manifest wins"
                );
                return;
            }
            if let Err(e) = self.add_again(control, id, fragment, entry) {
                tracing::warn!(function = id, error = %e, "cannot add this function again");
                return;
            }
        }
        let Some(index) = self.app().index_of(id) else {
            tracing::info!(
                function = id,
                "the manifest no longer has this function; forgetting its deployments"
            );
            return;
        };
        let base = control.tracks[index].base.clone();
        if entry.base != base.digest {
            tracing::info!(
                function = id,
                manifest = short(&base.digest),
                deployed_over = short(&entry.base),
                "the manifest's component changed since the last deploy; the manifest wins and the function's deploy history starts over"
            );
            return;
        }
        match self.restore_function(&base, index, entry) {
            Ok((traffic, history)) => {
                control.tracks[index].history = history;
                control
                    .record
                    .functions
                    .insert(id.to_owned(), entry.clone());
                let removed = traffic.is_none();
                self.app().functions[index].set_traffic(traffic);
                if removed {
                    self.live.replace(Arc::new(self.app().rerouted()));
                }
                self.show_versions(control, index);
                tracing::info!(
                    function = id,
                    version = entry
                        .stable
                        .as_ref()
                        .map_or("removed", |v| short(&v.digest)),
                    canary = entry.canary.as_ref().map(|c| short(&c.version.digest)),
                    "restored deployed version"
                );
            }
            Err(e) => tracing::warn!(
                function = id,
                error = %e,
                "cannot restore the deployed version; serving the manifest's component"
            ),
        }
    }

    /// Adds a function recorded as added through the admin API.
    fn add_again(
        &self,
        control: &mut Control,
        id: &str,
        fragment: &str,
        entry: &FunctionRecord,
    ) -> Result<(), DeployError> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| DeployError::Unavailable {
                function: id.to_owned(),
                digest: short(&entry.base).to_owned(),
                message: "no state folder".into(),
            })?;
        let bytes = store.get_component(&entry.base)?;
        let fragment = parse_entry(id, fragment)?;
        let (app, track) = self.with_function(control, id, &fragment, &bytes)?;
        self.install(control, app, track);
        Ok(())
    }

    fn restore_function(
        &self,
        base: &Arc<Version>,
        index: usize,
        entry: &FunctionRecord,
    ) -> Result<(Option<Traffic>, VecDeque<Past>), DeployError> {
        let past = |v: &VersionRecord| Past {
            digest: v.digest.clone(),
            deployed_at: from_ms(v.deployed_ms),
            version: None,
        };
        let traffic = match &entry.stable {
            None => None,
            Some(stable) => Some(Traffic {
                stable: self.resolve(base, index, &past(stable))?,
                canary: match &entry.canary {
                    Some(c) => Some(Canary {
                        version: self.resolve(base, index, &past(&c.version))?,
                        percent: c.percent.min(MAX_PERCENT),
                    }),
                    None => None,
                },
            }),
        };
        let history = entry
            .history
            .iter()
            .rev()
            .take(HISTORY_LIMIT)
            .rev()
            .map(past)
            .collect();
        Ok((traffic, history))
    }
}

/// The record of one function, or `None` when it serves just the manifest's
/// component and has no history (nothing to remember).
pub(super) fn function_record(
    track: &Track,
    traffic: Option<&Traffic>,
    history: &VecDeque<Past>,
) -> Option<FunctionRecord> {
    let base = &track.base;
    let plain = traffic.is_some_and(|t| t.canary.is_none() && t.stable.digest == base.digest)
        && history.is_empty()
        && track.fragment.is_none();
    if plain {
        return None;
    }
    let version = |v: &Version| VersionRecord {
        digest: v.digest.clone(),
        deployed_ms: to_ms(v.deployed_at),
    };
    Some(FunctionRecord {
        base: base.digest.clone(),
        fragment: track
            .fragment
            .as_ref()
            .map(|f| toml::Value::Table(f.clone()).to_string()),
        stable: traffic.map(|t| version(&t.stable)),
        canary: traffic
            .and_then(|t| t.canary.as_ref())
            .map(|c| CanaryRecord {
                version: version(&c.version),
                percent: c.percent,
            }),
        history: history
            .iter()
            .map(|p| VersionRecord {
                digest: p.digest.clone(),
                deployed_ms: to_ms(p.deployed_at),
            })
            .collect(),
    })
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}
