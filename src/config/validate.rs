//! Raw configuration → typed settings, collecting every error with its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::raw::RawConfig;
use super::tls::{ServerTls, TlsFiles};
use super::{ConfigError, error};
use crate::policy::{Deployment, Directory, Mode, OtherPaths, Settings, UserEntry};

/// The policy-related part of the configuration, validated.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    pub settings: Settings,
    pub users: Vec<UserEntry>,
    /// `policy.script`, resolved against the config file's folder.
    pub script: Option<PathBuf>,
    /// `policy.state_file`, resolved likewise.
    pub state_file: Option<PathBuf>,
    /// `policy.policies.<Name>.report_only`, in name order.
    pub report_only: Vec<(String, bool)>,
}

fn one_of<T: Copy>(
    key: &str,
    value: Option<&str>,
    default: T,
    choices: &[(&str, T)],
    errors: &mut Vec<ConfigError>,
) -> T {
    let Some(value) = value else {
        return default;
    };
    match choices.iter().find(|(name, _)| *name == value) {
        Some((_, v)) => *v,
        None => {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            errors.push(error(key, format!("is not one of {}", names.join(", "))));
            default
        }
    }
}

/// Validates `exchange`, `policy` and `[[users]]`.
pub fn policy(raw: &RawConfig, base: &Path, errors: &mut Vec<ConfigError>) -> PolicyConfig {
    let deployment = match raw.exchange.deployment.as_deref() {
        None => {
            errors.push(error(
                "exchange.deployment",
                "missing: set \"online\" or \"onpremises\"",
            ));
            Deployment::Online
        }
        value => one_of(
            "exchange.deployment",
            value,
            Deployment::Online,
            &[
                ("online", Deployment::Online),
                ("onpremises", Deployment::OnPremises),
            ],
            errors,
        ),
    };
    let mode = one_of(
        "policy.mode",
        raw.policy.mode.as_deref(),
        Mode::Enforce,
        &[
            ("enforce", Mode::Enforce),
            ("report-only", Mode::ReportOnly),
        ],
        errors,
    );
    let other_paths = one_of(
        "policy.other_paths",
        raw.policy.other_paths.as_deref(),
        OtherPaths::BlockLegacy,
        &[
            ("block-legacy", OtherPaths::BlockLegacy),
            ("pass", OtherPaths::Pass),
        ],
        errors,
    );

    let mut users = Vec::with_capacity(raw.users.len());
    for (i, u) in raw.users.iter().enumerate() {
        match &u.upn {
            Some(upn) => users.push(UserEntry {
                upn: upn.clone(),
                sam: u.sam.clone(),
                aliases: u.aliases.clone(),
            }),
            None => errors.push(error(format!("users[{i}].upn"), "missing")),
        }
    }
    if let Err(errs) = Directory::new(users.clone()) {
        errors.extend(errs.into_iter().map(|e| error(e.key, e.message)));
    }

    let resolve = |key: &str, p: &Option<String>, errors: &mut Vec<ConfigError>| {
        p.as_ref().and_then(|p| {
            if p.trim().is_empty() {
                errors.push(error(key, "is empty"));
                None
            } else {
                Some(base.join(p))
            }
        })
    };
    let script = resolve("policy.script", &raw.policy.script, errors);
    let state_file = resolve("policy.state_file", &raw.policy.state_file, errors);
    if let Some(path) = &state_file {
        super::check_writable("policy.state_file", path, errors);
    }
    let report_only = raw
        .policy
        .policies
        .iter()
        .map(|(name, opts)| (name.clone(), opts.report_only.is_some_and(|b| b.0)))
        .collect();

    PolicyConfig {
        settings: Settings {
            deployment,
            mode,
            other_paths,
        },
        users,
        script,
        state_file,
        report_only,
    }
}

