//! `exgate report --format html`: the report as one self-contained HTML5 page for the
//! people who must answer for legacy authentication — who still uses it, on which
//! protocol, and whether it is going down. No script, no external asset, readable
//! offline; every string from the log is escaped ([`Esc`]), and a Content-Security-Policy
//! that allows no script, no fetch and no image stands behind the escaping.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use crate::report::Report;

mod chart;
mod sections;

/// The page's policy: nothing but its own inline style. No script or connection may
/// run even if a string escaped the escaping.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// The page's style: dark text on white (17:1), table borders and grid at least 3:1,
/// marks white on dark red and dark purple (8:1 and 9:1).
const STYLE: &str = "\
:root{color:#1a1a1a;background:#ffffff;font:15px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}
body{margin:0 auto;max-width:96rem;padding:1rem 1.5rem 3rem}
h1{font-size:1.6rem;margin:.5rem 0}
h2{font-size:1.25rem;margin:2.2rem 0 .6rem;padding-bottom:.2rem;border-bottom:2px solid #1a1a1a}
dl.totals{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;margin:1rem 0}
dl.totals dt{font-weight:600}
dl.totals dd{margin:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.4rem 0}
caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border:1px solid #8c8c8c;padding:.3rem .5rem;text-align:left;vertical-align:top}
thead th{background:#e8e8e8}
tbody th{font-weight:normal}
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.mark{display:inline-block;margin:.1rem 0;padding:0 .4rem;border-radius:.25rem;font-weight:600;color:#ffffff}
.lockout{background:#9e1c1c}
.spray{background:#5c2d91}
tr.empty td{font-style:italic;color:#4a4a4a}
ul.list{margin:0;padding-left:1rem}
ul.inline{list-style:none;margin:0;padding:0}
ul.inline li{display:inline;white-space:nowrap}
ul.inline li:not(:last-child)::after{content:\",\"}
.t{white-space:nowrap}
code,.wrap{overflow-wrap:anywhere}
.wrap{min-width:12em}
p.note{color:#4a4a4a}
svg{max-width:100%;height:auto}
svg text{font:12px system-ui,sans-serif;fill:#1a1a1a}
svg .grid{stroke:#d0d0d0}
svg .axis{stroke:#1a1a1a}
";

/// Text for HTML: `&`, `<`, `>`, `"` and `'` as character references, so the result is
/// safe in text and in a double- or single-quoted attribute, in HTML and in inline SVG;
/// control characters and non-characters (parse errors in HTML) as U+FFFD.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) =
            rest.find(|c: char| matches!(c, '&' | '<' | '>' | '"' | '\'') || is_forbidden(c))
        {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or('\u{FFFD}');
            f.write_str(match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => "\u{FFFD}",
            })?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// A character HTML calls a parse error in the input: a control other than tab, line
/// feed and carriage return, or a non-character.
fn is_forbidden(c: char) -> bool {
    let u = u32::from(c);
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        || (0xFDD0..=0xFDEF).contains(&u)
        || (u & 0xFFFE) == 0xFFFE
}

/// The report as one HTML5 page (UTF-8, no trailing newline).
///
/// Sections, in order: a header (`<dl id="totals">`, `<ul id="files">`), the chart of
/// legacy attempts over time (inline SVG, when there is a dated one) and its data
/// table `#timeline`, then `#legacy-users`, `#would-block` and `#sources`. Every string
/// from the log is escaped; there is no `<script>` and the Content-Security-Policy
/// ([`CONTENT_SECURITY_POLICY`]) forbids any.
///
/// The DOM carries the report's numbers for machines: each data row is a `<tr>` whose
/// `data-*` attributes are the JSON fields of `exgate report --format json` (the same
/// [`Report`]) with `_` written `-` (`data-report-only` is `report_only`; in a
/// browser, `tr.dataset.reportOnly`). Values are the JSON values as text (numbers in
/// decimal, `true`/`false`). Rows come in the JSON arrays' order; a row without
/// `data-*` attributes is a message ("nobody"), not data.
/// - `#totals` (the `<dl>`): `data-lines`, `data-unreadable-lines`, `data-files` (how
///   many), `data-legacy-attempts` (sum of the legacy rows' `count`), `data-blocked`,
///   `data-allowed`, `data-report-only` (sums of the rows' fields), `data-users`
///   (distinct `user` of the legacy rows), `data-undated` (`timeline.undated`),
///   `data-first-ts`, `data-last-ts`, `data-bucket-seconds`.
/// - `#files li`: `data-file`, one per `files` entry.
/// - `#timeline tr`: `data-bucket` (`timeline.buckets[i]`), `data-protocol`
///   (`series.protocol`), `data-count`, `data-blocked`, `data-allowed`,
///   `data-report-only` (`series.*[i]`); bucket order, then series order; a bucket in
///   which a protocol had no attempt has no row.
/// - `#legacy-users tr` (`legacy[]`): `data-user`, `data-protocol`, `data-scheme`,
///   `data-count`, `data-allowed`, `data-blocked`, `data-report-only`,
///   `data-first-seen`, `data-last-seen`.
/// - `#would-block tr` (`would_block[]`): `data-user`, `data-protocol`, `data-policy`,
///   `data-count`, `data-last-seen`.
/// - `#sources tr` (`top_blocked_sources[]`): `data-client-ip`, `data-blocked`,
///   `data-distinct-users`, `data-lockouts`, `data-spray-suspect`, `data-last-seen`.
pub fn html(r: &Report) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>exgate report: legacy authentication</title>\n<style>\n{STYLE}</style>\n\
         </head>\n<body>\n"
    );
    header(&mut out, r);
    out.push_str("<main>\n");
    sections::timeline(&mut out, &r.timeline);
    sections::legacy_users(&mut out, r);
    sections::would_block(&mut out, r);
    sections::sources(&mut out, r);
    out.push_str("</main>\n</body>\n</html>");
    out
}

/// The title, the files read, the time span and the totals.
fn header(out: &mut String, r: &Report) {
    let sum = |f: fn(&super::LegacyUse) -> u64| r.legacy.iter().map(f).sum::<u64>();
    let attempts = sum(|u| u.count);
    let users: BTreeSet<&str> = r.legacy.iter().map(|u| u.user.as_str()).collect();
    let t = &r.timeline;
    let _ = writeln!(
        out,
        "<header>\n<h1>Legacy authentication: who still uses it</h1>\n<dl class=\"totals\" id=\"totals\" data-lines=\"{}\" data-unreadable-lines=\"{}\" data-files=\"{}\" data-legacy-attempts=\"{attempts}\" data-blocked=\"{}\" data-allowed=\"{}\" data-report-only=\"{}\" data-users=\"{}\" data-undated=\"{}\" data-first-ts=\"{}\" data-last-ts=\"{}\" data-bucket-seconds=\"{}\">",
        r.lines,
        r.unreadable_lines,
        r.files.len(),
        sum(|u| u.blocked),
        sum(|u| u.allowed),
        sum(|u| u.report_only),
        users.len(),
        t.undated,
        Esc(&t.first_ts),
        Esc(&t.last_ts),
        t.bucket_seconds,
    );
    let _ = writeln!(
        out,
        "<dt>Files read</dt><dd><ul class=\"list\" id=\"files\">"
    );
    for file in &r.files {
        let _ = writeln!(
            out,
            "<li data-file=\"{0}\"><code>{0}</code></li>",
            Esc(file)
        );
    }
    if r.files.is_empty() {
        let _ = writeln!(out, "<li>none named</li>");
    }
    let _ = writeln!(out, "</ul></dd>");
    let span = match (t.first_ts.is_empty(), t.last_ts.is_empty()) {
        (false, false) => format!("{} to {} (UTC)", Esc(&t.first_ts), Esc(&t.last_ts)),
        _ => "no line with a readable time".to_owned(),
    };
    let _ = writeln!(out, "<dt>Time span</dt><dd>{span}</dd>");
    let _ = writeln!(
        out,
        "<dt>Audit lines</dt><dd>{} read, {} unreadable</dd>",
        r.lines, r.unreadable_lines
    );
    let _ = writeln!(
        out,
        "<dt>Legacy attempts</dt><dd>{attempts}: {} blocked, {} allowed, {} report-only</dd>",
        sum(|u| u.blocked),
        sum(|u| u.allowed),
        sum(|u| u.report_only)
    );
    let _ = writeln!(
        out,
        "<dt>Users on legacy authentication</dt><dd>{} ({} user, protocol and scheme rows)</dd>",
        users.len(),
        r.legacy.len()
    );
    let would: u64 = r.would_block.iter().map(|w| w.count).sum();
    let _ = writeln!(
        out,
        "<dt>Report-only policies would block</dt><dd>{would} attempts</dd>"
    );
    let lockouts: u64 = r.top_blocked_sources.iter().map(|s| s.lockouts).sum();
    let sprays = r
        .top_blocked_sources
        .iter()
        .filter(|s| s.spray_suspect)
        .count();
    let _ = writeln!(
        out,
        "<dt>Top sources of blocked attempts</dt><dd>{} shown; lockouts: {lockouts}; spray suspects: {sprays}</dd>\n</dl>",
        r.top_blocked_sources.len()
    );
    if r.lines == 0 {
        let _ = writeln!(
            out,
            "<p><strong>Nothing to report: the audit logs hold no line.</strong></p>"
        );
    }
    let _ = writeln!(
        out,
        "<nav aria-label=\"Sections\"><ul class=\"list\"><li><a href=\"#h-timeline\">Legacy attempts over time</a></li><li><a href=\"#h-legacy-users\">Users still on legacy authentication</a></li><li><a href=\"#h-would-block\">What report-only policies would block</a></li><li><a href=\"#h-sources\">Top sources of blocked attempts</a></li></ul></nav>\n</header>"
    );
}

/// Opens a section headed `heading`, with the id `h-{id}`.
fn open_section(out: &mut String, id: &str, heading: &str) {
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"h-{id}\">\n<h2 id=\"h-{id}\">{heading}</h2>"
    );
}

/// Opens a table with its caption and column headers; columns named with a leading
/// `#` hold numbers.
fn open_table(out: &mut String, id: &str, caption: &str, columns: &[&str]) {
    let _ = writeln!(
        out,
        "<div class=\"scroll\">\n<table id=\"{id}\">\n<caption>{caption}</caption>\n<thead><tr>"
    );
    for column in columns {
        let _ = match column.strip_prefix('#') {
            Some(name) => write!(out, "<th scope=\"col\" class=\"n\">{name}</th>"),
            None => write!(out, "<th scope=\"col\">{column}</th>"),
        };
    }
    out.push_str("</tr></thead>\n<tbody>\n");
}

/// Closes what [`open_table`] and [`open_section`] opened; with no data row, one row
/// saying `empty`.
fn close_table(out: &mut String, rows: usize, columns: usize, empty: &str) {
    if rows == 0 {
        let _ = writeln!(
            out,
            "<tr class=\"empty\"><td colspan=\"{columns}\">{empty}</td></tr>"
        );
    }
    out.push_str("</tbody>\n</table>\n</div>\n</section>\n");
}

/// A list cell: one item per value, in a `<ul>` of `class`.
fn list_cell(class: &str, values: &BTreeSet<String>) -> String {
    let mut cell = format!("<td><ul class=\"{class}\">");
    // A space between items: where an inline list may wrap.
    for v in values {
        let _ = write!(cell, "<li>{}</li> ", Esc(v));
    }
    cell.push_str("</ul></td>");
    cell
}

#[cfg(test)]
mod tests;
