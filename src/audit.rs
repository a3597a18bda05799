//! The audit log (SPEC §8): one JSON line per request that carried credentials or was
//! blocked ([`AuditRecord`]), and one per lockout or spray event ([`AuditEvent`]). Lines
//! are handed to a writer task over a bounded channel, so the request path never waits
//! on the disk; when the writer falls behind, lines are dropped and counted rather than
//! slowing requests. Size-based rotation keeps `path`, `path.1` … `path.N` (`path.N` the
//! oldest). Never a password, token or cookie.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::policy::{Directory, Lookup, UserId};

/// Lines queued for the writer before new ones are dropped.
const QUEUE_LINES: usize = 65_536;

/// Where audit lines go and how the files rotate (`[audit]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// Whether there is an audit log at all (`audit.path` is set).
    pub enabled: bool,
    /// A file, or None for standard output.
    pub path: Option<PathBuf>,
    pub max_file_bytes: u64,
    pub max_files: u32,
}

/// One request's audit line. Field names are SPEC §8's; `presented_user` and `legacy`
/// are exgate's additions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    pub ts: String,
    pub request_id: String,
    pub client_ip: String,
    pub method: String,
    /// The path without its query (queries can carry e-mail addresses and tokens).
    pub path: String,
    pub protocol: String,
    pub client_app: String,
    pub scheme: String,
    /// Who: the directory identity (the declared user's UPN) when the name the request
    /// presented belongs to a declared user, else the name as presented (see
    /// [`user_names`]).
    pub user: Option<String>,
    /// The name as the request presented it, when it differs from `user`
    /// (`CONTOSO\user02` for `user02@contoso.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presented_user: Option<String>,
    pub policy: Option<String>,
    pub decision: String,
    pub reason: String,
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub duration_ms: f64,
    pub user_agent: Option<String>,
    /// The attempt used legacy authentication.
    #[serde(default)]
    pub legacy: bool,
}

/// A lockout or spray event's audit line: no request fields (method, path, status, …),
/// because it describes a user or an address, not one request.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    pub ts: String,
    /// `lockout` or `spray_suspect`.
    pub event: String,
    pub request_id: String,
    pub client_ip: String,
    /// The user locked out, or the name that made the address a spray suspect; the
    /// directory identity when known, as in [`AuditRecord::user`].
    pub user: Option<String>,
    /// The name as presented, when it differs from `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presented_user: Option<String>,
    /// Events are about legacy sign-ins: always true.
    pub legacy: bool,
    /// A lockout's location: `familiar` or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// The names an audit line gives a request's user: `user`, the directory identity (the
/// declared user's UPN) when `known` is set or the presented name belongs to a declared
/// user, else the name as presented; and `presented_user`, the name as presented when
/// it differs from `user`. So `user02@contoso.com` and `CONTOSO\user02` are one user in
/// `exgate report`. `known` must be an id of `directory` (the snapshot that decided).
pub fn user_names(
    directory: &Directory,
    known: Option<UserId>,
    presented: Option<&str>,
) -> (Option<String>, Option<String>) {
    let id = known.or_else(|| match directory.lookup(presented?) {
        Lookup::Found(id) => Some(id),
        Lookup::Unknown | Lookup::Ambiguous => None,
    });
    let upn = id.map(|id| directory.user(id).upn.as_str());
    match (upn, presented) {
        (Some(upn), Some(presented)) if upn != presented => {
            (Some(upn.to_owned()), Some(presented.to_owned()))
        }
        (Some(upn), _) => (Some(upn.to_owned()), None),
        (None, presented) => (presented.map(str::to_owned), None),
    }
}

/// The audit log's front end: cheap to call from the request path.
pub struct AuditLog {
    tx: mpsc::Sender<String>,
    next_id: AtomicU64,
    id_prefix: String,
    metrics: Arc<Metrics>,
}

