//! Kerberos in the lab (`exgate lab --keytab`), with a real MIT KDC and real clients:
//! `kinit`, then `curl --negotiate` through exgate to the mock Exchange, around the
//! article's pilot cmdlet — the banner's commands as printed, and the README's
//! "Kerberos in the lab" blocks as printed (realm, lab, walk).
//!
//! They need Debian's krb5-kdc, krb5-admin-server and krb5-user, which `.ci/run`
//! installs; so they are `#[ignore]`d here and run by `.ci/run`
//! (`cargo test --test it -- --ignored`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::kdc::{self, Kdc};
use crate::lab::LabProcess;
use crate::support::*;

const SERVICE_HOST: &str = "mail.contoso.com";

/// One command of a walk, the status its `curl` prints, and the password its `kinit`
/// reads.
#[derive(Debug)]
struct Step {
    command: String,
    expect: Option<String>,
}

/// A shell command run to its end within 20 s: exit status, stdout, stderr.
fn shell(script: &str, env: &[(&str, String)], stdin: Option<&str>) -> (bool, String, String) {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    for var in [
        "KRB5_CONFIG",
        "KRB5_KDC_PROFILE",
        "KRB5CCNAME",
        "KRB5_KTNAME",
        "KRB5_CLIENT_KTNAME",
        "KRB5_TRACE",
        "NTLM_USER_FILE",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let done = crate::kdc::run_bounded(&mut command, stdin, Duration::from_secs(20));
    (done.code == Some(0), done.stdout, done.stderr)
}

/// What the mock Exchange received so far (`GET /_lab/received` on its own address).
fn received(lab_dir: &Path) -> Vec<serde_json::Value> {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab_dir.join("lab.json")).unwrap()).unwrap();
    let url = format!("{}/_lab/received", info["exchange"].as_str().unwrap());
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--noproxy", "*", &url])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// The audit log's decisions so far.
fn audit(lab_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lab_dir.join("audit/exgate.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The user a `kinit user0N@REALM` signs in as, in the lab's directory: `user0N@contoso.com`.
fn kinit_user(command: &str) -> Option<String> {
    let principal = command.strip_prefix("kinit ")?.split_whitespace().next()?;
    let (name, _) = principal.split_once('@').unwrap_or((principal, ""));
    Some(format!("{name}@contoso.com"))
}

/// Runs a walk's steps in order, each in `sh` with `env` (the realm's Kerberos
/// configuration and credential cache) after `prefix` (shell lines setting it up, as the
/// README's reader's shell has them), `kinit` reading `password(user)` on stdin. Each
/// `curl` prints the step's status; a 200 reached the mock Exchange as the signed-in
/// user over Kerberos, a 401 never reached it and was exgate's decision as that user's
/// policy (the ticket read, not an unidentified credential).
fn walk(
    steps: &[Step],
    lab_dir: &Path,
    prefix: &str,
    env: &[(&str, String)],
    password: &dyn Fn(&str) -> String,
) {
    let mut user: Option<String> = None;
    let mut curls = Vec::new();
    for step in steps {
        let before = received(lab_dir).len();
        let audited = audit(lab_dir).len();
        let stdin = kinit_user(&step.command).map(|u| {
            let bare = u.split('@').next().unwrap().to_owned();
            user = Some(u);
            format!("{}\n", password(&bare))
        });
        let script = format!("{prefix}{}", step.command);
        let (ok, stdout, stderr) = shell(&script, env, stdin.as_deref());
        assert!(ok, "{}: {stdout}{stderr}", step.command);
        let Some(expect) = &step.expect else {
            continue;
        };
        let user = user.clone().expect("a kinit before the first curl");
        assert!(step.command.contains("--negotiate"), "{}", step.command);
        assert_eq!(
            stdout.trim(),
            expect,
            "{} as {user}: {stderr}",
            step.command
        );
        curls.push((user.clone(), expect.clone()));
        let after = received(lab_dir);
        let new = &after[before..];
        // exgate's decision on this request, as the audit log records it.
        let decided = audit(lab_dir);
        let decision = decided[audited..]
            .iter()
            .rev()
            .find(|d| d["path"] == "/mapi/emsmdb/")
            .unwrap_or_else(|| panic!("no audit line for {}", step.command))
            .clone();
        assert_eq!(decision["scheme"], "kerberos", "{decision}");
        assert!(
            decision["user"]
                .as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(&user)),
            "exgate read {user} in the ticket: {decision}"
        );
        match expect.as_str() {
            "200" => {
                assert_eq!(new.len(), 1, "{user}: {new:?}");
                assert_eq!(new[0]["scheme"], "kerberos", "{new:?}");
                assert_eq!(new[0]["user"], user.as_str(), "{new:?}");
                assert_eq!(new[0]["status"], 200, "{new:?}");
                assert_eq!(decision["decision"], "allow", "{decision}");
            }
            "401" => {
                assert!(new.is_empty(), "a refused ticket reached Exchange: {new:?}");
                assert_eq!(decision["decision"], "block", "{decision}");
                assert_eq!(decision["policy"], "BlockLegacyOutlookAuth", "{decision}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // The pilot step: user01 through, the cmdlet, user01 refused; user02 through.
    let user = |u: &str| format!("{u}@contoso.com");
    assert_eq!(
        curls,
        vec![
            (user("user01"), "200".to_owned()),
            (user("user01"), "401".to_owned()),
            (user("user02"), "200".to_owned()),
        ]
    );
}

/// The banner's Kerberos walk: its lines between the Kerberos heading and the blank line
/// after them, comments dropped, `   # expect NNN` split off.
fn banner_walk(banner: &str) -> Vec<Step> {
    let start = banner
        .find("\nKerberos (--keytab ")
        .unwrap_or_else(|| panic!("no Kerberos walk in the banner:\n{banner}"));
    banner[start + 1..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with('#'))
        .map(|l| {
            let l = l.trim();
            match l.split_once("   # expect ") {
                Some((command, expect)) => Step {
                    command: command.to_owned(),
                    expect: Some(expect.trim().to_owned()),
                },
                None => Step {
                    command: l.to_owned(),
                    expect: None,
                },
            }
        })
        .collect()
}

/// The banner of a lab started with `--keytab` prints the pilot step with Kerberos; run
/// as printed, with a ticket from a real MIT KDC, it behaves as printed.
#[test]
#[ignore = "needs MIT krb5-kdc (installed by .ci/run)"]
fn the_banner_walks_the_pilot_step_with_real_kerberos_tickets() {
    let kdc = Kdc::start();
    kdc.add_service(SERVICE_HOST, "aes256-cts-hmac-sha1-96");
    let keytab = kdc.export_keytab("exchange.keytab", &[SERVICE_HOST]);
    let dir = scratch();
    let lab = LabProcess::spawn(&[
        "lab",
        "--scenario",
        "onprem-ca",
        "--dir",
        arg(&dir),
        "--port",
        "0",
        "--keytab",
        arg(&keytab),
    ]);
    let config = std::fs::read_to_string(dir.join("exgate.toml")).unwrap();
    assert!(
        config.contains(&format!("[kerberos]\nkeytab = \"{}\"", arg(&keytab))),
        "{config}"
    );
    let steps = banner_walk(&lab.banner);
    assert_eq!(steps.len(), 7, "{steps:#?}\n{}", lab.banner);
    assert!(
        steps.iter().any(|s| s
            .command
            .ends_with("'Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth'")),
        "the pilot step is the article's cmdlet: {steps:#?}"
    );
    let ccache = scratch().join("ccache");
    let env = [
        ("KRB5_CONFIG", arg(&kdc.krb5_conf()).to_owned()),
        ("KRB5CCNAME", format!("FILE:{}", arg(&ccache))),
    ];
    let password = |user: &str| {
        kdc::USERS
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, p)| (*p).to_owned())
            .unwrap()
    };
    walk(&steps, &dir, "", &env, &password);
    mock_reads_raw_tokens_and_refuses_what_does_not_open(&dir, &kdc, &ccache);
    // The rest of the lab is unchanged by the keytab: the article's walk passes.
    let out = exgate(&["lab", "walk", "--dir", arg(&dir)]);
    let walked = text(&out.stdout);
    assert!(walked.contains("9 steps, 9 passed, 0 failed"), "{walked}");
    lab.stop();
}

/// The mock Exchange, asked directly: the AP-REQ of curl's SPNEGO token, sent raw (a GSS
/// Kerberos token under `Negotiate`), authenticates too; the same token with its ticket
/// altered, or any Kerberos token from a lab without that key, gets 401 with the
/// `Negotiate` challenge.
fn mock_reads_raw_tokens_and_refuses_what_does_not_open(lab_dir: &Path, kdc: &Kdc, ccache: &Path) {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab_dir.join("lab.json")).unwrap()).unwrap();
    let exchange = info["exchange"].as_str().unwrap().to_owned();
    let to = exchange
        .strip_prefix("http://")
        .unwrap()
        .parse::<std::net::SocketAddr>()
        .unwrap();
    // A fresh AP-REQ from curl (user02's cache), straight to the mock.
    let run = kdc.curl_negotiate(ccache, SERVICE_HOST, to, "/mapi/emsmdb/");
    assert_eq!(run.status, 200, "{}", run.trace);
    let header = run
        .trace
        .lines()
        .find_map(|l| l.strip_prefix("> Authorization: Negotiate "))
        .unwrap()
        .trim()
        .to_owned();
    let spnego = STANDARD.decode(&header).unwrap();
    let raw = mech_token(&spnego).expect("curl's NegTokenInit carries the AP-REQ");
    assert_eq!(&raw[..2], &[0x60, raw[1]], "a GSS initial-context token");
    let status = |token: &[u8]| -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "--noproxy", "*", "-D", "-", "-o"])
            .arg("/dev/null")
            .args(["-w", "%{http_code}", "-H"])
            .arg(format!(
                "Authorization: Negotiate {}",
                STANDARD.encode(token)
            ))
            .arg(format!("{exchange}/mapi/emsmdb/"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let code = text
            .rsplit('\n')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap_or(0);
        (code, text)
    };
    assert_eq!(status(&raw).0, 200, "the raw Kerberos token");
    // The ticket's cipher text is the larger part of the token: flip a byte in its middle.
    let mut altered = raw.clone();
    let middle = altered.len() / 3;
    altered[middle] ^= 0x55;
    let (code, text) = status(&altered);
    assert_eq!(code, 401, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: negotiate"),
        "{text}"
    );
    let last = received(lab_dir);
    assert_eq!(last.last().unwrap()["scheme"], "refused", "{last:?}");
}

