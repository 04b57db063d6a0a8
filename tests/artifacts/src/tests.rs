//! The unit tests, and the checks that keep `functions/` and the tests in step:
//! every crate folder is accounted for, every guest is used by a test, and every
//! crate with unit tests is run by a plain `cargo test`.

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
    if let Some(hint) = super::generated::MISSING_TARGET {
        panic!("{hint}");
    }
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

/// Every guest needs a host test: wasmtime's rule, and convention 10 of STYLE.md.
/// A guest counts as used where a test names it, in a file under `tests/`,
/// `host/tests/` or `host/benches/` (at any depth, so files may move between them),
/// as `guest("NAME")`, `"guest:NAME"`, `@NAME@` (the CLI tests' placeholder) or
/// `guest(CONST)` with `const CONST: &str = "NAME"`; or where an example's
/// `nimbus.toml` builds it (`-p NAME`) or serves it (`NAME.wasm`), since the tests run
/// the examples.
#[test]
fn every_guest_is_used_by_a_test() {
    let root = workspace_root();
    // This crate names guests in its own docs and tests; that is no use.
    let this_crate = root.join("tests/artifacts");
    let sources: Vec<String> = ["tests", "host/tests", "host/benches"]
        .iter()
        .flat_map(|dir| rust_files(&root.join(dir)))
        .filter(|file| !file.starts_with(&this_crate))
        .map(|file| read(&file))
        .collect();
    assert!(
        !sources.is_empty(),
        "no test sources under {}",
        root.display()
    );
    let manifests: Vec<String> = subfolders(&root.join("examples"))
        .into_iter()
        .map(|(_, dir)| dir.join("nimbus.toml"))
        .filter(|manifest| manifest.is_file())
        .map(|manifest| read(&manifest))
        .collect();

    let unused: Vec<String> = guest_folders()
        .into_iter()
        .filter(|(name, _)| {
            !sources.iter().any(|source| test_uses(source, name))
                && !manifests
                    .iter()
                    .any(|manifest| manifest_uses(manifest, name))
        })
        .map(|(name, path)| {
            format!(
                "\n  no test uses guest `{name}` (functions/{path}): write a test under tests/ \
                 that runs it, as `guest(\"{name}\")`, `source = \"guest:{name}\"` or, in a \
                 CLI test, `@{name}@`; or delete the folder if nothing needs it"
            )
        })
        .collect();
    assert!(
        unused.is_empty(),
        "every guest needs a host test:{}",
        unused.concat()
    );
}

/// Whether the Rust `source` names guest `name` the ways tests do.
fn test_uses(source: &str, name: &str) -> bool {
    let quoted = format!("\"{name}\"");
    if [
        format!("guest({quoted})"),
        format!("\"guest:{name}\""),
        format!("@{name}@"),
    ]
    .iter()
    .any(|form| source.contains(form.as_str()))
    {
        return true;
    }
    // `const HELLO: &str = "hello";` and `guest(HELLO)`.
    source.lines().any(|line| {
        line.trim_start()
            .strip_prefix("const ")
            .and_then(|rest| rest.strip_suffix(&format!(": &str = {quoted};")))
            .is_some_and(|constant| source.contains(&format!("guest({constant})")))
    })
}

/// Whether an example's manifest builds (`-p NAME`) or serves (`.../NAME.wasm`) guest
/// `name`, as a whole name: `hello.wasm` is not `wstd-hello.wasm`.
fn manifest_uses(manifest: &str, name: &str) -> bool {
    let part_of_a_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let built = manifest
        .match_indices(&format!("-p {name}"))
        .any(|(at, found)| {
            !manifest[at + found.len()..]
                .chars()
                .next()
                .is_some_and(part_of_a_name)
        });
    let served = manifest
        .match_indices(&format!("{name}.wasm"))
        .any(|(at, _)| {
            !manifest[..at]
                .chars()
                .next_back()
                .is_some_and(part_of_a_name)
        });
    built || served
}

#[test]
fn guest_uses_are_found_in_every_form() {
    for source in [
        r#"let path = guest("sleeper");"#,
        r#"source = "guest:sleeper""#,
        "source = @sleeper@",
        "const SLOW: &str = \"sleeper\";\nfn f() { guest(SLOW); }",
    ] {
        assert!(test_uses(source, "sleeper"), "{source}");
        assert!(!test_uses(source, "sleep"), "{source}");
    }
    assert!(!test_uses(r#"let name = "sleeper";"#, "sleeper"));

    let manifest = "source = \"../../target/wasm32-wasip2/release/wstd-hello.wasm\"\n\
                    build = \"cargo build -p users -p catalog\"";
    assert!(manifest_uses(manifest, "wstd-hello"));
    assert!(manifest_uses(manifest, "users"));
    assert!(manifest_uses(manifest, "catalog"));
    assert!(!manifest_uses(manifest, "hello"));
    assert!(!manifest_uses(manifest, "user"));
    assert!(!manifest_uses(manifest, "cat"));
}

#[test]
#[should_panic(expected = "no guest `no-such-guest` under functions/; known guests: ")]
fn unknown_guest_names_the_known_ones() {
    guest("no-such-guest");
}
