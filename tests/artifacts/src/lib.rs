//! The guest functions under `functions/`, compiled for the tests and named by folder.
//!
//! Depending on this crate builds every crate under `functions/<group>/` for
//! `wasm32-wasip2` once, in a single release build (see `build.rs`), into
//! `target/guests`. Tests then ask for a component by the name of its folder alone
//! (`hello`, not `samples/hello`), so a guest can change groups without a test changing,
//! and a test that names a function that does not exist fails loudly instead of testing
//! nothing. This follows wasmtime's `test-programs-artifacts` crate.
//!
//! # Example
//!
//! ```
//! let hello = nimbus_test_artifacts::guest("hello");
//! let component = std::fs::read(hello).unwrap();
//! assert!(component.starts_with(b"\0asm"));
//! ```

#![deny(missing_docs)]

use std::path::Path;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// Every guest as `(folder name, absolute path of its component)`, sorted by folder
/// name; the folder is `functions/<group>/<folder name>`.
pub const GUESTS: &[(&str, &str)] = generated::GUESTS;

/// The component built from `functions/<group>/<name>`, in whichever group it is.
///
/// # Panics
///
/// If no group under `functions/` holds a guest `<name>`; the message lists the known
/// guests.
pub fn guest(name: &str) -> &'static Path {
    match GUESTS.iter().find(|(folder, _)| *folder == name) {
        Some((_, component)) => Path::new(component),
        None => {
            let known: Vec<&str> = GUESTS.iter().map(|(folder, _)| *folder).collect();
            panic!(
                "no guest `{name}` under functions/; known guests: {}",
                known.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
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

    /// Every crate folder `functions/<group>/<name>`, as `name -> <group>/<name>`.
    fn crate_folders() -> BTreeMap<String, String> {
        let functions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../functions");
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
            let bytes = fs::read(path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
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

    #[test]
    #[should_panic(expected = "no guest `no-such-guest` under functions/; known guests: ")]
    fn unknown_guest_names_the_known_ones() {
        guest("no-such-guest");
    }
}
