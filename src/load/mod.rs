//! `exgate load` (feature `lab`): a load generator for the enforcement path. Loopback
//! targets only; bounded by both a duration and a request count; a traffic mix of bearer
//! tokens with and without MFA (minted in process with a lab's key), Basic per protocol,
//! NTLM three-leg handshakes on kept-alive connections, Kerberos-looking Negotiate, and a
//! password spray (many user names from one source).

mod stats;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

pub use stats::{ClassReport, LoadReport};

use crate::lab::{USERS, ntlm};
use crate::token::mint::{SigningKey, entra_v1_claims, mfa_at_adfs};

/// The kinds of traffic in a mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    BearerMfa,
    BearerNoMfa,
    Basic,
    Ntlm,
    Kerberos,
    Spray,
}

impl Class {
    /// Every class.
    pub const ALL: [Class; 6] = [
        Class::BearerMfa,
        Class::BearerNoMfa,
        Class::Basic,
        Class::Ntlm,
        Class::Kerberos,
        Class::Spray,
    ];

    /// The name used in `--mix` and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Class::BearerMfa => "bearer-mfa",
            Class::BearerNoMfa => "bearer-no-mfa",
            Class::Basic => "basic",
            Class::Ntlm => "ntlm",
            Class::Kerberos => "kerberos",
            Class::Spray => "spray",
        }
    }
}

/// Parses `bearer-mfa=40,basic=20,…` into weights.
pub fn parse_mix(text: &str) -> Result<Vec<(Class, u32)>, String> {
    let mut mix = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not class=weight"))?;
        let class = Class::ALL
            .into_iter()
            .find(|c| c.as_str() == name.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Class::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown class '{name}' (use {})", names.join(", "))
            })?;
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| format!("'{weight}' is not a whole number"))?;
        if weight > 0 {
            mix.push((class, weight));
        }
    }
    if mix.is_empty() {
        return Err("the mix is empty".into());
    }
    Ok(mix)
}

/// The default mix: mostly modern, some legacy, a little spray.
pub const DEFAULT_MIX: &str = "bearer-mfa=50,bearer-no-mfa=5,basic=20,ntlm=10,kerberos=5,spray=10";

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub target: Target,
    pub duration: Duration,
    pub max_requests: u64,
    pub concurrency: usize,
    pub mix: Vec<(Class, u32)>,
    /// Print a progress line every second.
    pub progress: bool,
}

/// Where the load goes: a loopback address, and TLS when the URL is `https://`.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The host named in the URL, the TLS server name.
    host: String,
    https: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// Verifies an `https://` target against the CA certificates in `ca_file` only (the
    /// lab's `ca.pem`); a plain target is left as it is.
    pub fn trusting(mut self, ca_file: &std::path::Path) -> anyhow::Result<Target> {
        if self.https {
            self.tls = Some(crate::client::tls_trusting(ca_file)?);
        }
        Ok(self)
    }
}

/// The target must be on this machine: 127.0.0.0/8 or ::1.
pub fn loopback_target(url: &str) -> anyhow::Result<Target> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("'{url}' is not a URL"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => anyhow::bail!("exgate load speaks http:// and https:// only"),
    };
    let host = uri.host().context("the target has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host == "localhost" {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse()
            .with_context(|| format!("'{host}' is not an IP address"))?
    };
    anyhow::ensure!(
        ip.is_loopback(),
        "exgate load only targets loopback addresses, not {ip}"
    );
    Ok(Target {
        addr: SocketAddr::new(ip, uri.port_u16().unwrap_or(if https { 443 } else { 80 })),
        host: host.to_owned(),
        https,
        tls: None,
    })
}

/// Tokens minted up front: verifying a pool of distinct tokens is realistic load; one
/// token repeated would only measure the cache.
struct Material {
    mfa: Vec<String>,
    no_mfa: Vec<String>,
}

impl Material {
    fn mint(key: &SigningKey, audience: &str, tenant: &str, adfs: bool) -> Material {
        let mint = |i: usize, mfa: bool| {
            let user = format!("load{i:04}@contoso.com");
            let mut claims = entra_v1_claims(tenant, audience, &user, mfa, 3600);
            if adfs && mfa {
                mfa_at_adfs(&mut claims);
            }
            key.sign(&claims)
        };
        Material {
            mfa: (0..300).map(|i| mint(i, true)).collect(),
            no_mfa: (0..50).map(|i| mint(i, false)).collect(),
        }
    }
}

