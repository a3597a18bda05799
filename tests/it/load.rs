//! `exgate load` against the lab: the counts add up, the caps hold, and only loopback
//! targets are accepted.

use std::time::Duration;

use exgate::lab::{LabOptions, Scenario, current_signing_key};
use exgate::load::{DEFAULT_MIX, LoadOptions, loopback_target, parse_mix, run};

use crate::support::*;

async fn lab() -> (exgate::lab::Lab, std::path::PathBuf) {
    let dir = scratch();
    let lab = exgate::lab::start(LabOptions {
        scenario: Scenario::OnpremCa,
        dir: dir.clone(),
        port: 0,
        console_port: 0,
    })
    .await
    .unwrap();
    (lab, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mix_runs_for_a_few_seconds_and_the_counts_add_up() {
    let (lab, dir) = lab().await;
    let options = LoadOptions {
        target: loopback_target(&lab.info.proxy)
            .unwrap()
            .trusting(&lab.info.ca)
            .unwrap(),
        duration: Duration::from_secs(2),
        max_requests: 1_000_000,
        concurrency: 4,
        mix: parse_mix(DEFAULT_MIX).unwrap(),
        progress: false,
    };
    let key = current_signing_key(&dir).unwrap();
    let report = run(options, &key, Scenario::OnpremCa).await.unwrap();
    assert!(report.total > 100, "{report}");
    assert!(report.elapsed_seconds < 10.0);
    let sum: u64 = report.classes.iter().map(|c| c.count).sum();
    assert_eq!(sum, report.total);
    assert_eq!(report.classes.len(), 6, "every class ran: {report}");
    for c in &report.classes {
        assert_eq!(
            c.statuses.values().sum::<u64>() + c.errors,
            c.count,
            "{}",
            c.class
        );
        assert_eq!(c.errors, 0, "{report}");
    }
    let class = |name: &str| report.classes.iter().find(|c| c.class == name).unwrap();
    assert_eq!(
        class("bearer-mfa").statuses.keys().collect::<Vec<_>>(),
        [&200]
    );
    assert_eq!(
        class("bearer-no-mfa").statuses.keys().collect::<Vec<_>>(),
        [&401]
    );
    assert_eq!(
        class("ntlm").statuses.keys().collect::<Vec<_>>(),
        [&200],
        "NTLMv2 handshakes complete"
    );
    assert!(
        class("basic").statuses.contains_key(&401),
        "the pilot user's Basic is blocked"
    );
    assert!(class("basic").statuses.contains_key(&200));
    // The spray is seen by exgate.
    let mut admin = Client::connect(lab.running.admin_addr).await;
    let metrics = String::from_utf8(admin.get("/metrics", &[]).await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("exgate_spray_suspects_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_cap_is_exact() {
    let (lab, dir) = lab().await;
    let options = LoadOptions {
        target: loopback_target(&lab.info.proxy)
            .unwrap()
            .trusting(&lab.info.ca)
            .unwrap(),
        duration: Duration::from_secs(30),
        max_requests: 500,
        concurrency: 8,
        mix: parse_mix("bearer-mfa=1,basic=1").unwrap(),
        progress: false,
    };
    let key = current_signing_key(&dir).unwrap();
    let report = run(options, &key, Scenario::OnpremCa).await.unwrap();
    assert_eq!(report.total, 500);
}

/// `exgate load --requests N` through the binary: every progress line counts units
/// finished out of N and never passes it (it once printed 20004 for 20000), the last
/// one says N, and the report agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_line_never_passes_the_request_bound() {
    let (lab, dir) = lab().await;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_exgate"))
            .args(["load", "--dir", arg(&dir), "--requests", "400"])
            .args(["--concurrency", "8", "--duration-seconds", "60"])
            .args(["--mix", "bearer-mfa=1,basic=1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let progress: Vec<(u64, u64)> = stderr
        .split(['\r', '\n'])
        .filter_map(|l| {
            let (done, rest) = l.trim().split_once('/')?;
            let (cap, _) = rest.split_once(" units done")?;
            Some((done.parse().ok()?, cap.parse().ok()?))
        })
        .collect();
    assert!(!progress.is_empty(), "{stderr}");
    for (done, cap) in &progress {
        assert_eq!(*cap, 400, "{stderr}");
        assert!(done <= cap, "{stderr}");
    }
    assert_eq!(progress.last(), Some(&(400, 400)), "{stderr}");
    assert!(
        text(&out.stdout).starts_with("400 units in "),
        "{}",
        text(&out.stdout)
    );
    drop(lab);
}

#[test]
fn only_loopback_targets_are_accepted() {
    assert!(loopback_target("http://127.0.0.1:8443").is_ok());
    assert!(loopback_target("http://127.1.2.3:8443").is_ok());
    assert!(loopback_target("http://[::1]:8443").is_ok());
    assert!(loopback_target("http://localhost:8443").is_ok());
    assert!(loopback_target("https://localhost:8443").is_ok());
    for url in [
        "http://10.0.0.1:80",
        "http://192.168.1.1",
        "http://93.184.216.34",
        "ftp://127.0.0.1",
        "http://example.com",
    ] {
        assert!(loopback_target(url).is_err(), "{url}");
    }
    let out = exgate(&[
        "load",
        "--target",
        "http://10.1.2.3:8443",
        "--duration-seconds",
        "1",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("loopback"),
        "{}",
        text(&out.stderr)
    );
    assert!(parse_mix("bearer-mfa=1,nope=2").is_err());
}
