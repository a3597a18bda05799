//! The decision engine stays pure: no async runtime, no HTTP, no network, no files.

use std::path::Path;

use crate::support::repo;

const FORBIDDEN: [&str; 5] = ["tokio", "hyper", "std::net", "std::fs", "std::process"];

/// Code lines (comments dropped) of every `.rs` file under `dir`, with their origin.
fn code_lines(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            code_lines(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                out.push((format!("{}:{}", path.display(), i + 1), code.to_owned()));
            }
        }
    }
}

fn violations(lines: &[(String, String)]) -> Vec<String> {
    lines
        .iter()
        .filter(|(_, code)| FORBIDDEN.iter().any(|f| code.contains(f)))
        .map(|(at, code)| format!("{at}: {}", code.trim()))
        .collect()
}

#[test]
fn policy_and_auth_use_no_io() {
    let mut lines = Vec::new();
    for dir in ["src/policy", "src/auth"] {
        code_lines(&repo().join(dir), &mut lines);
    }
    assert!(lines.len() > 1000, "scanned too little: {}", lines.len());
    let found = violations(&lines);
    assert!(
        found.is_empty(),
        "I/O in the pure engine:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_catches_what_it_looks_for() {
    let lines = vec![
        (
            "a.rs:1".to_string(),
            "use tokio::net::TcpStream;".to_string(),
        ),
        (
            "a.rs:2".to_string(),
            "let f = std::fs::read(p);".to_string(),
        ),
        ("a.rs:3".to_string(), "let ok = 1;".to_string()),
    ];
    assert_eq!(violations(&lines).len(), 2);
}

/// exgate's modules from the top layer to the bottom (README "Code layout"): a module
/// may use only modules of lower layers, so the code reads top to bottom with no cycle.
/// `config` parses and collects errors and calls the checks of the modules below it,
/// which own their settings types; `proxy` (with its admin API) runs what `config`
/// built; `cluster` is the fleet's Redis side of lockout, spray and the policy log;
/// `metrics` knows no module that records into it.
const LAYERS: [&[&str]; 12] = [
    &["cli"],
    &["load"],
    &["lab", "report"],
    &["proxy"],
    &["config"],
    &["cluster"],
    &["token", "kerberos", "protect", "client"],
    &["audit"],
    &["metrics"],
    &["policy"],
    &["auth"],
    &["cache"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// `(module, used module, where)` for every `crate::x` path outside `#[cfg(test)]`
/// modules and test files, `crate::{a, b}` groups included.
fn uses(lines: &[(String, String)], module: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (at, code) in lines {
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or("").trim())
                    .collect(),
                None => vec![
                    rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .next()
                        .unwrap_or(""),
                ],
            };
            for name in names {
                if !name.is_empty() && name != module {
                    out.push((name.to_owned(), at.clone()));
                }
            }
        }
    }
    out
}

/// A module's non-test code lines: test files (`tests.rs`, `*_tests.rs`) and everything
/// after a `#[cfg(test)]` line are left out.
fn module_lines(module: &str) -> Vec<(String, String)> {
    let src = repo().join("src");
    let mut files = Vec::new();
    let dir = src.join(module);
    if dir.is_dir() {
        code_lines(&dir, &mut files);
    }
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            files.push((format!("{}:{}", file.display(), i + 1), code.to_owned()));
        }
    }
    let mut out = Vec::new();
    let mut in_tests = String::new();
    let mut cfg_test = false;
    for (at, code) in files {
        let file = at
            .rsplit_once(':')
            .map_or(at.as_str(), |(f, _)| f)
            .to_owned();
        if file.ends_with("tests.rs") || in_tests == file {
            continue;
        }
        // `#[cfg(test)]` before an inline `mod tests {`: the rest of the file is tests;
        // before `mod tests;` (another file, left out above), only that line.
        if std::mem::take(&mut cfg_test) && !code.trim_end().ends_with(';') {
            in_tests = file.clone();
            continue;
        }
        if code.trim() == "#[cfg(test)]" {
            cfg_test = true;
            continue;
        }
        out.push((at, code));
    }
    out
}

#[test]
fn modules_use_only_lower_layers() {
    let mut upward = Vec::new();
    let mut scanned = 0;
    for module in LAYERS.iter().flat_map(|l| l.iter()) {
        let lines = module_lines(module);
        scanned += lines.len();
        let own = layer(module).unwrap();
        for (used, at) in uses(&lines, module) {
            match layer(&used) {
                Some(l) if l > own => {}
                Some(_) => upward.push(format!("{at}: {module} uses {used}")),
                // test_support and the like: only ever used by tests.
                None if used == "test_support" => {}
                None => upward.push(format!("{at}: {module} uses {used}, which is in no layer")),
            }
        }
    }
    assert!(scanned > 10_000, "scanned too little: {scanned}");
    assert!(
        upward.is_empty(),
        "imports against the layers:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_layer_scan_sees_groups_and_paths() {
    let lines = vec![
        (
            "a.rs:1".to_owned(),
            "use crate::{config, token::TokenError};".to_owned(),
        ),
        (
            "a.rs:2".to_owned(),
            "let m = crate::metrics::Metrics::new();".to_owned(),
        ),
    ];
    let found: Vec<String> = uses(&lines, "audit").into_iter().map(|(m, _)| m).collect();
    assert_eq!(found, ["config", "token", "metrics"]);
}