/// The listeners and their limits (`[server]`).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// PEM certificate chain and private key: the listener speaks TLS when set.
    pub tls: Option<ServerTls>,
    pub header_read_timeout: Duration,
    /// A body (either way) that delivers nothing for this long is cut.
    pub idle_timeout: Duration,
    /// The same for RPC over HTTP and MAPI, whose channels and long polls idle longer.
    pub long_idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    /// `server.listen_backlog`: the accept queue of `server.listen` (the kernel caps it at
    /// `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// `server.max_connections`: client connections served at once; None sizes it from
    /// the open-file limit at start (SPEC §7 "Limits").
    pub max_connections: Option<usize>,
    /// `server.quick_refusals` (default true): blocked Basic, and a bearer token whose
    /// validation failed before, on an idle keep-alive connection is answered before
    /// hyper reads it (`proxy::service::quick`).
    pub quick_refusals: bool,
}

/// The Exchange servers (`[upstream]`).
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    pub servers: Vec<hyper::Uri>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    /// Trust for `https://` servers, made of `ca_file` (read at load) or the system's
    /// roots; none with `insecure_skip_verify`.
    pub tls: Arc<rustls::ClientConfig>,
    pub connect_timeout: Duration,
    /// `upstream.response_header_timeout_seconds`: the wait for an upstream's response
    /// headers, except for MAPI `NotificationWait` and RPC over HTTP (SPEC §7).
    pub response_header_timeout: Duration,
    /// `upstream.health_check_interval_seconds`; None when set to 0 (checks off).
    pub health_check_interval: Option<Duration>,
}

/// The parameters of the Bearer challenge (`[exchange.challenge]`), as Exchange sends them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeConfig {
    pub client_id: String,
    pub trusted_issuers: String,
    pub token_types: String,
    pub authorization_uri: String,
}

impl Default for ChallengeConfig {
    fn default() -> ChallengeConfig {
        ChallengeConfig {
            client_id: "00000002-0000-0ff1-ce00-000000000000".into(),
            trusted_issuers: "00000001-0000-0000-c000-000000000000@*".into(),
            token_types: "app_asserted_user_v1 service_asserted_app_v1".into(),
            authorization_uri: "https://login.microsoftonline.com/common/oauth2/authorize".into(),
        }
    }
}

fn address(
    key: &str,
    value: Option<&str>,
    default: &str,
    errors: &mut Vec<ConfigError>,
) -> SocketAddr {
    let text = value.unwrap_or(default);
    match text.parse::<SocketAddr>() {
        Ok(addr) => {
            // The address must be one this machine can listen on: binding its port 0
            // tells, without taking the port itself (a running exgate may hold it).
            if let Err(e) = std::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)) {
                errors.push(error(
                    key,
                    format!("{} cannot be listened on here: {e}", addr.ip()),
                ));
            } else if let Some(needs) = privileged_port(addr.port()) {
                errors.push(error(key, needs));
            }
            addr
        }
        Err(_) => {
            errors.push(error(
                key,
                "is not an address like 127.0.0.1:8443 or [::1]:8443",
            ));
            default.parse().expect("default address parses")
        }
    }
}

/// Why this process could not listen on `port`, if it is a privileged one (below
/// `net.ipv4.ip_unprivileged_port_start`, 1024 by default) and the process lacks
/// `CAP_NET_BIND_SERVICE` (bit 10 of `CapEff` in `/proc/self/status`; root has it, and
/// the systemd unit grants it to `exgate` through `AmbientCapabilities`).
fn privileged_port(port: u16) -> Option<String> {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    if port == 0 || port >= start {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())?;
    const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
    (effective & CAP_NET_BIND_SERVICE == 0).then(|| {
        format!("port {port} needs CAP_NET_BIND_SERVICE (the systemd unit grants it) or root")
    })
}

/// The longest any `*_seconds` key may be: a week. Longer would mean nothing for a
/// timeout or window, and Rust's clock arithmetic overflows near 2^63 seconds.
pub const MAX_SECONDS: u64 = 7 * 24 * 3600;

