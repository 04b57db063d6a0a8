//! The compile cache: a second load of the same component does not recompile,
//! and an unusable cache entry is replaced, not fatal.

use nimbus::app::App;
use nimbus::engine::{Runtime, RuntimeConfig};
use nimbus::manifest::Manifest;
use nimbus_tests::write_manifest;

const APP: &str = r#"
version = 1
[app]
name = "cache"
[functions.hello]
source = "guest:hello"
routes = ["/"]
"#;

fn backend(dir: &std::path::Path) -> nimbus::backend::Backends {
    let store = nimbus::backend::embedded::EmbeddedBackend::open(&dir.join("state.redb")).unwrap();
    nimbus::backend::Backends::embedded(store)
}

fn cached_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compiled_components_are_cached_and_bad_entries_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let manifest = Manifest::load(&write_manifest(dir.path(), APP)).unwrap();
    let runtime = Runtime::new(&RuntimeConfig {
        cache_dir: Some(cache.clone()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let backends = backend(dir.path());

    App::load(&runtime, &manifest, backends.clone()).unwrap();
    let entries = cached_entries(&cache);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let modified = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();

    // A second load reads the entry instead of writing a new one.
    App::load(&runtime, &manifest, backends.clone()).unwrap();
    assert_eq!(cached_entries(&cache), entries);
    assert_eq!(
        std::fs::metadata(&entries[0]).unwrap().modified().unwrap(),
        modified
    );

    // A corrupt entry is recompiled and rewritten.
    std::fs::write(&entries[0], b"not a compiled component").unwrap();
    App::load(&runtime, &manifest, backends.clone()).unwrap();
    assert_ne!(
        std::fs::read(&entries[0]).unwrap(),
        b"not a compiled component"
    );
}
