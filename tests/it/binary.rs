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