pub(super) fn seconds(
    key: &str,
    value: Option<u64>,
    default: u64,
    errors: &mut Vec<ConfigError>,
) -> Duration {
    match value {
        Some(v) if !(1..=MAX_SECONDS).contains(&v) => {
            errors.push(error(key, format!("is outside 1..={MAX_SECONDS}")));
            Duration::from_secs(default)
        }
        v => Duration::from_secs(v.unwrap_or(default)),
    }
}

/// An `http://` or `https://` URL with a host and a valid port (1–65535 when written),
/// and no user name or password (which would end up in logs and metric labels) and no
/// fragment; with `path` false, no path beyond `/` and no query either (an upstream
/// server). hyper's parser alone accepts `http://h:99999` (then port 80), `http://:80`
/// and `http://user:pw@h`.
pub(super) fn http_url(text: &str, path: bool) -> Option<hyper::Uri> {
    let uri = text.parse::<hyper::Uri>().ok()?;
    let authority = uri.authority()?;
    let host = authority.host();
    let port_ok = match authority.as_str().rsplit_once(':') {
        // `[::1]` alone: the last colon is inside the brackets.
        Some((_, tail)) if tail.ends_with(']') => true,
        Some((_, port)) => port.parse::<u16>().is_ok_and(|p| p > 0),
        None => true,
    };
    let shape_ok = matches!(uri.scheme_str(), Some("http" | "https"))
        && !host.is_empty()
        && !authority.as_str().contains('@')
        && port_ok
        && !text.contains('#')
        && (path || uri.path_and_query().is_none_or(|p| p.as_str() == "/"));
    shape_ok.then_some(uri)
}

/// The most `server.max_connections` may be (two descriptors each: far beyond any
/// open-file limit).
const MAX_CONNECTIONS: u64 = 10_000_000;

/// Validates `[server]`.
pub fn server(raw: &RawConfig, base: &Path, errors: &mut Vec<ConfigError>) -> ServerConfig {
    let s = &raw.server;
    let tls = match (&s.tls_cert_file, &s.tls_key_file) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: base.join(cert),
                key: base.join(key),
            };
            match super::tls::server_config(&files) {
                Ok(config) => Some(ServerTls {
                    files,
                    config: Arc::new(config),
                }),
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        }
        (None, None) => None,
        _ => {
            errors.push(error(
                "server.tls_key_file",
                "tls_cert_file and tls_key_file go together",
            ));
            None
        }
    };
    let max_header_bytes = s.max_header_bytes.unwrap_or(65_536);
    if !(8_192..=1_048_576).contains(&max_header_bytes) {
        errors.push(error(
            "server.max_header_bytes",
            format!("{max_header_bytes} is outside 8192..=1048576"),
        ));
    }
    let listen_backlog = s.listen_backlog.unwrap_or(4096);
    if !(1..=65_535).contains(&listen_backlog) {
        errors.push(error(
            "server.listen_backlog",
            format!("{listen_backlog} is outside 1..=65535"),
        ));
    }
    let max_connections = match s.max_connections {
        Some(n) if !(1..=MAX_CONNECTIONS).contains(&n) => {
            errors.push(error(
                "server.max_connections",
                format!("is outside 1..={MAX_CONNECTIONS}"),
            ));
            None
        }
        n => n.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let listen = address(
        "server.listen",
        s.listen.as_deref(),
        "127.0.0.1:8443",
        errors,
    );
    let admin_listen = address(
        "server.admin_listen",
        s.admin_listen.as_deref(),
        "127.0.0.1:9464",
        errors,
    );
    // Two listeners cannot share a port (port 0 picks two different ones); a wildcard
    // address shares it with every address of its family.
    let overlap = |a: SocketAddr, b: SocketAddr| {
        a.port() == b.port()
            && a.port() != 0
            && (a.ip() == b.ip()
                || (a.is_ipv4() == b.is_ipv4()
                    && (a.ip().is_unspecified() || b.ip().is_unspecified())))
    };
    if overlap(listen, admin_listen) {
        errors.push(error(
            "server.admin_listen",
            "is the same port as server.listen: give the admin API its own",
        ));
    }
    ServerConfig {
        max_connections,
        quick_refusals: s.quick_refusals.is_none_or(|b| b.0),
        listen,
        admin_listen,
        tls,
        header_read_timeout: seconds(
            "server.header_read_timeout_seconds",
            s.header_read_timeout_seconds,
            30,
            errors,
        ),
        idle_timeout: seconds(
            "server.idle_timeout_seconds",
            s.idle_timeout_seconds,
            120,
            errors,
        ),
        long_idle_timeout: seconds(
            "server.long_idle_timeout_seconds",
            s.long_idle_timeout_seconds,
            900,
            errors,
        ),
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(65_536),
        listen_backlog: u32::try_from(listen_backlog).unwrap_or(4096),
        shutdown_grace: seconds(
            "server.shutdown_grace_seconds",
            s.shutdown_grace_seconds,
            30,
            errors,
        ),
    }
}

