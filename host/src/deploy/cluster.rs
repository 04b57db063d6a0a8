//! Deployments shared by the nodes of a cluster.
//!
//! Each function's record (the same [`FunctionRecord`] a node on its own
//! keeps in its state folder) is one entry of the cluster's
//! [`DeploymentsBackend`], with a revision. A change through any node is
//! decided on what that node serves, then written naming the revision it
//! last saw: if another node wrote first, the write is refused and the
//! change answers [`DeployError::Conflict`] (nothing changed here; the
//! winner's record arrives through [`Deployer::follow`] like any other).
//! Every node follows the records and applies each newer one, compiling
//! through its local cache, so all serve the same versions.
//!
//! At start ([`Deployer::join`]) the records are applied before the node
//! serves, with the manifest winning for a function whose manifest component
//! changed, as on a node on its own; the shared record is left as it is
//! until the next change through this node.

use super::store::FunctionRecord;
use super::{Control, DeployError, Deployer, Keep, short};
use crate::app::LiveApp;
use crate::backend::deployments::{Stored, latest};
use crate::backend::{BackendError, DeploymentsBackend};
use futures_util::StreamExt as _;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long to wait before following the records again after losing them.
const RETRY: Duration = Duration::from_millis(500);

impl Deployer {
    /// A deployer for a member of a cluster, with the cluster's records
    /// applied. Blocking (components are fetched and compiled): call it off
    /// the async workers, inside a Tokio runtime.
    pub fn join(
        app: impl Into<LiveApp>,
        backend: Arc<dyn DeploymentsBackend>,
    ) -> Result<Deployer, BackendError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| BackendError::Storage(format!("no Tokio runtime to reach NATS: {e}")))?;
        let records = runtime.block_on(backend.records())?;
        let deployer = Self::new(
            app.into(),
            Keep::Cluster {
                backend: backend.clone(),
                runtime,
            },
        );
        let mut control = deployer.lock();
        for stored in records {
            control
                .revisions
                .insert(stored.function.clone(), stored.revision);
            match parse(&stored) {
                Ok(Some(entry)) => deployer.restore_entry(&mut control, &stored.function, &entry),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(function = stored.function, error = %e, "skipping a deployment record Nimbus cannot read");
                }
            }
        }
        drop(control);
        backend.behind().set(None);
        Ok(deployer)
    }

    /// Applies the records other nodes write, until `stop` turns true. When
    /// the records cannot be followed (NATS out of reach), the backend is
    /// marked behind, and once they can, every record is read again, so no
    /// change is missed. Does nothing on a node on its own.
    pub async fn follow(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Keep::Cluster { backend, .. } = &self.keep else {
            return;
        };
        let backend = backend.clone();
        let mut failing = false;
        loop {
            let followed = tokio::select! {
                followed = self.clone().follow_once(&backend) => followed,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            let Err(why) = followed;
            if !failing {
                tracing::warn!(error = %why, "cannot follow the cluster's deployments; retrying");
            }
            failing = true;
            backend.behind().set(Some(format!(
                "cannot follow the cluster's deployments: {why}"
            )));
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Reads every record, applies the new ones, then applies each change as
    /// it comes; ends only with why it stopped.
    async fn follow_once(
        self: Arc<Self>,
        backend: &Arc<dyn DeploymentsBackend>,
    ) -> Result<Infallible, BackendError> {
        let records = backend.records().await?;
        let last = latest(&records);
        for stored in records {
            self.clone().apply_blocking(stored).await;
        }
        let mut changes = backend.watch(last).await?;
        self.settle(backend);
        while let Some(change) = changes.next().await {
            self.clone().apply_blocking(change?).await;
            self.settle(backend);
        }
        Err(BackendError::Storage(
            "the watch of the deployments ended".into(),
        ))
    }

    /// Marks the backend behind while a record could not be applied.
    fn settle(&self, backend: &Arc<dyn DeploymentsBackend>) {
        let control = self.lock();
        backend
            .behind()
            .set(control.failing.iter().next().map(|id| {
                format!("the cluster's deployment of `{id}` cannot be applied on this node")
            }));
    }

    async fn apply_blocking(self: Arc<Self>, stored: Stored) {
        let work = move || self.apply(stored);
        if let Err(e) = tokio::task::spawn_blocking(work).await {
            tracing::error!(error = %e, "applying a deployment failed");
        }
    }

    /// Applies a record another node wrote, if it is newer than the one this
    /// node serves.
    fn apply(&self, stored: Stored) {
        let mut control = self.lock();
        let id = stored.function.as_str();
        if stored.revision <= control.revisions.get(id).copied().unwrap_or(0) {
            return;
        }
        control.revisions.insert(id.to_owned(), stored.revision);
        let applied = parse(&stored).and_then(|entry| self.apply_entry(&mut control, id, entry));
        match applied {
            Ok(()) => {
                control.failing.remove(id);
            }
            Err(e) => {
                tracing::warn!(function = id, error = %e, "cannot apply the cluster's deployment of this function; it serves what it served before");
                control.failing.insert(id.to_owned());
            }
        }
    }

    fn apply_entry(
        &self,
        control: &mut Control,
        id: &str,
        entry: Option<FunctionRecord>,
    ) -> Result<(), DeployError> {
        if let Some(entry) = &entry
            && let Some(fragment) = &entry.fragment
            && self.app().index_of(id).is_none()
        {
            self.add_again(control, id, fragment, entry)?;
        }
        let Some(index) = self.app().index_of(id) else {
            tracing::info!(
                function = id,
                "another node deployed a function this node's manifest does not have; ignoring it"
            );
            return Ok(());
        };
        self.serve_record(control, index, entry.as_ref())?;
        tracing::info!(
            function = id,
            version = match &entry {
                None => "the manifest's",
                Some(e) => e.stable.as_ref().map_or("removed", |v| short(&v.digest)),
            },
            canary = entry
                .as_ref()
                .and_then(|e| e.canary.as_ref())
                .map(|c| format!("{} at {}%", short(&c.version.digest), c.percent)),
            "applied a deployment made through another node"
        );
        Ok(())
    }

    /// Writes function `id`'s record (`None`: it serves just its manifest's
    /// component) to the cluster, naming the revision this node serves.
    pub(super) fn write_shared(
        &self,
        control: &mut Control,
        id: &str,
        entry: Option<&FunctionRecord>,
    ) -> Result<(), DeployError> {
        let Keep::Cluster { backend, runtime } = &self.keep else {
            return Ok(());
        };
        let value = match entry {
            Some(entry) => serde_json::to_vec(entry).map_err(|e| {
                DeployError::Shared(BackendError::Storage(format!(
                    "cannot encode the record: {e}"
                )))
            })?,
            None => Vec::new(),
        };
        let expected = control.revisions.get(id).copied().unwrap_or(0);
        match runtime.block_on(backend.write(id, &value, expected)) {
            Ok(Some(revision)) => {
                control.revisions.insert(id.to_owned(), revision);
                Ok(())
            }
            Ok(None) => {
                tracing::info!(
                    function = id,
                    "another node changed this function first; this change was not made"
                );
                Err(DeployError::Conflict(id.to_owned()))
            }
            Err(e) => Err(DeployError::Shared(e)),
        }
    }
}

/// A stored record: `None` when it is empty (the manifest's component).
fn parse(stored: &Stored) -> Result<Option<FunctionRecord>, DeployError> {
    if stored.value.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&stored.value)
        .map(Some)
        .map_err(|e| {
            DeployError::Shared(BackendError::Invalid(format!(
                "the deployment record of `{}` is not one Nimbus reads: {e}",
                stored.function
            )))
        })
}
