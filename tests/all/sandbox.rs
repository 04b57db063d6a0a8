//! A guest gets no filesystem, network or environment the manifest does not grant.

use nimbus_tests::{TestApp, json};

const APP: &str = r#"
version = 1
[app]
name = "sandbox"

[functions.probe]
source = "guest:sandbox-probe"
routes = ["/probe"]
[functions.probe.env]
ALLOWED = "yes"
"#;

#[tokio::test]
async fn a_guest_cannot_read_host_files_or_env() {
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), "secret").unwrap();
    let app = TestApp::start(APP).await;

    let path = secret_file.path().display().to_string();
    let probe = json(app.get(&format!("/probe?file={path}&env=PATH")).await).await;
    assert_eq!(probe["file"]["ok"], false, "{probe}");
    assert!(probe["file"]["len"].is_null());
    assert!(probe["env"]["value"].is_null(), "host PATH leaked: {probe}");
    assert_eq!(probe["env_count"], 1, "only the granted variable: {probe}");

    let probe = json(app.get("/probe?file=/etc/passwd&env=ALLOWED").await).await;
    assert_eq!(probe["file"]["ok"], false, "{probe}");
    assert_eq!(probe["env"]["value"], "yes");
}
