//! Audit log, report-only, smart lockout, spray detection, `exgate report`, and a real
//! Prometheus scraping exgate.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::support::*;

const CONFIG: &str = "[exchange]\ndeployment = \"online\"\n[policy]\nscript = \"policies.ps1\"\n[audit]\npath = \"audit/exgate.jsonl\"\n[[users]]\nupn = \"user01@contoso.com\"\nsam = \"CONTOSO\\\\user01\"\n[[users]]\nupn = \"user02@contoso.com\"\n";

const PILOT: &str = "New-AuthenticationPolicy Pilot\nSet-User user01 -AuthenticationPolicy Pilot\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_blocked_request_produces_exactly_one_audit_line_without_secrets() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(CONFIG, PILOT, &[upstream.url()]).await;
    let mut secrets = Vec::new();
    // (path, scheme, reason, policy): Exchange Online never offers NTLM.
    let cases = [
        (
            "/mapi/emsmdb/?MailboxId=a@contoso.com",
            "basic",
            "legacy_blocked",
            "Pilot",
        ),
        (
            "/EWS/Exchange.asmx?token=querysecret",
            "ntlm",
            "legacy_not_offered",
            "",
        ),
        (
            "/Microsoft-Server-ActiveSync?Cmd=Sync",
            "basic",
            "legacy_blocked",
            "Pilot",
        ),
    ];
    for (i, (path, kind, _, _)) in cases.iter().enumerate() {
        let password = format!("Secret-{i}-7c1f9e");
        let header = match *kind {
            "basic" => basic("user01@contoso.com", &password),
            _ => ntlm_type3("NTLM", "CONTOSO", "user01"),
        };
        secrets.push(password.clone());
        secrets.push(STANDARD.encode(format!("user01@contoso.com:{password}")));
        let mut c = gate.client().await;
        let r = c
            .get(path, &[("authorization", &header), ("user-agent", "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"), ("cookie", "session=cookiesecret")])
            .await;
        assert_eq!(r.status, 401);
    }
    // Allowed and anonymous requests: the anonymous one writes nothing.
    let mut c = gate.client().await;
    assert_eq!(
        c.get(
            "/mapi/",
            &[("authorization", &basic("user02@contoso.com", "pw2"))]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        c.get("/autodiscover/autodiscover.json?Email=x@contoso.com", &[])
            .await
            .status,
        200
    );

    let lines = audit_lines(&gate, 4).await;
    assert_eq!(
        lines.len(),
        4,
        "three blocked + one with credentials; none for anonymous: {lines:#?}"
    );
    let blocked: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["decision"] == "block").collect();
    assert_eq!(blocked.len(), 3);
    for (line, (path, kind, reason, policy)) in blocked.iter().zip(cases) {
        for field in [
            "ts",
            "request_id",
            "client_ip",
            "method",
            "path",
            "protocol",
            "client_app",
            "scheme",
            "user",
            "policy",
            "decision",
            "reason",
            "status",
            "upstream_status",
            "duration_ms",
            "user_agent",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        assert_eq!(
            line["path"],
            path.split('?').next().unwrap(),
            "no query in the audit log"
        );
        assert_eq!(line["scheme"], kind);
        assert_eq!(line["status"], 401);
        assert!(line["upstream_status"].is_null());
        assert_eq!(line["reason"], reason);
        if policy.is_empty() {
            assert!(line["policy"].is_null());
        } else {
            assert_eq!(line["policy"], policy);
        }
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert!(
            line["user"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("user01")
        );
    }
    assert_eq!(blocked[0]["client_app"], "MAPI over HTTP");
    assert_eq!(blocked[1]["client_app"], "Exchange Web Services");
    let ids: std::collections::HashSet<&str> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "request ids are unique");
    let allowed = lines.iter().find(|l| l["decision"] == "allow").unwrap();
    assert_eq!(allowed["upstream_status"], 200);
    let text = std::fs::read_to_string(
        gate.running
            .config_path()
            .with_file_name("audit/exgate.jsonl"),
    )
    .unwrap();
    for secret in secrets
        .iter()
        .map(String::as_str)
        .chain(["cookiesecret", "querysecret", "pw2"])
    {
        assert!(!text.contains(secret), "the audit log contains {secret}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_only_forwards_and_records() {
    let upstream = Upstream::start().await;
    let script = format!("{PILOT}Set-AuthenticationPolicy Pilot -ReportOnly\n");
    let gate = Exgate::start(CONFIG, &script, &[upstream.url()]).await;
    let mut c = gate.client().await;
    let r = c
        .get(
            "/mapi/",
            &[("authorization", &basic("user01@contoso.com", "pw"))],
        )
        .await;
    assert_eq!(r.status, 200, "forwarded");
    assert_eq!(upstream.requests().len(), 1);
    let lines = audit_lines(&gate, 1).await;
    assert_eq!(lines[0]["decision"], "report_only");
    assert_eq!(lines[0]["reason"], "legacy_blocked");
    assert_eq!(lines[0]["upstream_status"], 200);
    let metrics = gate.metrics().await;
    assert!(metrics.contains(r#"exgate_legacy_auth_attempts_total{action="report_only",protocol="Mapi",scheme="basic"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_engages_after_the_threshold_and_keeps_the_password_from_exchange() {
    let upstream = Upstream::start().await;
    let toml = format!("{CONFIG}[lockout]\nthreshold = 3\nobservation_window_seconds = 1\n");
    let gate = Exgate::start(&toml, "", &[upstream.url()]).await;
    let attempt = |password: &'static str| {
        let addr = gate.addr();
        async move {
            let mut c = Client::connect(addr).await;
            c.get(
                "/EWS/Exchange.asmx",
                &[("authorization", &basic("user02@contoso.com", password))],
            )
            .await
            .status
        }
    };
    // Threshold 3: three bad passwords reach Exchange, the fourth attempt does not.
    for _ in 0..3 {
        assert_eq!(
            attempt("wrong-guess").await,
            401,
            "Exchange refuses the bad password"
        );
    }
    assert_eq!(upstream.requests().len(), 3);
    // Locked out: even the right password is answered at the edge.
    assert_eq!(attempt("right-password").await, 401);
    assert_eq!(
        upstream.requests().len(),
        3,
        "the password never reached Exchange"
    );
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains(r#"exgate_lockouts_total{location="unknown"} 1"#),
        "{metrics}"
    );
    // The window passes; the lockout releases.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(attempt("right-password").await, 200);
    let lines = audit_lines(&gate, 6).await;
    let events: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["event"] == "lockout").collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["location"], "unknown");
    assert!(lines.iter().any(|l| l["reason"] == "locked_out"));
}

/// A burst of parallel bad passwords (red team: 29 of 50 reached Exchange with a
/// threshold of 3): attempts in flight count against the threshold, so at most three
/// reach Exchange; the rest are answered 401 (locked out) or 503 with `Retry-After`
/// (wait for an attempt in flight), never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_parallel_bad_passwords_reaches_exchange_at_most_threshold_times() {
    let upstream = Upstream::start().await;
    let toml = format!("{CONFIG}[lockout]\nthreshold = 3\n");
    let gate = Exgate::start(&toml, "", &[upstream.url()]).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(gate.client().await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let r = c
                    .get(
                        "/EWS/Exchange.asmx",
                        &[("authorization", &basic("race@contoso.com", "wrong-guess"))],
                    )
                    .await;
                (r.status, r.header("retry-after").map(str::to_owned))
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(
        upstream.requests().len() <= 3,
        "{} reached Exchange",
        upstream.requests().len()
    );
    for (status, retry_after) in &statuses {
        match status {
            401 => {}
            503 => assert_eq!(retry_after.as_deref(), Some("1")),
            other => panic!("{other}"),
        }
    }
    // Once answered, the three failures lock the user: the next attempt is refused 401.
    let mut c = gate.client().await;
    let r = c
        .get(
            "/EWS/Exchange.asmx",
            &[("authorization", &basic("race@contoso.com", "wrong-guess"))],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(upstream.requests().len() <= 3);
}

/// A 200 to a resource Exchange answers without checking the password (a health-check
/// page) is no proof of a right password: it neither clears the count nor makes the
/// address familiar (red team: wrong passwords alternated with health-check requests
/// reached Exchange without end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_resource_s_200_does_not_clear_the_lockout_count() {
    let upstream = Upstream::start().await;
    let toml = format!("{CONFIG}[lockout]\nthreshold = 3\n");
    let gate = Exgate::start(&toml, "", &[upstream.url()]).await;
    let wrong = basic("user02@contoso.com", "wrong-guess");
    for _ in 0..5 {
        for target in [
            "/EWS/Exchange.asmx",
            "/EWS/healthcheck.htm",
            "/ews/HealthCheck.htm/",
        ] {
            let mut c = gate.client().await;
            c.get(target, &[("authorization", &wrong)]).await;
        }
    }
    let to_ews = upstream
        .requests()
        .iter()
        .filter(|r| r.target.contains("Exchange.asmx"))
        .count();
    assert_eq!(to_ews, 3, "three bad passwords, then locked out");
}

/// `lockout.mode = "log-only"` (AD FS's `AdfsSmartLockoutLogOnly`): the lockout is
/// counted, metered and audited, and every attempt still reaches Exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_only_lockout_is_recorded_and_refuses_nothing() {
    let upstream = Upstream::start().await;
    let toml = format!("{CONFIG}[lockout]\nthreshold = 2\nmode = \"log-only\"\n");
    let gate = Exgate::start(&toml, "", &[upstream.url()]).await;
    for _ in 0..4 {
        let mut c = gate.client().await;
        let status = c
            .get(
                "/EWS/Exchange.asmx",
                &[("authorization", &basic("user02@contoso.com", "wrong-guess"))],
            )
            .await
            .status;
        assert_eq!(status, 401, "Exchange's own 401");
    }
    assert_eq!(upstream.requests().len(), 4, "nothing refused at the edge");
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains(r#"exgate_lockouts_total{location="unknown"} 1"#),
        "{metrics}"
    );
    let lines = audit_lines(&gate, 5).await;
    assert_eq!(lines.iter().filter(|l| l["event"] == "lockout").count(), 1);
    assert!(!lines.iter().any(|l| l["reason"] == "locked_out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spray_of_fifty_usernames_is_flagged_and_one_users_retries_are_not() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(CONFIG, "", &[upstream.url()]).await;
    let mut c = gate.client().await;
    for i in 0..50 {
        let user = format!("victim{i:02}@contoso.com");
        c.get(
            "/EWS/Exchange.asmx",
            &[("authorization", &basic(&user, "wrong-Spring2026!"))],
        )
        .await;
    }
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains("exgate_spray_suspects_total 1"),
        "{metrics}"
    );
    let lines = audit_lines(&gate, 51).await;
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["event"] == "spray_suspect")
            .count(),
        1
    );

    let gate = Exgate::start(CONFIG, "", &[upstream.url()]).await;
    let mut c = gate.client().await;
    for _ in 0..50 {
        c.get(
            "/EWS/Exchange.asmx",
            &[("authorization", &basic("user02@contoso.com", "pw"))],
        )
        .await;
    }
    assert!(
        gate.metrics()
            .await
            .contains("exgate_spray_suspects_total 0")
    );
}

