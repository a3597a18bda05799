//! The lab console over HTTP, without a browser (tests/it/browser.rs has Chromium): the
//! secret and the Host check, the page's security headers, the event stream with its
//! steps and without secrets, resuming after `Last-Event-ID`, and the rollout switch
//! changing the next request's decision.

use std::time::Duration;

use base64::Engine as _;
use exgate::client::{Client, request};
use exgate::lab::{Lab, Scenario};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::lab::in_process;

const USER01: (&str, &str) = ("user01@contoso.com", "Pilot-Passw0rd-01");
const USER02: (&str, &str) = ("user02@contoso.com", "Lab-Passw0rd-02");

async fn basic(lab: &Lab, client: &Client, path: &str, (user, password): (&str, &str)) -> u16 {
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    client
        .request(
            "POST",
            &format!("{}{path}", lab.info.proxy),
            &[("authorization", header.as_str())],
            "",
        )
        .await
        .unwrap()
        .status
}

/// A raw request to the console (any Host), answered head and as much body as came
/// within `wait`.
async fn raw(lab: &Lab, target: &str, host: &str, extra: &str, wait: Duration) -> String {
    let addr = lab.info.console.trim_start_matches("http://");
    let addr = &addr[..addr.find('/').unwrap()];
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn console_path(lab: &Lab) -> (String, String) {
    let url = lab.info.console.trim_start_matches("http://");
    let slash = url.find('/').unwrap();
    (url[..slash].to_owned(), url[slash..].to_owned())
}

/// The SSE `data:` lines of a stream, parsed.
fn events(stream: &str) -> Vec<serde_json::Value> {
    stream
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn the_console_answers_only_under_its_secret_and_its_own_host() {
    let (lab, _) = in_process(Scenario::OnlineCa).await;
    let (host, path) = console_path(&lab);
    let secret = path.trim_matches('/');
    assert_eq!(secret.len(), 32, "{path}");
    let page = raw(&lab, &path, &host, "", Duration::from_secs(2)).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let csp = page
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("content-security-policy:")
        })
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(
        page.to_ascii_lowercase()
            .contains("referrer-policy: no-referrer")
    );
    // No inline script: the only one is the console's own file.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(page.contains(r#"<script src="console.js" defer></script>"#));

    let mut wrong = secret.to_owned().into_bytes();
    wrong[0] = if wrong[0] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).unwrap();
    let port = host.split(':').nth(1).unwrap();
    for (target, host) in [
        ("/".to_owned(), host.clone()),
        ("/state".to_owned(), host.clone()),
        (format!("/{wrong}/"), host.clone()),
        (format!("/{wrong}/state"), host.clone()),
        (format!("/{}/state", &secret[..31]), host.clone()),
        (format!("/{}x/state", secret), host.clone()),
        // The secret must end at a slash (red team: any character was taken for it).
        (format!("/{secret}.state"), host.clone()),
        (format!("/{secret}%2Fstate"), host.clone()),
        (
            format!("/{}/state", secret.to_ascii_uppercase()),
            host.clone(),
        ),
        // DNS rebinding: the right secret through another name.
        (format!("{path}state"), "evil.example".to_owned()),
        (format!("{path}state"), format!("evil.example:{port}")),
        (format!("{path}state"), "127.0.0.1".to_owned()),
    ] {
        let answer = raw(&lab, &target, &host, "", Duration::from_secs(2)).await;
        assert!(
            answer.starts_with("HTTP/1.1 404"),
            "{target} Host {host}: {answer}"
        );
        assert!(!answer.contains("policies"), "{answer}");
    }
    // localhost names the same listener.
    let answer = raw(
        &lab,
        &format!("{path}state"),
        &format!("localhost:{port}"),
        "",
        Duration::from_secs(2),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    lab.running.shutdown().await;
}

