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

/// Runs the build command of every function that has one, in manifest order.
/// Functions sharing one command and folder are built by a single run.
/// Progress goes to `progress`; the commands' own output goes to the terminal.
pub fn build_all(manifest: &Manifest, progress: &mut dyn Write) -> Result<usize, BuildError> {
    // Group functions by identical (command, workdir).
    let mut steps: Vec<(&BuildSpec, Vec<&FunctionId>)> = Vec::new();
    for f in &manifest.functions {
        let Some(spec) = &f.build else { continue };
        match steps
            .iter_mut()
            .find(|(s, _)| s.command == spec.command && s.workdir == spec.workdir)
        {
            Some((_, ids)) => ids.push(&f.id),
            None => steps.push((spec, vec![&f.id])),
        }
    }
    let total = steps.len();
    if total == 0 {
        let _ = writeln!(
            progress,
            "nothing to build: no function has a `build` command"
        );
        return Ok(0);
    }
    for (i, (spec, ids)) in steps.iter().enumerate() {
        let functions = ids
            .iter()
            .map(|id| id.as_str())
            .collect::<Vec<_>>()
            .join("`, `");
        let _ = writeln!(
            progress,
            "[{}/{total}] building `{functions}`: {} (in {})",
            i + 1,
            spec.command,
            spec.workdir.display()
        );
        let started = Instant::now();
        let status = shell(&spec.command)
            .current_dir(&spec.workdir)
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
            "[{}/{total}] built `{functions}` in {:.1}s",
            i + 1,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(total)
}

fn shell(command: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command);
    cmd
}
