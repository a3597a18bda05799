//! `exgate report` on the audit log the real `exgate serve` binary writes: rotated files
//! read oldest first, several logs, and a reader that closes the pipe early.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::*;

/// Users with on-premises names, an audit log, and `extra` after them.
fn config(extra: &str) -> String {
    format!(
        "[exchange]\ndeployment = \"online\"\n[policy]\nscript = \"policies.ps1\"\n[[users]]\nupn = \"user01@contoso.com\"\nsam = \"CONTOSO\\\\user01\"\n[[users]]\nupn = \"user02@contoso.com\"\nsam = \"CONTOSO\\\\user02\"\n{extra}"
    )
}

/// `exgate serve` on a scratch folder holding `files`, forwarding to `upstream`.
fn serve(upstream: &Upstream, toml: &str, files: &[(&str, &str)]) -> (Spawned, PathBuf) {
    let text = config_text(toml, &[upstream.url()], "");
    let mut all = vec![("exgate.toml", text.as_str()), ("policies.ps1", "")];
    all.extend_from_slice(files);
    let dir = write_files(&all);
    (Spawned::start(&dir, "warn"), dir)
}

/// The audit lines in one file.
fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `exgate report --format json` on `paths`.
fn report(paths: &[&Path]) -> serde_json::Value {
    let mut args = vec!["report", "--format", "json"];
    args.extend(paths.iter().map(|p| arg(p)));
    let out = exgate(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn status(gate: &Spawned, path: &str, authorization: &str) -> u16 {
    let mut c = Client::connect(gate.proxy).await;
    c.get(path, &[("authorization", authorization)])
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_reads_every_rotated_file_oldest_first() {
    let upstream = Upstream::start().await;
    // The smallest file size allowed; three files kept (the log, .1 and .2).
    let (gate, dir) = serve(
        &upstream,
        &config("[audit]\npath = \"audit/exgate.jsonl\"\nmax_file_bytes = 4096\nmax_files = 2\n"),
        &[],
    );
    let requests = 60;
    for i in 0..requests {
        let user = ["user01@contoso.com", "CONTOSO\\user02"][i % 2];
        assert_eq!(
            status(&gate, "/mapi/emsmdb/", &basic(user, "pw")).await,
            200
        );
    }
    gate.stop();

    let audit = dir.join("audit/exgate.jsonl");
    let rotated = |n: u32| dir.join(format!("audit/exgate.jsonl.{n}"));
    assert!(
        !rotated(3).exists(),
        "only max_files rotated files are kept"
    );
    let files = [rotated(2), rotated(1), audit.clone()];
    let kept: Vec<Vec<serde_json::Value>> = files.iter().map(|f| lines_of(f)).collect();
    let total: usize = kept.iter().map(Vec::len).sum();
    // (The current file may be empty: a rotation follows the line that fills a file.)
    assert!(
        !kept[0].is_empty() && !kept[1].is_empty() && total < requests,
        "rotation dropped the oldest lines: {:?}",
        kept.iter().map(Vec::len).collect::<Vec<_>>()
    );
    // Oldest first: every line of a file is older than the next file's.
    let stamps: Vec<String> = kept
        .iter()
        .flatten()
        .map(|l| l["ts"].as_str().unwrap().to_owned())
        .collect();
    assert!(stamps.is_sorted(), "{stamps:?}");

    let r = report(&[&audit]);
    assert_eq!(r["lines"], total, "{r:#}");
    assert_eq!(r["unreadable_lines"], 0);
    let listed: Vec<PathBuf> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f.as_str().unwrap()))
        .collect();
    assert_eq!(listed, files);
    let counted: u64 = r["legacy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, total as u64, "every kept line is a legacy attempt");

    // Several logs: a file named twice (here `.1`, as a shell glob would) is read once.
    let other = write_files(&[("exgate.jsonl", &std::fs::read_to_string(&audit).unwrap())]);
    let r = report(&[&audit, &rotated(1), &other.join("exgate.jsonl")]);
    assert_eq!(r["lines"], total + kept[2].len());
    // The table names the files it read.
    let out = exgate(&["report", arg(&audit)]);
    let table = text(&out.stdout);
    assert!(
        table.contains(&format!("{total} audit lines read (0 unreadable) from ")),
        "{table}"
    );
    assert!(table.contains("exgate.jsonl.2, "), "{table}");
}

/// An audit log of `users` users each with a legacy row: every format's report is far
/// larger than a pipe's 64 KiB, so writing it meets a closed pipe whatever the timing.
fn large_audit_log(users: usize) -> PathBuf {
    let mut text = String::new();
    let decisions = ["allow", "block", "report_only"];
    for i in 0..users {
        let line = serde_json::json!({
            "ts": "2026-11-25T09:00:00.000Z", "client_ip": format!("198.51.100.{}", i % 250),
            "protocol": "Mapi", "scheme": "basic", "user": format!("user{i:05}@contoso.com"),
            "decision": decisions[i % 3], "policy": "Pilot",
            "legacy": true, "user_agent": "Microsoft Office/16.0",
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let dir = write_files(&[("exgate.jsonl", &text)]);
    dir.join("exgate.jsonl")
}

#[test]
fn report_ends_quietly_when_its_reader_closes_the_pipe() {
    let log = large_audit_log(5_000);
    for format in ["table", "json", "csv"] {
        // `| (exec 0<&-; …)`: closed before anything is read; `| head -1`: after a line.
        for lines_read in [0, 1] {
            let mut child = Command::new(env!("CARGO_BIN_EXE_exgate"))
                .args(["report", arg(&log), "--format", format])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            if lines_read > 0 {
                let mut first = String::new();
                BufReader::new(stdout).read_line(&mut first).unwrap();
                assert!(!first.is_empty(), "{format}: no first line");
            } else {
                drop(stdout);
            }
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            let status = child.wait().unwrap();
            let case = format!("{format}, pipe closed after {lines_read} line(s)");
            assert!(!stderr.contains("panicked"), "{case}: {stderr}");
            assert_ne!(status.code(), Some(101), "{case}: {stderr}");
            assert_eq!(status.code(), Some(0), "{case}: {stderr}");
            assert!(stderr.is_empty(), "{case}: {stderr}");
        }
    }
}
