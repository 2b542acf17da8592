//! The house's shape, checked: the library's modules import one another
//! without a circle, and no function in `src/` outgrows a screen or two.
//!
//! The import graph is read from the sources themselves (no compiler
//! plugin): every `crate::a::b`, `super::c` and `child::d` path outside
//! comments and test modules is an edge from the module it appears in to
//! the deepest module the path names. A `mod.rs` that re-exports its
//! children (`pub use child::X`) has an edge to each; so a child that
//! imported through its parent (`super::X`) would close a circle, and this
//! test says which.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest function allowed in `src/`, in lines (signature to closing
/// brace).
const MAX_FUNCTION_LINES: usize = 120;

/// Every `.rs` file under `dir`.
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

/// The library's module path of a file under `src/` (`engine::sharded`
/// for `src/engine/sharded/mod.rs`), or `None` for the binary's files.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let relative = file.strip_prefix(src).unwrap();
    if relative.starts_with("bin") || relative == Path::new("main.rs") {
        return None;
    }
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    Some(parts)
}

/// The code of a file without comments, string contents and `#[cfg(test)]`
/// modules: what its imports are read from.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut skipping_tests = false;
    let mut depth = 0i64;
    let mut test_depth = 0i64;
    let mut pending_cfg_test = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        if !skipping_tests && pending_cfg_test && trimmed.starts_with("mod ") && code.contains('{')
        {
            skipping_tests = true;
            test_depth = depth;
        }
        pending_cfg_test =
            trimmed.starts_with("#[cfg(test)]") || (pending_cfg_test && trimmed.starts_with("#["));
        depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
        if skipping_tests {
            if depth <= test_depth {
                skipping_tests = false;
            }
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The paths (`a::b::c`) a piece of code names, `use` groups expanded one
/// level (`use a::{b, c::d}` gives `a::b` and `a::c::d`).
fn paths_in(code: &str) -> Vec<String> {
    let bytes = code.as_bytes();
    let mut paths = Vec::new();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) || (i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (is_ident(bytes[i]) || bytes[i..].starts_with(b"::")) {
            i += if bytes[i] == b':' { 2 } else { 1 };
        }
        let path = code[start..i].trim_end_matches(':').to_string();
        if code[start..i].ends_with("::") && bytes.get(i) == Some(&b'{') {
            let end = code[i..].find('}').map_or(code.len(), |e| i + e);
            for item in code[i + 1..end].split(',') {
                let item = item.trim().split(" as ").next().unwrap_or("").trim();
                if !item.is_empty() && !item.contains('{') {
                    paths.push(format!("{path}::{item}"));
                }
            }
        }
        if path.contains("::") {
            paths.push(path);
        }
    }
    paths
}