/// Validates `[upstream]`.
pub fn upstream(raw: &RawConfig, base: &Path, errors: &mut Vec<ConfigError>) -> UpstreamConfig {
    let u = &raw.upstream;
    if u.servers.is_empty() {
        errors.push(error("upstream.servers", "needs at least one server"));
    }
    let mut servers = Vec::new();
    for (i, server) in u.servers.iter().enumerate() {
        let key = format!("upstream.servers[{i}]");
        match http_url(server, false) {
            Some(uri) => servers.push(uri),
            None => errors.push(error(
                key,
                "must be http://host[:port] or https://host[:port] (no user name, password, path, query or fragment; port 1–65535)",
            )),
        }
    }
    let ca_file = u.ca_file.as_ref().map(|f| base.join(f));
    let insecure_skip_verify = u.insecure_skip_verify.is_some_and(|b| b.0);
    let tls =
        super::tls::client_config(ca_file.as_deref(), insecure_skip_verify).unwrap_or_else(|m| {
            errors.push(error("upstream.ca_file", m));
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    UpstreamConfig {
        servers,
        ca_file,
        insecure_skip_verify,
        tls: Arc::new(tls),
        connect_timeout: seconds(
            "upstream.connect_timeout_seconds",
            u.connect_timeout_seconds,
            3,
            errors,
        ),
        response_header_timeout: seconds(
            "upstream.response_header_timeout_seconds",
            u.response_header_timeout_seconds,
            120,
            errors,
        ),
        health_check_interval: match u.health_check_interval_seconds {
            Some(0) => None,
            v => Some(seconds(
                "upstream.health_check_interval_seconds",
                v,
                5,
                errors,
            )),
        },
    }
}

/// Validates `[exchange.challenge]`: quotes would break the header, so they are refused.
pub fn challenge(raw: &RawConfig, errors: &mut Vec<ConfigError>) -> ChallengeConfig {
    let c = &raw.exchange.challenge;
    let default = ChallengeConfig::default();
    let mut field = |name: &str, value: &Option<String>, default: String| {
        let v = value.clone().unwrap_or(default);
        if v.contains(['"', '\r', '\n']) || !v.is_ascii() {
            errors.push(error(
                format!("exchange.challenge.{name}"),
                "must be printable ASCII without quotes",
            ));
        }
        v
    };
    ChallengeConfig {
        client_id: field("client_id", &c.client_id, default.client_id),
        trusted_issuers: field(
            "trusted_issuers",
            &c.trusted_issuers,
            default.trusted_issuers,
        ),
        token_types: field("token_types", &c.token_types, default.token_types),
        authorization_uri: field(
            "authorization_uri",
            &c.authorization_uri,
            default.authorization_uri,
        ),
    }
}