/// What the walk's requests and a blocked Basic look like on the event stream: each with
/// its step, the blocked one on the red line and never received by Exchange, the
/// forwarded one received; no password anywhere; a reconnecting page resumes after its
/// `Last-Event-ID`.
#[tokio::test]
async fn every_request_reaches_the_event_stream_with_its_step_and_without_secrets() {
    let (lab, client) = in_process(Scenario::OnlineCa).await;
    let (host, path) = console_path(&lab);
    assert_eq!(basic(&lab, &client, "/mapi/emsmdb/", USER01).await, 401);
    assert_eq!(basic(&lab, &client, "/mapi/emsmdb/", USER02).await, 200);
    let anonymous = client
        .request(
            "POST",
            &format!("{}/autodiscover/autodiscover.xml", lab.info.proxy),
            &[],
            "",
        )
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
    // The stream: history first, then it stays open (no end within the wait).
    let stream = raw(
        &lab,
        &format!("{path}events"),
        &host,
        "",
        Duration::from_secs(2),
    )
    .await;
    assert!(stream.starts_with("HTTP/1.1 200"), "{stream}");
    assert!(
        stream
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream")
    );
    for secret in [USER01.1, USER02.1, &lab.info.admin_token] {
        assert!(!stream.contains(secret), "a secret on the console stream");
    }
    let all = events(&stream);
    let exgate: Vec<&serde_json::Value> = all.iter().filter(|e| e["source"] == "exgate").collect();
    assert_eq!(exgate.len(), 3, "{all:#?}");
    let blocked = exgate[0];
    assert_eq!(blocked["step"], "legacy");
    assert_eq!(blocked["user"], USER01.0);
    assert_eq!(blocked["decision"], "block");
    assert_eq!(blocked["reason"], "legacy_blocked");
    assert_eq!(blocked["blocked_legacy"], true);
    assert_eq!(blocked["forwarded"], false);
    let forwarded = exgate[1];
    assert_eq!(forwarded["step"], "legacy");
    assert_eq!(forwarded["decision"], "allow");
    assert_eq!(forwarded["blocked_legacy"], false);
    assert_eq!(forwarded["forwarded"], true);
    assert_eq!(forwarded["upstream_status"], 200);
    assert_eq!(exgate[2]["step"], "1–2");
    // The mock Exchange's own record: user02's request and the anonymous one, not user01's.
    let received: Vec<&serde_json::Value> =
        all.iter().filter(|e| e["source"] == "exchange").collect();
    assert_eq!(received.len(), 2, "{received:#?}");
    assert_eq!(received[0]["user"], USER02.0);
    // Ids increase by one; a page that reconnects after the second gets the rest only.
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    let resumed = raw(
        &lab,
        &format!("{path}events"),
        &host,
        "Last-Event-ID: 2\r\n",
        Duration::from_secs(1),
    )
    .await;
    let resumed: Vec<u64> = events(&resumed)
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(resumed, ids[2..].to_vec()); // A stream the page opens anew says it in the query.
    let query = raw(
        &lab,
        &format!("{path}events?after=2"),
        &host,
        "",
        Duration::from_secs(1),
    )
    .await;
    let query: Vec<u64> = events(&query)
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(query, ids[2..].to_vec());

    // Live: an event sent while the stream is open arrives on it.
    let live = {
        let lab = &lab;
        let (target, resume) = (
            format!("{path}events"),
            format!("Last-Event-ID: {}\r\n", ids.len()),
        );
        let reader = raw(lab, &target, &host, &resume, Duration::from_secs(3));
        let sender = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            basic(lab, &client, "/EWS/Exchange.asmx", USER01).await
        };
        let (stream, status) = tokio::join!(reader, sender);
        assert_eq!(status, 401);
        events(&stream)
    };
    assert!(
        live.iter()
            .any(|e| e["path"] == "/EWS/Exchange.asmx" && e["blocked_legacy"] == true),
        "{live:#?}"
    );
    lab.running.shutdown().await;
}

