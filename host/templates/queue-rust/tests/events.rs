//! The app served by `nimbus up --build` on a free port, with a fresh
//! state folder: events posted, then counted by the queue handler.

use nimbus_sdk::testing::App;
use std::time::{Duration, Instant};

#[test]
fn posted_events_are_counted_once_each() {
    let app = App::up(env!("CARGO_MANIFEST_DIR"));

    for _ in 0..3 {
        let posted = app.post("/events/signup", "");
        assert_eq!(posted.status, 202, "{posted:?}");
        assert_eq!(posted.body, "queued one signup event\n");
    }

    // The handler counts asynchronously: wait for it, for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counted = app.get("/events/signup");
        assert_eq!(counted.status, 200, "{counted:?}");
        if counted.body == "signup: 3 counted\n" {
            break;
        }
        assert!(Instant::now() < deadline, "still {:?}", counted.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(app.get("/events/login").body, "login: 0 counted\n");
}
