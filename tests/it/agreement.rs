//! `validate` and `serve` agree (issue 14, SPEC §11): every broken configuration this
//! test can make, one key, one file or one type at a time, is refused by both with exit
//! 78, the key named, and no secret in anything either prints; the unbroken one passes
//! `validate` and starts `serve`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// The admin token of every configuration below: it must never be printed.
const SECRET: &str = "s3cret-admin-token-4f9c2a7e1b";

/// A valid configuration: listeners on port 0, a policy script, the admin token.
fn base() -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[upstream]
servers = ["http://127.0.0.1:9"]
[exchange]
deployment = "online"
[policy]
script = "policies.ps1"
[admin]
token = "{SECRET}"
[[users]]
upn = "user01@contoso.com"
sam = "CONTOSO\\user01"
"#
    )
}

/// `base()` with `key = value` set in `[section]` (a new `[section]` table is appended;
/// TOML allows one, so the base's own keys of that section are replaced by the caller
/// through `replace` when needed).
fn with(section: &str, line: &str) -> String {
    let base = base();
    let header = format!("[{section}]\n");
    match base.find(&header) {
        Some(i) => {
            let at = i + header.len();
            format!("{}{line}\n{}", &base[..at], &base[at..])
        }
        None => format!("{base}{header}{line}\n"),
    }
}

