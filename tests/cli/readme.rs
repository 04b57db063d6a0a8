//! The READMEs' shell sessions, run as a new user runs them: every `console`
//! block of `README.md` and `examples/shop/README.md`, read from the files,
//! against a real `nimbus up` of the example it talks to, with real curl.
//!
//! # The format the READMEs keep
//!
//! A session begins at a shell line that starts an example (`cargo run
//! --release -p nimbus -- up examples/NAME`; the `VAR=value` words before
//! the command are the server's environment) and takes in every `console`
//! block after it, up to the next such line. In a `console` block, a line
//! `$ COMMAND` is a command, and the lines below it, up to the next `$ `,
//! are what it prints:
//!
//! - an answer that starts `HTTP/` (curl `-i`) is a status line, headers, a
//!   blank line and a body: the status line must match, each header shown
//!   must come with that value (the server may send others too), and the
//!   body matches line by line;
//! - a line of JSON matches the same JSON value; any other line matches with
//!   runs of spaces taken as one;
//! - what differs from run to run is matched by its shape: UUIDs (request
//!   ids), 32-digit hex ids (message ids), HTTP dates and RFC 3339 times.
//!
//! Each command runs in a `bash -c` of its own, with `pipefail`, its
//! `localhost:3000` and `127.0.0.1:3000` (`:3001` for the admin API) turned
//! into the server's addresses; `nimbus ...` or `cargo run ... -p nimbus --
//! ...` runs the built executable with `--admin` pointed at the server. A
//! variable a command assigns (`TOKEN=$(curl ...)`) goes to the commands
//! after it. Every command must exit 0 and print what the README shows; one
//! that only reads (a curl without a body or a method, `nimbus queues`, `ls`,
//! `dead-letters list`) is tried again until it does, for a while, as some
//! answers are filled in asynchronously. A failure names the README's line.

use crate::support::{NIMBUS, Server, up_command};
use nimbus_tests::{
    EVENTUALLY, compile_cache_dir, example_manifest, retry_blocking, write_manifest,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository's root, where the READMEs are.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The public address the READMEs' commands use: `nimbus up`'s default.
const PUBLIC: [&str; 2] = ["localhost:3000", "127.0.0.1:3000"];

/// The admin address the READMEs' commands use: `nimbus up`'s default.
const ADMIN: [&str; 2] = ["localhost:3001", "127.0.0.1:3001"];

/// The ways a README runs the `nimbus` command.
const NIMBUS_PREFIXES: [&str; 3] = [
    "cargo run --release -p nimbus -- ",
    "cargo run -p nimbus -- ",
    "nimbus ",
];

/// curl options that send a body or choose a method: a curl without any of
/// them only reads, and may be run again.
const CURL_WRITES: [&str; 9] = [
    "--json",
    "-d",
    "-F",
    "--form",
    "-T",
    "--upload-file",
    "-X",
    "--request",
    "--data",
];

/// What differs from run to run, by shape, and the placeholder it becomes
/// in the README's answer and the real one alike: in a shape, `x` is a hex
/// digit, `9` a decimal digit, `A` a letter, and anything else itself.
const VOLATILE: [(&str, &str); 4] = [
    ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", "<uuid>"),
    ("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "<id>"),
    ("AAA, 99 AAA 9999 99:99:99 GMT", "<http-date>"),
    ("9999-99-99T99:99:99Z", "<time>"),
];

/// Lines of the server's log a failure message shows, other than the
/// access log's.
const LOG_TAIL: usize = 30;

/// The commands of one session and the example they talk to.
#[derive(Debug)]
struct Session {
    /// The README, relative to the repository's root.
    file: String,
    /// The line that starts the example.
    line: usize,
    /// The example's folder under `examples/`.
    example: String,
    /// The `VAR=value` words before the command that starts it.
    env: Vec<(String, String)>,
    steps: Vec<Step>,
}

/// One `$ ` line of a session and what the README shows it printing.
#[derive(Debug)]
pub(crate) struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
}

/// Every session of `text`, the README `file`.
fn parse(file: &str, text: &str) -> Vec<Session> {
    let mut sessions: Vec<Session> = Vec::new();
    for (opened, lang, block) in fenced_blocks(text) {
        match lang {
            "sh" | "bash" | "shell" => sessions.extend(
                block
                    .iter()
                    .filter_map(|&(line, text)| starts_example(file, line, text)),
            ),
            "console" => {
                let session = sessions.last_mut().unwrap_or_else(|| {
                    panic!(
                        "{file}:{opened}: a console session before any line that starts an \
                         example (`cargo run --release -p nimbus -- up examples/NAME`), so \
                         nothing says which app it talks to"
                    )
                });
                session.steps.extend(steps(file, &block));
            }
            _ => {}
        }
    }
    sessions
}

/// The steps of every `console` block of `text`, the README `file`, for a
/// README that talks to one app (as a template's does).
pub(crate) fn console_steps(file: &str, text: &str) -> Vec<Step> {
    fenced_blocks(text)
        .into_iter()
        .filter(|(_, lang, _)| *lang == "console")
        .flat_map(|(_, _, block)| steps(file, &block))
        .collect()
}

/// Lines of a README with their numbers (from 1).
type Numbered<'a> = Vec<(usize, &'a str)>;

