//! The audit log as the real `exgate serve` binary writes it, and `exgate report` on it:
//! the directory identity as `user`, the MFA-refused token's user, event lines without
//! request fields, rotated files read oldest first, and a reader that closes the pipe.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[cfg(feature = "lab")]
use exgate::token::mint::{SigningKey, entra_v1_claims, jwks};

use crate::support::*;

#[cfg(feature = "lab")]
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
#[cfg(feature = "lab")]
const AUDIENCE: &str = "https://outlook.office365.com";

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

/// (Token minting comes with the `lab` feature.)
#[cfg(feature = "lab")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_names_the_directory_identity_and_the_mfa_refused_tokens_user() {
    let upstream = Upstream::start().await;
    let key = SigningKey::generate("k1");
    let stranger = SigningKey::generate("k1");
    let tokens = format!(
        "[[tokens.issuers]]\nissuer = \"https://sts.windows.net/{{tenantid}}/\"\naudiences = [\"{AUDIENCE}\"]\njwks_file = \"jwks.json\"\n[tokens.mfa]\nrequire_for = [\"Mapi\"]\n"
    );
    let (gate, dir) = serve(
        &upstream,
        &config(&format!("[audit]\npath = \"audit/exgate.jsonl\"\n{tokens}")),
        &[("jwks.json", &jwks(&[&key]))],
    );
    let ews = "/EWS/Exchange.asmx";
    // One person, two spellings; and a name nobody declared.
    for user in [
        "user02@contoso.com",
        "CONTOSO\\user02",
        "someone@fabrikam.com",
    ] {
        assert_eq!(status(&gate, ews, &basic(user, "Pw-7c1f9e")).await, 200);
    }
    // A valid token without MFA, refused for MAPI; a forged one (a stranger's key with
    // the same kid), whose claims are never believed.
    let no_mfa = key.sign(&entra_v1_claims(
        TENANT,
        AUDIENCE,
        "user01@contoso.com",
        false,
        3600,
    ));
    let forged = stranger.sign(&entra_v1_claims(
        TENANT,
        AUDIENCE,
        "user02@contoso.com",
        true,
        3600,
    ));
    for token in [&no_mfa, &forged] {
        let bearer = format!("Bearer {token}");
        assert_eq!(status(&gate, "/mapi/emsmdb/", &bearer).await, 401);
    }
    gate.stop();

    let audit = dir.join("audit/exgate.jsonl");
    let lines = lines_of(&audit);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let names = |l: &serde_json::Value| (l["user"].clone(), l.get("presented_user").cloned());
    assert_eq!(names(&lines[0]), ("user02@contoso.com".into(), None));
    assert_eq!(
        names(&lines[1]),
        ("user02@contoso.com".into(), Some("CONTOSO\\user02".into()))
    );
    assert_eq!(names(&lines[2]), ("someone@fabrikam.com".into(), None));
    assert_eq!(lines[3]["reason"], "mfa_required");
    assert_eq!(names(&lines[3]), ("user01@contoso.com".into(), None));
    assert_eq!(lines[4]["reason"], "invalid_token");
    assert_eq!(names(&lines[4]), (serde_json::Value::Null, None));
    let written = std::fs::read_to_string(&audit).unwrap();
    for secret in ["Pw-7c1f9e", &no_mfa, &forged] {
        assert!(!written.contains(secret), "the audit log holds {secret}");
    }
    // Both spellings are one row of the report.
    let report = report(&[&audit]);
    let rows: Vec<(&str, u64)> = report["legacy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["user"].as_str().unwrap(), r["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [("user02@contoso.com", 2), ("someone@fabrikam.com", 1)],
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_and_spray_events_carry_no_request_fields() {
    let upstream = Upstream::start().await;
    let (gate, dir) = serve(
        &upstream,
        &config(
            "[audit]\npath = \"audit/exgate.jsonl\"\n[lockout]\nthreshold = 3\nobservation_window_seconds = 60\n[spray]\ndistinct_users = 3\n",
        ),
        &[],
    );
    let ews = "/EWS/Exchange.asmx";
    for _ in 0..4 {
        let wrong = basic("CONTOSO\\user02", "wrong-guess");
        assert_eq!(status(&gate, ews, &wrong).await, 401);
    }
    for i in 0..4 {
        let victim = basic(&format!("victim{i}@contoso.com"), "wrong-Spring2026!");
        assert_eq!(status(&gate, ews, &victim).await, 401);
    }
    gate.stop();

    let audit = dir.join("audit/exgate.jsonl");
    let lines = lines_of(&audit);
    let events: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("event").is_some()).collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["lockout", "spray_suspect"], "{lines:#?}");
    for event in &events {
        let fields: BTreeSet<&str> = event
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for absent in [
            "method",
            "path",
            "protocol",
            "client_app",
            "scheme",
            "policy",
            "decision",
            "reason",
            "status",
            "upstream_status",
            "duration_ms",
            "user_agent",
        ] {
            assert!(
                !fields.contains(absent),
                "{absent} on an event line: {event}"
            );
        }
        for present in ["ts", "request_id", "client_ip", "user", "legacy"] {
            assert!(fields.contains(present), "{present} missing: {event}");
        }
    }
    // The lockout names the user by their directory identity.
    assert_eq!(events[0]["user"], "user02@contoso.com");
    assert_eq!(events[0]["location"], "unknown");
    assert!(events[1].get("location").is_none(), "{}", events[1]);
    // Request lines keep every field.
    let request = lines.iter().find(|l| l.get("event").is_none()).unwrap();
    assert_eq!(request["method"], "GET");
    assert_eq!(request["path"], ews);
    let report = report(&[&audit]);
    let source = &report["top_blocked_sources"][0];
    assert_eq!(
        (
            source["lockouts"].as_u64(),
            source["spray_suspect"].as_bool()
        ),
        (Some(1), Some(true))
    );
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
    for format in ["table", "json", "csv", "html"] {
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

/// The audit line names the policy (and user) of the snapshot that decided, even when a
/// cmdlet renumbers the policies while the request waits for its body: removing `First`
/// makes `Pilot` policy 0 and `Other` policy 1, the number `Pilot` had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_line_names_the_policy_that_decided_across_a_reload() {
    static BODY: tokio::sync::Notify = tokio::sync::Notify::const_new();
    let upstream = Upstream::start().await;
    let script = "New-AuthenticationPolicy First\nNew-AuthenticationPolicy Pilot -ReportOnly\nSet-User user01 -AuthenticationPolicy Pilot\n";
    let gate = Exgate::start(
        &config("[audit]\npath = \"audit/exgate.jsonl\"\n"),
        script,
        &[upstream.url()],
    )
    .await;
    let mut c = gate.client().await;
    let auth = basic("CONTOSO\\user01", "pw");
    let request = tokio::spawn(async move {
        let body = http_body_util::BodyExt::boxed(Generated::gated(10, 0, &BODY));
        let headers = [("authorization", auth.as_str())];
        c.send("POST", "/mapi/emsmdb/", &headers, body)
            .await
            .unwrap()
            .status
    });
    // Decided (report_only, by Pilot) on its head; now waiting for its body.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut admin = Client::connect(gate.running.admin_addr).await;
    let cmdlets = "Remove-AuthenticationPolicy First\nNew-AuthenticationPolicy Other -ReportOnly";
    let r = admin
        .send("POST", "/cmdlet", &[], full(cmdlets))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    BODY.notify_one();
    assert_eq!(request.await.unwrap(), 200);
    let lines = audit_lines(&gate, 1).await;
    assert_eq!(lines[0]["decision"], "report_only", "{}", lines[0]);
    assert_eq!(lines[0]["policy"], "Pilot", "{}", lines[0]);
    assert_eq!(lines[0]["user"], "user01@contoso.com", "{}", lines[0]);
}
