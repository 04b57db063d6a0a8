//! The dashboard in a real browser: `nimbus up` of the shop app with an
//! admin token, and `tests/browser/dashboard.mjs` driving headless Chromium
//! (Debian's, through playwright-core) against its admin listener. The
//! script signs in (a wrong token first), sees traffic arrive, sets and
//! aborts a canary, and replays a dead letter from the page, checking each
//! through the admin API. Screenshots go to
//! `target/tmp/dashboard-screenshots/`.
//!
//! `.ci/run` installs Chromium (`apt-get install chromium`) and the script's
//! npm packages; without them this test fails and says what is missing.

use crate::support::{Server, nimbus};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOKEN: &str = "dashboard-test-token";
const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn the_dashboard_shows_the_shop_and_steers_it_from_a_browser() {
    let browser_tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)"
    );
    assert!(
        browser_tests.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: `npm ci --prefix tests/browser` (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = nimbus_tests::example_manifest(
        "shop",
        dir.path(),
        &[("{{ env.SHOP_SIGNING_KEY }}", "dashboard-test-key")],
    );
    std::fs::write(
        dir.path().join("nimbus.toml"),
        nimbus_tests::with_guest_paths(&manifest),
    )
    .unwrap();
    let mut up = nimbus(dir.path());
    up.args([
        "up",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token",
        TOKEN,
    ])
    .env("NIMBUS_LOG", "warn");
    let server = Server::start(up);
    let screenshots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let status = Command::new("node")
        .arg(browser_tests.join("dashboard.mjs"))
        .env("NIMBUS_ADMIN", &server.admin)
        .env("NIMBUS_PUBLIC", &server.url)
        .env("NIMBUS_TOKEN", TOKEN)
        .env("CANARY_WASM", nimbus_tests::guest("hello"))
        .env("CHROMIUM", CHROMIUM)
        .env("SCREENSHOTS", &screenshots)
        .status()
        .expect("node runs (Node.js 20 or newer)");
    assert!(
        status.success(),
        "the browser test failed ({status}); its steps are printed above, screenshots in {}",
        screenshots.display()
    );
}
