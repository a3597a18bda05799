//! `exgate report`: the report built from audit lines and files, and its formats.

use super::*;

const LINES: &str = r#"{"ts":"2026-11-25T09:00:00.000Z","client_ip":"203.0.113.5","protocol":"Mapi","scheme":"basic","user":"user01@contoso.com","decision":"block","legacy":true,"user_agent":"Microsoft Office/16.0"}
{"ts":"2026-11-25T09:05:00.000Z","client_ip":"198.51.100.7","protocol":"Mapi","scheme":"basic","user":"user01@contoso.com","decision":"allow","legacy":true}
{"ts":"2026-11-25T08:55:00.000Z","client_ip":"198.51.100.7","protocol":"WebServices","scheme":"ntlm","user":"CONTOSO\\user02","decision":"report_only","policy":"Pilot","legacy":true}
{"ts":"2026-11-25T09:06:00.000Z","client_ip":"198.51.100.7","protocol":"WebServices","scheme":"bearer","user":"user03@contoso.com","decision":"allow","legacy":false}
{"ts":"2026-11-25T09:07:00.000Z","event":"spray_suspect","client_ip":"203.0.113.5","user":"x","legacy":true}
not json
"#;

#[test]
fn rows_are_grouped_counted_and_dated() {
    let r = build(LINES.as_bytes()).unwrap();
    assert_eq!((r.lines, r.unreadable_lines), (6, 1));
    assert_eq!(r.legacy.len(), 2, "bearer is not legacy");
    let mapi = &r.legacy[0];
    assert_eq!(
        (mapi.user.as_str(), mapi.count, mapi.allowed, mapi.blocked),
        ("user01@contoso.com", 2, 1, 1)
    );
    assert_eq!(mapi.first_seen, "2026-11-25T09:00:00.000Z");
    assert_eq!(mapi.last_seen, "2026-11-25T09:05:00.000Z");
    assert_eq!(mapi.client_ips.len(), 2);
    assert_eq!(r.would_block.len(), 1);
    assert_eq!(r.would_block[0].policy, "Pilot");
    assert_eq!(r.top_blocked_sources[0].client_ip, "203.0.113.5");
    assert!(r.top_blocked_sources[0].spray_suspect);
}

