//! The page's sections after its header: legacy attempts over time (the chart, a
//! sentence on the trend, the table `#timeline`), `#legacy-users`, `#would-block` and
//! `#sources`. Each writes its `<section>` into the page.

use std::fmt::Write as _;

use super::chart::{self, per_width};
use super::{Esc, close_table, list_cell, open_section, open_table};
use crate::report::{Report, Timeline};

/// The chart, a sentence on the trend, and the data table `#timeline`.
pub(super) fn timeline(out: &mut String, t: &Timeline) {
    open_section(out, "timeline", "Legacy attempts over time, per protocol");
    match chart::svg(t) {
        Some(svg) => {
            let _ = writeln!(out, "<figure>\n{svg}\n</figure>");
            if let Some(trend) = trend(t) {
                let _ = writeln!(out, "<p>{trend}</p>");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "<p>No legacy authentication attempt with a readable time: nothing to chart.</p>"
            );
        }
    }
    if t.undated > 0 {
        let _ = writeln!(
            out,
            "<p class=\"note\">{} legacy attempts had no readable time; they are in the users' counts, not over time.</p>",
            t.undated
        );
    }
    let caption = format!(
        "Legacy attempts per {} and protocol (a {} in which a protocol had none has no row)",
        per_width(t.bucket_seconds),
        per_width(t.bucket_seconds),
    );
    let columns = [
        "Bucket start (UTC)",
        "Protocol",
        "#Attempts",
        "#Blocked",
        "#Allowed",
        "#Report-only",
    ];
    open_table(out, "timeline", &caption, &columns);
    let mut rows = 0;
    for (i, bucket) in t.buckets.iter().enumerate() {
        for s in &t.series {
            let n = |v: &[u64]| v.get(i).copied().unwrap_or(0);
            if n(&s.count) == 0 {
                continue;
            }
            rows += 1;
            let _ = writeln!(
                out,
                "<tr data-bucket=\"{b}\" data-protocol=\"{p}\" data-count=\"{}\" data-blocked=\"{}\" data-allowed=\"{}\" data-report-only=\"{}\"><th scope=\"row\" class=\"t\">{b}</th><td>{p}</td><td class=\"n\">{0}</td><td class=\"n\">{1}</td><td class=\"n\">{2}</td><td class=\"n\">{3}</td></tr>",
                n(&s.count),
                n(&s.blocked),
                n(&s.allowed),
                n(&s.report_only),
                b = Esc(bucket),
                p = Esc(&s.protocol),
            );
        }
    }
    close_table(out, rows, columns.len(), "No dated legacy attempt.");
}

/// Attempts in the first and the second half of the buckets, when there are two or
/// more: the answer to "is it going down".
fn trend(t: &Timeline) -> Option<String> {
    let half = t.buckets.len() / 2;
    if half == 0 {
        return None;
    }
    let sum = |range: std::ops::Range<usize>| -> u64 {
        t.series
            .iter()
            .flat_map(|s| range.clone().map(|i| s.count.get(i).copied().unwrap_or(0)))
            .sum()
    };
    let (early, late) = (sum(0..half), sum(t.buckets.len() - half..t.buckets.len()));
    let change = match (early, late) {
        (0, 0) => "none in either".to_owned(),
        (0, _) => "up from none".to_owned(),
        (e, l) if l < e => format!("down {}%", (e - l) * 100 / e),
        (e, l) if l > e => format!("up {}%", (l - e) * 100 / e),
        _ => "unchanged".to_owned(),
    };
    let span = match half {
        1 => "bucket".to_owned(),
        n => format!("{n} buckets"),
    };
    Some(format!(
        "Legacy attempts in the first {span}: {early}; in the last {span}: {late} ({change})."
    ))
}

