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
//!   answer 404) until a deploy or a rollback.
//!
//! With a state folder, every change is written to it ([`store`]) before it
//! takes effect, and [`Deployer::open`] applies the record after the
//! manifest loads. If the manifest's component changed since the
//! deployments were made, the manifest wins and the function's deployments
//! are forgotten.

pub mod store;

use crate::app::{App, Canary, LoadError, SHORT_DIGEST_LEN, Traffic, Version};
use crate::manifest::format_bytes;
use http::StatusCode;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::{CanaryRecord, DeployStore, FunctionRecord, Record, StoreError, VersionRecord};

/// Earlier versions kept per function for rollback. Ten covers a bad day of
/// deploys; each kept version costs its compiled code (memory-mapped) and
/// its component on disk.
pub const HISTORY_LIMIT: usize = 10;

/// The largest canary share: all of the traffic.
pub const MAX_PERCENT: u8 = 100;

/// How an uploaded component is named in errors.
pub const UPLOAD_ORIGIN: &str = "the uploaded component";

/// Why a deployment operation was refused. Nothing changed when one is
/// returned: the function serves what it served before.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The app has no such function.
    #[error(
        "no function `{0}` in this app; new functions are added through nimbus.toml (and a restart)"
    )]
    UnknownFunction(String),
    /// The function was removed, and the operation needs it serving.
    #[error("function `{0}` was removed; deploy a component or roll back to bring it back")]
    Removed(String),
    /// The component failed the checks.
    #[error(transparent)]
    Rejected(#[from] LoadError),
    /// There is nothing to roll back to.
    #[error("function `{0}` has no earlier version to roll back to")]
    NoHistory(String),
    /// A canary is running and must be settled first.
    #[error(
        "function `{function}` has a canary running (version {digest}); promote or abort it first"
    )]
    CanaryRunning {
        /// The function.
        function: String,
        /// The canary's short digest.
        digest: String,
    },
    /// No canary is running.
    #[error("function `{0}` has no canary running")]
    NoCanary(String),
    /// The canary would be the stable version.
    #[error("version {digest} already is the stable version of `{function}`")]
    CanaryIsStable {
        /// The function.
        function: String,
        /// The short digest.
        digest: String,
    },
    /// The percentage is out of range.
    #[error("canary percent {0} is out of range; give a whole number from 0 to 100")]
    Percent(String),
    /// A queue function cannot be removed while its consumer runs.
    #[error(
        "function `{function}` consumes topic `{topic}`; remove it from nimbus.toml to stop it (removing it here would send its messages to dead letters)"
    )]
    QueueFunction {
        /// The function.
        function: String,
        /// Its topic.
        topic: String,
    },
    /// A version in the history can no longer be loaded.
    #[error("version {digest} of `{function}` cannot be loaded again: {message}")]
    Unavailable {
        /// The function.
        function: String,
        /// The short digest.
        digest: String,
        /// Why.
        message: String,
    },
    /// The state folder could not be written; nothing changed.
    #[error("cannot record the deployment: {0}")]
    Store(#[from] StoreError),
}

impl DeployError {
    /// The HTTP status the admin API answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            DeployError::UnknownFunction(_) => StatusCode::NOT_FOUND,
            DeployError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            DeployError::Percent(_) => StatusCode::BAD_REQUEST,
            DeployError::Removed(_)
            | DeployError::NoHistory(_)
            | DeployError::CanaryRunning { .. }
            | DeployError::NoCanary(_)
            | DeployError::CanaryIsStable { .. }
            | DeployError::QueueFunction { .. } => StatusCode::CONFLICT,
            DeployError::Unavailable { .. } | DeployError::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// Parses a canary percentage: a whole number from 0 to [`MAX_PERCENT`].
pub fn parse_percent(text: &str) -> Result<u8, DeployError> {
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= MAX_PERCENT)
        .ok_or_else(|| DeployError::Percent(text.to_owned()))
}

/// Changes what serves an app's functions.
pub struct Deployer {
    app: Arc<App>,
    store: Option<DeployStore>,
    control: Mutex<Control>,
}

/// Everything off the hot path, changed under one lock.
struct Control {
    tracks: Vec<Track>,
    record: Record,
}

