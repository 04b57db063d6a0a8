//! What goes to the state folder and comes back from it: the record applied
//! at startup, the record of a function as it serves (the conversions
//! between the deployer's bookkeeping and the [`store`](super::store)
//! records), and components kept and loaded again.

use super::entry::parse_entry;
use super::store::{CanaryRecord, FunctionRecord, Record, StoreError, VersionRecord};
use super::{
    Control, DeployError, Deployer, HISTORY_LIMIT, Keep, MAX_PERCENT, Past, Track, UPLOAD_ORIGIN,
    short,
};
use crate::app::{Canary, Traffic, Version};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

impl Deployer {
    /// Keeps a component's bytes where the deployments are kept.
    pub(super) fn keep_component(&self, digest: &str, bytes: &[u8]) -> Result<(), DeployError> {
        match &self.keep {
            Keep::Memory => {}
            Keep::Files(store) => store.put_component(digest, bytes)?,
            Keep::Cluster { backend, runtime } => runtime
                .block_on(backend.put_component(digest, bytes))
                .map_err(DeployError::Shared)?,
        }
        Ok(())
    }

    /// A kept component's bytes, or why they cannot be had.
    pub(super) fn component(&self, digest: &str) -> Result<Vec<u8>, String> {
        match &self.keep {
            Keep::Memory => Err("no state folder".into()),
            Keep::Files(store) => store.get_component(digest).map_err(|e| e.to_string()),
            Keep::Cluster { backend, runtime } => runtime
                .block_on(backend.get_component(digest))
                .map_err(|e| e.to_string()),
        }
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
        let bytes = self.component(&past.digest).map_err(unavailable)?;
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
        if let Keep::Files(store) = &self.keep {
            if control.record.functions != record.functions {
                store.save(&control.record)?;
            }
            store.collect_garbage(&control.record);
        }
        Ok(())
    }

    /// Applies the record of function `id`; one that no longer fits the
    /// app is logged and forgotten.
    pub(super) fn restore_entry(&self, control: &mut Control, id: &str, entry: &FunctionRecord) {
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
        match self.serve_record(control, index, Some(entry)) {
            Ok(()) => tracing::info!(
                function = id,
                version = entry
                    .stable
                    .as_ref()
                    .map_or("removed", |v| short(&v.digest)),
                canary = entry.canary.as_ref().map(|c| short(&c.version.digest)),
                "restored deployed version"
            ),
            Err(e) => tracing::warn!(
                function = id,
                error = %e,
                "cannot restore the deployed version; serving the manifest's component"
            ),
        }
    }

    /// Makes `functions[index]` serve what `entry` records (`None`: just its
    /// manifest's component, no history), reusing the versions it has loaded.
    pub(super) fn serve_record(
        &self,
        control: &mut Control,
        index: usize,
        entry: Option<&FunctionRecord>,
    ) -> Result<(), DeployError> {
        let app = self.app();
        let function = &app.functions[index];
        let base = control.tracks[index].base.clone();
        let mut loaded: Vec<Arc<Version>> = control.tracks[index]
            .history
            .iter()
            .filter_map(|p| p.version.clone())
            .collect();
        if let Some(traffic) = function.traffic() {
            loaded.push(traffic.stable.clone());
            loaded.extend(traffic.canary.as_ref().map(|c| c.version.clone()));
        }
        let (traffic, history) = match entry {
            Some(entry) => self.restore_function(&base, index, entry, &loaded)?,
            None => (serving_base(&base), VecDeque::new()),
        };
        control.tracks[index].history = history;
        let id = function.id.to_string();
        match entry {
            Some(entry) => control.record.functions.insert(id, entry.clone()),
            None => control.record.functions.remove(&id),
        };
        let rerouted = function.traffic().is_some() != traffic.is_some();
        function.set_traffic(traffic);
        if rerouted {
            self.live.replace(Arc::new(app.rerouted()));
        }
        self.show_versions(control, index);
        Ok(())
    }

    /// Adds a function recorded as added through the admin API.
    pub(super) fn add_again(
        &self,
        control: &mut Control,
        id: &str,
        fragment: &str,
        entry: &FunctionRecord,
    ) -> Result<(), DeployError> {
        let bytes = self
            .component(&entry.base)
            .map_err(|message| DeployError::Unavailable {
                function: id.to_owned(),
                digest: short(&entry.base).to_owned(),
                message,
            })?;
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
        loaded: &[Arc<Version>],
    ) -> Result<(Option<Traffic>, VecDeque<Past>), DeployError> {
        let past = |v: &VersionRecord| Past {
            digest: v.digest.clone(),
            deployed_at: from_ms(v.deployed_ms),
            version: loaded.iter().find(|l| l.digest == v.digest).cloned(),
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

/// The manifest's component serving alone.
fn serving_base(base: &Arc<Version>) -> Option<Traffic> {
    Some(Traffic {
        stable: base.clone(),
        canary: None,
    })
}
