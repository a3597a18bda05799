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
