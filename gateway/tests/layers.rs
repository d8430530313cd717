//! The gateway's top-level modules are layers, and this test keeps them so:
//! each module may use only the layers below it (`lib.rs` says why each
//! sits where it does). It reads the sources, finds every path through
//! `crate::` (also inside `use crate::{...}` groups, and through `super::`
//! chains that climb to the crate root, and the re-exports in `lib.rs`),
//! and fails naming each use that reaches up or sideways. A cycle between
//! top-level modules cannot pass: one of its edges always points up.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Bottom first. Modules in the same layer may not use each other.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["auth"],
    &["http"],
    &["api", "oauth"],
    &["settings"],
    &["app"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// One use of another top-level module.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    to: String,
    /// `file:line`.
    at: String,
}

/// The source with `//` comments removed (doc links are not uses).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, line)| {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        (i + 1, code)
    })
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The first path segment of every item named in a `{...}` group that
/// starts at `rest` (just after the `{`), looking ahead over lines.
fn group_heads(rest: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 1;
    let mut expect_head = true;
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect_head = true,
            c if depth == 1 && expect_head && (c.is_alphabetic() || c == '_') => {
                if let Some(id) = ident_at(&rest[i..]) {
                    heads.push(id.to_owned());
                    for _ in 1..id.chars().count() {
                        chars.next();
                    }
                }
                expect_head = false;
            }
            _ => {}
        }
    }
    heads
}

/// The top-level names a source file reaches through the crate root, with
/// the line of each. `depth` is how deep the file's module sits (1 for
/// `src/x.rs` and `src/x/mod.rs`, 2 for `src/x/y.rs`).
fn root_uses(text: &str, depth: usize) -> Vec<(String, usize)> {
    let code: Vec<(usize, &str)> = code_lines(text).collect();
    let joined: String = code.iter().map(|(_, l)| format!("{l}\n")).collect();
    let line_of = |offset: usize| joined[..offset].matches('\n').count() + 1;
    let mut uses = Vec::new();
    let mut push_after = |offset: usize, rest: &str| {
        if let Some(group) = rest.strip_prefix('{') {
            for head in group_heads(group) {
                uses.push((head, line_of(offset)));
            }
        } else if let Some(id) = ident_at(rest) {
            uses.push((id.to_owned(), line_of(offset)));
        }
    };
    for (offset, _) in joined.match_indices("crate::") {
        let before = joined[..offset].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `jetshop_crate::`, not ours
        }
        push_after(offset, &joined[offset + "crate::".len()..]);
    }
    let mut at = 0;
    while let Some(found) = joined[at..].find("super::") {
        let start = at + found;
        let before = joined[..start].chars().next_back();
        let mut climbed = 0;
        let mut rest = &joined[start..];
        while let Some(next) = rest.strip_prefix("super::") {
            climbed += 1;
            rest = next;
        }
        at = joined.len() - rest.len();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if climbed >= depth {
            push_after(start, rest);
        }
    }
    uses
}

/// What `lib.rs` re-exports, by the module it comes from:
/// `pub use app::{app, run};` makes `crate::run` a use of `app`.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (_, line) in code_lines(lib) {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.trim_end_matches(';').split_once("::") else {
            continue;
        };
        let names = names.trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.rsplit(" as ").next().unwrap_or(name);
            map.insert(name.to_owned(), module.to_owned());
        }
    }
    map
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to and its module depth.
fn module_of(src: &Path, file: &Path) -> Option<(String, usize)> {
    let rel = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts == ["lib.rs"] {
        return None;
    }
    let top = parts[0].trim_end_matches(".rs").to_owned();
    let depth = match parts.last().map(String::as_str) {
        Some("mod.rs") => parts.len() - 1,
        _ => parts.len(),
    };
    Some((top, depth))
}

fn edges(src: &Path) -> (BTreeSet<String>, Vec<Edge>) {
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
    let reexported = reexports(&lib);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules = BTreeSet::new();
    let mut found = Vec::new();
    for file in files {
        let Some((from, depth)) = module_of(src, &file) else {
            continue;
        };
        modules.insert(from.clone());
        let text = fs::read_to_string(&file).unwrap();
        for (name, line) in root_uses(&text, depth) {
            let to = reexported.get(&name).cloned().unwrap_or(name);
            if to != from {
                found.push(Edge {
                    from: from.clone(),
                    to,
                    at: format!(
                        "{}:{line}",
                        file.strip_prefix(src.parent().unwrap()).unwrap().display()
                    ),
                });
            }
        }
    }
    found.retain(|e| modules.contains(&e.to));
    found.sort();
    (modules, found)
}

#[test]
fn each_top_level_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (modules, edges) = edges(&src);
    let unplaced: Vec<&String> = modules.iter().filter(|m| rank(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "top-level modules not placed in a layer of tests/layers.rs: {unplaced:?}"
    );
    let wrong: Vec<String> = edges
        .iter()
        .filter(|e| rank(&e.to) >= rank(&e.from))
        .map(|e| format!("{} uses {} at {}", e.from, e.to, e.at))
        .collect();
    assert!(
        wrong.is_empty(),
        "uses that reach up or sideways:\n  {}",
        wrong.join("\n  ")
    );
    // The layers are not empty words: each one above the bottom uses the
    // one below it somewhere.
    for pair in [
        ("auth", "error"),
        ("http", "auth"),
        ("api", "http"),
        ("oauth", "http"),
    ] {
        assert!(
            edges
                .iter()
                .any(|e| (e.from.as_str(), e.to.as_str()) == pair),
            "{} no longer uses {}",
            pair.0,
            pair.1
        );
    }
}

#[test]
fn the_scanner_sees_groups_super_chains_and_reexports() {
    let text = "\
use crate::{
    error::Error,
    http::{problem, request_id::RequestId},
};
// crate::app is only a comment
fn f() -> crate::settings::GatewaySettings { todo!() }
use super::super::api::orders;
use super::sibling;
";
    let names: Vec<String> = root_uses(text, 2).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["error", "http", "settings", "api"]);
    let lines: Vec<usize> = root_uses(text, 2).into_iter().map(|(_, l)| l).collect();
    assert_eq!(lines, [1, 1, 6, 7]);
    let map = reexports("pub use app::{app, run};\npub use error::Error;\n");
    assert_eq!(map["run"], "app");
    assert_eq!(map["Error"], "error");
}
