//! The report as text tables and as CSV.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::Report;

fn joined(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join("; ")
}

/// The report as text tables.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} audit lines read ({} unreadable){}\n",
        r.lines,
        r.unreadable_lines,
        match r.files.is_empty() {
            true => String::new(),
            false => format!(" from {}", r.files.join(", ")),
        }
    );
    let _ = writeln!(
        out,
        "Users still on legacy authentication ({} user/protocol/scheme rows):",
        r.legacy.len()
    );
    let _ = writeln!(
        out,
        "  {:<28} {:<20} {:<15} {:>7} {:>7} {:>7} {:>7}  {:<24} {:<24}  clients",
        "user",
        "protocol",
        "scheme",
        "count",
        "allowed",
        "blocked",
        "report",
        "first seen",
        "last seen"
    );
    for u in &r.legacy {
        let _ = writeln!(
            out,
            "  {:<28} {:<20} {:<15} {:>7} {:>7} {:>7} {:>7}  {:<24} {:<24}  {} | {}",
            u.user,
            u.protocol,
            u.scheme,
            u.count,
            u.allowed,
            u.blocked,
            u.report_only,
            u.first_seen,
            u.last_seen,
            joined(&u.client_ips),
            joined(&u.user_agents)
        );
    }
    let _ = writeln!(out, "\nWhat report-only policies would block:");
    let _ = writeln!(
        out,
        "  {:<28} {:<20} {:<28} {:>7}  last seen",
        "user", "protocol", "policy", "count"
    );
    for w in &r.would_block {
        let _ = writeln!(
            out,
            "  {:<28} {:<20} {:<28} {:>7}  {}",
            w.user, w.protocol, w.policy, w.count, w.last_seen
        );
    }
    let _ = writeln!(out, "\nTop sources of blocked attempts:");
    let _ = writeln!(
        out,
        "  {:<40} {:>8} {:>7} {:>8}  {:<6}  last seen",
        "client", "blocked", "users", "lockouts", "spray"
    );
    for s in &r.top_blocked_sources {
        let _ = writeln!(
            out,
            "  {:<40} {:>8} {:>7} {:>8}  {:<6}  {}",
            s.client_ip,
            s.blocked,
            s.distinct_users,
            s.lockouts,
            if s.spray_suspect { "yes" } else { "no" },
            s.last_seen
        );
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The report as CSV: one header, a `section` column telling the three tables apart.
pub fn csv(r: &Report) -> String {
    let mut out = String::from(
        "section,user,protocol,scheme,policy,client_ip,count,allowed,blocked,report_only,first_seen,last_seen,user_agents,client_ips\n",
    );
    for u in &r.legacy {
        let fields = [
            "legacy",
            &u.user,
            &u.protocol,
            &u.scheme,
            "",
            "",
            &u.count.to_string(),
            &u.allowed.to_string(),
            &u.blocked.to_string(),
            &u.report_only.to_string(),
            &u.first_seen,
            &u.last_seen,
            &joined(&u.user_agents),
            &joined(&u.client_ips),
        ];
        let _ = writeln!(out, "{}", fields.map(csv_field).join(","));
    }
    for w in &r.would_block {
        let count = w.count.to_string();
        let fields = [
            "would_block",
            &w.user,
            &w.protocol,
            "",
            &w.policy,
            "",
            &count,
            "",
            "",
            &count,
            "",
            &w.last_seen,
            "",
            "",
        ];
        let _ = writeln!(out, "{}", fields.map(csv_field).join(","));
    }
    for s in &r.top_blocked_sources {
        let blocked = s.blocked.to_string();
        let fields = [
            "blocked_source",
            "",
            "",
            "",
            "",
            &s.client_ip,
            &blocked,
            "",
            &blocked,
            "",
            "",
            &s.last_seen,
            "",
            "",
        ];
        let _ = writeln!(out, "{}", fields.map(csv_field).join(","));
    }
    out
}