#[test]
fn an_attempt_that_named_nobody_is_no_distinct_user() {
    let lines = r#"{"ts":"t1","client_ip":"203.0.113.9","protocol":"Mapi","scheme":"basic","user":"a@contoso.com","decision":"block","legacy":true}
{"ts":"t2","client_ip":"203.0.113.9","protocol":"Mapi","scheme":"ntlm","user":null,"decision":"block","legacy":true}
{"ts":"t3","client_ip":"203.0.113.9","protocol":"Mapi","scheme":"basic","user":"a@contoso.com","decision":"block","legacy":true}
"#;
    let r = build(lines.as_bytes()).unwrap();
    let source = &r.top_blocked_sources[0];
    assert_eq!((source.blocked, source.distinct_users), (3, 1));
    assert!(r.legacy.iter().any(|u| u.user == "(unidentified)"));
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exgate-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_log_is_read_with_its_rotated_files_oldest_first() {
    let dir = scratch("rotated");
    for name in [
        "a.jsonl",
        "a.jsonl.1",
        "a.jsonl.2",
        "a.jsonl.10",
        "a.jsonl.x",
        "a.jsonl.1.gz",
        "a.jsonl.",
        "b.jsonl.1",
    ] {
        std::fs::write(dir.join(name), "").unwrap();
    }
    let names: Vec<String> = rotated_files(&dir.join("a.jsonl"))
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.jsonl.10", "a.jsonl.2", "a.jsonl.1", "a.jsonl"]);
    assert!(rotated_files(&dir.join("missing.jsonl")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn several_logs_are_read_and_a_file_named_twice_once() {
    let dir = scratch("several");
    let line = |ts: &str| {
        format!(
            "{{\"ts\":\"{ts}\",\"client_ip\":\"192.0.2.1\",\"protocol\":\"Mapi\",\"scheme\":\"basic\",\"user\":\"u@contoso.com\",\"decision\":\"allow\",\"legacy\":true}}\n"
        )
    };
    std::fs::write(dir.join("a.jsonl.1"), line("2026-11-25T08:00:00.000Z")).unwrap();
    std::fs::write(dir.join("a.jsonl"), line("2026-11-25T09:00:00.000Z")).unwrap();
    std::fs::write(dir.join("b.jsonl"), line("2026-11-25T10:00:00.000Z")).unwrap();
    let paths = [
        dir.join("a.jsonl"),
        dir.join("a.jsonl.1"),
        dir.join("b.jsonl"),
    ];
    let r = build_files(&paths).unwrap();
    assert_eq!(r.lines, 3);
    assert_eq!(r.files.len(), 3);
    assert!(r.files[0].ends_with("a.jsonl.1"), "{:?}", r.files);
    let row = &r.legacy[0];
    assert_eq!(row.count, 3);
    assert_eq!(
        (row.first_seen.as_str(), row.last_seen.as_str()),
        ("2026-11-25T08:00:00.000Z", "2026-11-25T10:00:00.000Z")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_pipe_ends_the_output_quietly_and_other_errors_do_not() {
    struct Failing(std::io::ErrorKind);
    impl std::io::Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut closed = Failing(std::io::ErrorKind::BrokenPipe);
    assert!(write_quietly(&mut closed, b"report").is_ok());
    let mut full = Failing(std::io::ErrorKind::StorageFull);
    assert!(write_quietly(&mut full, b"report").is_err());
}

#[test]
fn every_format_renders() {
    let r = build(LINES.as_bytes()).unwrap();
    assert!(table(&r).contains("user01@contoso.com"));
    let csv = csv(&r);
    assert!(
        csv.lines()
            .any(|l| l.starts_with("would_block,CONTOSO\\user02,WebServices,,Pilot"))
    );
    assert_eq!(csv.lines().count(), 1 + 2 + 1 + 1);
}

#[test]
fn the_timeline_counts_each_legacy_attempt_once_and_json_carries_it() {
    let r = build(LINES.as_bytes()).unwrap();
    let legacy: u64 = r.legacy.iter().map(|u| u.count).sum();
    let dated: u64 = r.timeline.series.iter().map(|s| s.total).sum();
    assert_eq!((dated, r.timeline.undated), (legacy, 0));
    assert_eq!(r.timeline.bucket_seconds, 60);
    assert_eq!(r.timeline.buckets.len(), 11, "08:55 to 09:05");
    assert_eq!(r.timeline.series[0].protocol, "Mapi");
    // The span of the log: the spray event line is its last.
    assert_eq!(r.timeline.first_ts, "2026-11-25T08:55:00.000Z");
    assert_eq!(r.timeline.last_ts, "2026-11-25T09:07:00.000Z");
    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "files",
        "lines",
        "unreadable_lines",
        "legacy",
        "would_block",
        "top_blocked_sources",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    assert_eq!(json["timeline"]["series"][0]["count"][5], 1);
    // A report written before the timeline existed still reads.
    let mut old = json.clone();
    old.as_object_mut().unwrap().remove("timeline");
    let old: Report = serde_json::from_value(old).unwrap();
    assert_eq!(old.timeline, Timeline::default());
}

#[test]
fn rows_with_equal_counts_come_in_key_order() {
    let mut lines = String::new();
    for protocol in [
        "WebServices",
        "Mapi",
        "ActiveSync",
        "Rpc",
        "OfflineAddressBook",
    ] {
        for policy in ["Pilot", "Other"] {
            lines.push_str(&format!(
                "{{\"ts\":\"t\",\"client_ip\":\"192.0.2.1\",\"protocol\":\"{protocol}\",\"scheme\":\"basic\",\"user\":\"u@contoso.com\",\"decision\":\"report_only\",\"policy\":\"{policy}\",\"legacy\":true}}\n"
            ));
        }
    }
    let r = build(lines.as_bytes()).unwrap();
    let keys: Vec<(&str, &str)> = r
        .would_block
        .iter()
        .map(|w| (w.protocol.as_str(), w.policy.as_str()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 10);
}
