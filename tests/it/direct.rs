//! exgate's own upstream client for body-less `GET`, `HEAD` and `OPTIONS`
//! (`src/proxy/direct.rs`) through the whole proxy: a scripted Exchange on loopback sends
//! each framing RFC 9112 §6.3 knows, closes idle connections without a word, and sends
//! bytes nobody asked for; the tests check what reaches the client and on which upstream
//! connection each request arrived.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

const ONLINE: &str = "[exchange]\ndeployment = \"online\"\n";

/// What the scripted server does after answering.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    KeepOpen,
    Close,
    /// Closes the connection this long after the answer, without `Connection: close`
    /// (IIS's idle timeout, seen from the proxy).
    CloseIn(Duration),
}

/// One answer: the bytes, written in pieces with a pause between them, then what follows.
struct Answer {
    pieces: Vec<Vec<u8>>,
    after: Then,
}

fn answer(bytes: &[u8], after: Then) -> Answer {
    Answer {
        pieces: vec![bytes.to_vec()],
        after,
    }
}

/// What answers a request: its request line (`GET /owa/x`) and how many requests its
/// connection carried before it.
type Script = fn(&str, usize) -> Answer;

/// A scripted Exchange: reads request heads (requests without a body only), records
/// `(connection, method target)` and answers what `script` says for the request line.
struct Scripted {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<(usize, String)>>>,
    accepted: Arc<AtomicUsize>,
}

impl Scripted {
    async fn start(script: Script) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (record, count) = (seen.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, connection, record.clone(), script));
            }
        });
        Scripted {
            addr,
            seen,
            accepted,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<(usize, String)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(
    mut s: TcpStream,
    connection: usize,
    seen: Arc<Mutex<Vec<(usize, String)>>>,
    script: Script,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for before in 0.. {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let line = head
            .lines()
            .next()
            .unwrap_or("")
            .trim_end_matches(" HTTP/1.1");
        seen.lock().unwrap().push((connection, line.to_owned()));
        let answer = script(line, before);
        for (i, piece) in answer.pieces.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if s.write_all(piece).await.is_err() {
                return;
            }
        }
        match answer.after {
            Then::KeepOpen => {}
            Then::Close => return,
            Then::CloseIn(d) => {
                tokio::time::sleep(d).await;
                return;
            }
        }
    }
}