/// The fenced blocks of `text`: the line each opens on, its language, and
/// its lines with their numbers.
fn fenced_blocks(text: &str) -> Vec<(usize, &str, Numbered<'_>)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, line)| (i + 1, line));
    while let Some((opened, line)) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            continue;
        };
        let block = lines
            .by_ref()
            .take_while(|(_, line)| !line.starts_with("```"))
            .collect();
        blocks.push((opened, lang.trim(), block));
    }
    blocks
}

/// The session a shell line starts, if it runs `nimbus up examples/NAME`.
fn starts_example(file: &str, line: usize, text: &str) -> Option<Session> {
    let command = text
        .split("&&")
        .find(|part| part.contains(" up examples/"))?;
    let words: Vec<&str> = command.split_whitespace().collect();
    let env = words
        .iter()
        .map_while(|word| assignment(word))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let up = words.iter().position(|word| *word == "up")?;
    let example = words.get(up + 1)?.strip_prefix("examples/")?;
    Some(Session {
        file: file.to_owned(),
        line,
        example: example.trim_end_matches('/').to_owned(),
        env,
        steps: Vec::new(),
    })
}

/// `NAME=value` split in two, if `word` assigns a shell variable.
fn assignment(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once('=')?;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some((name, value))
}

/// The commands of a console block and the lines each prints.
fn steps(file: &str, block: &[(usize, &str)]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut continued = false;
    for &(line, text) in block {
        if continued {
            let step = steps.last_mut().expect("a command continues");
            step.command.push('\n');
            step.command.push_str(text);
            continued = text.ends_with('\\');
        } else if let Some(command) = text.strip_prefix("$ ") {
            steps.push(Step {
                line,
                command: command.to_owned(),
                expected: Vec::new(),
            });
            continued = command.ends_with('\\');
        } else {
            let step = steps.last_mut().unwrap_or_else(|| {
                panic!("{file}:{line}: output before the first `$ ` command of its block")
            });
            step.expected.push(text.to_owned());
        }
    }
    for step in &mut steps {
        while step.expected.last().is_some_and(|l| l.trim().is_empty()) {
            step.expected.pop();
        }
    }
    steps
}

/// The shell variable a command assigns (`TOKEN=$(...)`, `export X=...`).
fn assigned(command: &str) -> Option<&str> {
    let command = command.trim_start();
    let command = command.strip_prefix("export ").unwrap_or(command);
    assignment(command.split_whitespace().next()?).map(|(name, _)| name)
}

