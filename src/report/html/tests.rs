//! The HTML page: escaping of hostile log strings, numbers equal to the report's and
//! the table output's, the timeline's buckets, an empty log, and a well-formed page.

use std::collections::HashMap;

use super::chart::COLOURS;
use super::*;
use crate::report::{Series, Timeline, build, table};

const PAYLOADS: [&str; 4] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "</title><script>",
    "' onmouseover='alert(1)",
];
/// The payloads as they must appear, written out by hand (not by [`Esc`]).
const ESCAPED: [&str; 4] = [
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;",
    "&lt;/title&gt;&lt;script&gt;",
    "&#39; onmouseover=&#39;alert(1)",
];

/// Every element the page may contain: anything else got in from the log.
const ELEMENTS: [&str; 41] = [
    "html", "head", "meta", "title", "style", "body", "header", "h1", "dl", "dt", "dd", "ul", "li",
    "code", "p", "strong", "nav", "a", "main", "section", "h2", "figure", "svg", "desc", "line",
    "text", "polyline", "circle", "rect", "polygon", "g", "div", "table", "caption", "thead",
    "tbody", "tr", "th", "td", "span", "!DOCTYPE",
];
const VOID: [&str; 2] = ["meta", "!DOCTYPE"];

/// An audit line's `(ts, protocol, scheme, user, decision, policy, client_ip,
/// user_agent)`; an empty policy is none.
type Attempt<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
);

/// Audit lines of `lines`; `bearer` attempts are not legacy.
fn log(lines: &[Attempt]) -> String {
    let mut text = String::new();
    for (ts, protocol, scheme, user, decision, policy, ip, agent) in lines {
        let line = serde_json::json!({
            "ts": ts, "client_ip": ip, "method": "POST", "path": "/mapi/emsmdb",
            "protocol": protocol, "scheme": scheme, "user": user, "decision": decision,
            "policy": (!policy.is_empty()).then_some(policy), "user_agent": agent,
            "legacy": scheme != &"bearer",
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    text
}

/// Checks the page is well formed: every tag is a known element, closed in order
/// (void and self-closed ones aside), no attribute is an event handler, and text
/// holds no `<` (escaped data cannot open a tag). Returns the tag names seen.
fn check_well_formed(page: &str) -> Vec<String> {
    let mut open: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    let mut rest = page;
    while let Some(i) = rest.find('<') {
        let end = rest[i..].find('>').expect("a tag ends") + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(name), "closing {name}");
            continue;
        }
        let name = tag.split([' ', '\n', '/']).next().unwrap();
        assert!(ELEMENTS.contains(&name), "unknown element <{name}");
        let attributes = attributes(tag);
        for key in attributes.keys() {
            assert!(!key.starts_with("on"), "event handler {key} on <{name}");
        }
        seen.push(name.to_owned());
        if !(tag.ends_with('/') || VOID.contains(&name)) {
            open.push(name.to_owned());
        }
        // Raw text elements: what follows up to their end tag is not markup.
        if name == "style" {
            let close = rest.find("</style>").unwrap();
            assert!(!rest[..close].contains('<'));
            rest = &rest[close..];
        }
    }
    assert!(open.is_empty(), "left open: {open:?}");
    seen
}

/// The attributes of a tag (its text between `<` and `>`), values unescaped.
fn attributes(tag: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].rsplit([' ', '\n']).next().unwrap().to_owned();
        let value_end = rest[eq + 2..].find('"').unwrap() + eq + 2;
        let value = rest[eq + 2..value_end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&");
        out.insert(name, value);
        rest = &rest[value_end + 1..];
    }
    out
}

/// The data rows of the table `id`: each `<tr>`'s `data-*` attributes, names without
/// `data-`; rows without any (messages) left out.
fn rows(page: &str, id: &str) -> Vec<HashMap<String, String>> {
    let start = page.find(&format!("<table id=\"{id}\">")).expect(id);
    let table = &page[start..start + page[start..].find("</table>").unwrap()];
    table
        .split("<tr")
        .skip(1)
        .map(|tr| {
            let tag = &tr[..tr.find('>').unwrap()];
            attributes(tag)
                .into_iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("data-")?.to_owned(), v)))
                .collect::<HashMap<_, _>>()
        })
        .filter(|row| !row.is_empty())
        .collect()
}