/// `#legacy-users`: the rows of the table output's first section, in its order.
pub(super) fn legacy_users(out: &mut String, r: &Report) {
    let columns = [
        "User",
        "Protocol",
        "Scheme",
        "#Attempts",
        "#Allowed",
        "#Blocked",
        "#Report-only",
        "First seen",
        "Last seen",
        "Client addresses",
        "Clients (user agents)",
    ];
    let caption = format!(
        "Users still on legacy authentication: one row per user, protocol and scheme ({} rows)",
        r.legacy.len()
    );
    open_section(out, "legacy-users", "Users still on legacy authentication");
    open_table(out, "legacy-users", &caption, &columns);
    for u in &r.legacy {
        let _ = writeln!(
            out,
            "<tr data-user=\"{user}\" data-protocol=\"{protocol}\" data-scheme=\"{scheme}\" data-count=\"{}\" data-allowed=\"{}\" data-blocked=\"{}\" data-report-only=\"{}\" data-first-seen=\"{first}\" data-last-seen=\"{last}\"><th scope=\"row\" class=\"wrap\">{user}</th><td>{protocol}</td><td>{scheme}</td><td class=\"n\">{0}</td><td class=\"n\">{1}</td><td class=\"n\">{2}</td><td class=\"n\">{3}</td><td class=\"t\">{first}</td><td class=\"t\">{last}</td>{}{}</tr>",
            u.count,
            u.allowed,
            u.blocked,
            u.report_only,
            list_cell("inline", &u.client_ips),
            list_cell("list wrap", &u.user_agents),
            user = Esc(&u.user),
            protocol = Esc(&u.protocol),
            scheme = Esc(&u.scheme),
            first = Esc(&u.first_seen),
            last = Esc(&u.last_seen),
        );
    }
    close_table(
        out,
        r.legacy.len(),
        columns.len(),
        "Nobody: no legacy authentication attempt in these logs.",
    );
}

/// `#would-block`: what report-only policies would have blocked.
pub(super) fn would_block(out: &mut String, r: &Report) {
    let columns = ["User", "Protocol", "Policy", "#Attempts", "Last seen"];
    let caption = format!(
        "Attempts report-only policies let through that enforcing would block ({} rows)",
        r.would_block.len()
    );
    open_section(out, "would-block", "What report-only policies would block");
    open_table(out, "would-block", &caption, &columns);
    for w in &r.would_block {
        let _ = writeln!(
            out,
            "<tr data-user=\"{user}\" data-protocol=\"{protocol}\" data-policy=\"{policy}\" data-count=\"{}\" data-last-seen=\"{last}\"><th scope=\"row\" class=\"wrap\">{user}</th><td>{protocol}</td><td class=\"wrap\">{policy}</td><td class=\"n\">{0}</td><td class=\"t\">{last}</td></tr>",
            w.count,
            user = Esc(&w.user),
            protocol = Esc(&w.protocol),
            policy = Esc(&w.policy),
            last = Esc(&w.last_seen),
        );
    }
    close_table(
        out,
        r.would_block.len(),
        columns.len(),
        "Nothing: no report-only decision in these logs.",
    );
}

/// `#sources`: the top sources of blocked attempts, with lockout and spray marks.
pub(super) fn sources(out: &mut String, r: &Report) {
    let columns = [
        "Client address",
        "#Blocked",
        "#Distinct users",
        "#Lockouts",
        "Marks",
        "Last blocked",
    ];
    let caption = format!(
        "Top sources of blocked attempts, most first ({} shown): every request exgate blocked, legacy or not (a token without MFA counts too)",
        r.top_blocked_sources.len()
    );
    open_section(out, "sources", "Top sources of blocked attempts");
    open_table(out, "sources", &caption, &columns);
    for s in &r.top_blocked_sources {
        let mut marks = String::new();
        if s.lockouts > 0 {
            let _ = write!(
                marks,
                "<span class=\"mark lockout\">locked out {}×</span> ",
                s.lockouts
            );
        }
        if s.spray_suspect {
            marks.push_str("<span class=\"mark spray\">spray suspect</span>");
        }
        let _ = writeln!(
            out,
            "<tr data-client-ip=\"{ip}\" data-blocked=\"{}\" data-distinct-users=\"{}\" data-lockouts=\"{}\" data-spray-suspect=\"{}\" data-last-seen=\"{last}\"><th scope=\"row\" class=\"wrap\">{ip}</th><td class=\"n\">{0}</td><td class=\"n\">{1}</td><td class=\"n\">{2}</td><td>{}</td><td class=\"t\">{last}</td></tr>",
            s.blocked,
            s.distinct_users,
            s.lockouts,
            s.spray_suspect,
            marks.trim_end(),
            ip = Esc(&s.client_ip),
            last = Esc(&s.last_seen),
        );
    }
    close_table(
        out,
        r.top_blocked_sources.len(),
        columns.len(),
        "None: no blocked attempt, lockout or spray suspect in these logs.",
    );
}
