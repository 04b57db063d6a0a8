//! `nimbus new TEMPLATE NAME`: a runnable app from a template embedded in
//! the binary (`host/templates/`), written to a folder of its own.
//!
//! A template's files are text with placeholders, filled in here:
//!
//! | placeholder | becomes |
//! |---|---|
//! | `{{name}}` | the name given: the app's name, its function's id and its store's name |
//! | `{{crate}}` | the name as a Rust identifier (`-` as `_`): the built component's file name |
//! | `{{sdk}}` | the keys of the `nimbus-sdk` dependency: its version and the path of the SDK this binary came from |
//!
//! The Python and JavaScript templates also get the Nimbus WIT
//! (`guest-sdk/wit`, embedded too) in `wit/`: their toolchains generate
//! their bindings from it at build time.
//!
//! The app is written into a hidden folder beside the target and renamed
//! into place once complete, so a failure (a bad name, a taken folder, no
//! SDK to depend on) leaves nothing behind.

use anyhow::{Context, bail};
use nimbus::manifest::FunctionId;
use std::path::{Path, PathBuf};

/// One template: its name, what it is, its language, and its files (path
/// in the app, text).
struct Template {
    name: &'static str,
    about: &'static str,
    language: Language,
    files: &'static [(&'static str, &'static str)],
}

/// What a template's language needs besides its files.
#[derive(Clone, Copy, PartialEq)]
enum Language {
    /// Depends on `nimbus-sdk` (`{{sdk}}`); the name is also a crate's.
    Rust,
    /// Built by componentize-py from the WIT in `wit/`.
    Python,
    /// Built by componentize-js from the WIT in `wit/`.
    JavaScript,
}

impl Language {
    /// What the build needs on the author's machine.
    fn toolchain(self) -> &'static str {
        match self {
            Language::Rust => "the wasm32-wasip2 target: `rustup target add wasm32-wasip2`",
            Language::Python => "componentize-py: `pip install componentize-py==0.25.1`",
            Language::JavaScript => "Node.js 20 or later; the build runs `npm install` itself",
        }
    }
}

/// A template's file, embedded from `host/templates/<template>/<path>`; the
/// stored name differs where the file would mean something to cargo or git
/// inside this repository (`gitignore` is written as `.gitignore`,
/// `Cargo.toml.in` as `Cargo.toml`).
macro_rules! file {
    ($template:literal, $path:literal, $stored:literal) => {
        (
            $path,
            include_str!(concat!("../../templates/", $template, "/", $stored)),
        )
    };
    ($template:literal, $path:literal) => {
        file!($template, $path, $path)
    };
}

/// The Nimbus WIT, `guest-sdk/wit/<path>`, written to `wit/<path>`.
macro_rules! wit {
    ($($path:literal),* $(,)?) => {
        &[$((
            concat!("wit/", $path),
            include_str!(concat!("../../../guest-sdk/wit/", $path)),
        )),*]
    };
}

/// Every file of `guest-sdk/wit` (a test checks that none is missing): the
/// Nimbus worlds, and the WASI 0.2.10 packages and proposals they use.
const WIT: &[(&str, &str)] = wit![
    "nimbus.wit",
    "deps/cli/command.wit",
    "deps/cli/environment.wit",
    "deps/cli/exit.wit",
    "deps/cli/imports.wit",
    "deps/cli/run.wit",
    "deps/cli/stdio.wit",
    "deps/cli/terminal.wit",
    "deps/clocks/monotonic-clock.wit",
    "deps/clocks/timezone.wit",
    "deps/clocks/wall-clock.wit",
    "deps/clocks/world.wit",
    "deps/config/store.wit",
    "deps/filesystem/preopens.wit",
    "deps/filesystem/types.wit",
    "deps/filesystem/world.wit",
    "deps/http/handler.wit",
    "deps/http/proxy.wit",
    "deps/http/types.wit",
    "deps/io/error.wit",
    "deps/io/poll.wit",
    "deps/io/streams.wit",
    "deps/io/world.wit",
    "deps/keyvalue/atomic.wit",
    "deps/keyvalue/store.wit",
    "deps/keyvalue/world.wit",
    "deps/logging/logging.wit",
    "deps/messaging/guest.wit",
    "deps/messaging/producer.wit",
    "deps/messaging/types.wit",
    "deps/messaging/world.wit",
    "deps/random/insecure-seed.wit",
    "deps/random/insecure.wit",
    "deps/random/random.wit",
    "deps/random/world.wit",
    "deps/sockets/instance-network.wit",
    "deps/sockets/ip-name-lookup.wit",
    "deps/sockets/network.wit",
    "deps/sockets/tcp-create-socket.wit",
    "deps/sockets/tcp.wit",
    "deps/sockets/udp-create-socket.wit",
    "deps/sockets/udp.wit",
    "deps/sockets/world.wit",
    "deps/spin-postgres/postgres.wit",
    "deps/spin-sqlite/sqlite.wit",
];