/// One function's deployment bookkeeping.
struct Track {
    /// The manifest's version, as loaded.
    base: Arc<Version>,
    /// Earlier stable versions, oldest first.
    history: VecDeque<Past>,
    /// The version labels last published in the metrics.
    shown: Vec<crate::telemetry::VersionLabels>,
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
    kind: &'static str,
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

fn check_percent(percent: u8) -> Result<(), DeployError> {
    if percent > MAX_PERCENT {
        return Err(DeployError::Percent(percent.to_string()));
    }
    Ok(())
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
    pub fn in_memory(app: Arc<App>) -> Deployer {
        Self::new(app, None)
    }

    /// A deployer keeping deployments in `state_dir`, with what was recorded
    /// there applied: functions serve the versions they served before the
    /// restart, except where the manifest's component changed since (the
    /// manifest wins, and the function's history starts over). Blocking:
    /// restored versions are compiled (or fetched from the compile cache).
    pub fn open(app: Arc<App>, state_dir: &Path) -> Result<Deployer, StoreError> {
        let store = DeployStore::new(state_dir);
        let record = store.load()?;
        let deployer = Self::new(app, Some(store));
        deployer.restore(record)?;
        Ok(deployer)
    }

    fn new(app: Arc<App>, store: Option<DeployStore>) -> Deployer {
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
            })
            .collect();
        let deployer = Deployer {
            app,
            store,
            control: Mutex::new(Control {
                tracks,
                record: Record::default(),
            }),
        };
        let mut control = deployer.lock();
        for index in 0..deployer.app.functions.len() {
            deployer.show_versions(&mut control, index);
        }
        drop(control);
        deployer
    }

    /// The app whose functions this deployer changes.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        // A panic while holding the lock left no half-made change: changes
        // are committed by single assignments after every fallible step.
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self, id: &str) -> Result<usize, DeployError> {
        self.app
            .index_of(id)
            .ok_or_else(|| DeployError::UnknownFunction(id.to_owned()))
    }

    /// Makes `bytes` the stable version of function `id`; the current one
    /// goes into the history. Deploying the version that already serves
    /// changes nothing. Blocking: the component is compiled.
    pub fn deploy(&self, id: &str, bytes: &[u8]) -> Result<Value, DeployError> {
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
                kind: "deploy",
                previous: now.stable_digest(),
            }))
        })
    }

    /// Serves the newest version of the history again, dropping the current
    /// one. After [`remove`](Self::remove) it brings the removed version back.
    /// Blocking when the version has to be loaded from disk.
    pub fn rollback(&self, id: &str) -> Result<Value, DeployError> {
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
                kind: "rollback",
                previous: now.stable_digest(),
            }))
        })
    }

    /// Starts a canary: `bytes` serves `percent` of the invocations of
    /// function `id`, next to the stable version; a running canary is
    /// replaced. Blocking: the component is compiled.
    pub fn canary(&self, id: &str, bytes: &[u8], percent: u8) -> Result<Value, DeployError> {
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
                kind: "canary",
                previous: current.canary.as_ref().map(|c| c.version.digest.clone()),
            }))
        })
    }

    /// Changes the share of the running canary of function `id`.
    pub fn set_canary_percent(&self, id: &str, percent: u8) -> Result<Value, DeployError> {
        let index = self.index(id)?;
        check_percent(percent)?;
        self.change(index, |now| {
            let (current, canary) = now.canary(id)?;
            Ok(Some(Change {
                traffic: serving(current.stable.clone(), Some((canary, percent))),
                history: now.history.clone(),
                kind: "canary_percent",
                previous: None,
            }))
        })
    }

    /// Makes the canary of function `id` its stable version; the old stable
    /// version goes into the history.
    pub fn promote(&self, id: &str) -> Result<Value, DeployError> {
        let index = self.index(id)?;
        self.change(index, |now| {
            let (current, canary) = now.canary(id)?;
            let mut history = now.history.clone();
            push_bounded(&mut history, Past::of(&current.stable));
            Ok(Some(Change {
                traffic: serving(canary, None),
                history,
                kind: "promote",
                previous: now.stable_digest(),
            }))
        })
    }

    /// Stops the canary of function `id`; the stable version takes all the
    /// traffic again.
    pub fn abort(&self, id: &str) -> Result<Value, DeployError> {
        let index = self.index(id)?;
        self.change(index, |now| {
            let (current, canary) = now.canary(id)?;
            Ok(Some(Change {
                traffic: serving(current.stable.clone(), None),
                history: now.history.clone(),
                kind: "abort",
                previous: Some(canary.digest.clone()),
            }))
        })
    }

    /// Stops serving function `id`: its routes answer 404 until a deploy or
    /// a rollback (which brings this version back).
    pub fn remove(&self, id: &str) -> Result<Value, DeployError> {
        let index = self.index(id)?;
        if let Some(queue) = &self.app.functions[index].queue {
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
                kind: "remove",
                previous: now.stable_digest(),
            }))
        })
    }

    /// Runs one operation on `functions[index]` under the lock: `decide`
    /// sees the function as it is and returns the change to make, or `None`
    /// for none; the change is recorded, then takes effect.
    fn change(
        &self,
        index: usize,
        decide: impl FnOnce(&Now<'_>) -> Result<Option<Change>, DeployError>,
    ) -> Result<Value, DeployError> {
        let mut control = self.lock();
        let track = &control.tracks[index];
        let now = Now {
            traffic: self.app.functions[index].traffic(),
            history: &track.history,
            base: &track.base,
        };
        match decide(&now)? {
            Some(change) => self.commit(&mut control, index, change),
            None => Ok(self.describe(&control, index, "unchanged", now.stable_digest())),
        }
    }

    /// Every function, as `GET /v1/functions` shows it.
    pub fn list(&self) -> Value {
        let control = self.lock();
        Value::Array(
            (0..self.app.functions.len())
                .map(|index| self.describe(&control, index, "none", None))
                .collect(),
        )
    }

    /// One function, as `GET /v1/functions/{id}` shows it.
    pub fn get(&self, id: &str) -> Result<Value, DeployError> {
        let index = self.index(id)?;
        Ok(self.describe(&self.lock(), index, "none", None))
    }

    fn prepare(&self, index: usize, bytes: &[u8]) -> Result<Version, DeployError> {
        self.app
            .prepare(index, bytes, Path::new(UPLOAD_ORIGIN))
            .map_err(|e| {
                let function = self.app.functions[index].id.as_str();
                tracing::warn!(function, error = %e, "deployment refused");
                count(function, "rejected");
                DeployError::Rejected(e)
            })
    }

    fn keep_component(&self, digest: &str, bytes: &[u8]) -> Result<(), DeployError> {
        if let Some(store) = &self.store {
            store.put_component(digest, bytes)?;
        }
        Ok(())
    }

    /// An earlier version, loaded from disk when it was restored unloaded.
    fn resolve(
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
            function: self.app.functions[index].id.to_string(),
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
            .app
            .prepare(index, &bytes, Path::new(UPLOAD_ORIGIN))
            .map_err(|e| unavailable(e.to_string()))?;
        version.deployed_at = past.deployed_at;
        Ok(Arc::new(version))
    }

    /// Records the change on disk, then makes it take effect. If recording
    /// fails, nothing changes.
    fn commit(
        &self,
        control: &mut Control,
        index: usize,
        change: Change,
    ) -> Result<Value, DeployError> {
        let function = &self.app.functions[index];
        let mut record = control.record.clone();
        let base = &control.tracks[index].base;
        match function_record(base, change.traffic.as_ref(), &change.history) {
            Some(entry) => record.functions.insert(function.id.to_string(), entry),
            None => record.functions.remove(function.id.as_str()),
        };
        if let Some(store) = &self.store
            && record.functions != control.record.functions
        {
            store.save(&record)?;
        }
        control.record = record;
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
        function.set_traffic(change.traffic);
        tracing::info!(
            function = %function.id,
            action = change.kind,
            version = serving.as_deref().unwrap_or("removed"),
            canary = canary.as_ref().map(|(d, p)| format!("{d} at {p}%")),
            previous = change.previous.as_deref().map(short),
            "deployment changed"
        );
        count(function.id.as_str(), change.kind);
        self.show_versions(control, index);
        if let Some(store) = &self.store {
            store.collect_garbage(&control.record);
        }
        Ok(self.describe(control, index, change.kind, change.previous))
    }

    /// Applies a record read at startup; see [`Deployer::open`].
    fn restore(&self, record: Record) -> Result<(), StoreError> {
        let mut control = self.lock();
        for (id, entry) in &record.functions {
            let Some(index) = self.app.index_of(id) else {
                tracing::info!(
                    function = id,
                    "the manifest no longer has this function; forgetting its deployments"
                );
                continue;
            };
            let base = control.tracks[index].base.clone();
            if entry.base != base.digest {
                tracing::info!(
                    function = id,
                    manifest = short(&base.digest),
                    deployed_over = short(&entry.base),
                    "the manifest's component changed since the last deploy; the manifest wins and the function's deploy history starts over"
                );
                continue;
            }
            match self.restore_function(&base, index, entry) {
                Ok((traffic, history)) => {
                    control.tracks[index].history = history;
                    control.record.functions.insert(id.clone(), entry.clone());
                    self.app.functions[index].set_traffic(traffic);
                    self.show_versions(&mut control, index);
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
        if let Some(store) = &self.store {
            if control.record.functions != record.functions {
                store.save(&control.record)?;
            }
            store.collect_garbage(&control.record);
        }
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

    /// Publishes the serving versions of `functions[index]` as the
    /// `nimbus_function_version_percent` gauge.
    fn show_versions(&self, control: &mut Control, index: usize) {
        let function = &self.app.functions[index];
        let family = &crate::telemetry::metrics().function_version;
        for old in control.tracks[index].shown.drain(..) {
            family.remove(&old);
        }
        let Some(traffic) = function.traffic() else {
            return;
        };
        let canary_share = traffic.canary.as_ref().map_or(0, |c| c.percent);
        let mut shown = vec![(
            crate::telemetry::VersionLabels {
                function: function.id.to_string(),
                digest: traffic.stable.short_digest().to_owned(),
                track: "stable".into(),
            },
            MAX_PERCENT - canary_share,
        )];
        if let Some(canary) = &traffic.canary {
            shown.push((
                crate::telemetry::VersionLabels {
                    function: function.id.to_string(),
                    digest: canary.version.short_digest().to_owned(),
                    track: "canary".into(),
                },
                canary.percent,
            ));
        }
        for (labels, percent) in shown {
            family.get_or_create(&labels).set(i64::from(percent));
            control.tracks[index].shown.push(labels);
        }
    }

    /// A function as the admin API shows it.
    fn describe(
        &self,
        control: &Control,
        index: usize,
        action: &str,
        previous: Option<String>,
    ) -> Value {
        let function = &self.app.functions[index];
        let traffic = function.traffic();
        let spec = &function.spec;
        let limits = &function.limits;
        let mut triggers = Vec::new();
        if !spec.routes.is_empty() || function.queue.is_none() {
            triggers.push("http");
        }
        if function.queue.is_some() {
            triggers.push("queue");
        }
        let in_flight = crate::telemetry::metrics()
            .in_flight
            .get_or_create(&crate::telemetry::function(function.id.as_str()))
            .get();
        let mut info = json!({
            "id": function.id.as_str(),
            "routes": spec.routes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "triggers": triggers,
            "topic": function.queue.as_ref().map(|q| q.spec.topic.to_string()),
            "removed": traffic.is_none(),
            "version": traffic.as_ref().map(|t| t.stable.digest.clone()),
            "deployed_at": traffic.as_ref().map(|t| rfc3339(t.stable.deployed_at)),
            "manifest_version": control.tracks[index].base.digest,
            "canary": traffic.as_ref().and_then(|t| t.canary.as_ref()).map(|c| json!({
                "version": c.version.digest,
                "percent": c.percent,
                "deployed_at": rfc3339(c.version.deployed_at),
            })),
            "history": control.tracks[index].history.len(),
            "in_flight": in_flight,
            "limits": {
                "timeout": humantime::format_duration(limits.timeout).to_string(),
                "memory": format_bytes(limits.memory),
                "concurrency": limits.concurrency,
                "queue_timeout": humantime::format_duration(limits.queue_timeout).to_string(),
                "max_body": format_bytes(limits.max_body),
            },
        });
        if action != "none" {
            info["action"] = json!(action);
            info["previous"] = json!(previous);
        }
        info
    }
}

/// The record of one function, or `None` when it serves just the manifest's
/// component and has no history (nothing to remember).
fn function_record(
    base: &Version,
    traffic: Option<&Traffic>,
    history: &VecDeque<Past>,
) -> Option<FunctionRecord> {
    let plain = traffic.is_some_and(|t| t.canary.is_none() && t.stable.digest == base.digest)
        && history.is_empty();
    if plain {
        return None;
    }
    let version = |v: &Version| VersionRecord {
        digest: v.digest.clone(),
        deployed_ms: to_ms(v.deployed_at),
    };
    Some(FunctionRecord {
        base: base.digest.clone(),
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

fn push_bounded(history: &mut VecDeque<Past>, past: Past) {
    history.push_back(past);
    while history.len() > HISTORY_LIMIT {
        history.pop_front();
    }
}

fn count(function: &str, kind: &str) {
    crate::telemetry::metrics()
        .deployments
        .get_or_create(&crate::telemetry::outcome(function, kind))
        .inc();
}

fn short(digest: &str) -> &str {
    &digest[..SHORT_DIGEST_LEN.min(digest.len())]
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_whole_numbers_up_to_100() {
        assert_eq!(parse_percent("20").unwrap(), 20);
        assert_eq!(parse_percent("0").unwrap(), 0);
        assert_eq!(parse_percent("100").unwrap(), 100);
        for bad in ["101", "-1", "12.5", "", "x"] {
            let e = parse_percent(bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert!(e.to_string().contains("0 to 100"), "{e}");
        }
    }
}
