//! Hot deploy, rollback and canaries, without a restart.
//!
//! Each function's serving versions live in its [`Traffic`], which
//! [`Deployer`] swaps atomically: requests in flight finish on the version
//! they started with, new ones get the new version. A new component is
//! checked with the same rules as the manifest's (a component, exporting
//! what the function's triggers need, importing only what Nimbus provides),
//! compiled through the compile cache and pre-instantiated *before* the swap,
//! so a bad upload is refused and the old version never stops serving.
//!
//! Operations, one at a time per app:
//! - [`deploy`](Deployer::deploy): a new stable version; the old one goes
//!   into the function's history (the newest [`HISTORY_LIMIT`] are kept);
//! - [`rollback`](Deployer::rollback): back to the newest version in the
//!   history (and so on, one step per call); after a removal it brings the
//!   removed version back;
//! - [`canary`](Deployer::canary): a candidate version takes a percentage of
//!   invocations; [`promote`](Deployer::promote) makes it stable,
//!   [`abort`](Deployer::abort) drops it;
//! - [`remove`](Deployer::remove): the function stops serving (its routes
//!   answer 404) until a deploy or a rollback;
//! - [`add`](Deployer::add): a function the manifest does not have, with its
//!   manifest entry, checked with the manifest's rules against the whole app;
//!   the app's new snapshot (functions and routing table) is published
//!   through [`LiveApp`].
//!
//! With a state folder, every change is written to it ([`store`]) before it
//! takes effect, and [`Deployer::open`] applies the record after the
//! manifest loads. In a cluster ([`Deployer::join`]) every change is written
//! to the cluster's [`DeploymentsBackend`] instead, checked against the
//! revision this node last saw (a lost race is [`DeployError::Conflict`]),
//! and [`Deployer::follow`] applies what other nodes write. If the
//! manifest's component changed since the
//! deployments were made, the manifest wins and the function's deployments
//! are forgotten.
//!
//! Every operation answers with a typed view, the JSON the admin API sends:
//! [`FunctionView`] for a function as it is, [`ChangeView`] for a change
//! (the function, its [`Action`] and the version it replaced).
//!
//! # Layout
//!
//! - this module: [`Deployer`] and its operations, each decided on the
//!   function as it is and committed under one lock (recorded, then in
//!   effect);
//! - `entry`: a new function's manifest entry, read and checked;
//! - `persist`: what goes to the state folder and comes back from it: the
//!   record applied at start, a function's record, components kept and
//!   loaded again;
//! - `cluster`: deployments shared by a cluster's nodes: each change a
//!   revision-checked write of one function's record, every other node's
//!   changes followed and applied;
//! - `metrics`: the serving versions and the changes, in the metrics;
//! - `view`: the typed answers;
//! - `error`: [`DeployError`], each refusal with its HTTP status;
//! - [`store`]: the files in the state folder.

mod cluster;
mod entry;
mod error;
mod metrics;
mod persist;
pub mod store;
mod view;

pub use error::{DeployError, parse_percent};
pub(crate) use view::rfc3339;
pub use view::{Action, CanaryView, ChangeView, FunctionView, LimitsView, TriggerKind};

use crate::app::{App, Canary, LiveApp, SHORT_DIGEST_LEN, Traffic, Version};
use crate::backend::DeploymentsBackend;
use entry::{parse_entry, read_manifest};
use error::check_percent;
use metrics::count;
use persist::function_record;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use store::{DeployStore, Record, StoreError};

/// Earlier versions kept per function for rollback. Ten covers a bad day of
/// deploys; each kept version costs its compiled code (memory-mapped) and
/// its component on disk.
pub const HISTORY_LIMIT: usize = 10;

/// The largest canary share: all of the traffic.
pub const MAX_PERCENT: u8 = 100;

/// The request header that carries a new function's manifest entry.
pub const MANIFEST_HEADER: &str = "nimbus-manifest";

/// How an uploaded component is named in errors.
pub const UPLOAD_ORIGIN: &str = "the uploaded component";

/// Changes what serves an app's functions.
pub struct Deployer {
    live: LiveApp,
    /// The manifest file and its TOML, to check new functions' entries
    /// against; why not, when it could not be read again (then functions
    /// cannot be added).
    manifest: Result<(PathBuf, toml::Table), String>,
    keep: Keep,
    control: Mutex<Control>,
}

