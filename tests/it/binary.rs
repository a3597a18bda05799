//! The real `exgate serve` process: memory while streaming, SIGHUP, and what it writes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::support::*;

const CONFIG: &str = "[exchange]\ndeployment = \"online\"\n[policy]\nscript = \"policies.ps1\"\n[[users]]\nupn = \"user01@contoso.com\"\nsam = \"CONTOSO\\\\user01\"\n[[users]]\nupn = \"user02@contoso.com\"\n";

/// user01 is blocked on MAPI and EWS; user02 has no policy.
const PILOT: &str = "New-AuthenticationPolicy Pilot\nSet-User user01 -AuthenticationPolicy Pilot\n";

fn setup(upstream: &Upstream, script: &str) -> std::path::PathBuf {
    write_files(&[
        ("exgate.toml", &config_text(CONFIG, &[upstream.url()], "")),
        ("policies.ps1", script),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_rpc_in_data_body_streams_without_growing_memory() {
    let upstream = Upstream::start().await;
    let dir = setup(&upstream, "");
    let exgate = Spawned::start(&dir, "warn");
    let mut c = Client::connect(exgate.proxy).await;
    // Warm up: connection pools, allocator arenas, first-request paths.
    for _ in 0..3 {
        let r = c
            .send(
                "POST",
                "/rpc/rpcproxy.dll?x:6001",
                &[],
                full(vec![0u8; 256 << 10]),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let baseline = exgate.memory_kib("VmRSS");
    let total: u64 = 64 << 20;
    let reply = c
        .send(
            "RPC_IN_DATA",
            "/rpc/rpcproxy.dll?mbx@contoso.com:6001",
            &[("content-length", &total.to_string())],
            http_body_util::BodyExt::boxed(Generated::new(total)),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let seen = upstream.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.body_len),
        ("RPC_IN_DATA", total)
    );
    let peak = exgate.memory_kib("VmHWM");
    let growth_kib = peak.saturating_sub(baseline);
    eprintln!("exgate RSS baseline {baseline} KiB, peak {peak} KiB, growth {growth_kib} KiB");
    assert!(
        growth_kib < 8 * 1024,
        "exgate grew by {growth_kib} KiB while streaming 64 MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_script_keeps_the_old_policy() {
    let upstream = Upstream::start().await;
    let dir = setup(&upstream, PILOT);
    let exgate = Spawned::start(&dir, "info");
    let status = |user: &'static str| {
        let addr = exgate.proxy;
        async move {
            let mut c = Client::connect(addr).await;
            c.get("/mapi/emsmdb", &[("authorization", &basic(user, "pw"))])
                .await
                .status
        }
    };
    assert_eq!((status("user01").await, status("user02").await), (401, 200));

    let wait_for = |needle: &'static str| {
        let exgate = &exgate;
        async move {
            for _ in 0..200 {
                if exgate.metrics().await.contains(needle) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            panic!("never saw {needle}");
        }
    };

    std::fs::write(
        dir.join("policies.ps1"),
        "New-AuthenticationPolicy Pilot -BlockLegacyAuthMapi\n",
    )
    .unwrap();
    exgate.signal("HUP");
    wait_for(r#"exgate_config_reloads_total{result="failure"} 1"#).await;
    assert_eq!(
        (status("user01").await, status("user02").await),
        (401, 200),
        "the old policy still serves"
    );

    std::fs::write(
        dir.join("policies.ps1"),
        "New-AuthenticationPolicy Pilot\nSet-User user02 -AuthenticationPolicy Pilot\n",
    )
    .unwrap();
    exgate.signal("HUP");
    wait_for(r#"exgate_config_reloads_total{result="success"} 1"#).await;
    assert_eq!(
        (status("user01").await, status("user02").await),
        (200, 401),
        "the new policy serves"
    );

    let output = exgate.stop();
    assert!(output.contains("configuration reload rejected"), "{output}");
    assert!(
        output.contains("BlockLegacyAuthMapi"),
        "the log names the error: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_appear_in_logs_or_metrics() {
    let upstream = Upstream::start().await;
    let dir = setup(&upstream, PILOT);
    let exgate = Spawned::start(&dir, "trace");
    let mut secrets = Vec::new();
    for (i, (user, path)) in [
        ("user01@contoso.com", "/mapi/emsmdb"),    // blocked
        ("CONTOSO\\user01", "/EWS/Exchange.asmx"), // blocked
        ("user02@contoso.com", "/mapi/emsmdb"),    // allowed: forwarded
        ("nobody", "/custom/path"),                // other path: blocked
        ("user02@contoso.com", "/owa/"),           // not governed: forwarded
    ]
    .into_iter()
    .enumerate()
    {
        let password = format!("Pw{i}-9f4e2b7c-{}", "x".repeat(i + 3));
        let header = basic(user, &password);
        let mut c = Client::connect(exgate.proxy).await;
        let reply = c.get(path, &[("authorization", &header)]).await;
        assert!(
            reply.status == 200 || reply.status == 401,
            "{path}: {}",
            reply.status
        );
        assert!(!String::from_utf8_lossy(&reply.body).contains(&password));
        secrets.push(password.clone());
        secrets.push(STANDARD.encode(format!("{user}:{password}")));
    }
    let metrics = exgate.metrics().await;
    let output = exgate.stop();
    assert!(
        output.len() > 1000,
        "trace logging produced too little to be a real check: {output}"
    );
    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "the log contains {secret}"
        );
        assert!(
            !metrics.contains(secret.as_str()),
            "the metrics contain {secret}"
        );
    }
    assert!(
        upstream.requests().len() == 2,
        "only the allowed requests were forwarded"
    );
}

/// `server.listen_backlog` sizes the accept queue (SPEC §7): what `ss` shows as the
/// listening socket's Send-Q. The default is 4096 (capped by `net.core.somaxconn`).
#[test]
fn the_accept_queue_is_as_long_as_configured() {
    let send_q = |port: u16| -> u32 {
        let out = std::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2)");
        let line = text(&out.stdout);
        line.split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("no listening socket on {port}: {line}"))
            .parse()
            .unwrap()
    };
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for (extra, want) in [
        ("listen_backlog = 777", 777.min(somaxconn)),
        ("", 4096.min(somaxconn)),
    ] {
        let dir = write_files(&[
            (
                "exgate.toml",
                &config_text(CONFIG, &["http://127.0.0.1:9".into()], extra),
            ),
            ("policies.ps1", ""),
        ]);
        let exgate = Spawned::start(&dir, "warn");
        assert_eq!(send_q(exgate.proxy.port()), want, "{extra:?}");
        exgate.stop();
    }
    let dir = write_files(&[
        (
            "exgate.toml",
            &config_text(CONFIG, &["http://127.0.0.1:9".into()], "listen_backlog = 0"),
        ),
        ("policies.ps1", ""),
    ]);
    let out = exgate(&["validate", "--config", arg(&dir.join("exgate.toml"))]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("server.listen_backlog"),
        "{}",
        text(&out.stderr)
    );
}

/// SIGHUP's default action ends a process: exgate installs its handler before it loads
/// anything, so a reload sent while it starts (`systemctl start` then `reload`) is a
/// reload, not a kill.
#[test]
fn sighup_while_starting_does_not_kill_exgate() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    // 5,000 declared users make the start take long enough to hit it on purpose.
    let users: String = (0..5_000)
        .map(|i| format!("[[users]]\nupn = \"u{i}@contoso.com\"\n"))
        .collect();
    let config = config_text(
        &format!("{CONFIG}{users}"),
        &["http://127.0.0.1:9".into()],
        "",
    );
    let dir = write_files(&[("exgate.toml", &config), ("policies.ps1", PILOT)]);
    let mut sent_while_starting = 0;
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_exgate"))
            .args(["serve", "--config", arg(&dir.join("exgate.toml"))])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // As soon as the process catches SIGHUP, send it again and again until it serves.
        let caught = || {
            proc_status_field(pid, "SigCgt")
                .and_then(|mask| u64::from_str_radix(&mask, 16).ok())
                .is_some_and(|mask| mask & 1 != 0)
        };
        let started = std::time::Instant::now();
        while !caught() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "SIGHUP never caught"
            );
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let listening = loop {
            let _ = Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status();
            if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(2)) {
                break line;
            }
            sent_while_starting += 1;
            assert!(
                child.try_wait().unwrap().is_none(),
                "SIGHUP killed exgate while it started"
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "never listened"
            );
        };
        assert!(listening.starts_with("exgate listening"), "{listening}");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(child.try_wait().unwrap().is_none(), "SIGHUP killed exgate");
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        assert!(child.wait().unwrap().success());
    }
    // The handler was there before exgate listened: SIGHUPs arrived while it started.
    assert!(
        sent_while_starting > 0,
        "no SIGHUP was sent before exgate listened"
    );
}

/// At start exgate raises its open-file soft limit to the hard limit (SPEC §7): under
/// `prlimit --nofile=1024:8192` (the shape of a default systemd unit) it runs with 8192.
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = write_files(&[
        (
            "exgate.toml",
            &config_text(CONFIG, &["http://127.0.0.1:9".into()], ""),
        ),
        ("policies.ps1", ""),
    ]);
    let mut child = Command::new("prlimit")
        .args([
            "--nofile=1024:8192",
            env!("CARGO_BIN_EXE_exgate"),
            "serve",
            "--config",
        ])
        .arg(dir.join("exgate.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit (util-linux)");
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert!(line.starts_with("exgate listening"), "{line}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&open_files[3..5], ["8192", "8192"], "{limits}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}