/// The library's import graph: module -> the modules it names.
fn import_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .filter_map(|f| module_of(&src, f).map(|m| (m, f.clone())))
        .filter(|(m, _)| m.last().is_none_or(|last| last != "tests"))
        .collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let code = code_of(&fs::read_to_string(file).unwrap());
        let mut targets = BTreeSet::new();
        for path in paths_in(&code) {
            let mut segments: Vec<&str> = path.split("::").collect();
            let mut base: Vec<String> = match segments[0] {
                "crate" => Vec::new(),
                "super" => {
                    let mut base = module.clone();
                    while segments.first() == Some(&"super") {
                        base.pop();
                        segments.remove(0);
                    }
                    segments.insert(0, "super");
                    base
                }
                "self" => module.clone(),
                first => {
                    // A path from a child module: `lane::Lane`.
                    let mut child = module.clone();
                    child.push(first.to_string());
                    if !modules.contains_key(&child) {
                        continue;
                    }
                    segments.insert(0, "self");
                    module.clone()
                }
            };
            // The deepest module the rest of the path names.
            for segment in &segments[1..] {
                let mut deeper = base.clone();
                deeper.push(segment.to_string());
                if !modules.contains_key(&deeper) {
                    break;
                }
                base = deeper;
            }
            if &base != module {
                targets.insert(base);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// A circle through `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|n| n == node).unwrap();
                let mut cycle: Vec<String> = stack[at..].iter().map(|m| name(m)).collect();
                cycle.push(name(node));
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

#[test]
fn the_library_imports_without_a_circle() {
    let graph = import_graph();
    assert!(graph.len() > 20, "the sources were found: {graph:?}");
    // The reader must see real edges, or the check proves nothing.
    let edges = |from: &str| -> Vec<String> {
        graph
            .iter()
            .find(|(m, _)| name(m) == from)
            .map(|(_, t)| t.iter().map(|m| name(m)).collect())
            .unwrap_or_default()
    };
    assert!(edges("engine::builder").contains(&"engine::sharded".to_string()));
    assert!(edges("durable::checkpoint").contains(&"engine".to_string()));
    assert!(edges("ledger").contains(&"store".to_string()));
    if let Some(cycle) = find_cycle(&graph) {
        panic!("an import circle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_circle() {
    let m = |s: &str| vec![s.to_string()];
    let mut graph = BTreeMap::new();
    graph.insert(m("a"), BTreeSet::from([m("b")]));
    graph.insert(m("b"), BTreeSet::from([m("c")]));
    graph.insert(m("c"), BTreeSet::from([m("a")]));
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    graph.insert(m("c"), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn paths_are_read_from_code_and_use_groups() {
    let code = code_of(
        "use super::config::{Config, MAX};\nuse crate::parse::{self, Row};\n\
         // crate::ignored::path\nfn f() { crate::store::x(); }\n\
         #[cfg(test)]\nmod tests {\n    use crate::hidden::Y;\n}\n",
    );
    let paths = paths_in(&code);
    for wanted in [
        "super::config::Config",
        "super::config::MAX",
        "crate::parse::Row",
        "crate::store::x",
    ] {
        assert!(paths.iter().any(|p| p == wanted), "{wanted} in {paths:?}");
    }
    assert!(!paths
        .iter()
        .any(|p| p.contains("ignored") || p.contains("hidden")));
}

/// Functions in `src/` longer than the limit: (file, line, name, lines).
fn long_functions() -> Vec<(String, usize, String, usize)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut long = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let signature = trimmed
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ")
                .trim_start_matches("pub ")
                .trim_start_matches("const ")
                .trim_start_matches("unsafe ");
            if !signature.starts_with("fn ") {
                continue;
            }
            let indent = line.len() - trimmed.len();
            let closing = " ".repeat(indent) + "}";
            let Some(end) = lines[i..].iter().position(|l| *l == closing) else {
                continue; // a declaration without a body
            };
            // A signature ending in `;` declares without a body.
            if lines[i..i + end]
                .iter()
                .any(|l| l.trim_end().ends_with(';'))
                && !lines[i..i + end].iter().any(|l| l.contains('{'))
            {
                continue;
            }
            let name = signature[3..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
                .to_string();
            if end + 1 > MAX_FUNCTION_LINES {
                let shown = file.strip_prefix(root).unwrap().display().to_string();
                long.push((shown, i + 1, name, end + 1));
            }
        }
    }
    long
}

#[test]
fn no_function_in_src_is_longer_than_the_limit() {
    let long = long_functions();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: {long:#?}"
    );
}

/// The host's target triple, from the rustc beside the cargo running the
/// tests (else the one on the path).
fn host_triple() -> String {
    let beside = std::path::Path::new(env!("CARGO")).with_file_name("rustc");
    let rustc = if beside.exists() {
        beside
    } else {
        "rustc".into()
    };
    let out = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

/// The manifest's `rust-version` is at least every locked package's that
/// this host builds: a toolchain that the manifest accepts builds every
/// dependency. (Packages only other platforms use, Windows' for one, are
/// left out: a fresh machine never downloads them, and `--offline` cannot
/// read their manifests.)
#[test]
fn rust_version_covers_every_locked_package() {
    let version = |text: &str| -> (u32, u32) {
        let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap_or(0))
    };
    let manifest = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let ours = manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .map(|v| version(v.trim_matches('"')))
        .expect("Cargo.toml names a rust-version");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata = String::from_utf8(out.stdout).unwrap();
    let key = "\"rust_version\":\"";
    let mut checked = 0;
    for (at, _) in metadata.match_indices(key) {
        let rest = &metadata[at + key.len()..];
        let needed = version(&rest[..rest.find('"').unwrap()]);
        // The package's id (`...#name@version`) is the nearest `"id":`
        // before its rust_version (its dependencies have none).
        let id_at = metadata[..at].rfind("\"id\":\"").unwrap() + 6;
        let name = &metadata[id_at..id_at + metadata[id_at..].find('"').unwrap()];
        assert!(
            needed <= ours,
            "{name} needs Rust {needed:?}, the manifest's rust-version says {ours:?}"
        );
        checked += 1;
    }
    assert!(checked > 10, "only {checked} packages name a rust-version");
}
