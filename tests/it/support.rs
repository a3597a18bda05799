//! Helpers: the built binary, and scratch folders for configuration files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the real `exgate` binary with `args` and no `EXGATE__*` overrides.
pub fn exgate(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exgate"));
    cmd.args(args).current_dir(repo());
    for (key, _) in std::env::vars() {
        if key.starts_with("EXGATE__") {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("run exgate")
}

/// A fresh, empty scratch folder under the system temp dir.
pub fn scratch() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("exgate-it-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `files` (name, content) into a fresh scratch folder and returns it.
pub fn write_files(files: &[(&str, &str)]) -> PathBuf {
    let dir = scratch();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    dir
}

/// Text of a process output stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The path as a `&str` for command lines.
pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------
// In-process fakes: a recording upstream, a client, and exgate itself on port 0.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// What the upstream received, per request.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Which upstream TCP connection carried it (0, 1, 2 … in accept order).
    pub connection: usize,
    pub method: String,
    pub target: String,
    pub headers: HeaderMap,
    pub body_len: u64,
    /// The body itself when it is under 1 MiB.
    pub body: Vec<u8>,
}

/// A fake Exchange on 127.0.0.1:0 that records what reaches it. It answers NTLM like
/// IIS (Type 1 → 401 with a Type 2, Type 3 → 200), anonymous requests to paths
/// containing `challenge` with Exchange's legacy challenges, and closes the connection
/// after anonymous requests to paths containing `closes`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    /// Notified with the number of body bytes received so far, per 1 MiB.
    pub progress: tokio::sync::watch::Receiver<u64>,
}

impl Upstream {
    /// Listens with a backlog of 4,096 (Linux's `somaxconn` default), not tokio's 1,024:
    /// with 2,000 upstream connections opened at once on a busy machine, SYNs were
    /// dropped on the full accept queue and connects timed out (3 s, a 502): the stand-in
    /// for Exchange, not exgate, was the bottleneck.
    pub async fn start() -> Upstream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(4096).unwrap();
        Upstream::serve(listener, None).await
    }

    /// Serves on `listener`, with TLS when an acceptor is given.
    pub async fn serve(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let (progress_tx, progress) = tokio::sync::watch::channel(0u64);
        let progress_tx = Arc::new(progress_tx);
        let record = seen.clone();
        tokio::spawn(async move {
            for connection in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                let progress_tx = progress_tx.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle_upstream(req, connection, record.clone(), progress_tx.clone())
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                    };
                });
            }
        });
        Upstream {
            addr,
            seen,
            progress,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle_upstream(
    req: Request<Incoming>,
    connection: usize,
    record: Arc<Mutex<Vec<Recorded>>>,
    progress: Arc<tokio::sync::watch::Sender<u64>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let (mut body_len, mut kept) = (0u64, Vec::new());
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            let before = body_len / (1 << 20);
            body_len += data.len() as u64;
            if kept.len() + data.len() <= 1 << 20 {
                kept.extend_from_slice(&data);
            }
            if body_len / (1 << 20) != before {
                let _ = progress.send(body_len);
            }
        }
    }
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    record.lock().unwrap().push(Recorded {
        connection,
        method: parts.method.to_string(),
        target: target.clone(),
        headers: parts.headers.clone(),
        body_len,
        body: kept,
    });
    // A path with `big` in it gets a 32 MiB answer (a large attachment, an OAB file),
    // one with `kib=N` N KiB followed by `upstream saw TARGET`.
    let kib = target
        .split_once("kib=")
        .and_then(|(_, n)| n.split('&').next()?.parse::<usize>().ok());
    let text = match (target.contains("big"), kib) {
        (true, _) => Bytes::from(vec![b'x'; 32 << 20]),
        (false, Some(n)) => {
            let mut t = vec![b'x'; n << 10];
            t.extend_from_slice(format!("upstream saw {target}").as_bytes());
            Bytes::from(t)
        }
        (false, None) => Bytes::from(format!(
            "upstream saw {} {} on connection {connection}",
            parts.method, target
        )),
    };
    let mut res = Response::new(Full::new(text));
    res.headers_mut()
        .insert("x-upstream-connection", HeaderValue::from(connection));
    res.headers_mut()
        .insert("x-upstream-body-len", HeaderValue::from(body_len));
    if let Some(token) = auth
        .strip_prefix("NTLM ")
        .or(auth.strip_prefix("Negotiate "))
    {
        let msg = STANDARD.decode(token).unwrap_or_default();
        // An NTLM Type 1, raw or inside SPNEGO, gets a Type 2; anything else (a Type 3,
        // a Kerberos AP-REQ) is accepted.
        let ntlm_type = msg
            .windows(8)
            .position(|w| w == b"NTLMSSP\0")
            .and_then(|i| msg.get(i + 8));
        if ntlm_type == Some(&1) {
            let mut type2 = b"NTLMSSP\0\x02\0\0\0".to_vec();
            type2.resize(56, 0);
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            let scheme = auth.split(' ').next().unwrap();
            res.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_str(&format!("{scheme} {}", STANDARD.encode(type2))).unwrap(),
            );
        }
    } else if target.to_ascii_lowercase().contains("healthcheck.htm") {
        // Managed Availability's page: 200 whatever the credentials, as Exchange does.
    } else if let Some(b64) = auth.strip_prefix("Basic ") {
        // A password starting with "wrong" is a bad password, as Active Directory says.
        let decoded =
            String::from_utf8(STANDARD.decode(b64).unwrap_or_default()).unwrap_or_default();
        if decoded
            .split_once(':')
            .is_some_and(|(_, p)| p.starts_with("wrong"))
        {
            *res.status_mut() = StatusCode::UNAUTHORIZED;
        }
    } else if auth.is_empty() && target.contains("closes") {
        // Exchange ending its connection after this answer.
        res.headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
    } else if auth.is_empty() && target.contains("challenge") {
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        for c in ["Negotiate", "NTLM", "Basic realm=\"mail.contoso.com\""] {
            res.headers_mut()
                .append("www-authenticate", HeaderValue::from_static(c));
        }
    }
    Ok(res)
}