/// Where the deployments are kept.
enum Keep {
    /// Nowhere: they last until the process ends.
    Memory,
    /// In the state folder.
    Files(DeployStore),
    /// In the cluster's shared backend, reached from blocking code through
    /// the runtime's handle.
    Cluster {
        backend: Arc<dyn DeploymentsBackend>,
        runtime: tokio::runtime::Handle,
    },
}

/// Everything off the hot path, changed under one lock.
struct Control {
    tracks: Vec<Track>,
    record: Record,
    /// In a cluster: the revision of each function's record this node
    /// serves (a write must name it).
    revisions: HashMap<String, u64>,
    /// In a cluster: functions whose latest record could not be applied.
    failing: BTreeSet<String>,
}

/// One function's deployment bookkeeping.
struct Track {
    /// The manifest's version, as loaded (for an added function: the
    /// version it was added with).
    base: Arc<Version>,
    /// Earlier stable versions, oldest first.
    history: VecDeque<Past>,
    /// The version labels last published in the metrics.
    shown: Vec<crate::telemetry::VersionLabels>,
    /// For a function added through the API: its manifest entry, without
    /// `source` (the component came with the upload).
    fragment: Option<toml::Table>,
}

/// An earlier version.
#[derive(Clone)]
struct Past {
    digest: String,
    deployed_at: SystemTime,
    /// Loaded, or `None` when restored from disk and not needed yet.
    version: Option<Arc<Version>>,
}

impl Past {
    fn of(version: &Arc<Version>) -> Past {
        Past {
            digest: version.digest.clone(),
            deployed_at: version.deployed_at,
            version: Some(version.clone()),
        }
    }
}

/// What a change did, besides the new state.
struct Change {
    traffic: Option<Traffic>,
    history: VecDeque<Past>,
    action: Action,
    previous: Option<String>,
}

/// A function as an operation finds it.
struct Now<'a> {
    traffic: Option<Arc<Traffic>>,
    history: &'a VecDeque<Past>,
    base: &'a Arc<Version>,
}

impl Now<'_> {
    fn stable_digest(&self) -> Option<String> {
        self.traffic.as_ref().map(|t| t.stable.digest.clone())
    }

    /// What serves the function, or an error when it was removed.
    fn serving(&self, id: &str) -> Result<&Arc<Traffic>, DeployError> {
        self.traffic
            .as_ref()
            .ok_or_else(|| DeployError::Removed(id.to_owned()))
    }

    /// What serves the function and its canary, or an error when it has none.
    fn canary(&self, id: &str) -> Result<(&Arc<Traffic>, Arc<Version>), DeployError> {
        let current = self.serving(id)?;
        match &current.canary {
            Some(canary) => Ok((current, canary.version.clone())),
            None => Err(DeployError::NoCanary(id.to_owned())),
        }
    }
}

/// Refuses a change while a canary runs.
fn no_canary(id: &str, traffic: &Traffic) -> Result<(), DeployError> {
    match &traffic.canary {
        Some(canary) => Err(DeployError::CanaryRunning {
            function: id.to_owned(),
            digest: canary.version.short_digest().to_owned(),
        }),
        None => Ok(()),
    }
}

/// `stable`, with `canary` (a version and its percent) if given.
fn serving(stable: Arc<Version>, canary: Option<(Arc<Version>, u8)>) -> Option<Traffic> {
    Some(Traffic {
        stable,
        canary: canary.map(|(version, percent)| Canary { version, percent }),
    })
}

impl Deployer {
    /// A deployer that keeps nothing on disk: deployments last until the
    /// process ends.
    pub fn in_memory(app: impl Into<LiveApp>) -> Deployer {
        Self::new(app.into(), Keep::Memory)
    }

    /// A deployer keeping deployments in `state_dir`, with what was recorded
    /// there applied: functions serve the versions they served before the
    /// restart, except where the manifest's component changed since (the
    /// manifest wins, and the function's history starts over). Blocking:
    /// restored versions are compiled (or fetched from the compile cache).
    pub fn open(app: impl Into<LiveApp>, state_dir: &Path) -> Result<Deployer, StoreError> {
        let store = DeployStore::new(state_dir);
        let record = store.load()?;
        let deployer = Self::new(app.into(), Keep::Files(store));
        deployer.restore(record)?;
        Ok(deployer)
    }

