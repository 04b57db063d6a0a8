//! Builds every guest crate under `functions/` (`functions/<group>/<name>`) for
//! `wasm32-wasip2` and writes `$OUT_DIR/guests.rs`: a table from each guest's folder name
//! (`<name>`, without the group) to its component's path.
//!
//! The guests are built by one nested `cargo build` of the same workspace. It gets a
//! target directory of its own (`<target>/guests`) because the outer cargo holds the lock
//! on the workspace's target directory while this script runs, and an environment from
//! which everything describing the outer (host) build has been removed.

use std::collections::BTreeMap;
use std::env;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every guest is compiled for this target, which emits a component directly.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// Variables that cargo sets for this build script, or that configure the outer build,
/// and that would be wrong for the guest build: wrappers such as `clippy-driver`, host
/// rustflags, the outer target and target directory, and the outer package's own
/// metadata. `CARGO_CFG_*` matters most: it describes the *host* target, and a leaked
/// `CARGO_CFG_UNIX` would tell a guest dependency's build script it targets Unix.
/// The jobserver (`CARGO_MAKEFLAGS`) is kept on purpose, so that the guest build shares
/// the outer build's job slots instead of oversubscribing the CPUs.
const OUTER_BUILD_VARS: &[&str] = &[
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_LINKER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_PRIMARY_PACKAGE",
];
const OUTER_BUILD_VAR_PREFIXES: &[&str] = &["CARGO_CFG_", "CARGO_PKG_", "CARGO_FEATURE_", "DEP_"];

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let workspace_root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("this crate lives at <workspace>/tests/artifacts")
        .to_path_buf();
    let out_dir = PathBuf::from(env_var("OUT_DIR"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    for watched in ["functions", "guest-sdk", "Cargo.lock", "Cargo.toml"] {
        println!(
            "cargo::rerun-if-changed={}",
            workspace_root.join(watched).display()
        );
    }

    let FunctionCrates {
        guests,
        libraries,
        default_members,
    } = function_crates(&cargo, &workspace_root);
    // Without the target, a plain `cargo build` of the workspace still
    // succeeds (it builds this crate as a dependency of the test support);
    // every test that asks for a guest then fails with the fix.
    let (components, missing) = match target_installed() {
        Ok(()) => {
            let target_dir = guest_target_dir(&out_dir);
            let components = build_guests(&cargo, &workspace_root, &target_dir, &guests);
            (components, None)
        }
        Err(hint) => {
            println!("cargo::warning={}", hint.lines().next().unwrap_or_default());
            (BTreeMap::new(), Some(hint))
        }
    };

    let mut generated = format!("pub const MISSING_TARGET: Option<&str> = {missing:?};\n");
    generated.push_str("pub const GUESTS: &[(&str, &str)] = &[\n");
    for (folder, component) in &components {
        let component = component.to_str().expect("component paths are UTF-8");
        writeln!(generated, "    ({folder:?}, {component:?}),").expect("write to a String");
    }
    generated.push_str("];\n");
    // Only this crate's unit tests need these, to account for every folder.
    writeln!(
        generated,
        "#[cfg(test)]\npub const LIBRARIES: &[&str] = &{libraries:?};\n\
         #[cfg(test)]\npub const DEFAULT_MEMBERS: &[&str] = &{default_members:?};"
    )
    .expect("write to a String");
    let guests_rs = out_dir.join("guests.rs");
    fs::write(&guests_rs, generated)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", guests_rs.display()));
}

/// Whether the guest target's standard library is installed; if not, what
/// to do about it.
fn target_installed() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", rustc.display()));
    let libdir = String::from_utf8_lossy(&output.stdout);
    let libdir = Path::new(libdir.trim());
    // Run again once the target is installed (or removed): rustup adds it as
    // a folder beside the others, `<sysroot>/lib/rustlib/<target>`.
    if let Some(rustlib) = libdir.ancestors().nth(2) {
        println!("cargo::rerun-if-changed={}", rustlib.display());
    }
    if !output.status.success() || !libdir.is_dir() {
        return Err(format!(
            "the {GUEST_TARGET} target is not installed, so the guests under functions/ \
             cannot be built; install it with:\n\n    rustup target add {GUEST_TARGET}\n\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// A guest crate, `functions/<group>/<folder>`.
struct Guest {
    /// The package name, for `cargo build -p`.
    name: String,
    /// The package id, which cargo's JSON messages name artifacts by.
    id: String,
    /// The leaf folder, which tests name guests by: the group is left out, so a guest
    /// can move between groups without a test changing.
    folder: String,
    /// `<group>/<folder>`, relative to `functions/`, for messages.
    path: String,
}

/// The workspace packages under `functions/`.
struct FunctionCrates {
    /// Those that build a component, sorted by folder.
    guests: Vec<Guest>,
    /// The folders of the others, libraries the guests share (`probes/probe-util`).
    libraries: Vec<String>,
    /// The folders of those, guests or libraries, that are default members of the
    /// workspace, so that a plain `cargo test` runs their unit tests.
    default_members: Vec<String>,
}

/// Every workspace package whose manifest is `functions/<group>/<folder>/Cargo.toml`.
/// Panics if two groups hold the same guest folder name, since tests could not tell
/// those guests apart, or if a package sits under `functions/` outside a group.
fn function_crates(cargo: &OsStr, workspace_root: &Path) -> FunctionCrates {
    let mut command = nested_cargo(cargo, workspace_root);
    command.args(["metadata", "--no-deps", "--format-version=1"]);
    let output = run(&mut command);
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("`cargo metadata` prints JSON");

    let functions_dir = canonical(&workspace_root.join("functions"));
    let mut guests = Vec::new();
    let mut libraries = Vec::new();
    let mut default_members = Vec::new();
    let default_member_ids: Vec<&str> = metadata["workspace_default_members"]
        .as_array()
        .expect("`cargo metadata` lists the default members")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    for package in metadata["packages"]
        .as_array()
        .expect("`cargo metadata` lists packages")
    {
        let manifest = package["manifest_path"]
            .as_str()
            .expect("every package has a manifest path");
        let folder = canonical(Path::new(manifest).parent().expect("a manifest's folder"));
        let Ok(path) = folder.strip_prefix(&functions_dir) else {
            continue;
        };
        let parts: Vec<&str> = path
            .iter()
            .map(|part| part.to_str().expect("UTF-8 folder names"))
            .collect();
        let path = parts.join("/");
        let folder = match parts[..] {
            [_group, folder] => folder.to_owned(),
            _ => panic!(
                "functions/{path} is a workspace package outside a group: guests live in \
                 functions/<group>/<name> (samples/ or probes/, see functions/README.md)"
            ),
        };
        let id = package["id"].as_str().expect("an id");
        if default_member_ids.contains(&id) {
            default_members.push(folder.clone());
        }
        if !builds_a_component(package) {
            libraries.push(folder);
            continue;
        }
        guests.push(Guest {
            name: package["name"].as_str().expect("a name").to_owned(),
            id: id.to_owned(),
            folder,
            path,
        });
    }
    guests.sort_by(|a, b| a.folder.cmp(&b.folder).then_with(|| a.path.cmp(&b.path)));
    for pair in guests.windows(2) {
        if pair[0].folder == pair[1].folder {
            panic!(
                "two guests are named `{}`: functions/{} and functions/{}; tests name a \
                 guest by its folder alone, so rename one of them",
                pair[0].folder, pair[0].path, pair[1].path
            );
        }
    }
    assert!(
        !guests.is_empty(),
        "no guest crates under {}",
        functions_dir.display()
    );
    libraries.sort();
    default_members.sort();
    FunctionCrates {
        guests,
        libraries,
        default_members,
    }
}

/// Whether `package` (from `cargo metadata`) has a target that compiles to a component
/// for the guest target: a `cdylib` (a wasi:http handler) or a binary (a command).
fn builds_a_component(package: &serde_json::Value) -> bool {
    package["targets"]
        .as_array()
        .expect("`cargo metadata` lists a package's targets")
        .iter()
        .flat_map(|target| target["kind"].as_array().into_iter().flatten())
        .any(|kind| kind == "cdylib" || kind == "bin")
}

/// `<target>/guests`, next to the outer build's profile directories. `OUT_DIR` is
/// `<target>[/<triple>]/<profile>/build/<pkg>-<hash>/out`, so `<target>[/<triple>]` is
/// two levels above its innermost `build` component.
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.file_name() == Some(OsStr::new("build")))
        .and_then(|build| build.parent()?.parent())
        .unwrap_or_else(|| panic!("OUT_DIR {} has no `build` component", out_dir.display()))
        .join("guests")
}

/// Builds all guests in one release build; returns folder name -> component path.
fn build_guests(
    cargo: &OsStr,
    workspace_root: &Path,
    target_dir: &Path,
    guests: &[Guest],
) -> BTreeMap<String, PathBuf> {
    let mut command = nested_cargo(cargo, workspace_root);
    command
        .args(["build", "--release", "--target", GUEST_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .arg("--target-dir")
        .arg(target_dir);
    for guest in guests {
        command.args(["-p", &guest.name]);
    }
    let output = run(&mut command);

    // Diagnostics go to stderr, which cargo hides for a successful build script, so
    // surface guest warnings as warnings of this crate.
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        if line.starts_with("warning:") {
            println!("cargo::warning=guest build: {line}");
        }
    }

    let folder_of: BTreeMap<&str, &str> = guests
        .iter()
        .map(|guest| (guest.id.as_str(), guest.folder.as_str()))
        .collect();
    let mut components = BTreeMap::new();
    for line in output.stdout.split(|&byte| byte == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        // Artifacts of the guests' dependencies have other package ids.
        let Some(folder) = message["package_id"]
            .as_str()
            .and_then(|id| folder_of.get(id))
        else {
            continue;
        };
        let wasm = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .find(|file| file.ends_with(".wasm"));
        if let Some(wasm) = wasm {
            components.insert((*folder).to_owned(), PathBuf::from(wasm));
        }
    }

    for guest in guests {
        assert!(
            components.contains_key(&guest.folder),
            "building guest `{}` (functions/{}) produced no .wasm file; \
             a guest must be a `cdylib` library or a binary",
            guest.name,
            guest.path,
        );
    }
    components
}

/// A cargo command for the workspace, without the outer build's environment.
fn nested_cargo(cargo: &OsStr, workspace_root: &Path) -> Command {
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root);
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if OUTER_BUILD_VARS.contains(&name)
            || OUTER_BUILD_VAR_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `command`, panicking with its error output if it fails.
fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run `{}`: {err}", shown(command)));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains(GUEST_TARGET) && stderr.contains("may not be installed") {
            format!(
                "\nThe {GUEST_TARGET} target is missing: run `rustup target add {GUEST_TARGET}`."
            )
        } else {
            String::new()
        };
        panic!(
            "building the guests under functions/ failed ({}):\n`{}`\n\n{stderr}{hint}",
            output.status,
            shown(command),
        );
    }
    output
}

/// `command` as a shell line, without the environment changes, which `{:?}` lists in full.
fn shown(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|err| panic!("cannot resolve {}: {err}", path.display()))
}

fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}
