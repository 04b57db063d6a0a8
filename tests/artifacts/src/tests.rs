//! The unit tests, and the checks that keep `functions/` and the workspace in step:
//! every crate folder is accounted for, and every crate with unit tests is run by a
//! plain `cargo test`.

use super::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

/// The first eight bytes of a binary component: `\0asm`, then version 0x0d and
/// layer 1 (core modules have layer 0).
const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\x00\x01\x00";

/// The subfolders of `dir`, by name.
fn subfolders(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut folders: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.expect("read a directory entry"))
        .filter(|entry| entry.path().is_dir())
        .map(|entry| {
            let name = entry.file_name().into_string().expect("UTF-8 folder name");
            (name, entry.path())
        })
        .collect();
    folders.sort();
    folders
}

/// The workspace root, resolved, so that paths under it compare with `starts_with`.
fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    fs::canonicalize(&root).unwrap_or_else(|err| panic!("cannot resolve {}: {err}", root.display()))
}

/// Every `*.rs` file under `dir`, at any depth; none if `dir` does not exist.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if !dir.is_dir() {
        return files;
    }
    for entry in
        fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
    {
        let path = entry.expect("read a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// Every crate folder `functions/<group>/<name>`, as `name -> <group>/<name>`.
fn crate_folders() -> BTreeMap<String, String> {
    let functions = workspace_root().join("functions");
    let mut folders = BTreeMap::new();
    for (group, group_dir) in subfolders(&functions) {
        assert!(
            !group_dir.join("Cargo.toml").is_file(),
            "functions/{group} is a crate, but functions/ holds groups of crates"
        );
        for (name, dir) in subfolders(&group_dir) {
            if !dir.join("Cargo.toml").is_file() {
                continue;
            }
            if let Some(other) = folders.insert(name.clone(), format!("{group}/{name}")) {
                panic!("functions/{other} and functions/{group}/{name} share a name");
            }
        }
    }
    folders
}

/// The crate folders but the libraries the guests share.
fn guest_folders() -> BTreeMap<String, String> {
    let mut folders = crate_folders();
    for library in generated::LIBRARIES {
        assert!(
            folders.remove(*library).is_some(),
            "build.rs names `{library}` a library, but there is no such crate folder"
        );
    }
    folders
}

/// Every crate folder under `functions/` but the shared libraries is a guest, and
/// its component was built.
#[test]
fn every_folder_under_functions_is_a_built_component() {
    let folders: BTreeSet<String> = guest_folders().into_keys().collect();
    assert!(!folders.is_empty());
    for folder in &folders {
        let path = guest(folder);
        assert!(path.is_absolute(), "{} is not absolute", path.display());
        let bytes =
            fs::read(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        assert!(
            bytes.starts_with(b"\0asm"),
            "{} is not wasm",
            path.display()
        );
        assert!(
            bytes.starts_with(COMPONENT_HEADER),
            "{} is a core module, not a component",
            path.display()
        );
    }
    let listed: BTreeSet<String> = GUESTS.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(listed, folders, "GUESTS and functions/ disagree");
}

/// A plain `cargo test` at the root tests only the workspace's default members, so a
/// crate under `functions/` with unit tests must be one, or they never run.
#[test]
fn crates_under_functions_with_unit_tests_are_default_members() {
    let functions = workspace_root().join("functions");
    let skipped: Vec<String> = crate_folders()
        .into_iter()
        .filter(|(name, _)| !generated::DEFAULT_MEMBERS.contains(&name.as_str()))
        .filter(|(_, path)| {
            rust_files(&functions.join(path))
                .iter()
                .any(|file| read(file).contains("#[test]"))
        })
        .map(|(_, path)| {
            format!(
                "\n  functions/{path} has unit tests: add \"functions/{path}\" to \
                 `default-members` in the root Cargo.toml"
            )
        })
        .collect();
    assert!(
        skipped.is_empty(),
        "a plain `cargo test` at the root skips these unit tests:{}\n\
         (a default member must link natively, so a guest's exports must exist only on \
         wasm32, as nimbus-sdk's macros make them)",
        skipped.concat()
    );
}

#[test]
#[should_panic(expected = "no guest `no-such-guest` under functions/; known guests: ")]
fn unknown_guest_names_the_known_ones() {
    guest("no-such-guest");
}