    fn new(live: LiveApp, keep: Keep) -> Deployer {
        let app = live.current();
        let tracks = app
            .functions
            .iter()
            .map(|f| Track {
                base: f
                    .traffic()
                    .expect("a freshly loaded function serves")
                    .stable
                    .clone(),
                history: VecDeque::new(),
                shown: Vec::new(),
                fragment: None,
            })
            .collect();
        let deployer = Deployer {
            live,
            manifest: read_manifest(app.manifest_file()),
            keep,
            control: Mutex::new(Control {
                tracks,
                record: Record::default(),
                revisions: HashMap::new(),
                failing: BTreeSet::new(),
            }),
        };
        let mut control = deployer.lock();
        for index in 0..app.functions.len() {
            deployer.show_versions(&mut control, index);
        }
        drop(control);
        deployer
    }

    /// The app whose functions this deployer changes, as it serves now.
    pub fn app(&self) -> Arc<App> {
        self.live.current()
    }

    /// The app, swapped when a function is added.
    pub fn live(&self) -> &LiveApp {
        &self.live
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        // A panic while holding the lock left no half-made change: changes
        // are committed by single assignments after every fallible step.
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self, id: &str) -> Result<usize, DeployError> {
        self.app()
            .index_of(id)
            .ok_or_else(|| DeployError::UnknownFunction(id.to_owned()))
    }

    /// Makes `bytes` the stable version of function `id`; the current one
    /// goes into the history. Deploying the version that already serves
    /// changes nothing. Blocking: the component is compiled.
    pub fn deploy(&self, id: &str, bytes: &[u8]) -> Result<ChangeView, DeployError> {
        let index = self.index(id)?;
        let version = self.prepare(index, bytes)?;
        self.change(index, |now| {
            if let Some(current) = &now.traffic {
                no_canary(id, current)?;
                if current.stable.digest == version.digest {
                    return Ok(None);
                }
            }
            self.keep_component(&version.digest, bytes)?;
            let mut history = now.history.clone();
            if let Some(current) = &now.traffic {
                push_bounded(&mut history, Past::of(&current.stable));
            }
            Ok(Some(Change {
                traffic: serving(Arc::new(version), None),
                history,
                action: Action::Deploy,
                previous: now.stable_digest(),
            }))
        })
    }

    /// Serves the newest version of the history again, dropping the current
    /// one. After [`remove`](Self::remove) it brings the removed version back.
    /// Blocking when the version has to be loaded from disk.
    pub fn rollback(&self, id: &str) -> Result<ChangeView, DeployError> {
        let index = self.index(id)?;
        self.change(index, |now| {
            if let Some(current) = &now.traffic {
                no_canary(id, current)?;
            }
            let mut history = now.history.clone();
            let Some(past) = history.pop_back() else {
                return Err(DeployError::NoHistory(id.to_owned()));
            };
            Ok(Some(Change {
                traffic: serving(self.resolve(now.base, index, &past)?, None),
                history,
                action: Action::Rollback,
                previous: now.stable_digest(),
            }))
        })
    }

    /// Starts a canary: `bytes` serves `percent` of the invocations of
    /// function `id`, next to the stable version; a running canary is
    /// replaced. Blocking: the component is compiled.
    pub fn canary(&self, id: &str, bytes: &[u8], percent: u8) -> Result<ChangeView, DeployError> {
        let index = self.index(id)?;
        check_percent(percent)?;
        let version = self.prepare(index, bytes)?;
        self.change(index, |now| {
            let current = now.serving(id)?;
            if current.stable.digest == version.digest {
                return Err(DeployError::CanaryIsStable {
                    function: id.to_owned(),
                    digest: version.short_digest().to_owned(),
                });
            }
            self.keep_component(&version.digest, bytes)?;
            Ok(Some(Change {
                traffic: serving(current.stable.clone(), Some((Arc::new(version), percent))),
                history: now.history.clone(),
                action: Action::Canary,
                previous: current.canary.as_ref().map(|c| c.version.digest.clone()),
            }))
        })
    }

    /// Changes the share of the running canary of function `id`.
    pub fn set_canary_percent(&self, id: &str, percent: u8) -> Result<ChangeView, DeployError> {
        let index = self.index(id)?;
        check_percent(percent)?;
        self.change(index, |now| {
            let (current, canary) = now.canary(id)?;
            Ok(Some(Change {
                traffic: serving(current.stable.clone(), Some((canary, percent))),
                history: now.history.clone(),
                action: Action::CanaryPercent,
                previous: None,
            }))
        })
    }

