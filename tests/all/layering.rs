//! The library's top-level modules depend on each other in one direction
//! only: no two of them import each other, directly or through others.
//!
//! The check reads `host/src` as text: the top-level modules are the `mod`
//! lines of `lib.rs`; a module depends on another where its code (not its
//! comments or strings) names `crate::other` (also inside `use crate::{...}`
//! groups, and through `super::` paths that reach the crate root). The
//! `with:` mappings of a `bindgen!` call are left out: generated bindings
//! name the host types that implement their resources, wherever they live.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One import of another top-level module: where it is written.
#[derive(Debug, Clone)]
struct Edge {
    file: PathBuf,
    line: usize,
}

/// `from -> to -> where`.
type Graph = BTreeMap<String, BTreeMap<String, Edge>>;

#[test]
fn no_two_top_level_modules_of_the_library_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src");
    let graph = graph_of(&src);
    assert!(
        graph.len() > 10,
        "read too few modules from {}: {:?}",
        src.display(),
        graph.keys()
    );
    let circles = circles(&graph);
    assert!(circles.is_empty(), "{}", report(&graph, &circles));
}

#[test]
fn a_circle_through_three_modules_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |name: &str, text: &str| {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\nmod c;\npub mod d;\n");
    write(
        "a.rs",
        "use crate::{b::Thing, d};\n// crate::c is only a comment\n",
    );
    write("b/mod.rs", "mod inner;\n");
    write(
        "b/inner.rs",
        "fn f() { super::super::c::g(); let s = \"crate::d\"; }\n",
    );
    write("c.rs", "pub fn g() { crate::a::h() }\n");
    write(
        "d.rs",
        "wasmtime::component::bindgen!({ with: { \"x\": crate::a::X } });\n",
    );
    let graph = graph_of(src);
    let circles = circles(&graph);
    assert_eq!(circles, vec![vec!["a".to_owned(), "b".into(), "c".into()]]);
    let text = report(&graph, &circles);
    assert!(text.contains("a -> b"), "{text}");
    assert!(text.contains("b/inner.rs:1"), "{text}");
    assert!(text.contains("c -> a"), "{text}");
    assert!(!graph["d"].contains_key("a"), "bindgen's `with:` counts");
    assert!(!graph["b"].contains_key("d"), "a string counts");
}

/// The import graph of the top-level modules under `src`.
fn graph_of(src: &Path) -> Graph {
    let lib = std::fs::read_to_string(src.join("lib.rs"))
        .unwrap_or_else(|e| panic!("cannot read {}/lib.rs: {e}", src.display()));
    let modules: BTreeSet<String> = code_of(&lib)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))
                .or_else(|| line.strip_prefix("pub(crate) mod "))?;
            rest.strip_suffix(';').map(str::to_owned)
        })
        .collect();
    let mut graph = Graph::new();
    for module in &modules {
        let edges = graph.entry(module.clone()).or_default();
        for file in files_of(src, module) {
            let text = std::fs::read_to_string(&file).unwrap();
            let depth = file
                .strip_prefix(src)
                .unwrap()
                .components()
                .count()
                .saturating_sub(usize::from(file.ends_with("mod.rs")));
            for (target, line) in imports(&code_of(&text), depth) {
                if target != *module && modules.contains(&target) {
                    let shown = file.strip_prefix(src).unwrap().to_owned();
                    edges.entry(target).or_insert(Edge { file: shown, line });
                }
            }
        }
    }
    graph
}