/// The `<dl id="totals">` attributes.
fn totals(page: &str) -> HashMap<String, String> {
    let start = page.find("<dl class=\"totals\" id=\"totals\"").unwrap();
    let tag = &page[start + 1..start + page[start..].find('>').unwrap()];
    attributes(tag)
}

/// The lines of the table output's section that starts after the line `heading`,
/// split on whitespace, the column header left out.
fn text_section(text: &str, heading: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip_while(|l| !l.starts_with(heading))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn hostile_strings_from_the_log_are_escaped_everywhere() {
    let mut lines = Vec::new();
    for p in PAYLOADS {
        // In user, user agent, policy, protocol, scheme, client address and time.
        lines.push((p, p, p, p, "report_only", p, p, p));
        lines.push(("2026-11-25T09:00:00.000Z", p, "basic", p, "block", "", p, p));
    }
    let mut text = log(&lines);
    // And in the request path, which the report does not read, and an event.
    text = text.replace("/mapi/emsmdb", "</title><script>alert(1)</script>");
    for p in PAYLOADS {
        let event = serde_json::json!({"ts": p, "event": "lockout", "client_ip": p, "user": p, "legacy": true});
        text.push_str(&format!("{event}\n"));
    }
    let mut r = build(text.as_bytes()).unwrap();
    // File names come from the command line (or a shell glob): hostile too.
    r.files = PAYLOADS
        .iter()
        .map(|p| format!("/var/log/{p}.jsonl"))
        .collect();
    assert_eq!(r.legacy.len(), 8, "every payload made rows");
    let page = html(&r);
    for (raw, escaped) in PAYLOADS.iter().zip(ESCAPED) {
        assert!(!page.contains(raw), "{raw} is in the page unescaped");
        assert!(page.contains(escaped), "{escaped} is not in the page");
    }
    assert!(!page.to_ascii_lowercase().contains("<script"));
    assert!(!page.to_ascii_lowercase().contains("<img"));
    let elements = check_well_formed(&page);
    assert!(elements.iter().any(|e| e == "svg"), "the chart is drawn");
    // Control characters and non-characters become U+FFFD.
    assert_eq!(
        Esc("a\u{0}b\u{7}c\u{FFFF}d\te\u{FDD0}").to_string(),
        "a\u{FFFD}b\u{FFFD}c\u{FFFD}d\te\u{FFFD}"
    );
    assert_eq!(Esc("&amp;").to_string(), "&amp;amp;");
}

/// Four users, three protocols, two schemes, every decision, several sources, events.
fn busy_log() -> String {
    let users = [
        "user01@contoso.com",
        "user02@contoso.com",
        "CONTOSO\\user03",
        "user04@contoso.com",
    ];
    let protocols = ["Mapi", "WebServices", "ActiveSync"];
    let decisions = ["block", "allow", "report_only", "block", "block"];
    let mut lines = Vec::new();
    let mut owned = Vec::new();
    for i in 0..120 {
        let ts = format!("2026-11-25T{:02}:{:02}:00.000Z", 8 + i / 40, (i * 7) % 60);
        let ip = format!("203.0.113.{}", i % 6);
        let agent = format!("Client/{}", i % 3);
        owned.push((ts, ip, agent));
    }
    for (i, (ts, ip, agent)) in owned.iter().enumerate() {
        let scheme = if i % 7 == 0 { "ntlm" } else { "basic" };
        let policy = if i % 2 == 0 { "Pilot" } else { "Other" };
        lines.push((
            ts.as_str(),
            protocols[i % 3],
            if i % 11 == 0 { "bearer" } else { scheme },
            users[i % 4],
            decisions[i % 5],
            policy,
            ip.as_str(),
            agent.as_str(),
        ));
    }
    let mut text = log(&lines);
    text.push_str("{\"ts\":\"2026-11-25T09:30:00.000Z\",\"event\":\"lockout\",\"client_ip\":\"203.0.113.1\",\"user\":\"user01@contoso.com\",\"legacy\":true}\n");
    text.push_str("{\"ts\":\"2026-11-25T09:31:00.000Z\",\"event\":\"spray_suspect\",\"client_ip\":\"203.0.113.2\",\"user\":\"x\",\"legacy\":true}\n");
    text.push_str("not json\n");
    text
}

#[test]
fn the_data_attributes_carry_the_reports_and_the_tables_numbers() {
    let r = build(busy_log().as_bytes()).unwrap();
    assert!(r.legacy.len() > 10 && r.would_block.len() > 3 && r.top_blocked_sources.len() == 6);
    let page = html(&r);
    check_well_formed(&page);
    let text = table(&r);

    // Users on legacy authentication: the report's rows, in its order, and the table's.
    let dom = rows(&page, "legacy-users");
    let tabled = text_section(&text, "Users still on legacy authentication");
    assert_eq!((dom.len(), tabled.len()), (r.legacy.len(), r.legacy.len()));
    for ((row, u), t) in dom.iter().zip(&r.legacy).zip(&tabled) {
        let fields = [
            ("user", u.user.clone()),
            ("protocol", u.protocol.clone()),
            ("scheme", u.scheme.clone()),
            ("count", u.count.to_string()),
            ("allowed", u.allowed.to_string()),
            ("blocked", u.blocked.to_string()),
            ("report-only", u.report_only.to_string()),
            ("first-seen", u.first_seen.clone()),
            ("last-seen", u.last_seen.clone()),
        ];
        for (k, v) in &fields {
            assert_eq!(row[*k], *v, "{k} of {row:?}");
        }
        assert_eq!(row.len(), fields.len());
        // The table output's columns: user protocol scheme count allowed blocked report first last.
        let dom_cells: Vec<&str> = fields.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(t[..9], dom_cells[..], "table row {t:?}");
    }

    let dom = rows(&page, "would-block");
    let tabled = text_section(&text, "What report-only policies would block");
    assert_eq!(
        (dom.len(), tabled.len()),
        (r.would_block.len(), r.would_block.len())
    );
    for ((row, w), t) in dom.iter().zip(&r.would_block).zip(&tabled) {
        let cells = [
            &w.user,
            &w.protocol,
            &w.policy,
            &w.count.to_string(),
            &w.last_seen,
        ];
        let names = ["user", "protocol", "policy", "count", "last-seen"];
        for (k, v) in names.iter().zip(cells.iter()) {
            assert_eq!(&row[*k], *v);
        }
        assert_eq!(t.iter().collect::<Vec<_>>(), cells);
    }

    let dom = rows(&page, "sources");
    let tabled = text_section(&text, "Top sources of blocked attempts");
    assert_eq!((dom.len(), tabled.len()), (6, 6));
    for ((row, s), t) in dom.iter().zip(&r.top_blocked_sources).zip(&tabled) {
        assert_eq!(row["client-ip"], s.client_ip);
        assert_eq!(row["blocked"], s.blocked.to_string());
        assert_eq!(row["distinct-users"], s.distinct_users.to_string());
        assert_eq!(row["lockouts"], s.lockouts.to_string());
        assert_eq!(row["spray-suspect"], s.spray_suspect.to_string());
        assert_eq!(row["last-seen"], s.last_seen);
        let spray = if s.spray_suspect { "yes" } else { "no" };
        let dom_cells = [
            &row["client-ip"],
            &row["blocked"],
            &row["distinct-users"],
            &row["lockouts"],
            spray,
            &row["last-seen"],
        ];
        assert_eq!(t.iter().map(String::as_str).collect::<Vec<_>>(), dom_cells);
    }
    assert!(page.contains("<span class=\"mark lockout\">locked out 1×</span>"));
    assert!(page.contains("<span class=\"mark spray\">spray suspect</span>"));

    // The timeline's rows are its non-zero cells; they add up to the legacy attempts.
    let dom = rows(&page, "timeline");
    let t = &r.timeline;
    let cells: Vec<(usize, &Series)> = (0..t.buckets.len())
        .flat_map(|i| t.series.iter().map(move |s| (i, s)))
        .filter(|(i, s)| s.count[*i] > 0)
        .collect();
    assert_eq!(dom.len(), cells.len());
    for (row, (i, s)) in dom.iter().zip(cells) {
        assert_eq!(row["bucket"], t.buckets[i]);
        assert_eq!(row["protocol"], s.protocol);
        assert_eq!(row["count"], s.count[i].to_string());
        assert_eq!(row["blocked"], s.blocked[i].to_string());
        assert_eq!(row["allowed"], s.allowed[i].to_string());
        assert_eq!(row["report-only"], s.report_only[i].to_string());
    }
    let total: u64 = dom
        .iter()
        .map(|row| row["count"].parse::<u64>().unwrap())
        .sum();
    let legacy: u64 = r.legacy.iter().map(|u| u.count).sum();
    assert_eq!(total, legacy);

    let totals = totals(&page);
    assert_eq!(totals["data-lines"], r.lines.to_string());
    assert_eq!(totals["data-unreadable-lines"], "1");
    assert_eq!(totals["data-legacy-attempts"], legacy.to_string());
    let blocked: u64 = r.legacy.iter().map(|u| u.blocked).sum();
    assert_eq!(totals["data-blocked"], blocked.to_string());
    assert_eq!(totals["data-users"], "4");
    assert_eq!(totals["data-bucket-seconds"], "300", "three hours");
    assert_eq!(totals["data-first-ts"], "2026-11-25T08:00:00.000Z");
    // The header's first line of the table output says the same.
    assert!(text.starts_with(&format!("{} audit lines read (1 unreadable)", r.lines)));
}

#[test]
fn the_timeline_table_follows_minute_and_day_buckets() {
    let minutes = log(&[
        (
            "2026-11-25T09:00:10.000Z",
            "Mapi",
            "basic",
            "u@contoso.com",
            "block",
            "",
            "192.0.2.1",
            "a",
        ),
        (
            "2026-11-25T09:02:50.000Z",
            "Mapi",
            "basic",
            "u@contoso.com",
            "allow",
            "",
            "192.0.2.1",
            "a",
        ),
        (
            "2026-11-25T09:02:51.000Z",
            "Imap",
            "basic",
            "v@contoso.com",
            "block",
            "",
            "192.0.2.2",
            "a",
        ),
    ]);
    let page = html(&build(minutes.as_bytes()).unwrap());
    let buckets: Vec<(String, String, String)> = rows(&page, "timeline")
        .into_iter()
        .map(|r| {
            (
                r["bucket"].clone(),
                r["protocol"].clone(),
                r["count"].clone(),
            )
        })
        .collect();
    let expected = [
        ("2026-11-25T09:00:00.000Z", "Mapi", "1"),
        ("2026-11-25T09:02:00.000Z", "Mapi", "1"),
        ("2026-11-25T09:02:00.000Z", "Imap", "1"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(buckets, expected, "Mapi first: more attempts");
    assert!(page.contains("each bucket 1 minute"));
    assert!(page.contains(">11-25 09:00</text>"), "an axis label");
    assert!(page.contains("in the first bucket: 1; in the last bucket: 2 (up 100%)."));

    let days = log(&[
        (
            "2026-11-01T23:59:00.000Z",
            "Mapi",
            "basic",
            "u@contoso.com",
            "block",
            "",
            "192.0.2.1",
            "a",
        ),
        (
            "2026-11-02T00:00:00.000Z",
            "Mapi",
            "basic",
            "u@contoso.com",
            "block",
            "",
            "192.0.2.1",
            "a",
        ),
        (
            "2026-11-20T10:00:00.000Z",
            "Mapi",
            "basic",
            "u@contoso.com",
            "block",
            "",
            "192.0.2.1",
            "a",
        ),
    ]);
    let page = html(&build(days.as_bytes()).unwrap());
    let buckets: Vec<String> = rows(&page, "timeline")
        .into_iter()
        .map(|r| r["bucket"].clone())
        .collect();
    assert_eq!(
        buckets,
        [
            "2026-11-01T00:00:00.000Z",
            "2026-11-02T00:00:00.000Z",
            "2026-11-20T00:00:00.000Z"
        ]
    );
    assert!(page.contains("each bucket 1 day"));
    assert!(page.contains(">2026-11-01</text>"), "an axis label");
    assert!(
        page.contains("in the first 10 buckets: 2; in the last 10 buckets: 1 (down 50%)."),
        "{page}"
    );
}

#[test]
fn an_empty_log_renders_a_valid_page_saying_there_is_nothing() {
    let page = html(&build("".as_bytes()).unwrap());
    check_well_formed(&page);
    assert!(page.contains("Nothing to report: the audit logs hold no line."));
    assert!(page.contains("nothing to chart"));
    assert!(!page.contains("<svg"));
    for id in ["timeline", "legacy-users", "would-block", "sources"] {
        assert!(page.contains(&format!("<table id=\"{id}\">")), "{id}");
        assert!(rows(&page, id).is_empty(), "{id}");
    }
    assert!(page.contains("Nobody: no legacy authentication attempt in these logs."));
    assert!(page.contains("<caption>Legacy attempts per time bucket and protocol"));
    assert_eq!(totals(&page)["data-legacy-attempts"], "0");
}

#[test]
fn the_page_is_self_contained_and_accessible() {
    let page = html(&build(busy_log().as_bytes()).unwrap());
    assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(page.contains(&format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">"
    )));
    assert!(page.contains("<title>exgate report: legacy authentication</title>"));
    // No asset to load: the only URL is the SVG namespace, links stay in the page.
    assert_eq!(page.matches("http://").count(), 1);
    assert!(!page.contains("https://") && !page.contains("src=") && !page.contains("url("));
    let elements = check_well_formed(&page);
    assert_eq!(elements.iter().filter(|e| *e == "script").count(), 0);
    let mut rest = page.as_str();
    while let Some(i) = rest.find("href=\"") {
        assert_eq!(&rest[i + 6..i + 7], "#");
        rest = &rest[i + 6..];
    }
    assert!(page.contains("role=\"img\" aria-labelledby=\"chart-title chart-desc\""));
    assert_eq!(page.matches("<caption>").count(), 4);
    assert_eq!(page.matches("<table").count(), 4);
    assert!(!page.contains("<th>"), "every header cell has a scope");
}

/// WCAG 2 contrast ratio of two `#rrggbb` colours.
fn contrast(a: &str, b: &str) -> f64 {
    let luminance = |hex: &str| {
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
    };
    let (x, y) = (luminance(a), luminance(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

#[test]
fn colours_meet_wcag_aa() {
    for colour in COLOURS {
        assert!(contrast(colour, "#ffffff") >= 4.5, "{colour}");
    }
    // Text on the page and the header cells, muted notes, marks, borders (3:1).
    assert!(contrast("#1a1a1a", "#ffffff") >= 7.0);
    assert!(contrast("#1a1a1a", "#e8e8e8") >= 7.0);
    assert!(contrast("#4a4a4a", "#ffffff") >= 4.5);
    assert!(contrast("#ffffff", "#9e1c1c") >= 4.5);
    assert!(contrast("#ffffff", "#5c2d91") >= 4.5);
    assert!(contrast("#8c8c8c", "#ffffff") >= 3.0);
    for colour in [
        "#1a1a1a", "#e8e8e8", "#4a4a4a", "#9e1c1c", "#5c2d91", "#8c8c8c",
    ] {
        assert!(STYLE.contains(colour), "{colour} is no longer in the style");
    }
}

#[test]
fn a_malformed_report_still_renders() {
    // A Report read back from someone's JSON: vectors shorter than the buckets, odd
    // bucket strings.
    let r = Report {
        timeline: Timeline {
            bucket_seconds: 60,
            buckets: vec!["ü".into(), String::new(), "x".into()],
            series: vec![Series {
                protocol: "Mapi".into(),
                total: 3,
                count: vec![3],
                ..Series::default()
            }],
            ..Timeline::default()
        },
        ..Report::default()
    };
    let page = html(&r);
    check_well_formed(&page);
    assert_eq!(rows(&page, "timeline").len(), 1);
}