/// The templates, in the order `--list` shows them.
const TEMPLATES: &[Template] = &[
    Template {
        name: "http-rust",
        about: "an HTTP function in Rust: a route with a path parameter and a key-value counter",
        language: Language::Rust,
        files: &[
            file!("http-rust", "nimbus.toml"),
            file!("http-rust", "Cargo.toml", "Cargo.toml.in"),
            file!("http-rust", "src/lib.rs"),
            file!("http-rust", "tests/hello.rs"),
            file!("http-rust", "README.md"),
            file!("http-rust", ".gitignore", "gitignore"),
        ],
    },
    Template {
        name: "queue-rust",
        about: "an HTTP route that publishes to a queue, and the queue handler that counts each message once",
        language: Language::Rust,
        files: &[
            file!("queue-rust", "nimbus.toml"),
            file!("queue-rust", "Cargo.toml", "Cargo.toml.in"),
            file!("queue-rust", "src/lib.rs"),
            file!("queue-rust", "tests/events.rs"),
            file!("queue-rust", "README.md"),
            file!("queue-rust", ".gitignore", "gitignore"),
        ],
    },
    Template {
        name: "http-python",
        about: "an HTTP function in Python (componentize-py): a route with a path parameter, config and a key-value counter",
        language: Language::Python,
        files: &[
            file!("http-python", "nimbus.toml"),
            file!("http-python", "app.py"),
            file!("http-python", "nimbus.py"),
            file!("http-python", "tests/test_app.py"),
            file!("http-python", "README.md"),
            file!("http-python", ".gitignore", "gitignore"),
        ],
    },
    Template {
        name: "http-js",
        about: "an HTTP function in JavaScript (componentize-js): a route with a path parameter, config and a key-value counter",
        language: Language::JavaScript,
        files: &[
            file!("http-js", "nimbus.toml"),
            file!("http-js", "package.json"),
            file!("http-js", "app.js"),
            file!("http-js", "nimbus.js"),
            file!("http-js", "tests/app.test.js"),
            file!("http-js", "README.md"),
            file!("http-js", ".gitignore", "gitignore"),
        ],
    },
];

/// The SDK this binary was built beside, the default dependency of the Rust
/// templates until `nimbus-sdk` is on crates.io.
const BUILT_WITH_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// Names a Rust crate cannot have, or should not: keywords, the standard
/// crates' names, and the folders cargo makes in a target folder.
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "alloc",
    "core",
    "std",
    "test",
    "proc_macro",
    "build",
    "deps",
    "examples",
    "incremental",
];

/// `nimbus new --list`: each template and what it makes.
pub fn list() {
    let width = TEMPLATES.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for template in TEMPLATES {
        println!("{:width$}  {}", template.name, template.about);
    }
}