/// The files of top-level module `module`: `module.rs`, or everything under
/// `module/`.
fn files_of(src: &Path, module: &str) -> Vec<PathBuf> {
    let single = src.join(format!("{module}.rs"));
    if single.is_file() {
        return vec![single];
    }
    let mut files = Vec::new();
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `text` with comments, string and char literals blanked out (line breaks
/// kept, so line numbers hold), and the `with:` table of `bindgen!` calls
/// removed.
fn code_of(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &b in s {
            out.push(if b == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < bytes.len() {
        let rest = &bytes[i..];
        let end = if rest.starts_with(b"//") {
            i + rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            i + block_comment_len(rest)
        } else if rest[0] == b'"' {
            i + string_len(rest)
        } else if rest.starts_with(b"r#") || rest.starts_with(b"r\"") {
            i + raw_string_len(rest)
        } else if rest[0] == b'\'' && char_literal_len(rest) > 0 {
            i + char_literal_len(rest)
        } else {
            out.push(bytes[i] as char);
            i += 1;
            continue;
        };
        blank(&mut out, &bytes[i..end]);
        i = end;
    }
    strip_bindgen_with(&out)
}

fn block_comment_len(s: &[u8]) -> usize {
    let mut depth = 0;
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if s[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    s.len()
}

fn string_len(s: &[u8]) -> usize {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    s.len()
}

fn raw_string_len(s: &[u8]) -> usize {
    let hashes = s[1..].iter().take_while(|&&b| b == b'#').count();
    if s.get(1 + hashes) != Some(&b'"') {
        return 1;
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let body = 2 + hashes;
    s[body..]
        .windows(close.len())
        .position(|w| w == close.as_slice())
        .map_or(s.len(), |p| body + p + close.len())
}

/// The length of a char literal at the start of `s`, or 0 for a lifetime.
fn char_literal_len(s: &[u8]) -> usize {
    if s.get(1) == Some(&b'\\') {
        // `'\n'`, `'\''`, `'\u{1F600}'`: the escaped character, then the quote.
        return s
            .get(3..)
            .and_then(|after| after.iter().position(|&b| b == b'\''))
            .map_or(0, |p| p + 4);
    }
    let width = std::str::from_utf8(&s[1..s.len().min(5)])
        .ok()
        .or_else(|| std::str::from_utf8(&s[1..s.len().min(2)]).ok())
        .and_then(|t| t.chars().next())
        .map_or(1, char::len_utf8);
    if s.get(1 + width) == Some(&b'\'') {
        width + 2
    } else {
        0
    }
}

/// Removes `with: { ... }` inside `bindgen!(...)` calls.
fn strip_bindgen_with(code: &str) -> String {
    let mut out = code.to_owned();
    let mut from = 0;
    while let Some(at) = out[from..].find("bindgen!") {
        let start = from + at;
        let Some(with) = out[start..].find("with:").map(|p| start + p) else {
            break;
        };
        let Some(open) = out[with..].find('{').map(|p| with + p) else {
            break;
        };
        let mut depth = 0;
        let mut close = out.len();
        for (i, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let blanked: String = out[open..close]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(open..close, &blanked);
        from = close;
    }
    out
}

/// Every top-level module that `code` (in a file `depth` modules below the
/// crate root) names, with the line it is named on.
fn imports(code: &str, depth: usize) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line_no = n + 1;
        let mut rest = line;
        while let Some(at) = next_root_path(rest, depth) {
            let (skip, after) = at;
            rest = &rest[skip..];
            if let Some(group) = after.strip_prefix('{') {
                // `crate::{a::X, b}` may span lines: read to the closing brace.
                let whole = &code[offset_of(code, line) + (line.len() - group.len())..];
                for name in group_heads(whole) {
                    found.push((name, line_no));
                }
            } else {
                found.push((ident(after).to_owned(), line_no));
            }
        }
    }
    found
}

/// The byte offset of `line` (a slice of `code`) in `code`.
fn offset_of(code: &str, line: &str) -> usize {
    line.as_ptr() as usize - code.as_ptr() as usize
}

/// The next path from the crate root in `line`: how far to skip past it, and
/// what follows the root (`name::...` or `{...}`).
fn next_root_path(line: &str, depth: usize) -> Option<(usize, &str)> {
    let mut i = 0;
    while i < line.len() {
        let rest = &line[i..];
        let boundary =
            i == 0 || !is_ident_byte(line.as_bytes()[i - 1]) && line.as_bytes()[i - 1] != b'$';
        if boundary && let Some(after) = rest.strip_prefix("crate::") {
            return Some((i + "crate::".len(), after));
        }
        if boundary && rest.starts_with("super::") {
            let mut supers = 0;
            let mut after = rest;
            while let Some(next) = after.strip_prefix("super::") {
                supers += 1;
                after = next;
            }
            let skip = i + (rest.len() - after.len());
            if supers >= depth {
                return Some((skip, after));
            }
            i = skip;
            continue;
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// The first segment of each path in a `{a::X, b, c::{d, e}}` group; `text`
/// starts just after the opening brace.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    let mut i = 0;
    while i < text.len() {
        let c = text.as_bytes()[i];
        match c {
            b'{' => depth += 1,
            b'}' if depth == 0 => break,
            b'}' => depth -= 1,
            b',' if depth == 0 => expect_head = true,
            _ if expect_head && is_ident_byte(c) => {
                let name = ident(&text[i..]);
                heads.push(name.to_owned());
                expect_head = false;
                i += name.len();
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

fn ident(s: &str) -> &str {
    let end = s.bytes().position(|b| !is_ident_byte(b)).unwrap_or(s.len());
    &s[..end]
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The strongly connected components of more than one module (Tarjan),
/// each sorted, in sorted order.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph[v].keys() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found.sort();
    walk.found
}

/// Each circle with the imports that close it, file and line.
fn report(graph: &Graph, circles: &[Vec<String>]) -> String {
    let mut text = String::from("top-level modules of host/src import each other:\n");
    for circle in circles {
        text.push_str(&format!("circle: {}\n", circle.join(", ")));
        for from in circle {
            for (to, edge) in &graph[from] {
                if circle.contains(to) {
                    text.push_str(&format!(
                        "  {from} -> {to}  ({}:{})\n",
                        edge.file.display(),
                        edge.line
                    ));
                }
            }
        }
    }
    text.push_str("each layer may use only the layers below it (see lib.rs's # Layout)");
    text
}