/// A body of `n` bytes, each its offset modulo 251.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn framings(line: &str, _: usize) -> Answer {
    use Then::*;
    match line {
        "GET /owa/len" => answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            KeepOpen,
        ),
        "GET /owa/chunked" => Answer {
            pieces: vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Framing: chunked\r\n\r\n"
                    .to_vec(),
                b"5\r\nhel".to_vec(),
                b"lo\r\n7;name=value\r\n, worl".to_vec(),
                b"d\r\n0\r\nX-Trailer: dropped\r\n\r\n".to_vec(),
            ],
            after: KeepOpen,
        },
        "GET /oab/big" => {
            let body = pattern(3 << 20);
            let mut pieces = vec![
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes(),
            ];
            pieces.extend(body.chunks(256 << 10).map(<[u8]>::to_vec));
            Answer {
                pieces,
                after: KeepOpen,
            }
        }
        "HEAD /owa/head" => answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", KeepOpen),
        "OPTIONS /Microsoft-Server-ActiveSync" => answer(
            b"HTTP/1.1 200 OK\r\nMS-ASProtocolVersions: 14.1,16.1\r\nContent-Length: 0\r\n\r\n",
            KeepOpen,
        ),
        "GET /owa/interim" => Answer {
            pieces: vec![
                b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n".to_vec(),
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            ],
            after: KeepOpen,
        },
        "GET /owa/bad-chunk" => Answer {
            pieces: vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                b"5\r\nhelloXX\r\n0\r\n\r\n".to_vec(),
            ],
            after: KeepOpen,
        },
        "GET /owa/close" => answer(b"HTTP/1.1 200 OK\r\n\r\nuntil the close", Close),
        "GET /owa/listed-length" => answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
            KeepOpen,
        ),
        "GET /owa/chunked-and-length" => answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Close,
        ),
        // A small body that stops after 3 of its 100 bytes.
        "GET /owa/stall" => answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
            KeepOpen,
        ),
        "GET /owa/http10" => answer(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", Close),
        "GET /owa/bad-length" => answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            KeepOpen,
        ),
        _ => answer(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            KeepOpen,
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framing_reaches_the_client_whole_on_the_connections_it_allows() {
    let upstream = Scripted::start(framings).await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let mut c = gate.client().await;
    let r = c.get("/owa/len", &[]).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
    let r = c.get("/owa/chunked", &[]).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"hello, world"[..]));
    assert_eq!(r.header("x-framing"), Some("chunked"));
    let r = c.get("/oab/big", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body == pattern(3 << 20), "3 MiB arrive in order");
    let r = c
        .send("HEAD", "/owa/head", &[], full(bytes::Bytes::new()))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1234"));
    assert!(r.body.is_empty());
    let r = c
        .send(
            "OPTIONS",
            "/Microsoft-Server-ActiveSync",
            &[],
            full(bytes::Bytes::new()),
        )
        .await
        .unwrap();
    assert_eq!(r.header("ms-asprotocolversions"), Some("14.1,16.1"));
    let r = c.get("/owa/interim", &[]).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
    let r = c.get("/owa/close", &[]).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"until the close"[..]));
    let r = c.get("/owa/len", &[]).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
    // An invalid Content-Length is the server's failure; the connection is not reused.
    let r = c.get("/owa/bad-length", &[]).await;
    assert_eq!(r.status, 502);
    let r = c.get("/owa/len", &[]).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
    assert!(!c.is_closed(), "the client's connection served all of it");
    let lines = |n: usize, targets: &[&str]| -> Vec<(usize, String)> {
        targets.iter().map(|t| (n, (*t).to_owned())).collect()
    };
    let mut expected = lines(
        0,
        &[
            "GET /owa/len",
            "GET /owa/chunked",
            "GET /oab/big",
            "HEAD /owa/head",
            "OPTIONS /Microsoft-Server-ActiveSync",
            "GET /owa/interim",
            "GET /owa/close",
        ],
    );
    expected.extend(lines(1, &["GET /owa/len", "GET /owa/bad-length"]));
    expected.extend(lines(2, &["GET /owa/len"]));
    assert_eq!(upstream.seen(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_server_garbles_ends_its_client_connection_and_its_upstream_one() {
    let upstream = Scripted::start(framings).await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let mut c = gate.client().await;
    let garbled = c
        .send("GET", "/owa/bad-chunk", &[], full(bytes::Bytes::new()))
        .await;
    assert!(
        garbled.is_err(),
        "the client sees the body cut: {garbled:?}"
    );
    let mut c = gate.client().await;
    assert_eq!(&c.get("/owa/len", &[]).await.body[..], b"hello");
    assert_eq!(
        upstream.seen(),
        [
            (0, "GET /owa/bad-chunk".to_owned()),
            (1, "GET /owa/len".to_owned())
        ]
    );
}

fn closes_when_idle(_: &str, _: usize) -> Answer {
    answer(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        Then::CloseIn(Duration::from_millis(50)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_connection_closed_while_idle_is_retried_on_a_new_one() {
    let upstream = Scripted::start(closes_when_idle).await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let mut c = gate.client().await;
    for i in 0..4 {
        let r = c.get(&format!("/owa/{i}"), &[]).await;
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]), "request {i}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Requests 1 to 3 met a closed connection, and went again on a new one.
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 4);
    assert_eq!(upstream_errors(&gate.metrics().await), 0);
}

fn unasked_bytes(line: &str, _: usize) -> Answer {
    match line {
        // A response followed at once by another nobody asked for.
        "GET /owa/a" => answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
            Then::KeepOpen,
        ),
        // A response to HEAD with a body (RFC 9110 §9.3.2 forbids it).
        "HEAD /owa/h" => answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
            Then::KeepOpen,
        ),
        // The same, the body 10 ms after the head.
        "HEAD /owa/late" => Answer {
            pieces: vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n".to_vec(),
                b"smuggled".to_vec(),
            ],
            after: Then::KeepOpen,
        },
        // A 204 with a body (RFC 9110 §15.3.5 forbids it).
        "GET /owa/204" => answer(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 8\r\n\r\nsmuggled",
            Then::KeepOpen,
        ),
        _ => answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhonest",
            Then::KeepOpen,
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_a_response_never_answer_the_next_request() {
    let upstream = Scripted::start(unasked_bytes).await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let mut c = gate.client().await;
    let r = c.get("/owa/a", &[]).await;
    assert_eq!(&r.body[..], b"ok");
    assert_eq!(&c.get("/owa/b", &[]).await.body[..], b"honest");
    let r = c
        .send("HEAD", "/owa/h", &[], full(bytes::Bytes::new()))
        .await
        .unwrap();
    assert!(r.body.is_empty());
    assert_eq!(&c.get("/owa/b", &[]).await.body[..], b"honest");
    assert_eq!(c.get("/owa/204", &[]).await.status, 204);
    assert_eq!(&c.get("/owa/b", &[]).await.body[..], b"honest");
    let r = c
        .send("HEAD", "/owa/late", &[], full(bytes::Bytes::new()))
        .await
        .unwrap();
    assert!(r.body.is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(&c.get("/owa/b", &[]).await.body[..], b"honest");
    // Each response with bytes after it closed its connection; the late ones were
    // found before the next request went out.
    let connections: Vec<usize> = upstream.seen().iter().map(|(c, _)| *c).collect();
    assert_eq!(connections, [0, 1, 1, 2, 2, 3, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_after_gets_goes_on_the_same_upstream_connection() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let mut c = gate.client().await;
    assert_eq!(c.get("/owa/", &[]).await.status, 200);
    assert_eq!(c.get("/owa/2", &[]).await.status, 200);
    let r = c
        .send(
            "POST",
            "/EWS/Exchange.asmx",
            &[("content-type", "text/xml")],
            full(&b"<soap/>"[..]),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // After hyper's client took the connection over, GETs stay on it.
    assert_eq!(c.get("/owa/3", &[]).await.status, 200);
    let seen = upstream.requests();
    let on: Vec<(usize, &str)> = seen
        .iter()
        .map(|r| (r.connection, r.method.as_str()))
        .collect();
    assert_eq!(on, [(0, "GET"), (0, "GET"), (0, "POST"), (0, "GET")]);
    assert_eq!(seen[2].body, b"<soap/>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_gets_a_content_length_that_matches_the_body() {
    let upstream = Scripted::start(framings).await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let mut c = gate.client().await;
    let r = c.get("/owa/listed-length", &[]).await;
    assert_eq!(r.all("content-length"), ["2"]);
    assert_eq!(&r.body[..], b"ok");
    let r = c.get("/owa/chunked-and-length", &[]).await;
    assert_eq!(r.all("content-length"), Vec::<String>::new());
    assert_eq!(&r.body[..], b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_response_body_that_stalls_is_cut_after_the_idle_timeout() {
    let upstream = Scripted::start(framings).await;
    let gate =
        Exgate::start_with("idle_timeout_seconds = 1\n", ONLINE, "", &[upstream.url()]).await;
    let mut c = gate.client().await;
    let started = std::time::Instant::now();
    let cut = tokio::time::timeout(
        Duration::from_secs(10),
        c.send("GET", "/owa/stall", &[], full(bytes::Bytes::new())),
    )
    .await
    .expect("cut before 10 s");
    assert!(cut.is_err(), "the body ends in an error: {cut:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Each connection answers its first request and closes without a word on its second,
/// as connections that died in the pool would.
fn one_answer_per_connection(_: &str, before: usize) -> Answer {
    match before {
        0 => answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Then::KeepOpen,
        ),
        _ => Answer {
            pieces: Vec::new(),
            after: Then::Close,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_goes_on_a_new_connection_not_another_pooled_one() {
    let upstream = Scripted::start(one_answer_per_connection).await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    // Three client connections each leave their upstream connection in the pool when
    // they park (after 1 s quiet).
    let mut parked = Vec::new();
    for _ in 0..3 {
        let mut c = gate.client().await;
        assert_eq!(c.get("/owa/", &[]).await.status, 200);
        parked.push(c);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut c = gate.client().await;
    let r = c.get("/owa/again", &[]).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
    // The pooled connection took the request and died; the retry went to a 4th one.
    let seen = upstream.seen();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen[4].0, 3, "{seen:?}");
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_answer_reaches_the_client_as_http_1_1_on_a_connection_kept_open() {
    let upstream = Scripted::start(framings).await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let (status, text) = raw_exchange(
        gate.addr(),
        b"GET /owa/http10 HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\nGET /owa/len HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(!text.contains("HTTP/1.0"), "{text}");
    assert!(text.ends_with("hello"), "{text}");
}