const BASIC_PATHS: [&str; 6] = [
    "/mapi/emsmdb/?MailboxId=6d2f3c1a@contoso.com",
    "/EWS/Exchange.asmx",
    "/autodiscover/autodiscover.xml",
    "/OAB/lab/oab.xml",
    "/Microsoft-Server-ActiveSync?Cmd=Sync",
    "/rpc/rpcproxy.dll?6d2f3c1a@contoso.com:6001",
];

struct Worker {
    target: Target,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Worker {
    async fn sender(&mut self) -> anyhow::Result<&mut SendRequest<Empty<Bytes>>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = tokio::net::TcpStream::connect(self.target.addr).await?;
            stream.set_nodelay(true)?;
            let sender = match &self.target.tls {
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::try_from(self.target.host.clone())?;
                    let stream = tokio_rustls::TlsConnector::from(tls.clone())
                        .connect(name, stream)
                        .await?;
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(conn);
                    sender
                }
                None => {
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(conn);
                    sender
                }
            };
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("connected above"))
    }

    /// One request on the kept-alive connection; returns the status and, for NTLM, the
    /// challenge.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        auth: Option<&str>,
    ) -> anyhow::Result<(u16, Option<String>)> {
        let target = self.target.addr;
        let sender = self.sender().await?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", target.to_string())
            .header("user-agent", "exgate-load/1");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        sender.ready().await?;
        let res = sender.send_request(req.body(Empty::new())?).await?;
        let challenge = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = res.status().as_u16();
        res.into_body().collect().await?;
        Ok((status, challenge))
    }
}

/// Runs the load and returns what happened. Stops at the duration or the request cap,
/// whichever comes first.
pub async fn run(
    options: LoadOptions,
    key: &SigningKey,
    scenario: crate::lab::Scenario,
) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(
        options.target.addr.ip().is_loopback(),
        "loopback targets only"
    );
    anyhow::ensure!(
        !options.target.https || options.target.tls.is_some(),
        "an https:// target needs a CA to trust (Target::trusting)"
    );
    anyhow::ensure!(
        options.concurrency > 0 && options.concurrency <= 10_000,
        "concurrency must be 1..=10000"
    );
    let material = Arc::new(Material::mint(
        key,
        scenario.audience(),
        crate::lab::TENANT,
        scenario.mfa_by_adfs(),
    ));
    // Units claimed (never more than the cap) and units finished.
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(tokio::sync::Notify::new());
    let started = Instant::now();
    let deadline = started + options.duration;
    let schedule: Arc<Vec<Class>> = Arc::new(
        options
            .mix
            .iter()
            .flat_map(|(c, w)| std::iter::repeat_n(*c, *w as usize))
            .collect(),
    );
    let cap = options.max_requests;
    let progress = options.progress.then(|| {
        let (done, stopped) = (done.clone(), stopped.clone());
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopped.notified() => break,
                }
                let now = done.load(Ordering::Relaxed);
                err!("\r{}", progress_line(now, cap, Some(now - last)));
                last = now;
            }
            // The last line: every unit finished, none in flight.
            errln!(
                "\r{}",
                progress_line(done.load(Ordering::Relaxed), cap, None)
            );
        })
    });
    let mut tasks = Vec::new();
    for w in 0..options.concurrency {
        let (issued, done, stop, material, schedule) = (
            issued.clone(),
            done.clone(),
            stop.clone(),
            material.clone(),
            schedule.clone(),
        );
        let (target, cap) = (options.target.clone(), options.max_requests);
        tasks.push(tokio::spawn(async move {
            let mut stats = stats::Collector::default();
            let mut worker = Worker {
                target,
                sender: None,
            };
            let mut n: usize = w * 7919;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if !claim(&issued, cap) {
                    break;
                }
                n = n.wrapping_add(1);
                let class = schedule[n % schedule.len()];
                let t0 = Instant::now();
                let result = one(&mut worker, class, n, &material).await;
                stats.record(class, t0.elapsed(), result.as_ref().ok().copied());
                done.fetch_add(1, Ordering::Relaxed);
                if result.is_err() {
                    worker.sender = None;
                }
            }
            stats
        }));
    }
    let mut total = stats::Collector::default();
    for t in tasks {
        total.merge(t.await?);
    }
    stop.store(true, Ordering::Relaxed);
    stopped.notify_one();
    if let Some(p) = progress {
        let _ = p.await;
    }
    Ok(total.report(started.elapsed()))
}

