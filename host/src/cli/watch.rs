//! `nimbus up --watch`: rebuilds a function when a file in the folder its
//! build runs in changes, and deploys what it built through the hot-deploy
//! path, as `nimbus deploy` does: requests in flight finish on the old
//! version, new ones get the new one. A build that fails changes nothing;
//! its compiler's errors are on the terminal, the old version serves on.
//!
//! Watched: every folder under each build folder except build outputs and
//! tools' own folders ([`IGNORED_DIRS`]) and editors' scratch files, with
//! one non-recursive watch per folder (a recursive watch of a folder whose
//! `target/` holds thousands of folders would spend the system's watches).

use nimbus::build::BuildStep;
use nimbus::deploy::{Action, Deployer};
use nimbus::manifest::{FunctionId, Manifest};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Folders never watched: build outputs, dependencies, VCS and Nimbus state.
pub const IGNORED_DIRS: &[&str] = &[
    "target",
    ".git",
    ".nimbus",
    "node_modules",
    "__pycache__",
    ".venv",
    "dist",
];

/// How long the sources must be quiet before a rebuild: an editor's save,
/// or a `git checkout`, is several events.
const SETTLE: Duration = Duration::from_millis(300);

/// The watches on every source folder, set up before the node serves (so a
/// folder that cannot be watched fails `nimbus up` before it listens), and
/// what a rebuild needs; [`Watch::start`] begins reacting to changes.
pub struct Watch {
    steps: Vec<BuildStep>,
    sources: Vec<(FunctionId, PathBuf)>,
    filter: Filter,
    watcher: notify::RecommendedWatcher,
    watched: BTreeSet<PathBuf>,
    changes: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
}

impl Watch {
    /// Watches the build folders of `manifest`'s functions; an error if no
    /// function has a build command.
    pub fn prepare(manifest: &Manifest, state_dir: &Path) -> anyhow::Result<Watch> {
        let steps = nimbus::build::steps(manifest);
        if steps.is_empty() {
            anyhow::bail!(
                "--watch: no function of `{}` has a `build` command, so there is nothing to rebuild",
                manifest.name
            );
        }
        let sources: Vec<(FunctionId, PathBuf)> = manifest
            .functions
            .iter()
            .map(|f| (f.id.clone(), f.source.clone()))
            .collect();
        let (events, changes) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event| {
            // The receiver lives as long as the task; after it, nobody listens.
            let _ = events.send(event);
        })?;
        let filter = Filter {
            workdirs: steps.iter().map(|s| s.spec.workdir.clone()).collect(),
            state_dir: state_dir.to_path_buf(),
            outputs: sources.iter().map(|(_, source)| source.clone()).collect(),
        };
        let mut watch = Watch {
            steps,
            sources,
            filter,
            watcher,
            watched: BTreeSet::new(),
            changes,
        };
        for workdir in watch.filter.workdirs.clone() {
            watch_tree(
                &mut watch.watcher,
                &workdir,
                &watch.filter,
                &mut watch.watched,
            )?;
        }
        Ok(watch)
    }

    /// Rebuilds and deploys through `deployer` on every change, in a task
    /// that runs until the process ends.
    pub fn start(self, deployer: Arc<Deployer>) -> tokio::task::JoinHandle<()> {
        let Watch {
            steps,
            sources,
            filter,
            mut watcher,
            mut watched,
            mut changes,
        } = self;
        tracing::info!(
            folders = watched.len(),
            builds = steps.len(),
            "watching the functions' sources; a change rebuilds and redeploys"
        );
        tokio::spawn(async move {
            while let Some(first) = changes.recv().await {
                let mut changed = BTreeSet::new();
                collect(first, &filter, &mut changed, &mut watcher, &mut watched);
                // Until the sources are quiet for SETTLE.
                while let Ok(Some(next)) = tokio::time::timeout(SETTLE, changes.recv()).await {
                    collect(next, &filter, &mut changed, &mut watcher, &mut watched);
                }
                for step in affected(&steps, &changed) {
                    rebuild(step, &sources, &deployer).await;
                }
            }
        })
    }
}

/// What is a source: a file under a build folder, but for build outputs,
/// the state folder and the folders never watched.
struct Filter {
    workdirs: Vec<PathBuf>,
    state_dir: PathBuf,
    outputs: Vec<PathBuf>,
}

