//! Refusals answered without hyper (issue 16, `proxy::service::quick`): every request
//! is answered, counted and audited exactly as with `server.quick_refusals = false`;
//! only a bodiless head with Basic credentials that the policy refuses, arriving whole
//! and alone on an idle connection, takes the quick path; nothing refused reaches the
//! upstream; and a connection busy with refusals outlives hyper's head timer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const ONPREM: &str = "[exchange]\ndeployment = \"onpremises\"\n[policy]\nscript = \"policies.ps1\"\n[audit]\npath = \"audit/exgate.jsonl\"\n[[users]]\nupn = \"user01@contoso.com\"\nsam = \"CONTOSO\\\\user01\"\n";
/// Basic blocked on EWS for everyone; MAPI allowed.
const BLOCK_EWS: &str = "New-AuthenticationPolicy NoEws -BlockLegacyAuthWebServices\nSet-OrganizationConfig -DefaultAuthenticationPolicy NoEws\n";

pub(crate) fn quick_refusals(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("exgate_quick_refusals_total "))
        .and_then(|v| v.parse().ok())
        .expect("exgate_quick_refusals_total")
}

/// A response with its `date` value blanked: the rest must match byte for byte.
fn undated(text: &str) -> String {
    text.lines()
        .map(|l| match l.get(..6) {
            Some(name) if name.eq_ignore_ascii_case("date: ") => "date: <date>",
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An audit line without what differs between two runs of one request.
fn comparable(mut line: serde_json::Value) -> serde_json::Value {
    for key in ["ts", "request_id", "duration_ms"] {
        line.as_object_mut().unwrap().remove(key);
    }
    line
}

/// The series of the request counters, which both paths must move alike.
fn request_series(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("exgate_requests_total{") || l.starts_with("exgate_client_errors_total{")
        })
        .map(str::to_owned)
        .collect()
}

/// Sends `head` on a new connection to `quick` (the quick path on) and to `plain` (off),
/// and requires the same answer (the `date` value aside) and the same new audit lines
/// (past the first `audited`, which it moves on). Whether the quick path took it.
pub(crate) async fn answer_alike(
    quick: &Exgate,
    plain: &Exgate,
    shape: &str,
    head: &str,
    audited: &mut usize,
) -> bool {
    let mut answers = Vec::new();
    for gate in [quick, plain] {
        let before = quick_refusals(&gate.metrics().await);
        let (_, text) =
            raw_exchange(gate.addr(), head.as_bytes(), Duration::from_millis(300)).await;
        assert!(text.starts_with("HTTP/1."), "{shape}: no answer");
        let taken = quick_refusals(&gate.metrics().await) - before;
        answers.push((undated(&text), taken));
    }
    assert_eq!(answers[0].0, answers[1].0, "{shape}: answers differ");
    assert_eq!(answers[1].1, 0, "{shape}: quick_refusals = false took it");
    let quick_lines = audit_lines(quick, *audited).await;
    let plain_lines = audit_lines(plain, *audited).await;
    assert_eq!(quick_lines.len(), plain_lines.len(), "{shape}: audit lines");
    for (a, b) in quick_lines.into_iter().zip(plain_lines).skip(*audited) {
        assert_eq!(comparable(a), comparable(b), "{shape}: audit line");
    }
    *audited = audit_lines(quick, *audited).await.len();
    answers[0].1 == 1
}

/// A gate with the quick path and one without (`quick_refusals = false`), Basic blocked
/// on EWS, each with an upstream of its own (whose answers name its own connections).
async fn two_gates() -> ([Upstream; 2], Exgate, Exgate) {
    let upstreams = [Upstream::start().await, Upstream::start().await];
    let quick = Exgate::start(ONPREM, BLOCK_EWS, &[upstreams[0].url()]).await;
    let plain = Exgate::start_with(
        "quick_refusals = false",
        ONPREM,
        BLOCK_EWS,
        &[upstreams[1].url()],
    )
    .await;
    (upstreams, quick, plain)
}

/// The attacker's and the legacy client's table: what each head is answered with,
/// with and without the quick path, and whether the quick path took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_head_is_answered_counted_and_audited_as_without_the_quick_path() {
    let password = basic("user01@contoso.com", "Summer2026!");
    let auth = format!("Authorization: {password}\r\n");
    let jwt_password = basic("user01@contoso.com", "eyJhbGciOiJSUzI1NiJ9.eyJ4IjoxfQ.c2ln");
    let many_fields: String = (0..40).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    let table: Vec<(&str, String, bool)> = vec![
        ("blocked Basic", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n"), true),
        ("lower-case field and scheme", format!("GET /ews/exchange.asmx HTTP/1.1\r\nhost: mail.contoso.com\r\nauthorization: basic {}\r\n\r\n", &password[6..]), true),
        ("with User-Agent, Cookie and Expect", format!("POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nUser-Agent: ExchangeServicesClient/15\r\nCookie: a=b\r\nExpect: 100-continue\r\n{auth}\r\n"), true),
        ("User-Agent with obs-text, a path with braces", format!("GET /EWS/{{x}}/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nUser-Agent: caf\u{e9} \u{2603}\r\n{auth}\r\n"), true),
        ("upper-case scheme (hyper's)", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAUTHORIZATION: BASIC {}\r\n\r\n", &password[6..]), false),
        ("unknown user", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {}\r\n\r\n", basic("CONTOSO\\nobody", "x")), true),
        ("empty Basic", "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: Basic \r\n\r\n".into(), true),
        ("Basic and Bearer", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}Authorization: Bearer eyJ\r\n\r\n"), true),
        ("allowed protocol (forwarded)", format!("GET /mapi/emsmdb/ HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n"), false),
        ("OWA (not governed, forwarded)", format!("GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n"), false),
        ("Content-Length: 0", format!("POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 0\r\n{auth}\r\n"), false),
        ("a body", format!("POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 5\r\n{auth}\r\nhello"), false),
        ("chunked", format!("POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nTransfer-Encoding: chunked\r\n{auth}\r\n0\r\n\r\n"), false),
        ("Content-Length and chunked", format!("POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n{auth}\r\n0\r\n\r\n"), false),
        ("HEAD", format!("HEAD /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n"), false),
        ("HTTP/1.0", format!("GET /EWS/Exchange.asmx HTTP/1.0\r\nHost: mail.contoso.com\r\n{auth}\r\n"), false),
        ("no Host", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\n{auth}\r\n"), false),
        ("two Hosts", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: a\r\nHost: b\r\n{auth}\r\n"), false),
        ("bare LF", format!("GET /EWS/Exchange.asmx HTTP/1.1\nHost: mail.contoso.com\n{}\n\n", auth.trim_end()), false),
        ("empty Transfer-Encoding (red team)", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nTransfer-Encoding:\r\n{auth}\r\n"), false),
        ("empty Content-Length", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\ncontent-length:\r\n{auth}\r\n"), false),
        ("a Host and an empty Host", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nHost:\r\n{auth}\r\n"), false),
        ("empty Connection", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection:\r\n{auth}\r\n"), false),
        ("Connection: close (red team)", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n{auth}\r\n"), false),
        ("Connection: keep-alive", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: keep-alive\r\n{auth}\r\n"), false),
        ("Connection names Authorization", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: authorization\r\n{auth}\r\n"), false),
        ("absolute-form, Host mismatch", format!("GET http://evil.example/EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n"), false),
        ("absolute-form, Host agrees", format!("GET http://mail.contoso.com/EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n"), false),
        ("CONNECT", format!("CONNECT mail.contoso.com:443 HTTP/1.1\r\nHost: mail.contoso.com:443\r\n{auth}\r\n"), false),
        ("obs-fold", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nX-Fold: a\r\n b\r\n{auth}\r\n"), false),
        ("more fields than the quick path reads", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n{many_fields}{auth}\r\n"), false),
        ("a path two parsers read two ways", format!("GET /ews/..%2fmapi/ HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n"), true),
        ("ProxyShell", format!("GET /autodiscover/autodiscover.json?@x.com/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@x.com HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n"), true),
        ("Basic carrying a token (BasicAuthToOAuthConversion)", format!("GET /powershell-liveid?BasicAuthToOAuthConversion=true HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {jwt_password}\r\n\r\n"), false),
        ("NTLM", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {}\r\n\r\n", ntlm_type1("NTLM")), false),
        ("Bearer", "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: Bearer eyJ\r\n\r\n".into(), false),
        ("anonymous", "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n".into(), false),
        ("two requests in one write", format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\nGET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n"), false),
    ];
    let (upstreams, quick, plain) = two_gates().await;
    let mut audited = 0;
    for (shape, head, expect_quick) in &table {
        let taken = answer_alike(&quick, &plain, shape, head, &mut audited).await;
        assert_eq!(taken, *expect_quick, "{shape}: quick path");
    }
    assert_eq!(
        request_series(&quick.metrics().await),
        request_series(&plain.metrics().await)
    );
    // The password went upstream only where the policy allows it, once per gate.
    for upstream in &upstreams {
        let forwarded: Vec<String> = upstream
            .requests()
            .iter()
            .filter(|r| {
                r.headers
                    .get("authorization")
                    .is_some_and(|v| *v == *password)
            })
            .map(|r| r.target.clone())
            .collect();
        assert_eq!(forwarded, ["/mapi/emsmdb/", "/owa/"]);
    }
}

/// A legacy client hammering one keep-alive connection: every refusal answered without
/// hyper, none reaching Exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_basic_on_a_keep_alive_connection_is_answered_without_hyper() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, BLOCK_EWS, &[upstream.url()]).await;
    let password = basic("user01@contoso.com", "Summer2026!");
    let mut client = gate.client().await;
    for _ in 0..50 {
        let reply = client
            .get(
                "/EWS/Exchange.asmx",
                &[("authorization", password.as_str())],
            )
            .await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.header("www-authenticate"), Some(BEARER_CHALLENGE));
    }
    let metrics = gate.metrics().await;
    assert_eq!(quick_refusals(&metrics), 50);
    assert!(
        metrics.contains(
            r#"exgate_requests_total{decision="block",protocol="WebServices",scheme="basic"} 50"#
        ),
        "{metrics}"
    );
    assert!(upstream.requests().is_empty());
}

/// hyper's head timer runs while it waits and only a head hyper reads resets it: a
/// connection busy with refusals answered without hyper hands hyper a request within
/// half the timer, and stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_busy_with_refusals_outlives_hyper_s_head_timer() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start_with(
        "header_read_timeout_seconds = 2",
        ONPREM,
        BLOCK_EWS,
        &[upstream.url()],
    )
    .await;
    let password = basic("user01@contoso.com", "Summer2026!");
    let head = format!(
        "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {password}\r\n\r\n"
    );
    let mut s = TcpStream::connect(gate.addr()).await.unwrap();
    let mut buf = [0u8; 4096];
    let sent = 100;
    for i in 0..sent {
        s.write_all(head.as_bytes()).await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 401"),
            "request {i}: {:?}",
            text(&buf[..n])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let quick = quick_refusals(&gate.metrics().await);
    assert!(
        quick < sent && quick >= sent - 10,
        "{quick} of {sent} answered without hyper"
    );
    assert!(upstream.requests().is_empty());
}

/// Spray detection counts refusals answered without hyper as it counts any other: the
/// sixth distinct name from one address crosses `distinct_users = 5`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spray_detection_counts_quick_refusals() {
    let upstream = Upstream::start().await;
    let config = format!("{ONPREM}[spray]\ndistinct_users = 5\n");
    let gate = Exgate::start(&config, BLOCK_EWS, &[upstream.url()]).await;
    let mut client = gate.client().await;
    for i in 0..6 {
        let password = basic(&format!("user{i:02}@contoso.com"), "Winter2026!");
        let reply = client
            .get(
                "/EWS/Exchange.asmx",
                &[("authorization", password.as_str())],
            )
            .await;
        assert_eq!(reply.status, 401);
    }
    let metrics = gate.metrics().await;
    assert_eq!(quick_refusals(&metrics), 6);
    assert!(
        metrics.contains("exgate_spray_suspects_total 1"),
        "{metrics}"
    );
}

/// After `pause_ms`, writes `after` on `s`, which exgate closed after its answer: the
/// connection gives end of file or an error within 2 s, never an answer.
async fn assert_closed_after(s: &mut TcpStream, pause_ms: u64, after: &[u8], shape: &str) {
    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    let _ = s.write_all(after).await;
    let mut buf = [0u8; 4096];
    let rest = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    assert!(matches!(rest, Ok(Ok(0)) | Ok(Err(_))), "{shape}: {rest:?}");
}

/// Red team, issue 16: after a refusal with `Connection: close`, the connection closes
/// and a request sent after it is never read (the quick path answered it without the
/// close, and the next request reached Exchange).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_on_a_refused_request_closes_the_connection() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, BLOCK_EWS, &[upstream.url()]).await;
    let password = basic("user01@contoso.com", "Summer2026!");
    for close in ["close", "Close", "keep-alive, close", ",close,", "\tclose"] {
        let mut s = TcpStream::connect(gate.addr()).await.unwrap();
        let head = format!(
            "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: {close}\r\nAuthorization: {password}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let answer = text(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 401"), "{close:?}: {answer}");
        assert!(answer.contains("connection: close"), "{close:?}: {answer}");
        let after = b"GET /mapi/after-close HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n";
        assert_closed_after(&mut s, 200, after, &format!("{close:?}")).await;
    }
    assert!(upstream.requests().is_empty());
    assert_eq!(quick_refusals(&gate.metrics().await), 0);
}

/// Red team, issue 16: a framing field with nothing after its colon went unnoticed, so a
/// blocked Basic with `Transfer-Encoding:` was answered 401 on a connection kept open
/// (hyper's path answers 400 and closes), and a second, empty `Host` passed on both
/// paths. Each head of the attacker's table is now refused with 400 and the connection
/// closed; the request sent after it is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_fields_with_empty_values_are_refused_and_end_the_connection() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, BLOCK_EWS, &[upstream.url()]).await;
    let auth = format!(
        "Authorization: {}\r\n",
        basic("user01@contoso.com", "Summer2026!")
    );
    let fields = [
        "Transfer-Encoding:",
        "transfer-encoding:",
        "TRANSFER-ENCODING:",
        "Transfer-Encoding:\r\nTransfer-Encoding:",
        "Content-Length:",
        "Host:",
        "host:",
        "HOST: ",
    ];
    for field in fields {
        for (path, auth) in [("/EWS/Exchange.asmx", auth.as_str()), ("/owa/", "")] {
            let shape = format!("{field} on {path}");
            let mut s = TcpStream::connect(gate.addr()).await.unwrap();
            let head =
                format!("GET {path} HTTP/1.1\r\nHost: mail.contoso.com\r\n{field}\r\n{auth}\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let answer = text(&buf[..n]);
            assert!(answer.starts_with("HTTP/1.1 400"), "{shape}: {answer}");
            let after = b"GET /owa/after HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n";
            assert_closed_after(&mut s, 100, after, &shape).await;
        }
    }
    // A lone empty `Host` is refused as a missing one, as before.
    let (status, _) = raw_exchange(
        gate.addr(),
        b"GET /owa/ HTTP/1.1\r\nHost:\r\n\r\n",
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(status, 400);
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    assert_eq!(quick_refusals(&gate.metrics().await), 0);
}

/// Red team, issue 16: a head that fills hyper's read buffer (8 KiB) exactly may have
/// more bytes behind it in the socket: not alone, so hyper's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_fills_the_read_buffer_is_hyper_s() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, BLOCK_EWS, &[upstream.url()]).await;
    let password = basic("user01@contoso.com", "Summer2026!");
    let short = format!(
        "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {password}\r\n\r\n"
    );
    let pad = 8192 - short.len() - "X-Pad: \r\n".len();
    let full = format!(
        "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nX-Pad: {}\r\nAuthorization: {password}\r\n\r\n",
        "a".repeat(pad)
    );
    assert_eq!(full.len(), 8192);
    let (_, answers) = raw_exchange(
        gate.addr(),
        format!("{full}{short}").as_bytes(),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(answers.matches("HTTP/1.1 401").count(), 2, "{answers}");
    // The second head, read alone after the first was answered, may be quick.
    assert!(quick_refusals(&gate.metrics().await) <= 1);
    assert!(upstream.requests().is_empty());
}

/// Reads one response from `s`: its head, then as many body bytes as `content-length`
/// says.
async fn one_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = text(&out[..end]);
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")?
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + length {
                return text(&out);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed after {:?}", text(&out));
        out.extend_from_slice(&buf[..n]);
    }
}

/// A client sending the same head again on its connection (a legacy client retrying, a
/// spray tool hammering one account) is answered without parsing or evaluating it
/// again (`quick::Repeat`): every answer, audit line and counter as without the quick
/// path, heads repeated and alternated so that the remembered one is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_head_again_is_answered_counted_and_audited_alike() {
    let password = basic("user01@contoso.com", "Summer2026!");
    let auth = format!("Authorization: {password}\r\n");
    let heads = [
        format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n"),
        format!("GET /ews/exchange.asmx HTTP/1.1\r\nhost: mail.contoso.com\r\nauthorization: basic {}\r\n\r\n", &password[6..]),
        format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nUser-Agent: ExchangeServicesClient/15\r\nCookie: a=b\r\n{auth}\r\n"),
        format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {}\r\n\r\n", basic("CONTOSO\\nobody", "x")),
        format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {}\r\n\r\n", basic("user02@contoso.com", "x")),
        "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: Basic \r\n\r\n".into(),
        format!("GET /ews/..%2fmapi/ HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n"),
        // One byte apart from the first: a new head, decided anew (forwarded).
        format!("GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n{auth}\r\n").replace("/EWS/", "/OWA/"),
    ];
    // Each head three times running, then the table twice over, so that every head
    // follows every other at least once.
    let order: Vec<usize> = (0..heads.len())
        .flat_map(|i| [i, i, i])
        .chain((0..heads.len()).chain(0..heads.len()))
        .collect();
    let (upstreams, quick, plain) = two_gates().await;
    let mut answers = Vec::new();
    for gate in [&quick, &plain] {
        let mut s = TcpStream::connect(gate.addr()).await.unwrap();
        let mut got = Vec::new();
        for &i in &order {
            s.write_all(heads[i].as_bytes()).await.unwrap();
            got.push(undated(&one_response(&mut s).await));
        }
        answers.push(got);
    }
    for (n, &i) in order.iter().enumerate() {
        assert_eq!(
            answers[0][n], answers[1][n],
            "request {n} (head {i}): answers differ"
        );
    }
    // All but the forwarded head (3 sendings of the 8 heads': 7 heads × 5) went quickly.
    assert_eq!(quick_refusals(&quick.metrics().await), 7 * 5);
    assert_eq!(quick_refusals(&plain.metrics().await), 0);
    assert_eq!(
        request_series(&quick.metrics().await),
        request_series(&plain.metrics().await)
    );
    let quick_lines = audit_lines(&quick, order.len()).await;
    let plain_lines = audit_lines(&plain, order.len()).await;
    assert_eq!(quick_lines.len(), plain_lines.len());
    for (a, b) in quick_lines.into_iter().zip(plain_lines) {
        assert_eq!(comparable(a), comparable(b), "audit line");
    }
    for upstream in &upstreams {
        let targets: Vec<String> = upstream
            .requests()
            .iter()
            .map(|r| r.target.clone())
            .collect();
        assert_eq!(targets, ["/OWA/Exchange.asmx"; 5]);
    }
}

/// The remembered decision belongs to the policy it was made under: after a cmdlet
/// changes the policy, the same head on the same connection is decided anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_head_is_decided_again_after_the_policy_changes() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONPREM, BLOCK_EWS, &[upstream.url()]).await;
    let password = basic("user01@contoso.com", "Summer2026!");
    let head = format!(
        "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {password}\r\n\r\n"
    );
    let mut s = TcpStream::connect(gate.addr()).await.unwrap();
    for _ in 0..3 {
        s.write_all(head.as_bytes()).await.unwrap();
        assert!(one_response(&mut s).await.starts_with("HTTP/1.1 401"));
    }
    assert_eq!(quick_refusals(&gate.metrics().await), 3);
    let admin = gate.running.admin_addr;
    let (status, out) = cmdlet(
        admin,
        "Set-AuthenticationPolicy NoEws -BlockLegacyAuthWebServices:$false",
    )
    .await;
    assert_eq!(status, 200, "{out}");
    for _ in 0..2 {
        s.write_all(head.as_bytes()).await.unwrap();
        let answer = one_response(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert_eq!(quick_refusals(&gate.metrics().await), 3);
    assert_eq!(upstream.requests().len(), 2);
    // And back: refused again, quickly.
    let (status, out) = cmdlet(
        admin,
        "Set-AuthenticationPolicy NoEws -BlockLegacyAuthWebServices",
    )
    .await;
    assert_eq!(status, 200, "{out}");
    for _ in 0..2 {
        s.write_all(head.as_bytes()).await.unwrap();
        assert!(one_response(&mut s).await.starts_with("HTTP/1.1 401"));
    }
    assert_eq!(quick_refusals(&gate.metrics().await), 5);
    assert_eq!(upstream.requests().len(), 2);
}

/// A client that sends blocked heads and reads none of the answers is cut after
/// `server.idle_timeout_seconds` and counted as `response_unread`, with the quick path
/// as without it (red team, issue 16: the quick path's answer waited on the full socket
/// while hyper flushed between its attempts, which disarmed the stall timer, and the
/// connection was held until hyper's head timer, 30 s). 16 KB challenges fill the
/// socket's buffers after a few hundred answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_no_answer_is_cut_after_the_idle_timeout() {
    let long = "a".repeat(16_000);
    let config = format!(
        "{ONPREM}[exchange.challenge]\nauthorization_uri = \"https://login.example/{long}\"\n"
    );
    let password = basic("user01@contoso.com", "Summer2026!");
    let head = format!(
        "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {password}\r\n\r\n"
    );
    let upstream = Upstream::start().await;
    for server in [
        "idle_timeout_seconds = 2",
        "idle_timeout_seconds = 2\nquick_refusals = false",
    ] {
        let gate = Exgate::start_with(server, &config, BLOCK_EWS, &[upstream.url()]).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(gate.addr()).await.unwrap();
        for _ in 0..250 {
            if s.write_all(head.as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let unread = r#"exgate_client_errors_total{reason="response_unread"} 1"#;
        let mut waited = Duration::ZERO;
        while !gate.metrics().await.contains(unread) {
            assert!(
                waited < Duration::from_secs(8),
                "{server}: not cut 8 s after the last head"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            waited += Duration::from_millis(200);
        }
    }
    assert!(upstream.requests().is_empty());
}