/// One broken configuration: what is wrong, the files, the environment, and the key
/// both commands must name.
struct Case {
    what: &'static str,
    toml: String,
    files: Vec<(&'static str, Vec<u8>)>,
    env: Vec<(&'static str, &'static str)>,
    key: &'static str,
}

fn case(what: &'static str, toml: String, key: &'static str) -> Case {
    Case {
        what,
        toml,
        files: Vec::new(),
        env: Vec::new(),
        key,
    }
}

fn pem_pair() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["mail.contoso.com".into()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn cases() -> Vec<Case> {
    let (cert, key) = pem_pair();
    let (_, other_key) = pem_pair();
    let tls = |c: &str, k: &str| {
        with(
            "server",
            &format!("tls_cert_file = \"{c}\"\ntls_key_file = \"{k}\""),
        )
    };
    let issuer = |extra: &str| {
        format!(
            "{}[[tokens.issuers]]\nissuer = \"https://sts.windows.net/{{tenantid}}/\"\naudiences = [\"https://outlook.office365.com\"]\n{extra}\n",
            base()
        )
    };
    let mut cases = vec![
        // [server], each key and type.
        case(
            "listen not an address",
            with("server", "listen_x = 1")
                .replace("listen_x = 1\n", "")
                .replace("listen = \"127.0.0.1:0\"", "listen = \"nonsense\""),
            "server.listen",
        ),
        case(
            "listen an integer",
            base().replace("listen = \"127.0.0.1:0\"", "listen = 8443"),
            "server.listen",
        ),
        case(
            "listen not this machine's",
            base().replace("listen = \"127.0.0.1:0\"", "listen = \"192.0.2.1:8443\""),
            "server.listen",
        ),
        case(
            "admin_listen a list",
            base().replace(
                "admin_listen = \"127.0.0.1:0\"",
                "admin_listen = [\"127.0.0.1:0\"]",
            ),
            "server.admin_listen",
        ),
        case(
            "idle timeout a string",
            with("server", "idle_timeout_seconds = \"120s\""),
            "server.idle_timeout_seconds",
        ),
        case(
            "idle timeout 0",
            with("server", "idle_timeout_seconds = 0"),
            "server.idle_timeout_seconds",
        ),
        case(
            "header timeout negative",
            with("server", "header_read_timeout_seconds = -1"),
            "server.header_read_timeout_seconds",
        ),
        case(
            "long idle a list",
            with("server", "long_idle_timeout_seconds = [1]"),
            "server.long_idle_timeout_seconds",
        ),
        case(
            "shutdown grace a table",
            with("server", "shutdown_grace_seconds = { a = 1 }"),
            "server.shutdown_grace_seconds",
        ),
        case(
            "max header bytes too small",
            with("server", "max_header_bytes = 10"),
            "server.max_header_bytes",
        ),
        case(
            "listen backlog 0",
            with("server", "listen_backlog = 0"),
            "server.listen_backlog",
        ),
        case(
            "max connections 0",
            with("server", "max_connections = 0"),
            "server.max_connections",
        ),
        case(
            "unknown server key",
            with("server", "lisen = \"x\""),
            "server.lisen",
        ),
        case(
            "certificate without key",
            with("server", "tls_cert_file = \"tls.crt\""),
            "server.tls_key_file",
        ),
        case(
            "certificate file missing",
            tls("missing.crt", "tls.key"),
            "server.tls_cert_file",
        ),
        Case {
            files: vec![
                ("tls.key", key.clone().into_bytes()),
                ("tls.crt", b"not a certificate\n".to_vec()),
            ],
            ..case(
                "certificate file not PEM",
                tls("tls.crt", "tls.key"),
                "server.tls_cert_file",
            )
        },
        Case {
            files: vec![("tls.key", key.clone().into_bytes())],
            ..case(
                "key file as the certificate",
                tls("tls.key", "tls.key"),
                "server.tls_cert_file",
            )
        },
        Case {
            files: vec![("tls.crt", cert.clone().into_bytes())],
            ..case(
                "certificate file as the key",
                tls("tls.crt", "tls.crt"),
                "server.tls_key_file",
            )
        },
        Case {
            files: vec![
                ("tls.crt", cert.clone().into_bytes()),
                ("tls.key", other_key.into_bytes()),
            ],
            ..case(
                "key of another certificate",
                tls("tls.crt", "tls.key"),
                "server.tls_key_file",
            )
        },
        case("admin API on the proxy's port", base().replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:28501\"").replace("admin_listen = \"127.0.0.1:0\"", "admin_listen = \"127.0.0.1:28501\""), "server.admin_listen"),
        case("admin API on the wildcard of the proxy's port", base().replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:28502\"").replace("admin_listen = \"127.0.0.1:0\"", "admin_listen = \"127.0.0.1:28502\""), "server.admin_listen"),
        case("listen on a link-local address not here", base().replace("listen = \"127.0.0.1:0\"", "listen = \"[fe80::1]:0\""), "server.listen"),
        case("max connections beyond any limit", with("server", "max_connections = 9223372036854775807"), "server.max_connections"),
        case("header timeout of centuries", with("server", "header_read_timeout_seconds = 9223372036854775807"), "server.header_read_timeout_seconds"),
        case("idle timeout of centuries", with("server", "idle_timeout_seconds = 9223372036854775807"), "server.idle_timeout_seconds"),
        case("health checks every century", with("upstream", "health_check_interval_seconds = 9223372036854775807"), "upstream.health_check_interval_seconds"),
        Case {
            files: vec![("tls.crt", cert.clone().into_bytes()), ("tls.key", b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n".to_vec())],
            ..case("encrypted key", tls("tls.crt", "tls.key"), "server.tls_key_file")
        },
        // [upstream].
        case("upstream port beyond 65535", base().replace("http://127.0.0.1:9", "http://127.0.0.1:99999"), "upstream.servers[0]"),
        case("upstream port 0", base().replace("http://127.0.0.1:9", "http://127.0.0.1:0"), "upstream.servers[0]"),
        case("upstream without a host", base().replace("http://127.0.0.1:9", "http://:80"), "upstream.servers[0]"),
        case("upstream with a password", base().replace("http://127.0.0.1:9", "http://admin:S3cretPass@127.0.0.1:9"), "upstream.servers[0]"),
        case("upstream with a fragment", base().replace("http://127.0.0.1:9", "http://127.0.0.1:9#x"), "upstream.servers[0]"),
        case(
            "no servers",
            base().replace("servers = [\"http://127.0.0.1:9\"]", "servers = []"),
            "upstream.servers",
        ),
        case(
            "server not http",
            base().replace("http://127.0.0.1:9", "ftp://127.0.0.1:9"),
            "upstream.servers[0]",
        ),
        case(
            "servers a table",
            base().replace("servers = [\"http://127.0.0.1:9\"]", "servers = { a = 1 }"),
            "upstream.servers",
        ),
        case(
            "ca_file missing",
            with("upstream", "ca_file = \"nope.pem\""),
            "upstream.ca_file",
        ),
        Case {
            files: vec![(
                "ca.pem",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            )],
            ..case(
                "ca_file not a certificate",
                with("upstream", "ca_file = \"ca.pem\""),
                "upstream.ca_file",
            )
        },
        case(
            "insecure_skip_verify a string",
            with("upstream", "insecure_skip_verify = \"yes\""),
            "upstream.insecure_skip_verify",
        ),
        case(
            "connect timeout 0",
            with("upstream", "connect_timeout_seconds = 0"),
            "upstream.connect_timeout_seconds",
        ),
        // [exchange].
        case(
            "deployment missing",
            base().replace("deployment = \"online\"\n", ""),
            "exchange.deployment",
        ),
        case(
            "deployment unknown",
            base().replace("\"online\"", "\"cloud\""),
            "exchange.deployment",
        ),
        case(
            "challenge with a quote",
            format!("{}[exchange.challenge]\nclient_id = \"a\\\"b\"\n", base()),
            "exchange.challenge.client_id",
        ),
        // [policy].
        case(
            "script missing",
            base().replace("policies.ps1", "nope.ps1"),
            "policy.script",
        ),
        Case {
            files: vec![(
                "policies.ps1",
                b"New-AuthenticationPolicy -Name P -Bogus\n".to_vec(),
            )],
            ..case("script error", base(), "policy.script")
        },
        case(
            "mode unknown",
            with("policy", "mode = \"audit\""),
            "policy.mode",
        ),
        case(
            "other_paths unknown",
            with("policy", "other_paths = \"allow\""),
            "policy.other_paths",
        ),
        case(
            "report_only for no policy",
            format!("{}[policy.policies.Ghost]\nreport_only = true\n", base()),
            "policy.policies.Ghost",
        ),
        case(
            "report_only a number",
            format!("{}[policy.policies.Ghost]\nreport_only = 1\n", base()),
            "policy.policies.Ghost.report_only",
        ),
        case(
            "state file under a file",
            with("policy", "state_file = \"policies.ps1/state.ps1\""),
            "policy.state_file",
        ),
        Case {
            files: vec![(
                "state.ps1",
                b"Set-User ghost -AuthenticationPolicy P\n".to_vec(),
            )],
            ..case(
                "state file with an error",
                with("policy", "state_file = \"state.ps1\""),
                "policy.state_file",
            )
        },
        // [[users]].
        case(
            "user without upn",
            format!("{}[[users]]\nsam = \"CONTOSO\\\\user02\"\n", base()),
            "users[1].upn",
        ),
        case(
            "duplicate upn",
            format!("{}[[users]]\nupn = \"user01@contoso.com\"\n", base()),
            "users[1].upn",
        ),
        // Active Directory compares names ignoring width, case, accents and invisible
        // characters (MS-ADTS 3.1.1.2.2.4.13): this is user01's name again (a TOML
        // `\u00AD`, a soft hyphen, included).
        case(
            "duplicate upn once folded",
            format!(
                "{}[[users]]\nupn = \"ＵＳÉＲ\\u00AD０１@contoso.com\"\n",
                base()
            ),
            "users[1].upn",
        ),
        case(
            "aliases a string",
            format!(
                "{}[[users]]\nupn = \"user02@contoso.com\"\naliases = {{ a = 1 }}\n",
                base()
            ),
            "users[1].aliases",
        ),
        // [tokens].
        case(
            "jwks file missing",
            issuer("jwks_file = \"nope.json\""),
            "tokens.issuers[0].jwks_file",
        ),
        Case {
            files: vec![("jwks.json", b"{\"keys\": 5}".to_vec())],
            ..case(
                "jwks file not a key set",
                issuer("jwks_file = \"jwks.json\""),
                "tokens.issuers[0].jwks_file",
            )
        },
        case(
            "HMAC algorithm",
            issuer("jwks_file = \"nope.json\"\nalgorithms = [\"HS256\"]"),
            "tokens.issuers[0].algorithms[0]",
        ),
        case(
            "issuer ca_file missing",
            issuer(
                "jwks_url = \"https://login.microsoftonline.com/common/discovery/keys\"\nca_file = \"nope.pem\"",
            ),
            "tokens.issuers[0].ca_file",
        ),
        case(
            "mfa for no protocol",
            format!("{}[tokens.mfa]\nrequire_for = [\"EWS\"]\n", base()),
            "tokens.mfa.require_for[0]",
        ),
        // [kerberos].
        case(
            "keytab missing",
            with("kerberos", "keytab = \"nope.keytab\""),
            "kerberos.keytab",
        ),
        Case {
            files: vec![(
                "exchange.keytab",
                b"\x05\x02\x00\x00\x00\x10garbage".to_vec(),
            )],
            ..case(
                "keytab truncated",
                with("kerberos", "keytab = \"exchange.keytab\""),
                "kerberos.keytab",
            )
        },
        case("key refresh every century", issuer("jwks_url = \"https://login.microsoftonline.com/common/discovery/keys\"\nrefresh_interval_seconds = 18446744073709551"), "tokens.issuers[0].refresh_interval_seconds"),
        case("key URL with a password", issuer("jwks_url = \"https://u:S3cretPass@login.microsoftonline.com/keys\""), "tokens.issuers[0].jwks_url"),
        // [audit], [lockout], [spray].
        case("audit path empty", with("audit", "path = \"\""), "audit.path"),
        case("audit log in the state file", with("policy", "state_file = \"same.ps1\"").replace("[admin]", "[audit]\npath = \"same.ps1\"\n[admin]"), "policy.state_file"),
        case("audit log in the policy script", with("audit", "path = \"policies.ps1\""), "audit.path"),
        case("lockout mode unknown", with("lockout", "mode = \"audit\""), "lockout.mode"),
        case("familiar threshold 0", with("lockout", "familiar_threshold = 0"), "lockout.familiar_threshold"),
        // [cluster].
        case("cluster without a Redis URL", with("cluster", "key_prefix = \"x:\""), "cluster.key_prefix"),
        case("cluster URL not Redis", with("cluster", "redis_url = \"http://127.0.0.1:6379\""), "cluster.redis_url"),
        case("cluster timeout 0", with("cluster", "redis_url = \"redis://127.0.0.1:6379/0\"\ntimeout_milliseconds = 0"), "cluster.timeout_milliseconds"),
        case("cluster with a state file", with("cluster", "redis_url = \"redis://127.0.0.1:6379/0\"").replace("[policy]\n", "[policy]\nstate_file = \"state.ps1\"\n"), "policy.state_file"),
        case(
            "audit path under a file",
            with("audit", "path = \"policies.ps1/audit.jsonl\""),
            "audit.path",
        ),
        case(
            "audit path a folder",
            with("audit", "path = \".\""),
            "audit.path",
        ),
        case(
            "audit file too small",
            with("audit", "path = \"audit.jsonl\"\nmax_file_bytes = 10"),
            "audit.max_file_bytes",
        ),
        case(
            "audit max files 0",
            with("audit", "path = \"audit.jsonl\"\nmax_files = 0"),
            "audit.max_files",
        ),
        case(
            "lockout threshold 0",
            with("lockout", "threshold = 0"),
            "lockout.threshold",
        ),
        case(
            "lockout enabled 1",
            with("lockout", "enabled = 1"),
            "lockout.enabled",
        ),
        case(
            "spray distinct users 1",
            with("spray", "distinct_users = 1"),
            "spray.distinct_users",
        ),
        case(
            "spray block yes",
            with("spray", "block = \"yes\""),
            "spray.block",
        ),
        // [admin]: the token itself is the value that must not leak.
        case(
            "admin token short",
            base().replace(SECRET, "s3cret"),
            "admin.token",
        ),
        case(
            "admin token a list",
            base().replace(&format!("\"{SECRET}\""), &format!("[\"{SECRET}\"]")),
            "admin.token",
        ),
        case(
            "admin token a table",
            base().replace(
                &format!("\"{SECRET}\""),
                &format!("{{ value = \"{SECRET}\" }}"),
            ),
            "admin.token",
        ),
        // Unknown sections, and the environment.
        case(
            "unknown section",
            format!("{}[polcy]\nmode = \"enforce\"\n", base()),
            "polcy",
        ),
        Case {
            env: vec![("EXGATE__SERVER__MAX_CONNECTIONS", "many")],
            ..case(
                "environment value of the wrong type",
                base(),
                "server.max_connections",
            )
        },
        Case {
            env: vec![("EXGATE__UPSTREAM__SERVERS", "http://127.0.0.1:9,ftp://x")],
            ..case(
                "environment list with a bad entry",
                base(),
                "upstream.servers[1]",
            )
        },
        Case {
            env: vec![("EXGATE__POLCY__MODE", "enforce")],
            ..case("environment variable for an unknown key", base(), "polcy")
        },
    ];
    // The policy script every case has unless it brings its own.
    for c in &mut cases {
        if !c.files.iter().any(|(n, _)| *n == "policies.ps1") {
            c.files.push(("policies.ps1", Vec::new()));
        }
    }
    cases
}

fn folder(c: &Case) -> std::path::PathBuf {
    let dir = write_files(&[("exgate.toml", &c.toml)]);
    for (name, bytes) in &c.files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir
}

/// Runs `exgate <command> --config DIR/exgate.toml` with `env`; a `serve` still running
/// after 5 s has started (it is stopped). Returns the exit code (None: it started) and
/// everything it printed.
fn run(command: &str, dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exgate"));
    cmd.args([command, "--config", arg(&dir.join("exgate.toml"))])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("EXGATE__") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    (code, format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn the_unbroken_configuration_validates_and_serves() {
    let c = case("none", base(), "");
    let dir = folder(&Case {
        files: vec![("policies.ps1", Vec::new())],
        ..c
    });
    let (code, out) = run("validate", &dir, &[]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run("serve", &dir, &[]);
    assert_eq!(code, None, "serve did not keep running: {out}");
    assert!(out.contains("exgate listening proxy=127.0.0.1:"), "{out}");
    assert!(!out.contains(SECRET), "{out}");
}

#[test]
fn validate_and_serve_refuse_every_broken_configuration_alike() {
    let mut failures = Vec::new();
    let cases = cases();
    for c in &cases {
        let dir = folder(c);
        for command in ["validate", "serve"] {
            let (code, out) = run(command, &dir, &c.env);
            let named = out.lines().any(|l| {
                l.trim_start().starts_with(&format!("{}:", c.key))
                    || l.trim_start().starts_with(&format!("{} (", c.key))
            });
            let problems: Vec<&str> = [
                (code != Some(78), "exit is not 78"),
                (!named, "the key is not named at the start of a line"),
                (out.contains(SECRET), "the admin token is printed"),
                (out.contains("s3cret\""), "the short admin token is printed"),
                (out.contains("S3cretPass"), "a URL's password is printed"),
                (out.contains("Some(\""), "a Rust Debug form is printed"),
                (out.contains("panicked"), "it panicked"),
            ]
            .into_iter()
            .filter(|(bad, _)| *bad)
            .map(|(_, what)| what)
            .collect();
            if !problems.is_empty() {
                failures.push(format!(
                    "{} ({command}, expected {}): {} — exit {code:?}, output:\n{out}",
                    c.what,
                    c.key,
                    problems.join(", ")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );
}

/// Every key of the configuration reference, by the table it is written in.
const KEYS: [(&str, &[&str]); 15] = [
    (
        "server",
        &[
            "listen",
            "admin_listen",
            "tls_cert_file",
            "tls_key_file",
            "header_read_timeout_seconds",
            "idle_timeout_seconds",
            "long_idle_timeout_seconds",
            "max_header_bytes",
            "shutdown_grace_seconds",
            "listen_backlog",
            "max_connections",
            "quick_refusals",
        ],
    ),
    (
        "upstream",
        &[
            "servers",
            "ca_file",
            "insecure_skip_verify",
            "connect_timeout_seconds",
            "response_header_timeout_seconds",
            "health_check_interval_seconds",
        ],
    ),
    ("exchange", &["deployment"]),
    (
        "exchange.challenge",
        &[
            "client_id",
            "trusted_issuers",
            "token_types",
            "authorization_uri",
        ],
    ),
    ("policy", &["script", "state_file", "mode", "other_paths"]),
    ("[users]", &["upn", "sam", "aliases"]),
    ("tokens", &["cache_max_entries"]),
    (
        "[tokens.issuers]",
        &[
            "issuer",
            "audiences",
            "openid_configuration_url",
            "jwks_url",
            "jwks_file",
            "ca_file",
            "algorithms",
            "leeway_seconds",
            "refresh_interval_seconds",
            "unknown_kid_refresh_min_seconds",
            "fetch_timeout_seconds",
        ],
    ),
    ("tokens.mfa", &["require_for", "auth_context_ids"]),
    ("kerberos", &["keytab", "cache_max_entries"]),
    ("audit", &["path", "max_file_bytes", "max_files"]),
    (
        "lockout",
        &[
            "enabled",
            "threshold",
            "familiar_threshold",
            "mode",
            "observation_window_seconds",
        ],
    ),
    (
        "spray",
        &["enabled", "distinct_users", "window_seconds", "block"],
    ),
    ("admin", &["token"]),
    (
        "cluster",
        &["redis_url", "key_prefix", "timeout_milliseconds"],
    ),
];

/// Each key above set to a table, the one type no key takes: both commands refuse it
/// with exit 78 and name the key.
#[test]
fn every_key_of_the_wrong_type_is_refused_alike() {
    let mut failures = Vec::new();
    let mut runs = 0;
    for (table, keys) in KEYS {
        for key in keys {
            let wrong = format!("{key} = {{ wrong = 1 }}");
            let (toml, named) = match table {
                "[users]" => (
                    format!(
                        "{}[[users]]\nupn = \"user02@contoso.com\"\n{wrong}\n",
                        base()
                    )
                    .replace("upn = \"user02@contoso.com\"\nupn = ", "upn = "),
                    format!("users[1].{key}"),
                ),
                "[tokens.issuers]" => (
                    format!("{}[[tokens.issuers]]\n{wrong}\n", base()),
                    format!("tokens.issuers[0].{key}"),
                ),
                // `with` would put a second [server]/[policy]/… header: replace the key
                // in the base when it has one.
                _ => {
                    let toml = match base().lines().find(|l| l.starts_with(&format!("{key} = "))) {
                        Some(line) if base().contains(&format!("[{table}]\n")) => {
                            base().replace(line, &wrong)
                        }
                        _ => with(table, &wrong),
                    };
                    (toml, format!("{table}.{key}"))
                }
            };
            let dir = write_files(&[("exgate.toml", &toml), ("policies.ps1", "")]);
            for command in ["validate", "serve"] {
                runs += 1;
                let (code, out) = run(command, &dir, &[]);
                let listed = out
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{named}: ")));
                if code != Some(78) || !listed || out.contains(SECRET) {
                    failures.push(format!(
                        "{named} ({command}): exit {code:?}, key listed: {listed}\n{toml}\n{out}"
                    ));
                }
            }
        }
    }
    assert!(runs >= 100, "too few runs: {runs}");
    assert!(
        failures.is_empty(),
        "{} of {runs}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