/// `nimbus new TEMPLATE NAME [--path DIR] [--sdk PATH]`: writes the app and
/// says how to run it.
pub fn new(
    template: &str,
    name: &str,
    path: Option<&Path>,
    sdk: Option<&Path>,
) -> anyhow::Result<()> {
    let template = TEMPLATES
        .iter()
        .find(|t| t.name == template)
        .with_context(|| {
            let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
            format!(
                "no template `{template}`; nothing was written; the templates are {} \
                 (`nimbus new --list` says what each makes)",
                names.join(", ")
            )
        })?;
    check_name(name, template.language)?;
    let target = path.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if target.exists() {
        bail!(
            "`{}` already exists; nothing was written (choose another NAME, or a new folder with --path)",
            target.display()
        );
    }
    let sdk = match template.language {
        Language::Rust => sdk_dependency(sdk)?,
        Language::Python | Language::JavaScript => String::new(),
    };
    let wit: &[(&str, &str)] = match template.language {
        Language::Rust => &[],
        Language::Python | Language::JavaScript => WIT,
    };
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk)
    };
    write_atomically(&target, |staging| {
        // The WIT is written as it is: it has no placeholders.
        let filled = template
            .files
            .iter()
            .map(|(file, text)| (*file, fill(text)));
        let wit = wit.iter().map(|(file, text)| (*file, (*text).to_owned()));
        for (file, text) in filled.chain(wit) {
            let path = staging.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text)?;
        }
        Ok(())
    })?;
    println!(
        "Created `{}` from template {}. Serve it with:\n\n    cd {}\n    nimbus up --build\n\n\
         The build needs {}. Its README.md says what it answers.",
        name,
        template.name,
        target.display(),
        template.language.toolchain()
    );
    Ok(())
}

/// Why `name` cannot name an app of `language`, if it cannot.
fn check_name(name: &str, language: Language) -> anyhow::Result<()> {
    if let Err(rule) = FunctionId::parse(name) {
        bail!("`{name}` cannot name an app: {rule}; nothing was written");
    }
    if language == Language::Rust && RESERVED.contains(&name.replace('-', "_").as_str()) {
        bail!("`{name}` cannot name an app: it is a reserved name in Rust; nothing was written");
    }
    Ok(())
}

/// The keys of the `nimbus-sdk` dependency of a Rust template (the inside
/// of a TOML inline table):
/// this binary's version, and the SDK at `sdk` (`--sdk` or `NIMBUS_SDK`),
/// else the one this binary was built beside.
fn sdk_dependency(sdk: Option<&Path>) -> anyhow::Result<String> {
    let given = sdk.is_some();
    let sdk = sdk.unwrap_or(Path::new(BUILT_WITH_SDK));
    let manifest = sdk.join("Cargo.toml");
    let is_sdk = std::fs::read_to_string(&manifest).is_ok_and(|text| {
        text.lines()
            .any(|line| line.trim() == r#"name = "nimbus-sdk""#)
    });
    if !is_sdk {
        let whence = if given {
            "the SDK path given"
        } else {
            "the checkout this nimbus was built from"
        };
        bail!(
            "cannot find the nimbus-sdk crate at `{}` ({whence}); pass --sdk PATH or set \
             NIMBUS_SDK to the `guest-sdk` folder of a Nimbus checkout; nothing was written",
            sdk.display()
        );
    }
    let sdk = std::fs::canonicalize(sdk)
        .with_context(|| format!("cannot resolve `{}`", sdk.display()))?;
    let path = toml::Value::String(sdk.display().to_string());
    Ok(format!(
        "version = \"{}\", path = {path}",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Runs `write` on a fresh hidden folder beside `target`, then renames it to
/// `target`; on any failure the folder is removed and `target` never exists.
fn write_atomically(
    target: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let parent = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "`{}` is not a folder, so `{}` cannot be made there; nothing was written",
            parent.display(),
            target.display()
        );
    }
    let staging = tempfile::Builder::new()
        .prefix(".nimbus-new-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot write in `{}`", parent.display()))?;
    write(staging.path()).with_context(|| format!("cannot write `{}`", target.display()))?;
    let staging = staging.keep();
    if let Err(err) = std::fs::rename(&staging, target) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err).with_context(|| format!("cannot create `{}`", target.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::WIT;
    use std::path::Path;

    /// `WIT` lists every file of `guest-sdk/wit`, so a WIT file added there
    /// reaches the Python and JavaScript templates too.
    #[test]
    fn the_wit_list_is_the_sdk_wit_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/wit");
        let mut on_disk = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    let relative = path.strip_prefix(&root).unwrap();
                    on_disk.push(format!("wit/{}", relative.display()));
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = WIT.iter().map(|(path, _)| path.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
    }
}
