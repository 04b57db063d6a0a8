//! `nimbus top` in a pseudo-terminal (util-linux's `script` gives it one):
//! it redraws its table in place as traffic arrives, and Ctrl-C ends it
//! with the cursor shown again. Without a terminal it prints once.

use crate::support::{NIMBUS, Server, app_dir, get, nimbus, up_command};
use nimbus_tests::eventually_blocking;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CLEAR: &str = "\x1b[H\x1b[2J";
const SHOW_CURSOR: &str = "\x1b[?25h";

/// The requests per second `frame` shows for `function`.
fn rate(frame: &str, function: &str) -> Option<f64> {
    let line = frame
        .lines()
        .find(|l| l.split_whitespace().next() == Some(function))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn top_redraws_in_a_terminal_as_traffic_arrives_and_ends_on_ctrl_c() {
    let dir = app_dir("[functions.hello]\nsource = @hello@\nroutes = [\"GET /hello/:name\"]\n");
    let server = Server::start(up_command(dir.path()));
    // `script` runs the command through $SHELL; `exec` leaves no shell
    // between the terminal and nimbus, since a shell such as dash dies of
    // the Ctrl-C itself and reports 130 whatever nimbus does with it.
    let command = format!(
        "exec {NIMBUS} top --admin {} --interval 200ms --window 5",
        server.admin
    );
    let mut top = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("util-linux `script` runs");
    let output = Arc::new(Mutex::new(String::new()));
    let mut stdout = top.stdout.take().unwrap();
    let reader = {
        let output = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                output
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let frames = || {
        let text = output.lock().unwrap().clone();
        text.split(CLEAR)
            .skip(1)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let first = eventually_blocking("a first frame", Duration::from_secs(20), || {
        frames().into_iter().find(|f| rate(f, "hello").is_some())
    });
    assert_eq!(rate(&first, "hello"), Some(0.0), "{first}");
    assert!(
        first.contains("FUNCTION") && first.contains("P99"),
        "{first}"
    );
    for i in 0..50 {
        assert_eq!(get(&server, &format!("/hello/n{i}")).0, 200);
    }
    // 50 requests in a 5 s window: 10 a second, once the table catches up.
    eventually_blocking("a frame with the traffic", Duration::from_secs(5), || {
        frames()
            .into_iter()
            .find(|f| rate(f, "hello") == Some(10.0))
    });
    // And it keeps redrawing in place, a frame each interval.
    let drawn = frames().len();
    eventually_blocking("a redraw after that", Duration::from_secs(5), || {
        (frames().len() > drawn).then_some(())
    });

    top.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    let status = eventually_blocking("top to end on Ctrl-C", Duration::from_secs(10), || {
        top.try_wait().unwrap()
    });
    reader.join().unwrap();
    assert!(status.success(), "{status}");
    let text = output.lock().unwrap().clone();
    assert!(
        text.trim_end().ends_with(SHOW_CURSOR),
        "the cursor is shown again: {:?}",
        &text[text.len().saturating_sub(80)..]
    );

    // Without a terminal: one table, no escape codes.
    let once = nimbus(dir.path())
        .args(["top", "--admin", &server.admin])
        .output()
        .unwrap();
    assert!(once.status.success(), "{once:?}");
    let text = String::from_utf8(once.stdout).unwrap();
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(rate(&text, "hello").is_some(), "{text}");
}