#[test]
fn report_counts_a_hundred_thousand_lines_correctly() {
    // A deterministic mix; the expected counts are tallied here, independently.
    let users = [
        "user01@contoso.com",
        "CONTOSO\\user02",
        "user03@contoso.com",
        "svc-scanner",
        "user05@contoso.com",
    ];
    let protocols = [
        "Mapi",
        "WebServices",
        "ActiveSync",
        "Autodiscover",
        "OfflineAddressBook",
    ];
    let schemes = ["basic", "ntlm", "negotiate_ntlm", "bearer"];
    let decisions = ["allow", "block", "report_only"];
    let mut expected: HashMap<(String, String, String), (u64, u64)> = HashMap::new();
    let mut text = String::with_capacity(100_000 * 260);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..100_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (u, p, s, d) = (
            users[(x % 5) as usize],
            protocols[((x >> 8) % 5) as usize],
            schemes[((x >> 16) % 4) as usize],
            decisions[((x >> 24) % 3) as usize],
        );
        let legacy = s != "bearer";
        if legacy {
            let e = expected
                .entry((u.to_owned(), p.to_owned(), s.to_owned()))
                .or_default();
            e.0 += 1;
            if d == "block" {
                e.1 += 1;
            }
        }
        let line = serde_json::json!({
            "ts": exgate::audit::format_timestamp(1_795_000_000 + i, 0),
            "request_id": format!("r-{i}"),
            "client_ip": format!("198.51.100.{}", (x >> 32) % 50),
            "method": "POST", "path": "/x", "protocol": p, "client_app": "c",
            "scheme": s, "user": u, "policy": "BlockLegacyOutlookAuth", "decision": d,
            "reason": "legacy_blocked", "status": 401, "upstream_status": null,
            "duration_ms": 0.2, "user_agent": "Outlook", "legacy": legacy,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let dir = scratch();
    let path = dir.join("audit.jsonl");
    std::fs::write(&path, text).unwrap();
    let started = std::time::Instant::now();
    let out = exgate(&["report", arg(&path), "--format", "json"]);
    eprintln!("exgate report: 100,000 lines in {:?}", started.elapsed());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::support::text(&out.stderr)
    );
    let report: exgate::report::Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.lines, 100_000);
    assert_eq!(report.legacy.len(), expected.len());
    for row in &report.legacy {
        let (count, blocked) =
            expected[&(row.user.clone(), row.protocol.clone(), row.scheme.clone())];
        assert_eq!(
            (row.count, row.blocked),
            (count, blocked),
            "{} {} {}",
            row.user,
            row.protocol,
            row.scheme
        );
        assert!(row.first_seen <= row.last_seen);
    }
    for format in ["table", "csv"] {
        let out = exgate(&["report", arg(&path), "--format", format]);
        assert_eq!(out.status.code(), Some(0));
        assert!(crate::support::text(&out.stdout).contains("svc-scanner"));
    }
}
