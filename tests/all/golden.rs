//! Golden tests for bad manifests and bad components: each case under
//! `tests/golden/<case>/` is an app (`nimbus.toml`, plus `.wat` files compiled
//! to `.wasm` first) and `expected.err`, the one-line error `nimbus check`
//! must give. Run with `BLESS=1` to rewrite the expected files.

use nimbus_tests::{guest, runtime, with_guest_paths};
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// Copies a case into a fresh folder, fills in guest paths, compiles `.wat`.
fn prepare(case: &Path, into: &Path) {
    for entry in std::fs::read_dir(case).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        match path.extension().and_then(|e| e.to_str()) {
            Some("wat") => {
                let wasm = wat::parse_file(&path).unwrap();
                std::fs::write(into.join(name).with_extension("wasm"), wasm).unwrap();
            }
            Some("toml") => {
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(into.join(name), with_guest_paths(&text)).unwrap();
            }
            Some("err") => {}
            _ => {
                std::fs::copy(&path, into.join(name)).unwrap();
            }
        }
    }
}

fn check_case(case: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    prepare(case, dir.path());
    let error = match nimbus::check::check(&runtime(), dir.path()) {
        Ok(report) => {
            return Err(format!(
                "expected an error, but the check passed: {report:?}"
            ));
        }
        Err(e) => e.to_string(),
    };
    let guests = guest("hello").parent().unwrap().display().to_string();
    let actual = error
        .replace(&dir.path().display().to_string(), "$DIR")
        .replace(&guests, "$GUESTS");
    if actual.contains('\n') {
        return Err(format!("error spans several lines:\n{actual}"));
    }
    let expected_file = case.join("expected.err");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&expected_file, format!("{actual}\n")).unwrap();
        return Ok(());
    }
    let expected = std::fs::read_to_string(&expected_file).map_err(|e| {
        format!(
            "{}: {e} (run with BLESS=1 to create it)",
            expected_file.display()
        )
    })?;
    if expected.trim_end() != actual {
        return Err(format!(
            "expected:\n  {}\nactual:\n  {actual}",
            expected.trim_end()
        ));
    }
    Ok(())
}

#[test]
fn bad_manifests_and_components_give_one_clear_line() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "golden cases went missing: {cases:?}");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check_case(case)
                .err()
                .map(|e| format!("{}: {e}", case.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn a_folder_without_a_manifest_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let error = nimbus::check::check(&runtime(), dir.path())
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!("{}: no nimbus.toml in this folder", dir.path().display())
    );
}
