//! `exgate report --format html` as the binary writes it: one page whose data rows
//! carry the numbers of `--format json` for the same logs, strings from the log and a
//! file name escaped, and a quiet end when the reader closes the pipe.

use std::collections::HashMap;

use crate::support::*;

/// `exgate report` on `paths` in `format`: standard output; status 0 and nothing on
/// standard error asserted.
fn report(format: &str, paths: &[&str]) -> String {
    let mut args = vec!["report", "--format", format];
    args.extend_from_slice(paths);
    let out = exgate(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// An audit line.
fn line(ts: &str, protocol: &str, user: &str, decision: &str, ip: &str, agent: &str) -> String {
    let policy = (decision == "report_only").then_some("Pilot");
    let line = serde_json::json!({
        "ts": ts, "client_ip": ip, "method": "POST", "path": "/EWS/Exchange.asmx",
        "protocol": protocol, "client_app": "Exchange Web Services", "scheme": "basic",
        "user": user, "policy": policy, "decision": decision, "reason": "legacy_blocked",
        "status": 401, "upstream_status": null, "duration_ms": 0.2,
        "user_agent": agent, "legacy": true,
    });
    format!("{line}\n")
}

/// The `data-*` attributes (names without `data-`, values unescaped) of every `<tr>`
/// of `<table id="{id}">` that has any.
fn data_rows(page: &str, id: &str) -> Vec<HashMap<String, String>> {
    let start = page.find(&format!("<table id=\"{id}\">")).expect(id);
    let end = start + page[start..].find("</table>").unwrap();
    page[start..end]
        .split("<tr ")
        .skip(1)
        .map(|tr| {
            let mut rest = &tr[..tr.find('>').unwrap()];
            let mut row = HashMap::new();
            while let Some(eq) = rest.find("=\"") {
                let name = rest[..eq].trim().trim_start_matches("data-").to_owned();
                let close = eq + 2 + rest[eq + 2..].find('"').unwrap();
                let value = rest[eq + 2..close]
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&amp;", "&");
                row.insert(name, value);
                rest = &rest[close + 1..];
            }
            row
        })
        .collect()
}

/// A JSON row as the page's `data-*` attributes write it: `_` as `-`, values as text,
/// lists (not in attributes) left out.
fn as_attributes(row: &serde_json::Value) -> HashMap<String, String> {
    row.as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| !v.is_array())
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.replace('_', "-"), v)
        })
        .collect()
}

#[test]
fn the_html_page_carries_the_json_reports_numbers() {
    let mut log = String::new();
    let users = [
        "user01@contoso.com",
        "user02@contoso.com",
        "CONTOSO\\user03",
    ];
    let protocols = ["Mapi", "WebServices", "ActiveSync", "OfflineAddressBook"];
    let decisions = ["block", "allow", "report_only", "block"];
    for i in 0..200 {
        let ts = format!("2026-11-{:02}T{:02}:00:00.000Z", 1 + i / 10, (i * 5) % 24);
        log.push_str(&line(
            &ts,
            protocols[i % 4],
            users[i % 3],
            decisions[i % 4],
            &format!("198.51.100.{}", i % 9),
            "Microsoft Office/16.0 (<Windows NT 10.0>)",
        ));
    }
    log.push_str("{\"ts\":\"2026-11-03T10:00:00.000Z\",\"event\":\"lockout\",\"request_id\":\"r\",\"client_ip\":\"198.51.100.4\",\"user\":\"user01@contoso.com\",\"legacy\":true,\"location\":\"unknown\"}\n");
    let dir = write_files(&[("exgate.jsonl", &log)]);
    let path = dir.join("exgate.jsonl");
    let page = report("html", &[arg(&path)]);
    let json: serde_json::Value = serde_json::from_str(&report("json", &[arg(&path)])).unwrap();

    assert!(
        page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"),
        "{page}"
    );
    assert!(page.trim_end().ends_with("</html>"));
    assert!(
        page.contains("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';")
    );
    assert!(!page.to_ascii_lowercase().contains("<script"));
    for (id, key) in [
        ("legacy-users", "legacy"),
        ("would-block", "would_block"),
        ("sources", "top_blocked_sources"),
    ] {
        let expected: Vec<_> = json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(as_attributes)
            .collect();
        assert!(!expected.is_empty(), "{key}");
        assert_eq!(data_rows(&page, id), expected, "{id}");
    }
    // The timeline: 20 days, so day buckets; one row per non-zero cell.
    let timeline = &json["timeline"];
    assert_eq!(timeline["bucket_seconds"], 86_400);
    let mut expected = Vec::new();
    for (i, bucket) in timeline["buckets"].as_array().unwrap().iter().enumerate() {
        for s in timeline["series"].as_array().unwrap() {
            if s["count"][i] == 0 {
                continue;
            }
            let cell = |k: &str| s[k][i].to_string();
            expected.push(HashMap::from([
                ("bucket".to_owned(), bucket.as_str().unwrap().to_owned()),
                (
                    "protocol".to_owned(),
                    s["protocol"].as_str().unwrap().to_owned(),
                ),
                ("count".to_owned(), cell("count")),
                ("blocked".to_owned(), cell("blocked")),
                ("allowed".to_owned(), cell("allowed")),
                ("report-only".to_owned(), cell("report_only")),
            ]));
        }
    }
    assert_eq!(data_rows(&page, "timeline"), expected);
    let attempts: u64 = expected
        .iter()
        .map(|r| r["count"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(attempts, 200);
    assert!(page.contains(" data-legacy-attempts=\"200\" "));
    // The table output's totals line agrees.
    let table = report("table", &[arg(&path)]);
    assert!(
        table.starts_with("201 audit lines read (0 unreadable)"),
        "{table}"
    );
    assert!(page.contains(" data-lines=\"201\" "));
}

#[test]
fn a_hostile_log_and_file_name_are_escaped_in_the_page() {
    let payload = "\"><img src=x onerror=alert(1)>";
    let mut log = line(
        "2026-11-25T09:00:00.000Z",
        payload,
        payload,
        "block",
        payload,
        payload,
    );
    log.push_str(&line(
        "</title><script>",
        "<script>alert(1)</script>",
        "</title><script>",
        "report_only",
        "192.0.2.1",
        "<script>alert(1)</script>",
    ));
    let name = format!("{payload}.jsonl");
    let dir = write_files(&[(&name, &log)]);
    let page = report("html", &[arg(&dir.join(&name))]);
    for raw in [payload, "<script>alert(1)</script>", "</title><script>"] {
        assert!(!page.contains(raw), "{raw}");
    }
    assert!(!page.to_ascii_lowercase().contains("<script"));
    assert!(!page.to_ascii_lowercase().contains("<img"));
    assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;.jsonl</code>"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&lt;/title&gt;&lt;script&gt;"));
}