/// The client-side body type.
pub type ClientBody = BoxBody<Bytes, Infallible>;

/// A full in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> ClientBody {
    Full::new(bytes.into()).boxed()
}

/// A body of `total` bytes in 64 KiB chunks, generated as it is sent. When gated, it
/// sends `before_gate` bytes and then waits for the gate before the rest.
pub struct Generated {
    remaining: u64,
    chunk: Bytes,
    gate: Option<Pin<Box<tokio::sync::futures::Notified<'static>>>>,
    before_gate: u64,
}

impl Generated {
    pub fn new(total: u64) -> Generated {
        let chunk: Vec<u8> = (0..65_536u32).map(|i| (i * 31 % 251) as u8).collect();
        Generated {
            remaining: total,
            chunk: Bytes::from(chunk),
            gate: None,
            before_gate: 0,
        }
    }

    /// Sends `before_gate` bytes, then holds the rest until `gate` is notified.
    pub fn gated(total: u64, before_gate: u64, gate: &'static tokio::sync::Notify) -> Generated {
        let mut g = Generated::new(total);
        g.gate = Some(Box::pin(gate.notified()));
        g.before_gate = before_gate;
        g
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.before_gate == 0
            && let Some(gate) = self.gate.as_mut()
        {
            if gate.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.gate = None;
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        self.before_gate = self.before_gate.saturating_sub(n as u64);
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

/// One client connection to exgate.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<ClientBody>,
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        Client::handshake(TokioIo::new(stream)).await
    }

    pub async fn handshake<T>(io: T) -> Client
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        Client { sender }
    }

    /// Sends a request; `headers` are added to a `Host: mail.contoso.com` default.
    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: ClientBody,
    ) -> Result<Reply, hyper::Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(target)
            .header("host", "mail.contoso.com");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body).unwrap();
        self.sender.ready().await?;
        let res = self.sender.send_request(req).await?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&mut self, target: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", target, headers, full(Bytes::new()))
            .await
            .unwrap()
    }

    /// Whether exgate has closed this connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// exgate running in this process on port 0, configured from a TOML text and script.
pub struct Exgate {
    pub running: exgate::proxy::Running,
}

impl Exgate {
    /// `toml` gets `[server]` with port-0 listeners prepended; `upstreams` fill
    /// `upstream.servers`.
    pub async fn start(toml: &str, script: &str, upstreams: &[String]) -> Exgate {
        Exgate::start_with("", toml, script, upstreams).await
    }

