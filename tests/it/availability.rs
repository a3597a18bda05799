//! Availability under hostile and heavy load (SPEC §6, §7 "Health" and "Limits"): the
//! connection limit, exgate's own descriptor exhaustion, stalled uploads, bursts of
//! connects, and upstream servers that freeze or die. Every load here is bounded in count
//! and time and talks to 127.0.0.1 on ports the test picked.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const ONLINE: &str = "[exchange]\ndeployment = \"online\"\n[policy]\nscript = \"policies.ps1\"\n";

/// The tests that hold thousands of descriptors in this process (clients, exgate and
/// the upstream all live here) run one at a time, with the file limit raised: side by
/// side they would run this process out of descriptors, and exgate would rightly answer
/// 503 for its own exhaustion.
async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    HEAVY.lock().await
}

/// A plain upstream in a process of its own (`tests/upstream/server.py`), so that it can
/// be frozen with SIGSTOP or killed like an Exchange server.
struct ProcessUpstream {
    child: Child,
    port: u16,
}

impl ProcessUpstream {
    fn start(name: &str) -> ProcessUpstream {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .arg(repo().join("tests/upstream/server.py"))
            .arg(name)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs tests/upstream/server.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        ProcessUpstream {
            port: line.trim().parse().expect("the upstream prints its port"),
            child,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }
}

impl Drop for ProcessUpstream {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request's fate under load: when it started (since the load began), its status
/// (0 when the connection failed) and which upstream answered.
#[derive(Clone, Debug)]
struct Sample {
    started: Duration,
    status: u16,
    upstream: Option<String>,
}

/// `workers` keep-alive clients sending `GET /EWS/Exchange.asmx` one after another for
/// `length`, each opening a new connection every 20 requests (so new connections keep
/// meeting the rotation, as Outlook's do); a failed connection is replaced. Returns
/// every request's fate.
async fn load(addr: SocketAddr, workers: usize, length: Duration) -> Vec<Sample> {
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let begin = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let samples = samples.clone();
        tasks.push(tokio::spawn(async move {
            let mut client: Option<Client> = None;
            let mut sent = 0u64;
            while begin.elapsed() < length {
                let started = begin.elapsed();
                sent += 1;
                if sent.is_multiple_of(20) {
                    client = None;
                }
                if client.as_ref().is_none_or(Client::is_closed) {
                    client = match TcpStream::connect(addr).await {
                        Ok(s) => Some(Client::handshake(hyper_util::rt::TokioIo::new(s)).await),
                        Err(_) => None,
                    };
                }
                let reply = match client.as_mut() {
                    Some(c) => {
                        c.send("GET", "/EWS/Exchange.asmx", &[], full(bytes::Bytes::new()))
                            .await
                    }
                    None => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let sample = match reply {
                    Ok(r) => Sample {
                        started,
                        status: r.status,
                        upstream: r.header("x-upstream").map(str::to_owned),
                    },
                    Err(_) => {
                        client = None;
                        Sample {
                            started,
                            status: 0,
                            upstream: None,
                        }
                    }
                };
                samples.lock().unwrap().push(sample);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(samples).unwrap().into_inner().unwrap()
}

fn failures(samples: &[Sample]) -> usize {
    samples.iter().filter(|s| s.status != 200).count()
}

fn window(samples: &[Sample], from: Duration, to: Duration) -> Vec<Sample> {
    samples
        .iter()
        .filter(|s| s.started >= from && s.started < to)
        .cloned()
        .collect()
}

/// SPEC §7 "Health": with two servers, one frozen with SIGSTOP under load leaves the
/// rotation within one check interval (after it, < 0.1 % of requests fail), and is back
/// within one interval of SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_leaves_the_rotation_within_one_interval_and_returns() {
    let a = ProcessUpstream::start("A");
    let b = ProcessUpstream::start("B");
    let gate = Exgate::start(
        &format!(
            "health_check_interval_seconds = 2\nresponse_header_timeout_seconds = 3\n{ONLINE}"
        ),
        "",
        &[a.url(), b.url()],
    )
    .await;
    let interval = Duration::from_secs(2);
    let addr = gate.addr();
    let run = tokio::spawn(load(addr, 8, Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frozen_at = Duration::from_secs(1);
    b.signal("STOP");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let metrics = gate.metrics().await;
    let b_label = format!("exgate_upstream_healthy{{server=\"{}\"}} 0", b.url());
    assert!(metrics.contains(&b_label), "{b_label}\n{metrics}");
    let thawed_at = Duration::from_millis(4500) + Duration::from_millis(500);
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.signal("CONT");
    let samples = run.await.unwrap();

    let frozen = window(&samples, frozen_at + interval, thawed_at);
    assert!(
        frozen.len() > 200,
        "too little load to judge: {}",
        frozen.len()
    );
    let failed = failures(&frozen);
    assert!(
        failed * 1000 < frozen.len(),
        "{failed} of {} requests failed after one interval",
        frozen.len()
    );
    assert!(frozen.iter().all(|s| s.upstream.as_deref() == Some("A")));
    let back = window(&samples, thawed_at + interval, Duration::from_secs(10));
    assert!(
        back.iter().any(|s| s.upstream.as_deref() == Some("B")),
        "B did not return within one interval of SIGCONT"
    );
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains(&format!(
            "exgate_upstream_healthy{{server=\"{}\"}} 1",
            b.url()
        )),
        "{metrics}"
    );
    eprintln!(
        "frozen window: {} requests, {failed} failed; whole run: {} requests, {} failed",
        frozen.len(),
        samples.len(),
        failures(&samples)
    );
}

/// A killed server (connections refused) costs nothing after the first second: passive
/// ejection and the checks agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_costs_nothing_after_the_first_second() {
    let a = ProcessUpstream::start("A");
    let mut b = ProcessUpstream::start("B");
    let gate = Exgate::start(
        &format!("health_check_interval_seconds = 2\n{ONLINE}"),
        "",
        &[a.url(), b.url()],
    )
    .await;
    let run = tokio::spawn(load(gate.addr(), 8, Duration::from_secs(4)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.child.kill().unwrap();
    let _ = b.child.wait();
    let samples = run.await.unwrap();
    let after = window(&samples, Duration::from_secs(2), Duration::from_secs(4));
    assert!(
        after.len() > 100,
        "too little load to judge: {}",
        after.len()
    );
    assert_eq!(
        failures(&after),
        0,
        "{:?}",
        after.iter().find(|s| s.status != 200)
    );
}

/// SPEC §6: a connection beyond `server.max_connections` is answered 503 with
/// `Retry-After` and closed, counted as exgate's overload, never as an upstream error;
/// once a connection closes, a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_max_connections_gets_503_and_blames_no_server() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start_with("max_connections = 3", ONLINE, "", &[upstream.url()]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = gate.client().await;
        assert_eq!(c.get("/owa/", &[]).await.status, 200);
        held.push(c);
    }
    let (status, text) = raw_exchange(
        gate.addr(),
        b"GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("Retry-After: 1\r\n"), "{text}");
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains("exgate_overload_total{reason=\"max_connections\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("exgate_client_connections 3"), "{metrics}");
    assert!(
        metrics.contains("exgate_client_connections_limit 3"),
        "{metrics}"
    );
    assert!(upstream_errors(&metrics) == 0, "{metrics}");
    assert_eq!(upstream.requests().len(), 3);

    drop(held.pop());
    // The closed connection's place frees once exgate sees the close.
    let mut served = None;
    for _ in 0..50 {
        let (status, _) = raw_exchange(
            gate.addr(),
            b"GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        if status == 200 {
            served = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served, Some(200));
}

/// SPEC §7 "Limits": when exgate itself runs out of file descriptors (here under a
/// `prlimit` of 64), a request is answered 503 with `Retry-After`, counted as
/// `exgate_overload_total{reason="file_descriptors"}`, and no server is ejected: as soon
/// as descriptors free up, the same upstream serves again.
///
/// Keep-alive clients are served (two of exgate's descriptors each: theirs and their
/// upstream connection) until one is refused; which of exgate's two answers refuses it
/// first depends on how many descriptors exgate started with (what the test runner lets
/// it inherit): either its upstream connect fails (503 from the request path), or the
/// accept does (503 on the spare descriptor). The refused clients stay connected, so
/// the next one always meets a full table and must be answered on the spare: every
/// client waiting at the limit gets its 503 on its own connection, in answer to its own
/// request, within seconds — none is left unanswered in the accept queue.
#[test]
fn running_out_of_descriptors_is_exgate_s_own_and_ejects_no_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let upstream = Upstream::start().await;
        let dir = write_files(&[
            (
                "exgate.toml",
                &config_text(ONLINE, &[upstream.url()], "max_connections = 1000"),
            ),
            ("policies.ps1", ""),
        ]);
        let gate = Spawned::start_limited(&dir, "warn", 64);
        let mut clients = Vec::new();
        let mut refused = Vec::new();
        for n in 0..64 {
            if refused.len() == 2 {
                break;
            }
            // The connect completes in the kernel's accept queue whether or not exgate
            // can accept; the answer must come all the same.
            let stream = TcpStream::connect(gate.proxy).await.unwrap();
            let mut c = Client::handshake(hyper_util::rt::TokioIo::new(stream)).await;
            let sent = tokio::time::timeout(
                Duration::from_secs(10),
                c.send("GET", "/owa/", &[], full(bytes::Bytes::new())),
            )
            .await;
            match sent {
                Ok(Ok(r)) if r.status == 200 && refused.is_empty() => clients.push(c),
                Ok(Ok(r)) => {
                    refused.push(r);
                    clients.push(c);
                }
                Ok(Err(e)) => panic!(
                    "client {n} (after {} served) got no answer: {e}\n{}",
                    clients.len(),
                    gate.log()
                ),
                Err(_) => panic!(
                    "client {n} (after {} served) waited 10 s unanswered\n{}",
                    clients.len(),
                    gate.log()
                ),
            }
        }
        assert!(
            !refused.is_empty(),
            "exgate never ran out of descriptors\n{}",
            gate.log()
        );
        assert_eq!(refused.len(), 2, "{refused:?}\n{}", gate.log());
        for r in &refused {
            assert_eq!(r.status, 503, "{r:?}");
            assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
        }
        // The second was taken on the spare descriptor: exgate's raw 503 closes.
        assert_eq!(
            refused[1].header("connection"),
            Some("close"),
            "{refused:?}"
        );
        let served = clients.len() - refused.len();
        assert!(served > 10, "only {served} connections served");
        clients.truncate(clients.len() - 5);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut c = Client::connect(gate.proxy).await;
        assert_eq!(
            c.get("/owa/", &[]).await.status,
            200,
            "the server was ejected"
        );
        let metrics = gate.metrics().await;
        let counted: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("exgate_overload_total{reason=\"file_descriptors\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{metrics}"));
        assert!(counted >= 2, "each refusal is counted\n{metrics}");
        assert!(upstream_errors(&metrics) == 0, "{metrics}");
        let log = gate.stop();
        assert!(!log.contains("upstream server ejected"), "{log}");
    });
}

/// 300 stalled small uploads (`Content-Length: 1000`, 10 bytes sent) are all cut with
/// 408 within the idle timeout, none reaches Exchange, and the client-error metric
/// counts each; stalled large uploads, whose first bytes were forwarded, are cut too and
/// their upstream connections closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_stalled_uploads_are_cut_with_408() {
    let _heavy = heavy().await;
    let upstream = Upstream::start().await;
    let gate = Exgate::start_with("idle_timeout_seconds = 2", ONLINE, "", &[upstream.url()]).await;
    let addr = gate.addr();
    let started = Instant::now();
    let small = (0..300).map(|_| {
        tokio::spawn(async move {
            let request = "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 1000\r\n\r\n0123456789";
            raw_exchange(addr, request.as_bytes(), Duration::from_secs(6)).await
        })
    });
    let small: Vec<_> = small.collect();
    let large: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let head = "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 1048576\r\n\r\n";
                s.write_all(head.as_bytes()).await.unwrap();
                s.write_all(&[b'x'; 70_000]).await.unwrap();
                let mut out = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut out)).await;
                String::from_utf8_lossy(&out).into_owned()
            })
        })
        .collect();
    for t in small {
        let (status, text) = t.await.unwrap();
        assert_eq!(status, 408, "{text}");
    }
    for t in large {
        let text = t.await.unwrap();
        // Exgate answers 408 when the response has not begun; either way it closes.
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let reached: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.body_len < 1_048_576)
        .collect();
    assert!(
        reached.iter().all(|r| r.body_len != 10),
        "a stalled small body reached Exchange"
    );
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains("exgate_client_errors_total{reason=\"body_stalled\"} 320"),
        "{metrics}"
    );
    assert!(upstream_errors(&metrics) == 0, "{metrics}");
    // Every client connection was closed: none is left open.
    let mut open = u64::MAX;
    for _ in 0..50 {
        let m = gate.metrics().await;
        open = m
            .lines()
            .find_map(|l| l.strip_prefix("exgate_client_connections "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX);
        if open <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(open <= 1, "{open} client connections still open");
}

/// 2,000 clients connecting at once all complete their handshake without waiting for a
/// SYN retransmit (≥ 1 s): the accept queue (`server.listen_backlog`, default 4096)
/// holds the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_simultaneous_connects_wait_for_no_retransmit() {
    let _heavy = heavy().await;
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let addr = gate.addr();
    let gate_open = Arc::new(tokio::sync::Barrier::new(2000));
    let tasks: Vec<_> = (0..2000)
        .map(|_| {
            let gate_open = gate_open.clone();
            tokio::spawn(async move {
                gate_open.wait().await;
                let t = Instant::now();
                let s = TcpStream::connect(addr).await;
                (t.elapsed(), s)
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let mut streams = Vec::new();
    for t in tasks {
        let (took, s) = t.await.unwrap();
        slowest = slowest.max(took);
        streams.push(s.expect("connect"));
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a connect took {slowest:?}"
    );
    // And every one of them is served.
    let mut answered = 0;
    for s in streams.iter_mut().step_by(100) {
        s.write_all(b"GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        answered += usize::from(&buf == b"HTTP/1.1 200");
    }
    assert_eq!(answered, 20);
}

/// Many concurrent client connections (2,000 here; `benches/connections.sh` holds
/// 10,000 under the systemd unit's limits) each forward a request on their own upstream
/// connection, and every one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_connections_all_get_answers() {
    let _heavy = heavy().await;
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let mut clients = Vec::new();
    for _ in 0..2000 {
        clients.push(gate.client().await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let status = c.get("/owa/", &[]).await.status;
                (status, c)
            })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        let (status, c) = t.await.unwrap();
        assert_eq!(status, 200, "{}", gate.metrics().await);
        held.push(c);
    }
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains("exgate_client_connections 2000"),
        "{metrics}"
    );
    let connections: std::collections::HashSet<_> =
        upstream.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections.len(), 2000);
}

/// The admin listener serves at most 32 connections at once, from the descriptors kept
/// in reserve: one more is closed unanswered, and `/healthz` answers again as soon as a
/// place frees; the proxy listener is unaffected meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_is_bounded_and_the_proxy_is_not_starved_by_it() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let admin = gate.running.admin_addr;
    let mut idle = Vec::new();
    for _ in 0..32 {
        idle.push(TcpStream::connect(admin).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... which only a client holding them can do, for 10 s at most each.
    let (status, _) = raw_exchange(
        admin,
        b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(status, 0, "the 33rd admin connection was served");
    let mut c = gate.client().await;
    assert_eq!(c.get("/owa/", &[]).await.status, 200);
    drop(idle.pop());
    let mut healthy = false;
    for _ in 0..50 {
        let (status, _) = raw_exchange(
            admin,
            b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        if status == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(healthy);
}

/// The response-header timeout runs from the end of the upload: a body that keeps
/// moving for longer than the timeout is forwarded whole and answered, never cut as
/// Exchange's delay (a red-team finding: it got 504 and counted an upstream error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_that_keeps_moving_is_no_response_timeout() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start_with(
        "idle_timeout_seconds = 3",
        &format!("response_header_timeout_seconds = 1\n{ONLINE}"),
        "",
        &[upstream.url()],
    )
    .await;
    let mut s = TcpStream::connect(gate.addr()).await.unwrap();
    let head = "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 80000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[b'x'; 70_000]).await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(&[b'y'; 1000]).await.unwrap();
    }
    let mut buf = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    assert_eq!(upstream.requests()[0].body_len, 80_000);
    assert!(upstream_errors(&gate.metrics().await) == 0);
}

/// A client that asks for a large response and stops reading it is cut after the idle
/// timeout, its place and its upstream connection freed, and counted as the client's
/// fault (a red-team finding: 50 such clients held every place for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_after_the_idle_timeout() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start_with("idle_timeout_seconds = 2", ONLINE, "", &[upstream.url()]).await;
    let mut s = TcpStream::connect(gate.addr()).await.unwrap();
    s.write_all(b"GET /owa/big HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 100];
    s.read_exact(&mut buf).await.unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(8) {
        let m = gate.metrics().await;
        if m.contains("exgate_client_connections 0")
            && m.contains("exgate_client_errors_total{reason=\"response_unread\"} 1")
        {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cut, "{}", gate.metrics().await);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(upstream_errors(&gate.metrics().await) == 0);
}

/// When exgate runs out of descriptors, health checks that cannot even open a
/// connection change nothing (no server leaves the rotation, no "check failed"), and a
/// client waiting to be accepted is answered 503 from the descriptor kept spare (two
/// red-team findings: healthy servers went to 0, and waiting clients got nothing).
#[test]
fn out_of_descriptors_no_health_check_fails_and_waiting_clients_get_503() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (a, b) = (Upstream::start().await, Upstream::start().await);
        let dir = write_files(&[
            (
                "exgate.toml",
                &config_text(
                    &format!("health_check_interval_seconds = 2\n{ONLINE}"),
                    &[a.url(), b.url()],
                    "max_connections = 1000",
                ),
            ),
            ("policies.ps1", ""),
        ]);
        let gate = Spawned::start_limited(&dir, "info", 64);
        // Idle connections until exgate has no descriptor left (it accepts them all).
        let mut idle = Vec::new();
        for _ in 0..80 {
            idle.push(TcpStream::connect(gate.proxy).await.unwrap());
        }
        let (status, text) = raw_exchange(
            gate.proxy,
            b"GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n",
            Duration::from_secs(8),
        )
        .await;
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("Retry-After: 1"), "{text}");
        // Two rounds of checks while short of descriptors.
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(idle);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let metrics = gate.metrics().await;
        for server in [a.url(), b.url()] {
            let line = format!("exgate_upstream_healthy{{server=\"{server}\"}} 1");
            assert!(metrics.contains(&line), "{line}\n{metrics}");
        }
        assert!(upstream_errors(&metrics) == 0, "{metrics}");
        let mut c = Client::connect(gate.proxy).await;
        assert_eq!(c.get("/owa/", &[]).await.status, 200);
        let log = gate.stop();
        assert!(!log.contains("health check failed"), "{log}");
        assert!(log.contains("out of file descriptors"), "{log}");
    });
}

/// A client that hangs up in the middle of its body, small or large, with a length or
/// chunked, is counted as `body_aborted` (a red-team finding: all were `body_framing`),
/// and never as an upstream error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_by_the_client_is_counted_as_aborted() {
    let upstream = Upstream::start().await;
    let gate = Exgate::start(ONLINE, "", &[upstream.url()]).await;
    let cases: [(&str, usize); 3] = [
        ("Content-Length: 1000", 10),
        ("Content-Length: 1048576", 70_000),
        ("Transfer-Encoding: chunked", 0),
    ];
    for (framing, sent) in cases {
        let mut s = TcpStream::connect(gate.addr()).await.unwrap();
        let head = format!(
            "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n{framing}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        match sent {
            0 => s.write_all(b"10\r\n0123456789").await.unwrap(),
            n => s.write_all(&vec![b'x'; n]).await.unwrap(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
    }
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = gate.metrics().await;
        if metrics.contains("exgate_client_errors_total{reason=\"body_aborted\"} 3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_only_client_errors(&metrics, "body_aborted", 3);
}
