//! The proxy in process, in front of a recording upstream on loopback.

use crate::support::*;

const ONLINE: &str = "[exchange]\ndeployment = \"online\"\n[policy]\nscript = \"policies.ps1\"\n[[users]]\nupn = \"user01@contoso.com\"\nsam = \"CONTOSO\\\\user01\"\n[[users]]\nupn = \"user02@contoso.com\"\nsam = \"CONTOSO\\\\user02\"\n";

fn onprem() -> String {
    ONLINE.replace("\"online\"", "\"onpremises\"")
}

/// Online: a new policy blocks Basic everywhere; it is the organization default.
const BLOCK_ALL_ONLINE: &str = "New-AuthenticationPolicy BlockAll\nSet-OrganizationConfig -DefaultAuthenticationPolicy BlockAll\n";

const BLOCK_ALL_ONPREM: &str = "New-AuthenticationPolicy BlockAll -BlockLegacyAuthActiveSync -BlockLegacyAuthAutodiscover -BlockLegacyAuthImap -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthPop -BlockLegacyAuthRpc -BlockLegacyAuthWebServices\nSet-OrganizationConfig -DefaultAuthenticationPolicy BlockAll\n";

fn assert_blocked(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}");
    assert_eq!(reply.all("www-authenticate"), [BEARER_CHALLENGE], "{what}");
    assert!(reply.body.is_empty(), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_legacy_never_reaches_upstream_online() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, BLOCK_ALL_ONLINE, &[upstream.url()]).await;
    for (protocol, path) in PROTOCOL_PATHS {
        for auth in [
            basic("user01@contoso.com", "Summer2026!"),
            ntlm_type1("NTLM"),
            ntlm_type3("NTLM", "CONTOSO", "user01"),
            ntlm_type1("Negotiate"),
            kerberos(),
        ] {
            let mut c = gate.client().await;
            let reply = c.get(path, &[("authorization", &auth)]).await;
            assert_blocked(&reply, &format!("{protocol} {}", &auth[..12]));
        }
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_legacy_never_reaches_upstream_on_premises() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(&onprem(), BLOCK_ALL_ONPREM, &[upstream.url()]).await;
    // The eight protocols with on-premises switches.
    for (protocol, path) in PROTOCOL_PATHS.iter().take(6) {
        for auth in [
            basic("CONTOSO\\user02", "Winter2026!"),
            ntlm_type1("NTLM"),
            ntlm_type3("NTLM", "CONTOSO", "user01"),
            ntlm_type1("Negotiate"),
            ntlm_type3("Negotiate", "", "user02@contoso.com"),
            kerberos(),
            "Digest username=\"user01\", realm=\"x\"".to_owned(),
        ] {
            let mut c = gate.client().await;
            let reply = c.get(path, &[("authorization", &auth)]).await;
            assert_blocked(&reply, &format!("{protocol} {}", &auth[..12]));
        }
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    let metrics = gate.metrics().await;
    assert!(metrics.contains(r#"exgate_legacy_auth_attempts_total{action="blocked",protocol="Mapi",scheme="basic"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_requests_arrive_byte_identical_with_the_right_headers() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let body: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(7919) >> 3) as u8)
        .collect();
    let mut c = gate.client().await;
    for (i, (_, path)) in PROTOCOL_PATHS.iter().enumerate() {
        let reply = c
            .send(
                "POST",
                path,
                &[
                    ("authorization", &basic("user01@contoso.com", "pw")),
                    ("content-type", "application/mapi-http"),
                    ("x-requesttype", "Execute"),
                    ("x-forwarded-for", "203.0.113.9"),
                    ("connection", "keep-alive, x-hop"),
                    ("x-hop", "drop me"),
                    ("keep-alive", "timeout=5"),
                    ("te", "trailers"),
                    ("proxy-authorization", "Basic cHJveHk6cHc="),
                ],
                full(body.clone()),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{path}");
        let seen = upstream.requests();
        let r = &seen[i];
        assert_eq!(r.target, *path, "the original target is forwarded");
        assert_eq!(r.body, body, "{path}: body differs");
        let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(h("host").as_deref(), Some("mail.contoso.com"));
        assert_eq!(h("x-requesttype").as_deref(), Some("Execute"));
        assert_eq!(
            h("x-forwarded-for").as_deref(),
            Some("203.0.113.9, 127.0.0.1")
        );
        assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(
            h("authorization").as_deref(),
            Some(basic("user01@contoso.com", "pw").as_str())
        );
        for hop in ["x-hop", "keep-alive", "te", "proxy-authorization"] {
            assert_eq!(h(hop), None, "{hop} must not be forwarded");
        }
        assert_eq!(
            reply.body,
            format!("upstream saw POST {path} on connection 0").as_bytes()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_type3_arrives_on_the_connection_of_its_type1() {
    let upstream = Upstream::start().await;
    // user02 is blocked on MAPI; user01 is not.
    let script = "New-AuthenticationPolicy Pilot -BlockLegacyAuthMapi\nSet-User user02 -AuthenticationPolicy Pilot\n";
    let gate = Exgate::start(&onprem(), script, &[upstream.url()]).await;
    let path = "/mapi/emsmdb/?MailboxId=0@contoso.com";
    let handshake = |user: &'static str, scheme: &'static str| {
        let addr = gate.addr();
        async move {
            // Each client marks its requests, to check no upstream connection mixes them.
            let me = [("x-test-client", user)];
            let mut c = Client::connect(addr).await;
            let anon = c
                .get("/autodiscover/autodiscover.json?Protocol=x", &me)
                .await;
            assert_eq!(anon.status, 200);
            let t1 = c
                .get(path, &[("authorization", &ntlm_type1(scheme)), me[0]])
                .await;
            assert_eq!(t1.status, 401);
            assert!(t1.header("www-authenticate").unwrap().starts_with(scheme));
            assert_eq!(
                t1.header("proxy-support"),
                Some("Session-Based-Authentication")
            );
            let t3 = c
                .get(
                    path,
                    &[
                        ("authorization", &ntlm_type3(scheme, "CONTOSO", user)),
                        me[0],
                    ],
                )
                .await;
            (t1, t3, c)
        }
    };
    let ((a1, a3, _ca), (b1, b3, cb)) = tokio::join!(
        handshake("user01", "NTLM"),
        handshake("user02", "Negotiate")
    );
    assert_eq!(a3.status, 200, "user01 is allowed");
    assert_blocked(&b3, "user02's Type 3");
    // exchangelib reads `Connection: close` on a 401 as "server busy" and retries.
    assert_eq!(b3.header("connection"), None);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !cb.is_closed(),
        "a blocked Type 3 keeps the client connection"
    );

    let a_conn = a1.header("x-upstream-connection").unwrap();
    let b_conn = b1.header("x-upstream-connection").unwrap();
    assert_ne!(a_conn, b_conn, "two clients, two upstream connections");
    assert_eq!(
        a3.header("x-upstream-connection"),
        Some(a_conn),
        "Type 3 on its Type 1's connection"
    );
    // Upstream saw A's Type 1 and Type 3 and B's Type 1 only, and no upstream connection
    // ever carried requests of both clients.
    let seen = upstream.requests();
    let auths = seen
        .iter()
        .filter(|r| r.headers.contains_key("authorization"))
        .count();
    assert_eq!(auths, 3, "{seen:?}");
    let mut owner: std::collections::HashMap<usize, String> = Default::default();
    for r in &seen {
        let client = r.headers["x-test-client"].to_str().unwrap().to_owned();
        let first = owner.entry(r.connection).or_insert_with(|| client.clone());
        assert_eq!(
            *first, client,
            "upstream connection {} was shared",
            r.connection
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_type1_is_refused_at_once_when_everyone_is_blocked() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(&onprem(), BLOCK_ALL_ONPREM, &[upstream.url()]).await;
    let mut c = gate.client().await;
    let reply = c
        .get(
            "/rpc/rpcproxy.dll?x:6001",
            &[("authorization", &ntlm_type1("NTLM"))],
        )
        .await;
    assert_blocked(&reply, "Type 1");
    assert!(upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_exgate_refuses_get_the_spec_responses() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, BLOCK_ALL_ONLINE, &[upstream.url()]).await;
    let mut c = gate.client().await;
    let probe = c
        .get("/EWS/Exchange.asmx", &[("authorization", "Bearer")])
        .await;
    assert_blocked(&probe, "Bearer probe");
    for target in [
        "/mapi/%2e%2e/%2e%2e/x",
        "/autodiscover/autodiscover.json?@x/mapi/nspi",
        "/ews%00/",
    ] {
        let mut c = gate.client().await;
        let r = c.get(target, &[]).await;
        assert_eq!(r.status, 400, "{target}");
    }
    let mut c = gate.client().await;
    let two = c
        .get(
            "/ews/",
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
        )
        .await;
    assert_eq!(two.status, 400);
    assert!(upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_challenges_are_removed_from_anonymous_401s_when_the_default_blocks() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, BLOCK_ALL_ONLINE, &[upstream.url()]).await;
    let mut c = gate.client().await;
    let reply = c.get("/EWS/challenge", &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.all("www-authenticate"), [BEARER_CHALLENGE]);
    // OWA is not governed: its challenges pass untouched.
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let mut c = gate.client().await;
    let reply = c.get("/EWS/challenge", &[]).await;
    assert_eq!(reply.all("www-authenticate").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_upstream_servers_down_still_serves_every_request() {
    let upstream = Upstream::start().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gate = Exgate::start(ONLINE, "", &[format!("http://{dead}"), upstream.url()]).await;
    for i in 0..20 {
        let mut c = gate.client().await;
        let reply = c.get(&format!("/ews/{i}"), &[]).await;
        assert_eq!(reply.status, 200, "request {i}");
    }
    // Once ejected, the dead server is skipped for requests with bodies too.
    let mut c = gate.client().await;
    let reply = c
        .send("POST", "/ews/", &[], full(vec![1u8; 1000]))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.requests().len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_upstream_servers_down_is_502_then_503() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gate = Exgate::start(ONLINE, "", &[format!("http://{dead}")]).await;
    let mut c = gate.client().await;
    assert_eq!(c.get("/ews/", &[]).await.status, 502);
    let mut c = gate.client().await;
    assert_eq!(c.get("/ews/", &[]).await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_in_data_starts_flowing_before_the_body_is_complete() {
    static GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let mut progress = upstream.progress.clone();
    let mut c = gate.client().await;
    let send = tokio::spawn(async move {
        // 1 GiB declared, as Outlook declares it; 2 MiB sent, the rest held back.
        let body = Generated::gated(1 << 30, 2 << 20, &GATE);
        c.send(
            "RPC_IN_DATA",
            "/rpc/rpcproxy.dll?mbx@contoso.com:6001",
            &[("content-length", "1073741824"), ("user-agent", "MSRPC")],
            http_body_util::BodyExt::boxed(body),
        )
        .await
    });
    let received = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let n = *progress.borrow_and_update();
            if n >= 1 << 20 {
                return n;
            }
            progress.changed().await.unwrap();
        }
    })
    .await
    .expect("the upstream received body bytes while the client was still sending");
    assert!(received >= 1 << 20);
    assert!(
        !send.is_finished(),
        "exgate must not answer before the body is through"
    );
    assert!(
        upstream.requests().is_empty(),
        "the upstream is still reading the body"
    );
    send.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_in_flight_requests() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let mut c = gate.client().await;
    let mut progress = upstream.progress.clone();
    let inflight = tokio::spawn(async move {
        c.send(
            "POST",
            "/ews/",
            &[],
            http_body_util::BodyExt::boxed(Generated::new(8 << 20)),
        )
        .await
    });
    // Wait until the upload is under way, then shut down.
    progress.changed().await.unwrap();
    gate.running.shutdown().await;
    let reply = inflight.await.unwrap().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-upstream-body-len"), Some("8388608"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, BLOCK_ALL_ONLINE, &[upstream.url()]).await;
    let mut c = gate.client().await;
    c.get("/mapi/", &[("authorization", &basic("user01", "pw"))])
        .await;
    let mut admin = Client::connect(gate.running.admin_addr).await;
    assert_eq!(admin.get("/healthz", &[]).await.status, 200);
    assert_eq!(admin.get("/readyz", &[]).await.status, 200);
    assert_eq!(admin.get("/nope", &[]).await.status, 404);
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains(
            r#"exgate_requests_total{decision="block",protocol="Mapi",scheme="basic"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_cut_after_the_idle_timeout_but_rpc_waits_longer() {
    static HOLD: tokio::sync::Notify = tokio::sync::Notify::const_new();
    let upstream = Upstream::start().await;
    let gate = Exgate::start_with(
        "idle_timeout_seconds = 1\nlong_idle_timeout_seconds = 30",
        ONLINE,
        "",
        &[upstream.url()],
    )
    .await;
    let stall = |path: &'static str| {
        let addr = gate.addr();
        tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let body = Generated::gated(1 << 20, 64 << 10, &HOLD);
            let result = c
                .send("POST", path, &[], http_body_util::BodyExt::boxed(body))
                .await;
            result.map(|r| r.status)
        })
    };
    let ews = stall("/ews/exchange.asmx");
    let rpc = stall("/rpc/rpcproxy.dll?x:6001");
    let cut = tokio::time::timeout(std::time::Duration::from_secs(10), ews)
        .await
        .expect("the stalled EWS upload was not cut")
        .unwrap();
    assert!(matches!(cut, Ok(408) | Err(_)), "{cut:?}");
    assert_only_client_errors(&gate.metrics().await, "body_stalled", 1);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !rpc.is_finished(),
        "RPC over HTTP has the long idle timeout"
    );
    rpc.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmdlets_apply_live_atomically_and_persist_for_a_restart() {
    let upstream = Upstream::start().await;
    let toml = ONLINE.replace(
        "[policy]\nscript = \"policies.ps1\"\n",
        "[policy]\nscript = \"policies.ps1\"\nstate_file = \"state/cmdlets.ps1\"\n[admin]\ntoken = \"lab-admin-token-0123456789\"\n",
    );
    let gate = Exgate::start(&toml, "New-AuthenticationPolicy Pilot\n", &[upstream.url()]).await;
    let basic02 = basic("user02@contoso.com", "pw");
    let status = |addr| {
        let h = basic02.clone();
        async move {
            Client::connect(addr)
                .await
                .get("/mapi/", &[("authorization", &h)])
                .await
                .status
        }
    };
    assert_eq!(status(gate.addr()).await, 200);

    let mut admin = Client::connect(gate.running.admin_addr).await;
    let line = "Set-User user02 -AuthenticationPolicy Pilot";
    let r = admin
        .send("POST", "/cmdlet", &[], full(line))
        .await
        .unwrap();
    assert_eq!(r.status, 401, "the admin token is required");
    let auth = [("authorization", "Bearer lab-admin-token-0123456789")];
    let r = admin
        .send("POST", "/cmdlet", &auth, full("Set-User user02 -AuthenticationPolicy Pilot\nSet-User ghost -AuthenticationPolicy Pilot"))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("line 2, column 1"));
    assert_eq!(
        status(gate.addr()).await,
        200,
        "a failing script changes nothing"
    );

    let r = admin
        .send("POST", "/cmdlet", &auth, full(line))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(status(gate.addr()).await, 401, "applied live");
    let r = admin
        .send(
            "POST",
            "/cmdlet",
            &auth,
            full("Get-AuthenticationPolicy Pilot"),
        )
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&r.body).contains("AllowBasicAuthMapi                 : False")
    );

    // A restart replays policy.script, then the state file.
    let config =
        exgate::config::load_with_env(&gate.running.config_path(), Some(Default::default()))
            .unwrap();
    gate.running.shutdown().await;
    let restarted = exgate::proxy::start(config).await.unwrap();
    assert_eq!(
        status(restarted.proxy_addr).await,
        401,
        "the cmdlet survived the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_its_connections_is_reconnected_transparently() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An Exchange front end that closes every connection after one response, as IIS does
    // with idle keep-alive connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    let gate = Exgate::start(ONLINE, "", &[format!("http://{addr}")]).await;
    let mut c = gate.client().await;
    for i in 0..5 {
        let r = c.get(&format!("/ews/{i}"), &[]).await;
        assert_eq!(r.status, 200, "request {i}");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
}