    /// Makes the canary of function `id` its stable version; the old stable
    /// version goes into the history.
    pub fn promote(&self, id: &str) -> Result<ChangeView, DeployError> {
        let index = self.index(id)?;
        self.change(index, |now| {
            let (current, canary) = now.canary(id)?;
            let mut history = now.history.clone();
            push_bounded(&mut history, Past::of(&current.stable));
            Ok(Some(Change {
                traffic: serving(canary, None),
                history,
                action: Action::Promote,
                previous: now.stable_digest(),
            }))
        })
    }

    /// Stops the canary of function `id`; the stable version takes all the
    /// traffic again.
    pub fn abort(&self, id: &str) -> Result<ChangeView, DeployError> {
        let index = self.index(id)?;
        self.change(index, |now| {
            let (current, canary) = now.canary(id)?;
            Ok(Some(Change {
                traffic: serving(current.stable.clone(), None),
                history: now.history.clone(),
                action: Action::Abort,
                previous: Some(canary.digest.clone()),
            }))
        })
    }

    /// Stops serving function `id`: its routes answer 404 until a deploy or
    /// a rollback (which brings this version back).
    pub fn remove(&self, id: &str) -> Result<ChangeView, DeployError> {
        let index = self.index(id)?;
        if let Some(queue) = &self.app().functions[index].queue {
            return Err(DeployError::QueueFunction {
                function: id.to_owned(),
                topic: queue.spec.topic.to_string(),
            });
        }
        self.change(index, |now| {
            let current = now.serving(id)?;
            no_canary(id, current)?;
            let mut history = now.history.clone();
            push_bounded(&mut history, Past::of(&current.stable));
            Ok(Some(Change {
                traffic: None,
                history,
                action: Action::Remove,
                previous: now.stable_digest(),
            }))
        })
    }

    /// Adds function `id`, serving `bytes`, with manifest entry `entry`: the
    /// keys of its `[functions.ID]` table written as a TOML inline table
    /// (braces optional), without `source`, `build` or `workdir`, e.g.
    /// `routes = ["GET /v2/..."], limits = { timeout = "5s" }`. The entry is
    /// checked with the manifest's rules against the whole app (its routes
    /// may not clash with others'); a queue function can only come from
    /// nimbus.toml. Blocking: the component is compiled.
    pub fn add(&self, id: &str, entry: &str, bytes: &[u8]) -> Result<ChangeView, DeployError> {
        let mut control = self.lock();
        if self.app().index_of(id).is_some() {
            return Err(DeployError::Exists(id.to_owned()));
        }
        let entry = parse_entry(id, entry)?;
        let (app, track) = self.with_function(&control, id, &entry, bytes)?;
        self.keep_component(&track.base.digest, bytes)?;
        let traffic = app.functions.last().and_then(|f| f.traffic());
        let mut record = control.record.clone();
        if let Some(entry) = function_record(&track, traffic.as_deref(), &track.history) {
            record.functions.insert(id.to_owned(), entry);
        }
        self.record(&mut control, id, record)?;
        let index = self.install(&mut control, app, track);
        tracing::info!(
            function = id,
            action = Action::Add.as_str(),
            "function added"
        );
        count(id, Action::Add.as_str());
        Ok(self.answer(&control, index, Action::Add, None))
    }

    /// Publishes an app made by [`Self::with_function`]; returns the new
    /// function's index.
    fn install(&self, control: &mut Control, app: App, track: Track) -> usize {
        control.tracks.push(track);
        self.live.replace(Arc::new(app));
        let index = control.tracks.len() - 1;
        self.show_versions(control, index);
        index
    }