/// The mechToken of a SPNEGO NegTokenInit in its GSS framing (RFC 4178 §4.2.1), read
/// strictly enough for curl's token.
fn mech_token(token: &[u8]) -> Option<Vec<u8>> {
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *b.first()?;
        let first = *b.get(1)?;
        let (len, head) = match first {
            n if n < 0x80 => (usize::from(n), 2),
            0x81 => (usize::from(*b.get(2)?), 3),
            0x82 => (usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
            _ => return None,
        };
        let body = b.get(head..head + len)?;
        Some((tag, body, &b[head + len..]))
    }
    let (tag, app, _) = tlv(token)?; // [APPLICATION 0]
    (tag == 0x60).then_some(())?;
    let (_, _, rest) = tlv(app)?; // the SPNEGO OID
    let (_, init, _) = tlv(rest)?; // [0] NegTokenInit
    let (_, seq, _) = tlv(init)?; // SEQUENCE
    let mut fields = seq;
    while !fields.is_empty() {
        let (tag, body, rest) = tlv(fields)?;
        if tag == 0xa2 {
            let (_, octets, _) = tlv(body)?;
            return Some(octets.to_vec());
        }
        fields = rest;
    }
    None
}

/// A KDC a test started in the background (`krb5kdc` without `-n` forks), stopped by the
/// id its pid file holds.
struct DaemonKdc {
    pid_file: PathBuf,
}

