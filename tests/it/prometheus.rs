//! The deploy/ files against exgate's real metric names, and a real Prometheus server
//! scraping a running exgate on loopback (needs Debian's `prometheus` package, which
//! `.ci/run` installs; run with `cargo test --test it -- --ignored`).

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// Every metric exgate exports (`a_dashboard_panel_shows_every_metric_exgate_exports`
/// checks this list against a live `/metrics`).
const METRICS: [&str; 20] = [
    exgate::metrics::REQUESTS_TOTAL,
    exgate::metrics::LEGACY_AUTH_ATTEMPTS_TOTAL,
    exgate::metrics::TOKEN_VALIDATIONS_TOTAL,
    exgate::metrics::JWKS_REFRESHES_TOTAL,
    exgate::metrics::CONFIG_RELOADS_TOTAL,
    exgate::metrics::REQUEST_DURATION_SECONDS,
    exgate::metrics::UPSTREAM_REQUESTS_TOTAL,
    exgate::metrics::UPSTREAM_ERRORS_TOTAL,
    exgate::metrics::CLIENT_ERRORS_TOTAL,
    exgate::metrics::OVERLOAD_TOTAL,
    exgate::metrics::KERBEROS_TICKETS_TOTAL,
    exgate::metrics::CLIENT_CONNECTIONS,
    exgate::metrics::CLIENT_CONNECTIONS_LIMIT,
    exgate::metrics::UPSTREAM_HEALTHY,
    exgate::metrics::LOCKOUTS_TOTAL,
    exgate::metrics::SPRAY_SUSPECTS_TOTAL,
    exgate::metrics::QUICK_REFUSALS_TOTAL,
    exgate::metrics::AUDIT_LINES_DROPPED_TOTAL,
    exgate::metrics::CLUSTER_ERRORS_TOTAL,
    exgate::metrics::CLUSTER_POLICY_VERSION,
];

fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("exgate_") {
        let start = i + at;
        let end = start
            + bytes[start..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
        let name = &text[start..end];
        let name = name.strip_suffix("_bucket").unwrap_or(name);
        names.insert(name.to_owned());
        i = end;
    }
    names
}

#[test]
fn rules_and_dashboard_use_only_metrics_exgate_exports() {
    for file in [
        "deploy/prometheus/exgate-rules.yml",
        "deploy/grafana/exgate.json",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let names = referenced(&text);
        assert!(names.len() >= 5, "{file}: {names:?}");
        for name in names {
            assert!(
                METRICS.contains(&name.as_str()),
                "{file} uses {name}, which exgate does not export"
            );
        }
    }
}

/// The metric families in a `/metrics` text (from its `# TYPE` lines).
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_panel_shows_every_metric_exgate_exports() {
    // Active health checks on (exgate_upstream_healthy), and one legacy request, so that
    // the series created at the first request exist too.
    let upstream = Upstream::start().await;
    let gate = Exgate::start(
        "health_check_interval_seconds = 60\n[exchange]\ndeployment = \"online\"\n[policy]\nscript = \"policies.ps1\"\n",
        "",
        &[upstream.url()],
    )
    .await;
    let mut c = gate.client().await;
    let status = c
        .get(
            "/mapi/",
            &[("authorization", &basic("user01@contoso.com", "pw"))],
        )
        .await
        .status;
    assert_eq!(status, 200);
    let mut live = BTreeSet::new();
    for _ in 0..100 {
        live = exported(&gate.metrics().await);
        if live.contains(exgate::metrics::UPSTREAM_HEALTHY) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listed: BTreeSet<String> = METRICS.iter().map(|m| m.to_string()).collect();
    assert_eq!(live, listed, "the live /metrics and METRICS differ");

    let text = std::fs::read_to_string(repo().join("deploy/grafana/exgate.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut on_panels = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            on_panels.extend(referenced(target["expr"].as_str().unwrap()));
        }
    }
    let missing: Vec<&String> = live.difference(&on_panels).collect();
    assert!(
        missing.is_empty(),
        "no dashboard panel shows {missing:?} (the README says every metric)"
    );
    // The instance variable reads a series that exists from the start.
    let instances = dashboard["templating"]["list"][1]["query"]
        .as_str()
        .unwrap();
    assert!(
        instances.contains(exgate::metrics::CLIENT_CONNECTIONS_LIMIT),
        "{instances}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's prometheus package; .ci/run installs it and runs this test"]
async fn a_real_prometheus_scrapes_exgate() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(
        "[exchange]\ndeployment = \"online\"\n[policy]\nscript = \"policies.ps1\"\n",
        "New-AuthenticationPolicy P\nSet-OrganizationConfig -DefaultAuthenticationPolicy P\n",
        &[upstream.url()],
    )
    .await;
    let mut c = gate.client().await;
    c.get(
        "/mapi/",
        &[("authorization", &basic("user01@contoso.com", "pw"))],
    )
    .await;

    let dir = scratch();
    let port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: exgate\n    static_configs:\n      - targets: ['{}']\n",
            gate.running.admin_addr
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed (apt-get install prometheus)");
    let query = "/api/v1/query?query=exgate_requests_total";
    let mut found = String::new();
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            continue;
        };
        let mut client = Client::handshake(hyper_util::rt::TokioIo::new(stream)).await;
        let Ok(reply) = client
            .send("GET", query, &[], full(bytes::Bytes::new()))
            .await
        else {
            continue;
        };
        found = String::from_utf8_lossy(&reply.body).into_owned();
        if found.contains("\"decision\":\"block\"") {
            break;
        }
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert!(
        found.contains("\"__name__\":\"exgate_requests_total\""),
        "{found}"
    );
    assert!(found.contains("\"protocol\":\"Mapi\""), "{found}");
    assert!(found.contains("\"decision\":\"block\""), "{found}");
}
