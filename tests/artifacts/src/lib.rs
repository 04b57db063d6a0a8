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
/// If no group under `functions/` holds a guest `<name>` (the message lists the known
/// guests), or if the `wasm32-wasip2` target was not installed when this crate was
/// built (the message says how to install it).
pub fn guest(name: &str) -> &'static Path {
    if let Some(hint) = generated::MISSING_TARGET {
        panic!("{hint}");
    }
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
mod tests;