impl Drop for DaemonKdc {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let pid = pid.trim();
            if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                let _ = Command::new("kill").args(["-TERM", pid]).status();
            }
        }
    }
}

/// The `sh` blocks of a README section, in order.
fn readme_blocks(section: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find(section).expect("the section exists");
    let rest = &readme[start + section.len()..];
    let end = rest
        .find("\n### ")
        .or(rest.find("\n## "))
        .unwrap_or(rest.len());
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in rest[..end].lines() {
        if line.starts_with("```") {
            match block.take() {
                Some(b) => blocks.push(b),
                None if line == "```sh" => block = Some(String::new()),
                None => {}
            }
            continue;
        }
        if let Some(b) = &mut block {
            b.push_str(line);
            b.push('\n');
        }
    }
    blocks
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The README's "Kerberos in the lab", as printed: its realm block (the package install
/// aside) creates a realm and starts a KDC, its lab command starts the lab with the
/// exported keytab, and its walk behaves as its comments say. Only the folders (scratch
/// ones for `${TMPDIR:-/tmp}/exgate-kdc` and the lab's), the ports (free ones for 18088
/// and 18443) and `exgate cmdlet`'s `--dir` differ.
#[test]
#[ignore = "needs MIT krb5-kdc (installed by .ci/run)"]
fn the_readme_kerberos_lab_works_as_printed() {
    let blocks = readme_blocks("### Kerberos in the lab");
    assert_eq!(blocks.len(), 3, "{blocks:#?}");
    let kdc_dir = scratch();
    let lab_dir = scratch();
    let kdc_port = free_port().to_string();
    let realm = |text: &str| {
        text.replace("${TMPDIR:-/tmp}/exgate-kdc", arg(&kdc_dir))
            .replace("18088", &kdc_port)
    };

    // The realm and its KDC.
    let (install, setup): (Vec<&str>, Vec<&str>) = blocks[0]
        .lines()
        .partition(|l| l.starts_with("sudo apt-get install "));
    assert_eq!(
        install,
        ["sudo apt-get install krb5-kdc krb5-admin-server krb5-user"]
    );
    let setup = realm(&setup.join("\n"));
    let _kdc = DaemonKdc {
        pid_file: kdc_dir.join("krb5kdc.pid"),
    };
    let (ok, stdout, stderr) = shell(&format!("set -e\n{setup}\n"), &[], None);
    assert!(ok, "{setup}\n{stdout}{stderr}");
    let log = kdc_dir.join("kdc.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("commencing operation")
    {
        assert!(Instant::now() < deadline, "the KDC did not start: {log:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let keytab = kdc_dir.join("exchange.keytab");
    assert!(keytab.exists(), "{stdout}{stderr}");

    // The lab, as the README starts it (the binary cargo built, a free port, a scratch
    // folder).
    let lab_line = blocks[1].trim();
    let args = lab_line
        .strip_prefix("cargo run --release -- ")
        .unwrap_or_else(|| panic!("{lab_line}"));
    let args = realm(args);
    let mut args: Vec<&str> = args.split_whitespace().collect();
    assert_eq!(args[..3], ["lab", "--scenario", "onprem-ca"], "{lab_line}");
    args.extend(["--dir", arg(&lab_dir), "--port", "0"]);
    let lab = LabProcess::spawn(&args);
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab_dir.join("lab.json")).unwrap()).unwrap();
    let port = info["proxy"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        lab.banner.contains("\nKerberos (--keytab "),
        "{}",
        lab.banner
    );

    // The walk, in the realm's shell: its variables set as the realm block sets them.
    let prefix: String = setup
        .lines()
        .filter(|l| l.starts_with("KRB=") || l.starts_with("export "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(prefix.contains("export KRB5_CONFIG="), "{prefix}");
    let exe = env!("CARGO_BIN_EXE_exgate");
    let mut passwords = std::collections::HashMap::new();
    let mut steps = Vec::new();
    for line in blocks[2].lines() {
        let line = realm(line)
            .replace("${TMPDIR:-/tmp}/exgate-lab/onprem-ca", arg(&lab_dir))
            .replace("18443", &port);
        let line = match line.strip_prefix("exgate cmdlet ") {
            Some(rest) => format!("'{exe}' cmdlet --dir '{}' {rest}", arg(&lab_dir)),
            None => line,
        };
        let (command, comment) = match line.split_once("   # ") {
            Some((c, comment)) => (c.to_owned(), comment.to_owned()),
            None => (line.clone(), String::new()),
        };
        if let Some(user) = kinit_user(&command) {
            let password = comment
                .strip_prefix("password ")
                .unwrap_or_else(|| panic!("{line}"));
            passwords.insert(
                user.split('@').next().unwrap().to_owned(),
                password.to_owned(),
            );
        }
        let expect = command
            .starts_with("curl ")
            .then(|| comment.split(':').next().unwrap().trim().to_owned());
        // Run as printed, comment included (a shell comment).
        steps.push(Step {
            command: line,
            expect,
        });
    }
    let stop = steps.pop().unwrap();
    assert_eq!(stop.command, "kill $(cat $KRB/krb5kdc.pid)");
    walk(&steps, &lab_dir, &prefix, &[], &|u: &str| {
        passwords[u].clone()
    });
    let (ok, _, stderr) = shell(&format!("{prefix}{}", stop.command), &[], None);
    assert!(ok, "{stderr}");
    lab.stop();
}

/// `--keytab` in an online scenario: ignored, with the reason, and the lab runs without
/// Kerberos; a keytab without an HTTP service key: refused before anything is written.
#[test]
fn the_online_labs_ignore_a_keytab_and_a_useless_keytab_is_refused() {
    let keytab = scratch().join("exchange.keytab");
    let http = exgate::kerberos::Principal {
        components: vec!["HTTP".into(), SERVICE_HOST.into()],
        realm: "CONTOSO.COM".into(),
    };
    std::fs::write(
        &keytab,
        exgate::kerberos::keytab::build(&[(&http, 3, 18, &[7u8; 32])]),
    )
    .unwrap();
    let dir = scratch();
    let mut child = Command::new(env!("CARGO_BIN_EXE_exgate"))
        .args(["lab", "--scenario", "online-ca", "--dir", arg(&dir)])
        .args(["--port", "0", "--keytab", arg(&keytab)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let banner = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("lab.json").exists() {
        assert!(Instant::now() < deadline, "the online lab did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let (banner, errors) = (banner.join().unwrap(), errors.join().unwrap());
    assert!(status.success(), "{status}: {errors}");
    assert!(
        errors
            .contains("--keytab ignored in online-ca: Exchange Online offers clients no Kerberos"),
        "{errors}"
    );
    assert!(!banner.contains("Kerberos (--keytab"), "{banner}");
    let config = std::fs::read_to_string(dir.join("exgate.toml")).unwrap();
    assert!(!config.contains("[kerberos]"), "{config}");

    // On-premises, a keytab with no HTTP/<host> key exgate can use.
    let host = exgate::kerberos::Principal {
        components: vec!["host".into(), SERVICE_HOST.into()],
        realm: "CONTOSO.COM".into(),
    };
    std::fs::write(
        &keytab,
        exgate::kerberos::keytab::build(&[(&host, 3, 18, &[7u8; 32])]),
    )
    .unwrap();
    let dir = scratch().join("lab");
    let out = exgate(&[
        "lab",
        "--scenario",
        "onprem-ca",
        "--dir",
        arg(&dir),
        "--port",
        "0",
        "--keytab",
        arg(&keytab),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("holds no HTTP/<host> key"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.exists(), "nothing written");
}