/// Whether `command` only reads, so that running it again changes nothing.
fn only_reads(command: &str) -> bool {
    if assigned(command).is_some() {
        return false;
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    if words.first() == Some(&"curl") {
        return !words
            .iter()
            .any(|word| CURL_WRITES.contains(word) || word.starts_with("--data"));
    }
    let Some(rest) = NIMBUS_PREFIXES
        .iter()
        .find_map(|prefix| command.strip_prefix(prefix))
    else {
        return false;
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    matches!(
        words.as_slice(),
        ["queues", ..] | ["ls", ..] | ["dead-letters", "list", ..]
    )
}

/// Why `printed` is not the answer the README shows as `expected`, if it is not.
fn compare(expected: &[String], printed: &str) -> Result<(), String> {
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    let mut printed: Vec<&str> = printed.lines().collect();
    while printed.last().is_some_and(|l| l.trim().is_empty()) {
        printed.pop();
    }
    if !expected.first().is_some_and(|l| l.starts_with("HTTP/")) {
        return compare_lines(&expected, &printed);
    }
    let (expected_head, expected_body) = head_and_body(&expected);
    let (head, body) = head_and_body(&printed);
    let status = head.first().copied().unwrap_or_default();
    if normalize(status) != normalize(expected_head[0]) {
        return Err(format!(
            "the status line is `{status}`, not `{}`",
            expected_head[0]
        ));
    }
    for header in &expected_head[1..] {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("the README's header line `{header}` has no `:`"))?;
        let (name, value) = (name.trim(), value.trim());
        let sent: Vec<&str> = head[1..]
            .iter()
            .filter_map(|h| h.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect();
        if sent.is_empty() {
            return Err(format!("no `{name}` header"));
        }
        if !sent.iter().any(|v| normalize(v) == normalize(value)) {
            return Err(format!(
                "the `{name}` header is `{}`, not `{value}`",
                sent.join("`, `")
            ));
        }
    }
    compare_lines(expected_body, body)
}

/// An HTTP answer's status line and headers, and its body.
fn head_and_body<'a, 'b>(lines: &'b [&'a str]) -> (&'b [&'a str], &'b [&'a str]) {
    match lines.iter().position(|l| l.trim().is_empty()) {
        Some(blank) => (&lines[..blank], &lines[blank + 1..]),
        None => (lines, &[]),
    }
}

fn compare_lines(expected: &[&str], printed: &[&str]) -> Result<(), String> {
    if expected.len() != printed.len() {
        return Err(format!(
            "{} line(s), where the README shows {}",
            printed.len(),
            expected.len()
        ));
    }
    for (n, (expected, printed)) in expected.iter().zip(printed).enumerate() {
        if !same_line(expected, printed) {
            return Err(format!(
                "line {} of the answer is `{printed}`, not `{expected}`",
                n + 1
            ));
        }
    }
    Ok(())
}

fn same_line(expected: &str, printed: &str) -> bool {
    match (
        serde_json::from_str::<Value>(expected),
        serde_json::from_str::<Value>(printed),
    ) {
        (Ok(expected), Ok(printed)) => normalize_json(expected) == normalize_json(printed),
        _ => normalize(&squeeze(expected)) == normalize(&squeeze(printed)),
    }
}

/// `text` with each run of spaces as one space, trimmed.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `value` with every string [`normalize`]d.
fn normalize_json(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(normalize(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_json).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, normalize_json(v)))
                .collect(),
        ),
        other => other,
    }
}

