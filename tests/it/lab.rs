//! The lab end to end, through the real binary: `exgate lab`, the printed commands run as
//! printed, `exgate lab walk`, and `exgate cmdlet` changing the outcome live and across a
//! restart — for each of the article's four architectures.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::*;

/// A lab in this process, on free ports in a fresh folder, and a client that trusts its
/// CA.
pub(crate) async fn in_process(
    scenario: exgate::lab::Scenario,
) -> (exgate::lab::Lab, exgate::client::Client) {
    let lab = exgate::lab::start(exgate::lab::LabOptions {
        scenario,
        dir: scratch(),
        port: 0,
        console_port: 0,
    })
    .await
    .unwrap();
    let client = exgate::client::Client::trusting(&lab.info.ca).unwrap();
    (lab, client)
}

pub(crate) struct LabProcess {
    child: Child,
    pub(crate) banner: String,
}

impl LabProcess {
    pub(crate) fn start(scenario: &str, dir: &Path) -> LabProcess {
        LabProcess::spawn(&[
            "lab",
            "--scenario",
            scenario,
            "--dir",
            arg(dir),
            "--port",
            "0",
        ])
    }

    /// `exgate ARGS` (a `lab` command line), once its banner says it is ready.
    pub(crate) fn spawn(args: &[&str]) -> LabProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_exgate"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                banner.push_str(&line);
                banner.push('\n');
                if line.starts_with("exgate lab ready") {
                    let _ = tx.send(banner.clone());
                }
            }
        });
        let banner = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the lab starts within seconds");
        LabProcess { child, banner }
    }

    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "the lab exits cleanly on SIGTERM: {status}"
        );
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `curl …   # expect NNN` lines of the banner.
fn printed_commands(banner: &str) -> Vec<(String, String)> {
    banner
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (cmd, expect) = l.split_once("   # expect ")?;
            l.starts_with("curl ")
                .then(|| (cmd.to_owned(), expect.trim().to_owned()))
        })
        .collect()
}