    /// Like [`Exgate::start`], with extra `[server]` keys.
    pub async fn start_with(
        server: &str,
        toml: &str,
        script: &str,
        upstreams: &[String],
    ) -> Exgate {
        let dir = write_files(&[
            ("exgate.toml", &config_text(toml, upstreams, server)),
            ("policies.ps1", script),
        ]);
        let config =
            exgate::config::load_with_env(&dir.join("exgate.toml"), Some(Default::default()))
                .unwrap_or_else(|e| panic!("{e}"));
        let running = exgate::proxy::start(config).await.unwrap();
        Exgate { running }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.proxy_addr
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr()).await
    }

    pub async fn metrics(&self) -> String {
        let mut c = Client::connect(self.running.admin_addr).await;
        String::from_utf8(c.get("/metrics", &[]).await.body.to_vec()).unwrap()
    }
}

/// Posts `script` to the admin API's `/cmdlet` at `admin`: the status and the output.
pub async fn cmdlet(admin: SocketAddr, script: &str) -> (u16, String) {
    let mut c = Client::connect(admin).await;
    let r = c
        .send("POST", "/cmdlet", &[], full(script.to_owned()))
        .await
        .unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// `Basic` credentials for a header.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// NTLM Type 1 / Type 3 headers under `scheme` (`NTLM` or `Negotiate`).
pub fn ntlm_type1(scheme: &str) -> String {
    format!(
        "{scheme} {}",
        STANDARD.encode(exgate::auth::ntlm::build_negotiate())
    )
}

pub fn ntlm_type3(scheme: &str, domain: &str, user: &str) -> String {
    let msg = exgate::auth::ntlm::build_authenticate(&exgate::auth::ntlm::AuthenticateParts {
        domain,
        user,
        workstation: "WS01",
        unicode: true,
        lm_response: &[0; 24],
        nt_response: &[0x42; 64],
        session_key: &[],
    });
    format!("{scheme} {}", STANDARD.encode(msg))
}

pub fn kerberos() -> String {
    format!(
        "Negotiate {}",
        STANDARD.encode(exgate::auth::negotiate::build_spnego_kerberos(1200))
    )
}

/// The Bearer challenge exgate sends with the default `[exchange.challenge]`.
pub const BEARER_CHALLENGE: &str = "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\"";

/// A path per governed protocol.
pub const PROTOCOL_PATHS: [(&str, &str); 9] = [
    ("Autodiscover", "/autodiscover/autodiscover.xml"),
    ("Mapi", "/mapi/emsmdb/?MailboxId=0@contoso.com"),
    ("OfflineAddressBook", "/OAB/0/oab.xml"),
    ("WebServices", "/EWS/Exchange.asmx"),
    ("Rpc", "/rpc/rpcproxy.dll?mbx@contoso.com:6001"),
    ("ActiveSync", "/Microsoft-Server-ActiveSync?Cmd=Sync"),
    ("PowerShell", "/PowerShell/"),
    (
        "ReportingWebServices",
        "/ecp/ReportingWebService/Reporting.svc/",
    ),
    ("OutlookService", "/api/v2.0/me"),
];

/// A configuration with port-0 listeners (plus `server_extra` in `[server]`), the given
/// upstreams, and `toml` after them.
///
/// Active health checks are off unless `toml` sets their interval: their probes would
/// reach the recording upstream and take its connection numbers.
pub fn config_text(toml: &str, upstreams: &[String], server_extra: &str) -> String {
    let servers: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    let checks = match toml.contains("health_check_interval_seconds") {
        true => "",
        false => "health_check_interval_seconds = 0\n",
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server_extra}\n[upstream]\nservers = [{}]\n{checks}{toml}",
        servers.join(", ")
    )
}

/// The real `exgate serve` binary, with its output captured.
pub struct Spawned {
    pub child: std::process::Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    output: Arc<Mutex<String>>,
}

impl Spawned {
    /// Starts `exgate serve --config <dir>/exgate.toml` with `RUST_LOG=rust_log` and waits
    /// for its "listening" line.
    pub fn start(dir: &Path, rust_log: &str) -> Spawned {
        let mut command = Command::new(env!("CARGO_BIN_EXE_exgate"));
        command.args(["serve", "--config", arg(&dir.join("exgate.toml"))]);
        Spawned::run(command, rust_log)
    }