impl AuditLog {
    /// Starts the writer task (on the current tokio runtime).
    pub fn start(config: AuditConfig, metrics: Arc<Metrics>) -> std::io::Result<AuditLog> {
        let (tx, rx) = mpsc::channel(QUEUE_LINES);
        let sink = Sink::open(config)?;
        tokio::spawn(sink.run(rx));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Ok(AuditLog {
            tx,
            next_id: AtomicU64::new(1),
            id_prefix: format!("{:08x}", nanos ^ std::process::id()),
            metrics,
        })
    }

    /// A new request id, unique within this process and distinct across restarts.
    pub fn request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.id_prefix)
    }

    /// Queues a line (an [`AuditRecord`] or an [`AuditEvent`]); never waits.
    pub fn write(&self, record: &impl Serialize) {
        let Ok(mut line) = serde_json::to_string(record) else {
            return;
        };
        line.push('\n');
        if self.tx.try_send(line).is_err() {
            self.metrics.record_audit_dropped();
        }
    }
}

struct Sink {
    config: AuditConfig,
    file: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
}

impl Sink {
    fn open(config: AuditConfig) -> std::io::Result<Sink> {
        let (file, written) = match &config.path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                let len = f.metadata()?.len();
                (Some(std::io::BufWriter::new(f)), len)
            }
            None => (None, 0),
        };
        Ok(Sink {
            config,
            file,
            written,
        })
    }

    async fn run(mut self, mut rx: mpsc::Receiver<String>) {
        while let Some(line) = rx.recv().await {
            self.write(&line);
            // Drain what is queued, then flush once.
            while let Ok(line) = rx.try_recv() {
                self.write(&line);
            }
            self.flush();
        }
        self.flush();
    }

    fn write(&mut self, line: &str) {
        match &mut self.file {
            None => {
                let _ = std::io::stdout().write_all(line.as_bytes());
            }
            Some(f) => {
                if f.write_all(line.as_bytes()).is_err() {
                    tracing::warn!("audit log write failed");
                }
                self.written += line.len() as u64;
                if self.written >= self.config.max_file_bytes {
                    self.rotate();
                }
            }
        }
    }

    fn flush(&mut self) {
        match &mut self.file {
            Some(f) => {
                let _ = f.flush();
            }
            None => {
                let _ = std::io::stdout().flush();
            }
        }
    }

    /// `path` → `path.1` → … → `path.N` (the oldest is dropped), then a fresh `path`.
    fn rotate(&mut self) {
        let Some(path) = self.config.path.clone() else {
            return;
        };
        self.flush();
        self.file = None;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        let keep = self.config.max_files.max(1);
        let _ = std::fs::remove_file(numbered(keep));
        for n in (1..keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        let _ = std::fs::rename(&path, numbered(1));
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(f) => self.file = Some(std::io::BufWriter::new(f)),
            Err(e) => tracing::warn!(error = %e, path = %path.display(), "audit log cannot reopen"),
        }
        self.written = 0;
    }
}