fn sh(command: &str) -> String {
    let out = Command::new("sh").args(["-c", command]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn basic_status(dir: &Path, banner: &str, user: &str, password: &str) -> String {
    let proxy = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("exgate (clients connect here)"))
        .unwrap()
        .trim()
        .to_owned();
    sh(&format!(
        "curl -s --cacert '{}' -o /dev/null -w '%{{http_code}}' -u '{user}:{password}' {proxy}/mapi/emsmdb/",
        dir.join("ca.pem").display()
    ))
}

/// The step numbers `exgate lab walk` printed, in order.
fn walk_numbers(walk: &str) -> Vec<String> {
    walk.lines()
        .filter_map(|line| {
            let chars: Vec<char> = line.chars().collect();
            let number = chars.get(..6)?.iter().collect::<String>();
            (chars.len() > 8 && chars[6] == ' ' && chars[7] == ' ' && !number.trim().is_empty())
                .then(|| number.trim().to_owned())
        })
        .collect()
}

/// The line after the walk's `legacy` step: what came back, PASS or FAIL.
fn legacy_outcome(walk: &str) -> String {
    let mut lines = walk.lines();
    lines.find(|l| l.starts_with("legacy"));
    lines.next().unwrap_or_default().trim().to_owned()
}

/// Runs every `curl … # expect N` line of a banner and checks each prints N.
fn check_printed_commands(scenario: &str, banner: &str) {
    let commands = printed_commands(banner);
    assert!(commands.len() >= 7, "{banner}");
    for (command, expect) in &commands {
        assert_eq!(&sh(command), expect, "{scenario}: {command}\n{banner}");
    }
}

fn run_scenario(scenario: &str, mfa_marker: &str) {
    let dir = scratch();
    let lab = LabProcess::start(scenario, &dir);

    // TLS: exgate and the identity provider serve certificates of the lab's CA, which
    // the banner names with what each kind of client needs to trust it.
    let ca = dir.join("ca.pem");
    let ca_pem = std::fs::read(&ca).unwrap();
    for needed in [
        format!("curl --cacert '{}'", ca.display()),
        format!("REQUESTS_CA_BUNDLE='{}'", ca.display()),
        format!("SSL_CERT_FILE='{}'", ca.display()),
    ] {
        assert!(lab.banner.contains(&needed), "{needed}\n{}", lab.banner);
    }
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap();
    for url in ["proxy", "idp"] {
        assert!(
            info[url].as_str().unwrap().starts_with("https://"),
            "{info}"
        );
    }

    // The printed commands behave as printed.
    check_printed_commands(scenario, &lab.banner);
    assert!(
        lab.banner.contains(
            "user01@contoso.com's Basic is blocked by exgate under BlockLegacyOutlookAuth"
        ),
        "{}",
        lab.banner
    );

    // The banner's report command, as printed, reads the lab's audit log: the pilot's
    // Basic the commands above sent was blocked.
    let report = lab
        .banner
        .lines()
        .find_map(|l| l.strip_prefix("Who still uses legacy auth:"))
        .expect("the banner prints the report command")
        .trim();
    assert!(report.ends_with("/audit/exgate.jsonl'"), "{report}");
    let out = Command::new("sh").args(["-c", report]).output().unwrap();
    assert!(out.status.success(), "{report}: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("user01@contoso.com"),
        "{}",
        text(&out.stdout)
    );

    // The walk: every numbered step of the article, the legacy block, MFA enforcement.
    let out = exgate(&["lab", "walk", "--dir", arg(&dir)]);
    let walk = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{walk}{}", text(&out.stderr));
    assert!(walk.contains("9 steps, 9 passed, 0 failed"), "{walk}");
    assert!(walk.contains(mfa_marker), "{walk}");
    assert!(
        walk.contains("401 from exgate, Bearer challenge only; Exchange received 0 request(s)"),
        "{walk}"
    );
    let mfa_error = match scenario.ends_with("adfs") {
        true => "error=\"insufficient_user_authentication\"",
        false => "error=\"insufficient_claims\"",
    };
    assert!(walk.contains(mfa_error), "{walk}");
    assert!(walk.contains("EWS FindItem: 3 messages"), "{walk}");
    // Numbered as the README numbers the article's steps.
    let numbers = match scenario.ends_with("adfs") {
        true => ["1", "2", "3", "4–6", "7–9", "10", "10b", "legacy", "mfa"],
        false => ["1", "2", "3", "4–8", "9–10", "11", "11b", "legacy", "mfa"],
    };
    assert_eq!(walk_numbers(&walk), numbers, "{walk}");

    // A cmdlet changes the outcome live…
    assert_eq!(
        basic_status(&dir, &lab.banner, "user02@contoso.com", "Lab-Passw0rd-02"),
        "200"
    );
    let out = exgate(&[
        "cmdlet",
        "--dir",
        arg(&dir),
        "Set-User user02 -AuthenticationPolicy BlockLegacyOutlookAuth",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        basic_status(&dir, &lab.banner, "user02@contoso.com", "Lab-Passw0rd-02"),
        "401"
    );
    let bad = exgate(&[
        "cmdlet",
        "--dir",
        arg(&dir),
        "Set-User user02 -BlockLegacyAuthMapi",
    ]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        text(&bad.stderr).contains("A parameter cannot be found"),
        "{}",
        text(&bad.stderr)
    );

    // Without the pilot policy the walk's legacy step fails, and says what happened.
    let out = exgate(&[
        "cmdlet",
        "--dir",
        arg(&dir),
        "Set-User user01 -AuthenticationPolicy $null",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = exgate(&["lab", "walk", "--dir", arg(&dir)]);
    let walk = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{walk}");
    assert!(walk.contains("9 steps, 8 passed, 1 failed"), "{walk}");
    assert_eq!(
        legacy_outcome(&walk),
        "→ 200 from Exchange (exgate forwarded it), no challenge; Exchange received 1 request(s)  [FAIL]",
        "{walk}"
    );

    // …and survives a restart, as does the CA clients were told to trust.
    lab.stop();
    let lab = LabProcess::start(scenario, &dir);
    assert_eq!(std::fs::read(&ca).unwrap(), ca_pem, "the lab CA is kept");
    // The banner lists the replayed cmdlets with the way back to a fresh lab, and
    // expects what the replayed policy answers: its commands still print what they say.
    assert!(lab.banner.contains("then replayed from"), "{}", lab.banner);
    assert!(
        lab.banner.contains("`exgate lab reset` clears them"),
        "{}",
        lab.banner
    );
    assert!(
        lab.banner
            .contains("Set-User user02 -AuthenticationPolicy BlockLegacyOutlookAuth"),
        "{}",
        lab.banner
    );
    assert!(
        lab.banner.contains(
            "user02@contoso.com's Basic is blocked by exgate under BlockLegacyOutlookAuth"
        ),
        "{}",
        lab.banner
    );
    check_printed_commands(scenario, &lab.banner);
    assert_eq!(
        basic_status(&dir, &lab.banner, "user02@contoso.com", "Lab-Passw0rd-02"),
        "401"
    );
    assert_eq!(
        basic_status(&dir, &lab.banner, "user01@contoso.com", "Pilot-Passw0rd-01"),
        "200"
    );
    assert_eq!(
        basic_status(&dir, &lab.banner, "user03@contoso.com", "Lab-Passw0rd-03"),
        "200"
    );
    lab.stop();
}

#[test]
fn lab_online_ca() {
    run_scenario("online-ca", "AADSTS50076");
}

#[test]
fn lab_online_adfs() {
    run_scenario("online-adfs", "MSIS7068");
}

#[test]
fn lab_onprem_ca() {
    run_scenario("onprem-ca", "AADSTS50076");
}

#[test]
fn lab_onprem_adfs() {
    run_scenario("onprem-adfs", "MSIS7068");
}

/// The `exgate …` and `curl …` commands of a README section's `sh` blocks, in order,
/// with their trailing comment (what they answer) when there is one.
fn readme_commands(section: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find(section).expect("the section exists");
    let rest = &readme[start + section.len()..];
    let end = rest
        .find("\n### ")
        .or(rest.find("\n## "))
        .unwrap_or(rest.len());
    let mut in_block = false;
    let mut commands = Vec::new();
    for line in rest[..end].lines() {
        let line = line.trim();
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if in_block && (line.starts_with("exgate ") || line.starts_with("curl ")) {
            commands.push(line.to_owned());
        }
    }
    commands
}

/// The README's rollout, run as printed (plus `cmdlet --dir`, and the lab's real
/// directory and address) on a fresh lab of each deployment. Step 1 is what the README
/// says: nothing new is blocked (user02 and user03 forwarded on MAPI and EWS), every
/// request it would block is recorded `report_only` under `OrgBlockLegacy` (audit log,
/// `exgate_legacy_auth_attempts_total{action="report_only"}`, `exgate report`), and the
/// article's pilot stays enforced; the organization step then blocks user02.
fn rollout(scenario: &str) {
    let dir = scratch();
    let lab = LabProcess::start(scenario, &dir);
    let exe = env!("CARGO_BIN_EXE_exgate");
    let proxy = lab
        .banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("exgate (clients connect here)"))
        .unwrap()
        .trim()
        .to_owned();
    let commands = readme_commands("### Rolling out, the way Microsoft recommends");
    assert!(commands.len() >= 7, "{commands:?}");
    let online = scenario.starts_with("online");
    let (step1, rest) = commands.split_at(
        commands
            .iter()
            .position(|c| c.contains("-Name BlockLegacyOutlookAuth"))
            .expect("step 2 creates the pilot policy"),
    );
    let run = |command: &str| -> std::process::Output {
        let command = command
            .replace("${TMPDIR:-/tmp}/exgate-lab/online-ca", arg(&dir))
            .replace("https://localhost:18443", &proxy);
        let command = match command.strip_prefix("exgate cmdlet ") {
            Some(args) => format!("'{exe}' cmdlet --dir '{}' {args}", dir.display()),
            None => match command.strip_prefix("exgate ") {
                Some(args) => format!("'{exe}' {args}"),
                None => command.split("   #").next().unwrap().to_owned(),
            },
        };
        Command::new("sh").args(["-c", &command]).output().unwrap()
    };
    let user02 = || basic_status(&dir, &lab.banner, "user02@contoso.com", "Lab-Passw0rd-02");
    let user01 = || basic_status(&dir, &lab.banner, "user01@contoso.com", "Pilot-Passw0rd-01");
    assert_eq!(user02(), "200");
    assert_eq!(user01(), "401", "the lab starts with the article's pilot");
    // Step 1: the New-AuthenticationPolicy of this deployment, then the rest.
    let mut report = String::new();
    for command in step1 {
        let deployment_specific = command.contains("New-AuthenticationPolicy -Name OrgBlockLegacy");
        if deployment_specific && command.contains("-BlockLegacyAuth") == online {
            continue;
        }
        let out = run(command);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{command}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if command.starts_with("curl ") {
            assert_eq!(text.trim(), "200", "{command}: reported, not blocked");
        }
        if command.starts_with("exgate report") {
            report = text;
        }
    }
    let would_block = report
        .split("What report-only policies would block")
        .nth(1)
        .unwrap_or_else(|| panic!("{report}"));
    assert!(would_block.contains("user02@contoso.com"), "{report}");
    assert!(would_block.contains("OrgBlockLegacy"), "{report}");
    assert_eq!(user01(), "401", "the pilot stays enforced");
    // Nothing new is blocked: user03 too, and EWS too.
    let status = |user: &str, password: &str, path: &str| {
        sh(&format!(
            "curl -s --cacert '{}' -o /dev/null -w '%{{http_code}}' -u '{user}:{password}' {proxy}{path}",
            dir.join("ca.pem").display()
        ))
    };
    assert_eq!(
        status("user03@contoso.com", "Lab-Passw0rd-03", "/mapi/emsmdb/"),
        "200"
    );
    assert_eq!(
        status(
            "user02@contoso.com",
            "Lab-Passw0rd-02",
            "/EWS/Exchange.asmx"
        ),
        "200"
    );
    // Each is recorded report_only under the organization's policy (the audit writer is
    // asynchronous: a bounded wait for the last lines).
    let reported = [
        ("user02@contoso.com", "Mapi"),
        ("user02@contoso.com", "WebServices"),
        ("user03@contoso.com", "Mapi"),
    ];
    let mut lines: Vec<serde_json::Value> = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(dir.join("audit/exgate.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let all = reported.iter().all(|(user, protocol)| {
            lines.iter().any(|l| {
                l["user"] == *user
                    && l["protocol"] == *protocol
                    && l["decision"] == "report_only"
                    && l["policy"] == "OrgBlockLegacy"
            })
        });
        if all {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for (user, protocol) in reported {
        assert!(
            lines.iter().any(|l| l["user"] == user
                && l["protocol"] == protocol
                && l["decision"] == "report_only"
                && l["policy"] == "OrgBlockLegacy"),
            "{user} {protocol} recorded report_only: {lines:?}"
        );
    }
    assert!(
        !lines
            .iter()
            .any(|l| l["decision"] == "block" && l["user"] != "user01@contoso.com"),
        "nobody outside the pilot is blocked: {lines:?}"
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap();
    let metrics = sh(&format!(
        "curl -s {}/metrics",
        info["admin"].as_str().unwrap()
    ));
    let report_only: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("exgate_legacy_auth_attempts_total{")
                && l.contains("action=\"report_only\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(report_only >= 3.0, "{metrics}");
    // Step 3 (step 2 is the lab's starting point).
    let step3 = rest.last().unwrap();
    assert!(step3.contains("-ReportOnly:$false"), "{step3}");
    let out = run(step3);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(user02(), "401", "the organization default now enforces");
    lab.stop();
}

#[test]
fn the_readme_rollout_works_as_printed_online() {
    rollout("online-ca");
}

#[test]
fn the_readme_rollout_works_as_printed_on_premises() {
    rollout("onprem-ca");
}

/// A second lab refuses a directory a running lab holds, before writing anything;
/// `exgate lab reset` refuses while the lab runs, and afterwards removes its state but
/// keeps its CA.
#[test]
fn a_running_lab_keeps_its_directory_and_reset_starts_over() {
    let dir = scratch();
    let lab = LabProcess::start("online-ca", &dir);
    let exe = env!("CARGO_BIN_EXE_exgate");
    let config_before = std::fs::read(dir.join("exgate.toml")).unwrap();
    let out = Command::new(exe)
        .args(["lab", "--dir", arg(&dir), "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("another lab is running"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.join("exgate.toml")).unwrap(),
        config_before
    );
    let out = Command::new(exe)
        .args(["lab", "reset", "--dir", arg(&dir)])
        .output()
        .unwrap();
    assert!(!out.status.success(), "reset refused while the lab runs");
    // Leave state behind: a cmdlet, audit lines.
    let out = Command::new(exe)
        .args([
            "cmdlet",
            "--dir",
            arg(&dir),
            "New-AuthenticationPolicy -Name Leftover",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.join("state.ps1").exists());
    lab.stop();
    assert!(
        dir.join("audit/exgate.jsonl").exists(),
        "the lab writes an audit log"
    );
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let out = Command::new(exe)
        .args(["lab", "reset", "--dir", arg(&dir)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.join("state.ps1").exists());
    assert!(!dir.join("audit").exists());
    assert_eq!(
        std::fs::read(dir.join("ca.pem")).unwrap(),
        ca,
        "the CA stays"
    );
    // A fresh lab: the leftover policy is gone.
    let lab = LabProcess::start("online-ca", &dir);
    let out = Command::new(exe)
        .args(["cmdlet", "--dir", arg(&dir), "Get-AuthenticationPolicy"])
        .output()
        .unwrap();
    assert!(
        !text(&out.stdout).contains("Leftover"),
        "{}",
        text(&out.stdout)
    );
    lab.stop();
}

/// The lab keeps its secrets to its owner: a directory it creates is 0700 (its missing
/// parents too), and `lab.json`, `exgate.toml` (the admin token) and `idp-keys.json` (the
/// identity provider's signing keys) are 0600.
#[cfg(unix)]
#[test]
fn the_lab_writes_its_token_and_keys_for_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = scratch().join("shared");
    let dir = parent.join("online-ca");
    let lab = LabProcess::start("online-ca", &dir);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&parent), 0o700);
    assert_eq!(mode(&dir), 0o700);
    for file in ["lab.json", "exgate.toml", "idp-keys.json", "ca-key.pem"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    lab.stop();
}