/// The rollout switch: JSON only, a known stage only; "organization" sends the README's
/// cmdlets, persists them, and user02's next Basic is blocked; "report-only" forwards the
/// pilot's and records it.
#[tokio::test]
async fn the_rollout_switch_changes_the_next_decision() {
    let (lab, client) = in_process(Scenario::OnpremCa).await;
    let url = format!("{}rollout", lab.info.console);
    let post = |content_type: &'static str, body: &'static str| {
        let url = url.clone();
        async move {
            let res = request("POST", &url, &[("content-type", content_type)], body)
                .await
                .unwrap();
            (
                res.status,
                serde_json::from_slice::<serde_json::Value>(&res.body).unwrap_or_default(),
            )
        }
    };
    // A cross-site form cannot send JSON.
    assert_eq!(
        post("application/x-www-form-urlencoded", "stage=organization")
            .await
            .0,
        415
    );
    assert_eq!(
        post("text/plain", r#"{"stage":"organization"}"#).await.0,
        415
    );
    assert_eq!(
        post("application/json", r#"{"stage":"everyone"}"#).await.0,
        400
    );
    assert_eq!(post("application/json", "not json").await.0, 400);

    assert_eq!(basic(&lab, &client, "/mapi/emsmdb/", USER02).await, 200);
    let (status, answer) = post("application/json", r#"{"stage":"organization"}"#).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["applied"], true);
    assert_eq!(
        answer["cmdlets"],
        serde_json::json!([
            "New-AuthenticationPolicy -Name OrgBlockLegacy -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc -BlockLegacyAuthWebServices -ReportOnly",
            "Set-OrganizationConfig -DefaultAuthenticationPolicy OrgBlockLegacy",
            "Set-AuthenticationPolicy OrgBlockLegacy -ReportOnly:$false"
        ])
    );
    assert_eq!(answer["state"]["stage"], "organization");
    assert_eq!(answer["state"]["org_default"], "OrgBlockLegacy");
    assert_eq!(basic(&lab, &client, "/mapi/emsmdb/", USER02).await, 401);
    let state =
        std::fs::read_to_string(lab.info.config.parent().unwrap().join("state.ps1")).unwrap();
    assert!(
        state.contains("Set-OrganizationConfig -DefaultAuthenticationPolicy OrgBlockLegacy"),
        "{state}"
    );
    // Again: nothing to send.
    let (status, answer) = post("application/json", r#"{"stage":"organization"}"#).await;
    assert_eq!(
        (status, answer["cmdlets"].clone()),
        (200, serde_json::json!([]))
    );

    // Report only, for everyone: the pilot's Basic is forwarded now, and recorded.
    let (status, answer) = post("application/json", r#"{"stage":"report-only"}"#).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["cmdlets"],
        serde_json::json!([
            "Set-AuthenticationPolicy OrgBlockLegacy -ReportOnly:$true",
            "Set-User user01 -AuthenticationPolicy $null"
        ])
    );
    assert_eq!(basic(&lab, &client, "/mapi/emsmdb/", USER01).await, 200);
    let history = lab.bus.history();
    let last = history
        .iter()
        .rev()
        .find(|e| e["source"] == "exgate")
        .unwrap();
    assert_eq!(
        (last["user"].as_str(), last["decision"].as_str()),
        (Some(USER01.0), Some("report_only"))
    );
    assert!(history.iter().any(|e| e["source"] == "cmdlet"
        && e["cmdlets"][1] == "Set-User user01 -AuthenticationPolicy $null"));
    lab.running.shutdown().await;
}

/// Connections that send nothing, or half a head, are closed after the head timeout, and
/// there are more places than a browser opens sockets at once (Chromium: 256), so a page
/// on another origin that opens hundreds (`<link rel=preconnect>` does, without a request)
/// neither holds the console for ever nor takes every place (red team, twice). Event
/// streams have places of their own, 16.
#[tokio::test]
async fn idle_connections_cannot_hold_the_console_and_streams_are_bounded() {
    let (lab, _) = in_process(Scenario::OnlineCa).await;
    let (host, path) = console_path(&lab);
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        if i % 2 == 0 {
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x")
                .await
                .unwrap();
        }
        idle.push(stream);
    }
    // A browser's worth of idle connections leaves the page its places.
    let answer = raw(
        &lab,
        &format!("{path}state"),
        &host,
        "",
        Duration::from_secs(2),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut closed = 0;
    for stream in &mut idle {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            // Closed, after hyper's 408 for a half-sent head.
            Ok(Ok(0)) | Ok(Err(_)) | Ok(Ok(_)) => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(
        closed, 300,
        "every idle connection is closed after the head timeout"
    );

    // 16 event streams; the 17th is told to come back.
    let mut streams = Vec::new();
    for _ in 0..16 {
        let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        let head = format!("GET {path}events HTTP/1.1\r\nHost: {host}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        streams.push(stream);
    }
    let busy = raw(
        &lab,
        &format!("{path}events"),
        &host,
        "",
        Duration::from_secs(1),
    )
    .await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    drop(streams);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = raw(
        &lab,
        &format!("{path}events"),
        &host,
        "",
        Duration::from_millis(500),
    )
    .await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    lab.running.shutdown().await;
}

/// What the console keeps of a request is bounded and inert: a 60 KB path is cut to 256
/// characters, and control and bidirectional-override characters in a user name are
/// shown as U+FFFD (red team: a 65 KB path made the history 65 MB).
#[tokio::test]
async fn long_and_hostile_values_are_cut_and_neutralized() {
    let (lab, client) = in_process(Scenario::OnlineCa).await;
    let long = format!("/mapi/{}", "a".repeat(60_000));
    assert_eq!(basic(&lab, &client, &long, USER01).await, 401);
    let name = "user\u{202E}moc.osotnoc@10resu\u{7}x";
    let status = basic(&lab, &client, "/mapi/emsmdb/", (name, "x")).await;
    assert_eq!(status, 401);
    let history = lab.bus.history();
    let exgate: Vec<&serde_json::Value> =
        history.iter().filter(|e| e["source"] == "exgate").collect();
    let path = exgate[0]["path"].as_str().unwrap();
    assert_eq!(path.chars().count(), 257, "256 characters and the ellipsis");
    assert!(path.ends_with('…'));
    let user = exgate[1]["user"].as_str().unwrap();
    assert_eq!(user, "user\u{FFFD}moc.osotnoc@10resu\u{FFFD}x");
    lab.running.shutdown().await;
}

/// Cmdlets sent with `exgate cmdlet` (the admin API) reach the console as they are
/// applied, so its panel and buttons follow (newcomer: they did not).
#[tokio::test]
async fn cmdlets_sent_through_the_admin_api_reach_the_console() {
    let (lab, _) = in_process(Scenario::OnlineCa).await;
    let token = format!("Bearer {}", lab.info.admin_token);
    let res = request(
        "POST",
        &format!("{}/cmdlet", lab.info.admin),
        &[("authorization", token.as_str())],
        "New-AuthenticationPolicy -Name OrgBlockLegacy -ReportOnly\nSet-OrganizationConfig -DefaultAuthenticationPolicy OrgBlockLegacy",
    )
    .await
    .unwrap();
    assert_eq!(res.status, 200, "{}", res.text());
    let history = lab.bus.history();
    let applied = history.iter().find(|e| e["source"] == "cmdlet").unwrap();
    assert_eq!(
        applied["cmdlets"],
        serde_json::json!([
            "New-AuthenticationPolicy -Name OrgBlockLegacy -ReportOnly",
            "Set-OrganizationConfig -DefaultAuthenticationPolicy OrgBlockLegacy"
        ])
    );
    let state = request("GET", &format!("{}state", lab.info.console), &[], "")
        .await
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state.body).unwrap();
    assert_eq!(state["stage"], "pilot");
    // Read-only cmdlets change nothing and show nothing.
    let before = lab.bus.history().len();
    let res = request(
        "POST",
        &format!("{}/cmdlet", lab.info.admin),
        &[("authorization", token.as_str())],
        "Get-AuthenticationPolicy",
    )
    .await
    .unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(lab.bus.history().len(), before);
    lab.running.shutdown().await;
}

/// A forwarded Basic whose client goes away mid-body is not drawn as blocked: exgate
/// forwarded it, so Exchange got the password (red team, round 2: it was drawn red,
/// "Exchange received it: no").
#[tokio::test]
async fn a_forwarded_request_whose_client_goes_away_is_not_drawn_blocked() {
    let (lab, _) = in_process(Scenario::OnlineCa).await;
    let tls = exgate::client::tls_trusting(&lab.info.ca).unwrap();
    let authority = lab.info.proxy.trim_start_matches("https://").to_owned();
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, stream)
        .await
        .unwrap();
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", USER02.0, USER02.1));
    let head = format!(
        "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Basic {credentials}\r\nContent-Length: 100000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'x'; 1000]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    let mut shown = None;
    for _ in 0..50 {
        shown = lab
            .bus
            .history()
            .into_iter()
            .find(|e| e["source"] == "exgate" && e["user"] == USER02.0);
        if shown.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = shown.expect("the request reaches the console");
    assert_eq!(shown["forwarded"], true, "{shown}");
    assert_eq!(shown["blocked_legacy"], false, "{shown}");
    assert_eq!(shown["step"], "legacy");
    lab.running.shutdown().await;
}
