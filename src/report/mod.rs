//! `exgate report AUDIT.jsonl…`: the readiness list an operator reads before enforcing —
//! who still uses legacy authentication, per protocol and scheme; what report-only
//! policies would block; and where blocked attempts come from. Each audit log given is
//! read with its rotated files (`path.N` … `path.1`, then `path`: oldest first). Its
//! formats: text tables and CSV (`text`), JSON (serde), and one HTML page with a chart
//! of legacy attempts over time (`html`, drawn from the `timeline`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use serde::{Deserialize, Serialize};

mod html;
mod text;
mod timeline;

pub use html::{CONTENT_SECURITY_POLICY, html};
pub use text::{csv, table};
use timeline::{Action, TimelineBuilder};
pub use timeline::{Series, Timeline};

/// Distinct user agents and addresses kept per row.
const KEEP_DISTINCT: usize = 10;
/// Rows in the top-sources table.
const TOP_SOURCES: usize = 20;

/// The fields of an audit line the report reads; anything else is ignored.
#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    ts: String,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    client_ip: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    scheme: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    legacy: bool,
}

/// Legacy use by one user of one protocol with one scheme.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LegacyUse {
    pub user: String,
    pub protocol: String,
    pub scheme: String,
    pub count: u64,
    pub allowed: u64,
    pub blocked: u64,
    pub report_only: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub user_agents: BTreeSet<String>,
    pub client_ips: BTreeSet<String>,
}

/// What a report-only policy would have blocked.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WouldBlock {
    pub user: String,
    pub protocol: String,
    pub policy: String,
    pub count: u64,
    pub last_seen: String,
}

/// A source of blocked attempts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Source {
    pub client_ip: String,
    pub blocked: u64,
    pub distinct_users: usize,
    pub lockouts: u64,
    pub spray_suspect: bool,
    pub last_seen: String,
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    /// The files read, in the order read (each log's rotated files oldest first).
    #[serde(default)]
    pub files: Vec<String>,
    pub lines: u64,
    pub unreadable_lines: u64,
    pub legacy: Vec<LegacyUse>,
    pub would_block: Vec<WouldBlock>,
    pub top_blocked_sources: Vec<Source>,
    /// Legacy attempts per protocol per time bucket, and the span of the log.
    #[serde(default)]
    pub timeline: Timeline,
}

#[derive(Default)]
struct SourceAcc {
    blocked: u64,
    users: HashSet<String>,
    lockouts: u64,
    spray: bool,
    last_seen: String,
}

fn seen(first: &mut String, last: &mut String, ts: &str) {
    if first.is_empty() || ts < first.as_str() {
        *first = ts.to_owned();
    }
    if ts > last.as_str() {
        *last = ts.to_owned();
    }
}

/// Reads audit lines and builds the report. Unreadable lines are counted, not fatal.
pub fn build(input: impl BufRead) -> std::io::Result<Report> {
    let mut builder = Builder::default();
    builder.read(input)?;
    Ok(builder.finish())
}

/// Builds the report over every audit log in `paths`, each with its rotated files
/// ([`rotated_files`]); a file named twice (a log and its `.1` both given, or a shell
/// glob) is read once. Every file is opened before any is read, so a rotation while
/// the report runs cannot make it read a line twice or skip a file it listed.
pub fn build_files(paths: &[PathBuf]) -> anyhow::Result<Report> {
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for path in paths {
        for file in rotated_files(path)? {
            let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            if !seen.insert(key) {
                continue;
            }
            let opened = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            files.push((file, opened));
        }
    }
    let mut builder = Builder::default();
    for (path, file) in files {
        builder
            .read(std::io::BufReader::new(file))
            .with_context(|| format!("reading {}", path.display()))?;
        builder.report.files.push(path.display().to_string());
    }
    Ok(builder.finish())
}

/// An audit log and the files its rotation keeps, oldest first: `path.N` … `path.1`
/// (every `path.<number>` beside it, whatever `audit.max_files` was when they were
/// written), then `path`. `path` itself must exist.
pub fn rotated_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::metadata(path).with_context(|| format!("opening {}", path.display()))?;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(vec![path.to_owned()]);
    };
    let listed = match dir.as_os_str().is_empty() {
        true => Path::new("."),
        false => dir,
    };
    let mut numbered: Vec<(u64, PathBuf)> = std::fs::read_dir(listed)
        .with_context(|| format!("listing {}", listed.display()))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let file_name = entry.file_name();
            let n = file_name
                .to_str()?
                .strip_prefix(name)?
                .strip_prefix('.')
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))?
                .parse()
                .ok()?;
            Some((n, dir.join(file_name)))
        })
        .collect();
    numbered.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut files: Vec<PathBuf> = numbered.into_iter().map(|(_, p)| p).collect();
    files.push(path.to_owned());
    Ok(files)
}

/// `exgate report`: the report over `paths` (each with its rotated files) on standard
/// output as a table, JSON, CSV or one HTML page ([`html`]). A reader that stops early
/// (`| head`) ends the report quietly with status 0, as `cat` and `grep` do under a
/// shell that ignores their SIGPIPE status; any other write error is an error.
pub fn run(paths: &[PathBuf], format: &str) -> anyhow::Result<ExitCode> {
    let report = build_files(paths)?;
    let mut text = match format {
        "json" => serde_json::to_string_pretty(&report)?,
        "csv" => csv(&report),
        "html" => html(&report),
        _ => table(&report),
    };
    text.push('\n');
    write_quietly(&mut std::io::stdout().lock(), text.as_bytes()).context("writing the report")?;
    Ok(ExitCode::SUCCESS)
}

