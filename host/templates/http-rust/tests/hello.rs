//! The app served by `nimbus up --build` on a free port, with a fresh
//! state folder, and real requests to it.

use nimbus_sdk::testing::App;

#[test]
fn hello_greets_and_counts_visits() {
    let app = App::up(env!("CARGO_MANIFEST_DIR"));

    let first = app.get("/hello/ada");
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body, "Hello, ada! (visit 1)\n");
    assert_eq!(app.get("/hello/ada").body, "Hello, ada! (visit 2)\n");
    assert_eq!(app.get("/hello/bob").body, "Hello, bob! (visit 1)\n");

    assert_eq!(app.get("/nope").status, 404);
}