/// Claims one unit of the `cap` for a worker: false, and the count left at the cap, once
/// `cap` units were claimed (so a count read at any time never exceeds the cap).
fn claim(issued: &AtomicU64, cap: u64) -> bool {
    issued
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < cap).then_some(n + 1)
        })
        .is_ok()
}

/// The progress line: units finished (a unit is a request, or a whole NTLM handshake;
/// those in flight are not counted) out of `--requests`, and the last second's rate.
fn progress_line(done: u64, cap: u64, last_second: Option<u64>) -> String {
    match last_second {
        Some(rate) => format!("  {done}/{cap} units done, {rate}/s   "),
        None => format!("  {done}/{cap} units done            "),
    }
}

/// One unit of a class: a request, or a whole NTLM handshake. Returns the final status.
async fn one(worker: &mut Worker, class: Class, n: usize, m: &Material) -> anyhow::Result<u16> {
    let mapi = BASIC_PATHS[0];
    match class {
        Class::BearerMfa => {
            let t = &m.mfa[n % m.mfa.len()];
            Ok(worker
                .send("POST", mapi, Some(&format!("Bearer {t}")))
                .await?
                .0)
        }
        Class::BearerNoMfa => {
            let t = &m.no_mfa[n % m.no_mfa.len()];
            Ok(worker
                .send("POST", mapi, Some(&format!("Bearer {t}")))
                .await?
                .0)
        }
        Class::Basic => {
            let user = &USERS[n % USERS.len()];
            let basic = format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", user.upn, user.password))
            );
            let path = BASIC_PATHS[(n / USERS.len()) % BASIC_PATHS.len()];
            Ok(worker.send("GET", path, Some(&basic)).await?.0)
        }
        Class::Spray => {
            let basic = format!(
                "Basic {}",
                STANDARD.encode(format!("spray{:05}@contoso.com:Winter2026!", n % 10_000))
            );
            Ok(worker
                .send("GET", "/EWS/Exchange.asmx", Some(&basic))
                .await?
                .0)
        }
        Class::Kerberos => {
            let token = crate::auth::negotiate::build_spnego_kerberos(1200);
            let header = format!("Negotiate {}", STANDARD.encode(token));
            Ok(worker.send("POST", mapi, Some(&header)).await?.0)
        }
        Class::Ntlm => {
            // Users outside the pilot, so the handshake completes against the lab.
            let user = &USERS[1 + n % (USERS.len() - 1)];
            let name = user.sam.split('\\').nth(1).unwrap_or(user.sam);
            let type1 = format!(
                "NTLM {}",
                STANDARD.encode(crate::auth::ntlm::build_negotiate())
            );
            let (status, challenge) = worker.send("POST", mapi, Some(&type1)).await?;
            let Some(msg) = challenge
                .as_deref()
                .and_then(|c| c.strip_prefix("NTLM "))
                .and_then(|b| STANDARD.decode(b).ok())
            else {
                return Ok(status);
            };
            let type3 = ntlm::build_response(&msg, "CONTOSO", name, user.password, [7; 8], 0)
                .context("the server's challenge is not an NTLM Type 2")?;
            let type3 = format!("NTLM {}", STANDARD.encode(type3));
            Ok(worker.send("POST", mapi, Some(&type3)).await?.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However many workers race for the last units, exactly `cap` are claimed and the
    /// count never passes the cap (the progress line once showed 20004 of 20000).
    #[test]
    fn claims_stop_exactly_at_the_cap() {
        let issued = Arc::new(AtomicU64::new(0));
        let claimed = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (issued, claimed) = (issued.clone(), claimed.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if claim(&issued, 20_000) {
                            claimed.fetch_add(1, Ordering::Relaxed);
                        }
                        assert!(issued.load(Ordering::Relaxed) <= 20_000);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(claimed.load(Ordering::Relaxed), 20_000);
        assert_eq!(issued.load(Ordering::Relaxed), 20_000);
        assert!(!claim(&issued, 20_000));
        assert!(!claim(&AtomicU64::new(0), 0), "a cap of 0 claims nothing");
    }

    #[test]
    fn the_progress_line_names_the_bound() {
        assert_eq!(
            progress_line(1701, 20_000, Some(1701)).trim(),
            "1701/20000 units done, 1701/s"
        );
        assert_eq!(
            progress_line(20_000, 20_000, None).trim(),
            "20000/20000 units done"
        );
    }
}