    /// Runs one operation on `functions[index]` under the lock: `decide`
    /// sees the function as it is and returns the change to make, or `None`
    /// for none; the change is recorded, then takes effect.
    fn change(
        &self,
        index: usize,
        decide: impl FnOnce(&Now<'_>) -> Result<Option<Change>, DeployError>,
    ) -> Result<ChangeView, DeployError> {
        let mut control = self.lock();
        let track = &control.tracks[index];
        let now = Now {
            traffic: self.app().functions[index].traffic(),
            history: &track.history,
            base: &track.base,
        };
        match decide(&now)? {
            Some(change) => self.commit(&mut control, index, change),
            None => Ok(self.answer(&control, index, Action::Unchanged, now.stable_digest())),
        }
    }

    /// Every function, as `GET /v1/functions` shows it.
    pub fn list(&self) -> Vec<FunctionView> {
        let control = self.lock();
        (0..self.app().functions.len())
            .map(|index| self.describe(&control, index))
            .collect()
    }

    /// One function, as `GET /v1/functions/{id}` shows it.
    pub fn get(&self, id: &str) -> Result<FunctionView, DeployError> {
        let index = self.index(id)?;
        Ok(self.describe(&self.lock(), index))
    }

    fn prepare(&self, index: usize, bytes: &[u8]) -> Result<Version, DeployError> {
        let app = self.app();
        app.prepare(index, bytes, Path::new(UPLOAD_ORIGIN))
            .map_err(|e| {
                let function = app.functions[index].id.as_str();
                tracing::warn!(function, error = %e, "deployment refused");
                count(function, "rejected");
                DeployError::Rejected(e)
            })
    }

    /// Records the change on disk, then makes it take effect. If recording
    /// fails, nothing changes.
    fn commit(
        &self,
        control: &mut Control,
        index: usize,
        change: Change,
    ) -> Result<ChangeView, DeployError> {
        let app = self.app();
        let function = &app.functions[index];
        let mut record = control.record.clone();
        let track = &control.tracks[index];
        match function_record(track, change.traffic.as_ref(), &change.history) {
            Some(entry) => record.functions.insert(function.id.to_string(), entry),
            None => record.functions.remove(function.id.as_str()),
        };
        self.record(control, function.id.as_str(), record)?;
        control.tracks[index].history = change.history;
        let serving = change
            .traffic
            .as_ref()
            .map(|t| t.stable.short_digest().to_owned());
        let canary = change
            .traffic
            .as_ref()
            .and_then(|t| t.canary.as_ref())
            .map(|c| (c.version.short_digest().to_owned(), c.percent));
        let was_serving = function.traffic().is_some();
        let serves = change.traffic.is_some();
        function.set_traffic(change.traffic);
        if was_serving != serves {
            self.live.replace(Arc::new(app.rerouted()));
        }
        tracing::info!(
            function = %function.id,
            action = change.action.as_str(),
            version = serving.as_deref().unwrap_or("removed"),
            canary = canary.as_ref().map(|(d, p)| format!("{d} at {p}%")),
            previous = change.previous.as_deref().map(short),
            "deployment changed"
        );
        count(function.id.as_str(), change.action.as_str());
        self.show_versions(control, index);
        if let Keep::Files(store) = &self.keep {
            store.collect_garbage(&control.record);
        }
        Ok(self.answer(control, index, change.action, change.previous))
    }

    /// Keeps `record`, in which function `id` changed, where the deployments
    /// are kept, then makes it this deployer's record. If keeping it fails,
    /// nothing changes.
    fn record(&self, control: &mut Control, id: &str, record: Record) -> Result<(), DeployError> {
        if record.functions != control.record.functions {
            match &self.keep {
                Keep::Memory => {}
                Keep::Files(store) => store.save(&record)?,
                Keep::Cluster { .. } => self.write_shared(control, id, record.functions.get(id))?,
            }
        }
        control.record = record;
        Ok(())
    }

    /// A function as the admin API shows it.
    fn describe(&self, control: &Control, index: usize) -> FunctionView {
        let track = &control.tracks[index];
        FunctionView::of(
            &self.app().functions[index],
            &track.base.digest,
            track.history.len(),
        )
    }

    /// The answer to a change of `functions[index]`.
    fn answer(
        &self,
        control: &Control,
        index: usize,
        action: Action,
        previous: Option<String>,
    ) -> ChangeView {
        ChangeView {
            function: self.describe(control, index),
            action,
            previous,
        }
    }
}

fn push_bounded(history: &mut VecDeque<Past>, past: Past) {
    history.push_back(past);
    while history.len() > HISTORY_LIMIT {
        history.pop_front();
    }
}

fn short(digest: &str) -> &str {
    &digest[..SHORT_DIGEST_LEN.min(digest.len())]
}