/// Now as RFC 3339 UTC with milliseconds (`2026-11-25T09:43:10.123Z`).
pub fn timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_timestamp(d.as_secs(), d.subsec_millis())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days-from-civil, the inverse of [`civil_from_days`]). Used for Kerberos times
/// (`kerberos::ticket`) and the report's timeline.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01 (Howard
/// Hinnant's civil-from-days). Also used for Kerberos times (`kerberos::build`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Formats Unix seconds and milliseconds as RFC 3339 UTC.
pub fn format_timestamp(secs: u64, millis: u32) -> String {
    let (year, month, day) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(format_timestamp(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_timestamp(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(
            format_timestamp(1_795_599_790, 123),
            "2026-11-25T09:43:10.123Z"
        );
    }

    fn directory() -> Directory {
        let user = |upn: &str, sam: &str, aliases: &[&str]| crate::policy::UserEntry {
            upn: upn.into(),
            sam: Some(sam.into()),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        };
        Directory::new(vec![
            user("user01@contoso.com", "CONTOSO\\user01", &[]),
            user(
                "user02@contoso.com",
                "CONTOSO\\user02",
                &["old02@fabrikam.com"],
            ),
        ])
        .unwrap()
    }

    #[test]
    fn a_known_user_is_named_by_their_upn_and_the_presented_name_is_kept() {
        let d = directory();
        let names = |presented| user_names(&d, None, presented);
        let both = |user: &str, presented: &str| (Some(user.into()), Some(presented.into()));
        assert_eq!(
            names(Some("user02@contoso.com")),
            (Some("user02@contoso.com".into()), None)
        );
        assert_eq!(
            names(Some("CONTOSO\\user02")),
            both("user02@contoso.com", "CONTOSO\\user02")
        );
        assert_eq!(
            names(Some("USER02@Contoso.com")),
            both("user02@contoso.com", "USER02@Contoso.com")
        );
        assert_eq!(
            names(Some("old02@fabrikam.com")),
            both("user02@contoso.com", "old02@fabrikam.com")
        );
        // Nobody declared has the name: as presented, once.
        assert_eq!(
            names(Some("victim07@contoso.com")),
            (Some("victim07@contoso.com".into()), None)
        );
        assert_eq!(names(None), (None, None));
        // The decision's user wins over a lookup (a ticket's principal, a token's upn).
        assert_eq!(
            user_names(&d, Some(UserId(0)), Some("user01@CONTOSO.COM")),
            both("user01@contoso.com", "user01@CONTOSO.COM")
        );
        assert_eq!(
            user_names(&d, Some(UserId(1)), None),
            (Some("user02@contoso.com".into()), None)
        );
    }

    #[test]
    fn event_lines_carry_no_request_fields() {
        let event = AuditEvent {
            ts: format_timestamp(0, 0),
            event: "lockout".into(),
            request_id: "r-1".into(),
            client_ip: "203.0.113.5".into(),
            user: Some("user02@contoso.com".into()),
            presented_user: None,
            legacy: true,
            location: Some("unknown".into()),
        };
        let line: serde_json::Value = serde_json::to_value(&event).unwrap();
        let mut keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "client_ip",
                "event",
                "legacy",
                "location",
                "request_id",
                "ts",
                "user"
            ]
        );
        // A request line keeps every field, null or not, and names no presented user
        // when there is none to add.
        let line = serde_json::to_value(AuditRecord::default()).unwrap();
        for field in [
            "method",
            "path",
            "protocol",
            "status",
            "user",
            "policy",
            "upstream_status",
        ] {
            assert!(line.get(field).is_some(), "{field}: {line}");
        }
        assert!(line.get("presented_user").is_none(), "{line}");
        assert!(line.get("event").is_none(), "{line}");
    }

    #[tokio::test]
    async fn lines_are_written_and_rotated_by_size() {
        let dir = std::env::temp_dir().join(format!("exgate-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("audit.jsonl");
        let config = AuditConfig {
            enabled: true,
            path: Some(path.clone()),
            max_file_bytes: 2_000,
            max_files: 2,
        };
        let log = AuditLog::start(config, Arc::new(Metrics::new())).unwrap();
        let record = AuditRecord {
            ts: timestamp(),
            request_id: log.request_id(),
            decision: "block".into(),
            ..AuditRecord::default()
        };
        for _ in 0..100 {
            log.write(&record);
        }
        drop(log);
        // The writer drains and flushes when the sender is gone.
        for _ in 0..100 {
            if std::fs::metadata(dir.join("audit.jsonl.2")).is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(std::fs::metadata(dir.join("audit.jsonl.1")).is_ok());
        assert!(
            std::fs::metadata(dir.join("audit.jsonl.3")).is_err(),
            "only max_files are kept"
        );
        let current = std::fs::read_to_string(&path).unwrap();
        for line in current.lines() {
            let r: AuditRecord = serde_json::from_str(line).unwrap();
            assert_eq!(r.decision, "block");
        }
        assert!(std::fs::metadata(&path).unwrap().len() < 2_000 + 400);
    }
}