/// Writes and flushes `bytes`; a closed pipe (EPIPE) is not an error: whoever reads
/// has had what they wanted.
fn write_quietly(out: &mut impl std::io::Write, bytes: &[u8]) -> std::io::Result<()> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The report under construction: reads any number of audit files.
#[derive(Default)]
struct Builder {
    report: Report,
    legacy: HashMap<(String, String, String), LegacyUse>,
    would: HashMap<(String, String, String), WouldBlock>,
    sources: HashMap<String, SourceAcc>,
    timeline: TimelineBuilder,
}

impl Builder {
    /// Reads audit lines. Unreadable lines are counted, not fatal.
    fn read(&mut self, input: impl BufRead) -> std::io::Result<()> {
        let report = &mut self.report;
        let (legacy, would, sources) = (&mut self.legacy, &mut self.would, &mut self.sources);
        let timeline = &mut self.timeline;
        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            report.lines += 1;
            let Ok(l) = serde_json::from_str::<Line>(&line) else {
                report.unreadable_lines += 1;
                continue;
            };
            timeline.saw(&l.ts);
            let user = l.user.clone().unwrap_or_else(|| "(unidentified)".into());
            match l.event.as_deref() {
                Some("lockout") => {
                    sources.entry(l.client_ip.clone()).or_default().lockouts += 1;
                    continue;
                }
                Some("spray_suspect") => {
                    sources.entry(l.client_ip.clone()).or_default().spray = true;
                    continue;
                }
                Some(_) => continue,
                None => {}
            }
            if l.legacy {
                let key = (user.clone(), l.protocol.clone(), l.scheme.clone());
                let row = legacy.entry(key).or_insert_with(|| LegacyUse {
                    user: user.clone(),
                    protocol: l.protocol.clone(),
                    scheme: l.scheme.clone(),
                    ..LegacyUse::default()
                });
                row.count += 1;
                let action = Action::of(&l.decision);
                match action {
                    Action::Allowed => row.allowed += 1,
                    Action::ReportOnly => row.report_only += 1,
                    Action::Blocked => row.blocked += 1,
                }
                timeline.attempt(&l.protocol, &l.ts, action);
                seen(&mut row.first_seen, &mut row.last_seen, &l.ts);
                if let Some(ua) = &l.user_agent
                    && row.user_agents.len() < KEEP_DISTINCT
                {
                    row.user_agents.insert(ua.clone());
                }
                if row.client_ips.len() < KEEP_DISTINCT {
                    row.client_ips.insert(l.client_ip.clone());
                }
            }
            if l.decision == "report_only" {
                let policy = l
                    .policy
                    .clone()
                    .unwrap_or_else(|| "(global report-only)".into());
                let key = (user.clone(), l.protocol.clone(), policy.clone());
                let row = would.entry(key).or_insert_with(|| WouldBlock {
                    user: user.clone(),
                    protocol: l.protocol.clone(),
                    policy,
                    ..WouldBlock::default()
                });
                row.count += 1;
                if l.ts > row.last_seen {
                    row.last_seen = l.ts.clone();
                }
            }
            if l.decision == "block" {
                let s = sources.entry(l.client_ip.clone()).or_default();
                s.blocked += 1;
                // Distinct names: an attempt that named nobody adds none.
                if let Some(user) = l.user
                    && s.users.len() < 10_000
                {
                    s.users.insert(user);
                }
                if l.ts > s.last_seen {
                    s.last_seen = l.ts.clone();
                }
            }
        }
        Ok(())
    }

    /// The report: rows sorted, top sources cut to the first 20, the timeline bucketed.
    fn finish(self) -> Report {
        let Builder {
            mut report,
            legacy,
            would,
            sources,
            timeline,
        } = self;
        report.timeline = timeline.finish();
        report.legacy = legacy.into_values().collect();
        report.legacy.sort_by(|a, b| {
            b.count.cmp(&a.count).then_with(|| {
                (&a.user, &a.protocol, &a.scheme).cmp(&(&b.user, &b.protocol, &b.scheme))
            })
        });
        report.would_block = would.into_values().collect();
        // Ties in full key order: the rows come out of a HashMap, and two runs (the JSON
        // and the HTML a browser test compares) must list them alike.
        report.would_block.sort_by(|a, b| {
            b.count.cmp(&a.count).then_with(|| {
                (&a.user, &a.protocol, &a.policy).cmp(&(&b.user, &b.protocol, &b.policy))
            })
        });
        let mut top: Vec<Source> = sources
            .into_iter()
            .filter(|(_, s)| s.blocked > 0 || s.lockouts > 0 || s.spray)
            .map(|(ip, s)| Source {
                client_ip: ip,
                blocked: s.blocked,
                distinct_users: s.users.len(),
                lockouts: s.lockouts,
                spray_suspect: s.spray,
                last_seen: s.last_seen,
            })
            .collect();
        top.sort_by(|a, b| {
            b.blocked
                .cmp(&a.blocked)
                .then_with(|| a.client_ip.cmp(&b.client_ip))
        });
        top.truncate(TOP_SOURCES);
        report.top_blocked_sources = top;
        report
    }
}

#[cfg(test)]
mod tests;