/// `text` with each [`VOLATILE`] shape, standing alone, as its placeholder.
fn normalize(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let alone_at = |i: usize| chars.get(i).is_none_or(|c| !c.is_ascii_alphanumeric());
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'chars: while i < chars.len() {
        if i == 0 || alone_at(i - 1) {
            for (shape, placeholder) in VOLATILE {
                let end = i + shape.len();
                let fits = chars.get(i..end).is_some_and(|word| {
                    shape.chars().zip(word).all(|(s, &c)| match s {
                        'x' => c.is_ascii_hexdigit(),
                        '9' => c.is_ascii_digit(),
                        'A' => c.is_ascii_alphabetic(),
                        _ => s == c,
                    })
                });
                if fits && alone_at(end) {
                    out.push_str(placeholder);
                    i = end;
                    continue 'chars;
                }
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// What a failed command shows: the README's line, why, both answers.
fn failure(file: &str, step: &Step, why: &str, printed: &str, stderr: &str) -> String {
    let indent = |text: &str| match text.trim() {
        "" => "    (nothing)\n".to_owned(),
        _ => text.lines().map(|l| format!("    {l}\n")).collect(),
    };
    format!(
        "{file}:{}: `{}` {why}\nthe README shows:\n{}it printed:\n{}its stderr:\n{}",
        step.line,
        step.command,
        indent(&step.expected.join("\n")),
        indent(printed),
        indent(stderr),
    )
}

/// A session running: its README, its commands, its server, and the
/// variables its commands set.
pub(crate) struct Live<'a> {
    file: &'a str,
    steps: &'a [Step],
    server: Server,
    vars: BTreeMap<String, String>,
    log: PathBuf,
    /// Where the commands run.
    dir: PathBuf,
    /// The example's folder, removed at the end.
    _example: Option<tempfile::TempDir>,
}

impl<'a> Live<'a> {
    /// `nimbus up` of the session's example, as the README starts it but on
    /// free ports, with the guests the tests built.
    fn start(session: &'a Session) -> Live<'a> {
        let dir = tempfile::tempdir().unwrap();
        let manifest = example_manifest(&session.example, dir.path(), &[]);
        write_manifest(dir.path(), &manifest);
        // A fresh state folder, but the compile cache the tests share
        // (entries are keyed by content and engine settings, so sharing is
        // safe): from cold, a debug build takes a minute to compile the
        // shop's five components, which a user pays at the first start only.
        let state = dir.path().join(".nimbus");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(compile_cache_dir()).unwrap();
        std::os::unix::fs::symlink(compile_cache_dir(), state.join("cache")).unwrap();
        let log = dir.path().join("nimbus.log");
        let mut up = up_command(dir.path());
        up.envs(session.env.iter().map(|(k, v)| (k, v)));
        let server = Server::start_with_stderr(up, std::fs::File::create(&log).unwrap());
        let mut live = Live::attach(&session.file, &session.steps, server, log, dir.path());
        live._example = Some(dir);
        live
    }

    /// The `steps` of the README `file`, to run against `server`, whose log
    /// is `log`, from the folder `dir`.
    pub(crate) fn attach(
        file: &'a str,
        steps: &'a [Step],
        server: Server,
        log: PathBuf,
        dir: &Path,
    ) -> Live<'a> {
        Live {
            file,
            steps,
            server,
            vars: BTreeMap::new(),
            log,
            dir: dir.to_path_buf(),
            _example: None,
        }
    }

    /// Runs every step; panics at the first that does not answer as the
    /// README shows, naming its line.
    pub(crate) fn run(&mut self) {
        for step in self.steps {
            let outcome = if only_reads(&step.command) {
                retry_blocking(EVENTUALLY, || self.attempt(step))
            } else {
                self.attempt(step)
            };
            if let Err(failure) = outcome {
                panic!(
                    "{failure}the server's log ends (access lines left out):\n{}",
                    self.log_tail()
                );
            }
            eprintln!("{}:{}: as shown: $ {}", self.file, step.line, step.command);
        }
    }

    /// Runs `step` once: why it failed, if it did.
    fn attempt(&mut self, step: &Step) -> Result<(), String> {
        let file = self.file;
        let vars = self.dir.join(".readme-vars");
        let _ = std::fs::remove_file(&vars);
        let mut script = format!(
            "set -o pipefail\n{}\n__readme_status=$?\n",
            self.command_line(&step.command)
        );
        if let Some(name) = assigned(&step.command) {
            script.push_str(&format!("printf '%s' \"${name}\" > '{}'\n", vars.display()));
        }
        script.push_str("exit $__readme_status\n");
        let mut bash = Command::new("bash");
        bash.args(["-c", &script])
            .current_dir(&self.dir)
            .envs(&self.vars)
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .stdin(Stdio::null());
        for (name, _) in std::env::vars() {
            if name.starts_with("NIMBUS_") {
                bash.env_remove(name);
            }
        }
        let output = bash.output().expect("bash runs");
        let printed = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let fail = |why: &str| failure(file, step, why, &printed, &stderr);
        if !output.status.success() {
            return Err(fail(&format!("failed ({})", output.status)));
        }
        if let Some(name) = assigned(&step.command) {
            let value = std::fs::read_to_string(&vars).unwrap_or_default();
            if value.is_empty() {
                return Err(fail(&format!("left `{name}` empty")));
            }
            self.vars.insert(name.to_owned(), value);
        }
        compare(&step.expected, &printed)
            .map_err(|why| fail(&format!("did not answer as the README shows: {why}")))
    }

    /// `command` pointed at this session's server.
    fn command_line(&self, command: &str) -> String {
        let public = self.server.url.trim_start_matches("http://");
        let admin = self.server.admin.trim_start_matches("http://");
        let mut command = command.to_owned();
        for (defaults, address) in [(PUBLIC, public), (ADMIN, admin)] {
            for default in defaults {
                command = command.replace(default, address);
            }
        }
        match NIMBUS_PREFIXES
            .iter()
            .find_map(|prefix| command.strip_prefix(prefix))
        {
            Some(rest) => format!("'{NIMBUS}' {rest} --admin {}", self.server.admin),
            None => command,
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|line| !line.contains("nimbus::access"))
            .collect();
        lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
    }
}

/// Runs every session of the README `file` that talks to `example`.
fn run_sessions(file: &str, example: &str) {
    let text = std::fs::read_to_string(Path::new(ROOT).join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let sessions = parse(file, &text);
    let sessions: Vec<&Session> = sessions.iter().filter(|s| s.example == example).collect();
    assert!(
        !sessions.is_empty(),
        "{file} has no session of examples/{example}"
    );
    for session in sessions {
        Live::start(session).run();
    }
}

#[test]
fn the_readme_hello_session_answers_as_shown() {
    run_sessions("README.md", "hello");
}

#[test]
fn the_readme_shop_session_answers_as_shown() {
    run_sessions("README.md", "shop");
}

#[test]
fn the_shop_readme_sessions_answer_as_shown() {
    run_sessions("examples/shop/README.md", "shop");
}

#[test]
fn every_readme_session_is_run() {
    // The examples the tests above run; a session of another one fails
    // here until a test runs it too.
    for (file, examples) in [
        ("README.md", &["hello", "shop"][..]),
        ("examples/shop/README.md", &["shop"][..]),
    ] {
        let text = std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap();
        let sessions = parse(file, &text);
        let found: Vec<&str> = sessions.iter().map(|s| s.example.as_str()).collect();
        assert_eq!(found, examples, "{file}: the examples its sessions start");
        for session in &sessions {
            assert!(
                !session.steps.is_empty(),
                "{file}:{}: an example started with no console session after it",
                session.line
            );
        }
    }
}

#[test]
fn a_changed_answer_fails_naming_its_readme_line() {
    let readme = r#"Start it:

```sh
GREETING=hi cargo run --release -p nimbus -- up examples/hello --build
```

```console
$ curl -si localhost:3000/nope
HTTP/1.1 404 Not Found
x-request-id: f99dc7a5-0368-4212-a60d-80b7a038e33e

{"error":"not_found","request_id":"f99dc7a5-0368-4212-a60d-80b7a038e33e","status":404}
$ TOKEN=$(curl -s --json '{}' localhost:3000/login)
$ nimbus queues
FUNCTION   DEAD
notifier   1
```
"#;
    let sessions = parse("TEST.md", readme);
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];
    assert_eq!((session.line, session.example.as_str()), (4, "hello"));
    assert_eq!(session.env, [("GREETING".to_owned(), "hi".to_owned())]);
    let lines: Vec<usize> = session.steps.iter().map(|s| s.line).collect();
    assert_eq!(lines, [8, 13, 14]);
    let [nope, login, queues] = &session.steps[..] else {
        panic!("three steps")
    };
    assert_eq!(assigned(&login.command), Some("TOKEN"));
    assert!(only_reads(&nope.command) && only_reads(&queues.command));
    assert!(!only_reads(&login.command));
    assert!(login.expected.is_empty());

    // Other ids, other header order and more headers, other key order,
    // other spacing: the same answer.
    let same = "HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nx-request-id: 0123abcd-0368-4212-a60d-80b7a038e33e\r\n\r\n\
                {\"status\":404,\"request_id\":\"0123abcd-0368-4212-a60d-80b7a038e33e\",\"error\":\"not_found\"}";
    assert_eq!(compare(&nope.expected, same), Ok(()));
    assert_eq!(
        compare(&queues.expected, "FUNCTION DEAD\nnotifier      1\n"),
        Ok(())
    );

    // A changed status, field, header or line count: each named.
    for (printed, why) in [
        (
            same.replace("404 Not Found", "401 Unauthorized"),
            "status line",
        ),
        (same.replace("not_found", "gone"), "line 1 of the answer"),
        (
            same.replace("x-request-id", "x-trace-id"),
            "no `x-request-id`",
        ),
        (
            same.replace("0123abcd-", "0123abcd"),
            "`x-request-id` header is",
        ),
    ] {
        let err = compare(&nope.expected, &printed).unwrap_err();
        assert!(err.contains(why), "{err}");
    }
    let err = compare(&queues.expected, "FUNCTION DEAD\n").unwrap_err();
    assert!(err.contains("1 line(s), where the README shows 2"), "{err}");
    let message = failure("TEST.md", queues, &err, "FUNCTION DEAD\n", "");
    assert!(
        message.starts_with("TEST.md:14: `nimbus queues` "),
        "{message}"
    );
}