impl Filter {
    /// Whether a change to `path` means nothing to the build.
    fn ignores(&self, path: &Path) -> bool {
        if path.starts_with(&self.state_dir) || self.outputs.iter().any(|o| o == path) {
            return true;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return true;
        };
        // Editors' swap, backup and probe files.
        let scratch = name.ends_with('~')
            || name.ends_with(".swp")
            || name.ends_with(".swx")
            || name == "4913"
            || name.starts_with(".#");
        // Under a build folder, and in no ignored folder below it (an app
        // may well live under a folder called `dist`).
        let in_ignored = |workdir: &PathBuf| {
            path.strip_prefix(workdir).is_ok_and(|inside| {
                inside
                    .components()
                    .filter_map(|c| c.as_os_str().to_str())
                    .any(|c| IGNORED_DIRS.contains(&c))
            })
        };
        let outside = !self.workdirs.iter().any(|w| path.starts_with(w));
        scratch || outside || self.workdirs.iter().any(in_ignored)
    }
}

/// Adds a watch on `dir` and every folder under it that `filter` keeps.
fn watch_tree(
    watcher: &mut notify::RecommendedWatcher,
    dir: &Path,
    filter: &Filter,
    watched: &mut BTreeSet<PathBuf>,
) -> anyhow::Result<()> {
    if !watched.insert(dir.to_path_buf()) {
        return Ok(());
    }
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("--watch: cannot watch `{}`: {e}", dir.display()))?;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Not through symbolic links: a link to a shared target folder is
        // no source.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && !filter.ignores(&path) {
            watch_tree(watcher, &path, filter, watched)?;
        }
    }
    Ok(())
}

/// The source paths `event` changed, into `changed`; a new folder is
/// watched too.
fn collect(
    event: notify::Result<notify::Event>,
    filter: &Filter,
    changed: &mut BTreeSet<PathBuf>,
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut BTreeSet<PathBuf>,
) {
    let event = match event {
        Ok(event) => event,
        Err(err) => {
            tracing::warn!("--watch: {err}");
            return;
        }
    };
    if matches!(event.kind, EventKind::Access(_)) {
        return;
    }
    for path in event.paths {
        if filter.ignores(&path) {
            continue;
        }
        if path.is_dir()
            && !path.is_symlink()
            && let Err(err) = watch_tree(watcher, &path, filter, watched)
        {
            tracing::warn!("{err}");
        }
        changed.insert(path);
    }
}

/// The steps whose build folder holds a changed path, in manifest order.
fn affected<'a>(steps: &'a [BuildStep], changed: &BTreeSet<PathBuf>) -> Vec<&'a BuildStep> {
    steps
        .iter()
        .filter(|step| changed.iter().any(|p| p.starts_with(&step.spec.workdir)))
        .collect()
}

/// Runs `step`'s build, then deploys each of its functions' components.
async fn rebuild(step: &BuildStep, sources: &[(FunctionId, PathBuf)], deployer: &Arc<Deployer>) {
    let label = step.label();
    let building = step.clone();
    let built =
        tokio::task::spawn_blocking(move || building.run("[watch]", &mut std::io::stderr())).await;
    match built {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(
                "--watch: {err}; `{label}` still serves its previous version (the errors are above)"
            );
            return;
        }
        Err(err) => {
            tracing::error!("--watch: the build of `{label}` did not finish: {err}");
            return;
        }
    }
    for id in &step.functions {
        let Some((_, source)) = sources.iter().find(|(f, _)| f == id) else {
            continue;
        };
        let (id, source, deployer) = (id.to_string(), source.clone(), deployer.clone());
        let deployed = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&source)
                .map_err(|e| format!("cannot read `{}`: {e}", source.display()))?;
            deployer
                .deploy(&id, &bytes)
                .map(|change| (id, change))
                .map_err(|e| e.to_string())
        })
        .await;
        match deployed {
            // A deploy logs itself (nimbus::deploy); an unchanged build
            // would otherwise pass in silence.
            Ok(Ok((id, change))) if change.action == Action::Unchanged => {
                tracing::info!(function = %id, "--watch: rebuilt; the component is unchanged")
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(
                "--watch: cannot deploy the new build of `{label}`: {err}; the previous version serves on"
            ),
            Err(err) => tracing::error!("--watch: the deploy of `{label}` did not finish: {err}"),
        }
    }
}