    /// Like [`Spawned::start`], with `before` given before `serve` (global flags such as
    /// `--log-format json`).
    pub fn start_with_flags(dir: &Path, rust_log: &str, before: &[&str]) -> Spawned {
        let mut command = Command::new(env!("CARGO_BIN_EXE_exgate"));
        command
            .args(before)
            .args(["serve", "--config", arg(&dir.join("exgate.toml"))]);
        Spawned::run(command, rust_log)
    }

    /// Like [`Spawned::start`], under an open-file limit of `nofile` (soft and hard),
    /// set by util-linux's `prlimit`, which then executes exgate in its place.
    pub fn start_limited(dir: &Path, rust_log: &str, nofile: u64) -> Spawned {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_exgate"))
            .args(["serve", "--config", arg(&dir.join("exgate.toml"))]);
        Spawned::run(command, rust_log)
    }

    /// Like [`Spawned::start`], on one CPU (util-linux's `taskset -c <first allowed
    /// CPU>`), where `serve` runs tokio's current-thread scheduler.
    pub fn start_on_one_cpu(dir: &Path, rust_log: &str) -> Spawned {
        let mut command = Command::new("taskset");
        command
            .args(["-c", &first_allowed_cpu().to_string()])
            .arg(env!("CARGO_BIN_EXE_exgate"))
            .args(["serve", "--config", arg(&dir.join("exgate.toml"))]);
        Spawned::run(command, rust_log)
    }

    fn run(mut command: Command, rust_log: &str) -> Spawned {
        use std::io::{BufRead, BufReader, Read};
        use std::process::Stdio;
        let mut child = command
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output: Arc<Mutex<String>> = Arc::default();
        let mut stderr = child.stderr.take().unwrap();
        let err_out = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                err_out
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let out = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                out.lock().unwrap().push_str(&line);
                out.lock().unwrap().push('\n');
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("exgate did not start: {}", output.lock().unwrap()));
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .parse()
                .unwrap()
        };
        Spawned {
            proxy: field("proxy="),
            admin: field("admin="),
            child,
            output,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`HUP`, `TERM`) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub async fn metrics(&self) -> String {
        let mut c = Client::connect(self.admin).await;
        String::from_utf8(c.get("/metrics", &[]).await.body.to_vec()).unwrap()
    }

    /// Everything it wrote so far.
    pub fn log(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Stops the process with SIGTERM and returns everything it wrote.
    pub fn stop(mut self) -> String {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exgate exited with {status}");
        std::thread::sleep(std::time::Duration::from_millis(50));
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends raw bytes on a new connection and returns what came back: the status of the
/// first response (0 when none came) and the whole text read until exgate closed the
/// connection or went quiet for `quiet`.
pub async fn raw_exchange(
    addr: SocketAddr,
    bytes: &[u8],
    quiet: std::time::Duration,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(quiet, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The audit lines written so far, waiting until there are at least `n`.
pub async fn audit_lines(gate: &Exgate, n: usize) -> Vec<serde_json::Value> {
    let path = gate
        .running
        .config_path()
        .with_file_name("audit/exgate.jsonl");
    // Whole lines only: the file may be read while a line is being appended (a line
    // read half-written failed to parse once in a full `cargo test`).
    let whole_lines = || -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    for _ in 0..200 {
        if whole_lines().len() >= n {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return whole_lines();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} audit lines in {}", path.display());
}

/// `n` client errors of `reason` were counted, and not one upstream error: what the
/// client did wrong is never blamed on Exchange.
/// The sum of `exgate_upstream_errors_total` over its reasons (each exists from the
/// start at 0).
pub fn upstream_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("exgate_upstream_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

pub fn assert_only_client_errors(metrics: &str, reason: &str, n: u64) {
    let line = format!("exgate_client_errors_total{{reason=\"{reason}\"}} {n}");
    assert!(metrics.contains(&line), "{line}\n{metrics}");
    assert!(upstream_errors(metrics) == 0, "{metrics}");
}

/// A field of `/proc/<pid>/status` (`pid` may be `self`), trimmed: `SigCgt`,
/// `Cpus_allowed_list`, …
pub fn proc_status_field(pid: impl std::fmt::Display, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    Some(value.trim().to_owned())
}

/// The lowest-numbered CPU this process may run on (`Cpus_allowed_list`: "0-1",
/// "2,4-7").
fn first_allowed_cpu() -> u32 {
    proc_status_field("self", "Cpus_allowed_list")
        .and_then(|list| list.split([',', '-']).next()?.parse().ok())
        .unwrap_or(0)
}
