//! The SDK's modules import each other without a cycle (issue 13): each concern's owner (the IM
//! link, the sessions, the media) reaches the runtime only through its `Host` trait, and only
//! the API modules and the crate root use `runtime::rt()`. A new `crate::x` path that closes a
//! circle fails here, naming it.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → modules it names (`crate::x`, and in the crate root `x::`). A file a module
/// includes with `#[path]` (its child, e.g. `media::sfu`) counts as that module.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let text: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| [l, "\n"].concat())
                .collect();
            files.insert(name, text);
        }
    }
    let mut owner: BTreeMap<String, String> = files.keys().map(|m| (m.clone(), m.clone())).collect();
    for (m, text) in &files {
        for part in text.split("#[path = \"").skip(1) {
            let child = part.split(".rs\"").next().unwrap();
            owner.insert(child.to_string(), m.clone());
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in &files {
        let from = owner[file].clone();
        let deps = edges.entry(from.clone()).or_default();
        let bytes = text.as_bytes();
        for (i, _) in text.match_indices("::") {
            let start = text[..i].rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |p| p + 1);
            let word = &text[start..i];
            let qualified = start >= 2 && &bytes[start - 2..start] == b"::";
            let name = if word == "crate" {
                let rest = &text[i + 2..];
                let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
                match owner.get(&rest[..end]) {
                    Some(m) => m.clone(),
                    None => "lib".to_string(), // an item of the crate root
                }
            } else if file == "lib" && !qualified && owner.contains_key(word) {
                owner[word].clone()
            } else {
                continue;
            };
            if name != from {
                deps.insert(name);
            }
        }
    }
    edges
}

/// A cycle through `start`, if any (depth-first search).
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(edges: &BTreeMap<String, BTreeSet<String>>, at: &str, start: &str, path: &mut Vec<String>) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if !path.contains(next) {
                path.push(next.clone());
                if walk(edges, next, start, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(edges, start, start, &mut path).then_some(path)
}

#[test]
fn the_sdk_modules_import_each_other_without_a_cycle() {
    let edges = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(edges.len() > 10, "read the modules: {edges:?}");
    for m in edges.keys() {
        if let Some(c) = cycle(&edges, m) {
            panic!("import cycle: {} -> {m}\n{edges:#?}", c.join(" -> "));
        }
    }
}

#[test]
fn only_the_api_modules_reach_the_runtime() {
    let edges = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let api = ["lib", "client", "session", "imlib_compat"];
    for (m, deps) in &edges {
        if deps.contains("runtime") {
            assert!(api.contains(&m.as_str()), "{m} names the runtime: give it what it needs through its Host trait instead");
        }
    }
}
