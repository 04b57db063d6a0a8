//! `nimbus build`: runs each function's build command, with visible progress.

use crate::manifest::{BuildSpec, FunctionId, Manifest};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// A build command that failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The command could not be started.
    #[error("building `{functions}`: cannot run `{command}` in {}: {source}", workdir.display())]
    Spawn {
        /// The functions this command builds.
        functions: String,
        /// The command.
        command: String,
        /// Where it was to run.
        workdir: PathBuf,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("building `{functions}`: `{command}` failed ({status})")]
    Failed {
        /// The functions this command builds.
        functions: String,
        /// The command.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
}

/// One build command and the functions it builds.
#[derive(Debug, Clone)]
pub struct BuildStep {
    /// The command and the folder it runs in.
    pub spec: BuildSpec,
    /// The functions whose components it builds, in manifest order.
    pub functions: Vec<FunctionId>,
}

impl BuildStep {
    /// The functions' ids joined by `` `, ` ``, to sit between backticks in
    /// a message ("building `a`, `b`").
    pub fn label(&self) -> String {
        self.functions
            .iter()
            .map(FunctionId::as_str)
            .collect::<Vec<_>>()
            .join("`, `")
    }

    /// Runs the command, its output going to the terminal; `position` is
    /// the `[i/n]` of the progress lines written to `progress`.
    pub fn run(&self, position: &str, progress: &mut dyn Write) -> Result<(), BuildError> {
        let functions = self.label();
        let spec = &self.spec;
        let _ = writeln!(
            progress,
            "{position} building `{functions}`: {} (in {})",
            spec.command,
            spec.workdir.display()
        );
        let started = Instant::now();
        // The command's output goes to stderr, stdout included: `nimbus
        // up`'s stdout carries `listening on ...`, which scripts and test
        // helpers read as its first line.
        let status = shell(&spec.command)
            .current_dir(&spec.workdir)
            .stdout(std::io::stderr())
            .status()
            .map_err(|source| BuildError::Spawn {
                functions: functions.clone(),
                command: spec.command.clone(),
                workdir: spec.workdir.clone(),
                source,
            })?;
        if !status.success() {
            return Err(BuildError::Failed {
                functions,
                command: spec.command.clone(),
                status,
            });
        }
        let _ = writeln!(
            progress,
            "{position} built `{functions}` in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// The app's build commands, in manifest order: functions sharing one
/// command and folder share one step.
pub fn steps(manifest: &Manifest) -> Vec<BuildStep> {
    let mut steps: Vec<BuildStep> = Vec::new();
    for f in &manifest.functions {
        let Some(spec) = &f.build else { continue };
        match steps
            .iter_mut()
            .find(|s| s.spec.command == spec.command && s.spec.workdir == spec.workdir)
        {
            Some(step) => step.functions.push(f.id.clone()),
            None => steps.push(BuildStep {
                spec: spec.clone(),
                functions: vec![f.id.clone()],
            }),
        }
    }
    steps
}

/// Runs the build command of every function that has one, in manifest order.
/// Functions sharing one command and folder are built by a single run.
/// Progress goes to `progress`; the commands' own output goes to stderr.
pub fn build_all(manifest: &Manifest, progress: &mut dyn Write) -> Result<usize, BuildError> {
    let steps = steps(manifest);
    let total = steps.len();
    if total == 0 {
        let _ = writeln!(
            progress,
            "nothing to build: no function has a `build` command"
        );
        return Ok(0);
    }
    for (i, step) in steps.iter().enumerate() {
        step.run(&format!("[{}/{total}]", i + 1), progress)?;
    }
    Ok(total)
}

fn shell(command: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command);
    cmd
}
