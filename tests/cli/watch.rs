//! `nimbus up --watch` on an app `nimbus new http-rust` made, under a steady
//! trickle of requests: an edit to the handler switches the answers to the
//! new text with no failed request, and a syntax error keeps the new text
//! serving while the compiler's error is printed.

use crate::new::{cargo_env, generate};
use crate::support::{Server, block_on, client, up_command};
use nimbus_tests::eventually_blocking;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Between two requests of the trickle: under 50 requests/s.
const PACE: Duration = Duration::from_millis(25);

/// How long a rebuild may take (a release build of the handler crate alone,
/// its dependencies built).
const REBUILD: Duration = Duration::from_secs(120);

#[test]
fn an_edit_redeploys_without_a_failed_request_and_a_syntax_error_keeps_serving() {
    let parent = tempfile::tempdir().unwrap();
    let app = generate("http-rust", "watched", parent.path());
    let log = parent.path().join("nimbus.log");
    let mut up = up_command(&app);
    up.arg("--watch");
    cargo_env(&mut up);
    let server = Server::start_with_stderr(up, std::fs::File::create(&log).unwrap());

    // The trickle: every answer, in order, until told to stop.
    let answers = Arc::new(Mutex::new(Vec::<Result<(u16, String), String>>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let (answers, stop, url) = (answers.clone(), stop.clone(), server.url.clone());
        std::thread::spawn(move || {
            block_on(async {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    let answer = match client.get(format!("{url}/hello/ada")).send().await {
                        Ok(r) => Ok((r.status().as_u16(), r.text().await.unwrap_or_default())),
                        Err(e) => Err(e.to_string()),
                    };
                    answers.lock().unwrap().push(answer);
                    tokio::time::sleep(PACE).await;
                }
            })
        })
    };
    let last = || answers.lock().unwrap().last().cloned();
    let serving = |prefix: &str| {
        matches!(last(), Some(Ok((200, body))) if body.starts_with(prefix)).then_some(())
    };
    eventually_blocking("the first answers", REBUILD, || serving("Hello, ada!"));

    let handler = app.join("src/lib.rs");
    let source = std::fs::read_to_string(&handler).unwrap();
    let edited = source.replace("Hello, {name}!", "Howdy, {name}!");
    assert_ne!(
        edited, source,
        "the template's greeting is where the test edits it"
    );
    std::fs::write(&handler, &edited).unwrap();
    eventually_blocking("answers in the new text", REBUILD, || {
        serving("Howdy, ada!")
    });

    std::fs::write(&handler, format!("{edited}\nfn broken( {{\n")).unwrap();
    let printed = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually_blocking("the failed build reported", REBUILD, || {
        printed()
            .contains("`watched` still serves its previous version")
            .then_some(())
    });
    let before = answers.lock().unwrap().len();
    eventually_blocking("more answers after the failed build", REBUILD, || {
        (answers.lock().unwrap().len() > before + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();

    let log_text = printed();
    assert!(
        log_text.contains("unclosed delimiter"),
        "the compiler's error is printed:\n{log_text}"
    );
    let answers = answers.lock().unwrap();
    let failed: Vec<_> = answers
        .iter()
        .filter(|a| !matches!(a, Ok((200, _))))
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let texts: Vec<&str> = answers
        .iter()
        .map(|a| match a {
            Ok((_, body)) if body.starts_with("Hello, ada!") => "old",
            Ok((_, body)) if body.starts_with("Howdy, ada!") => "new",
            other => panic!("an answer in neither text: {other:?}"),
        })
        .collect();
    let switch = texts.iter().position(|t| *t == "new").unwrap();
    assert!(
        texts[switch..].iter().all(|t| *t == "new"),
        "once the new version answered, the old never did again"
    );
    assert!(
        answers.len() - before > 20 && texts.last() == Some(&"new"),
        "the new text serves on after the failed build"
    );
}
