//! What `exgate lab` prints: the endpoints, the users, and commands to paste, each with
//! the status it answers (a test runs them exactly as printed).

use std::fmt::Write as _;
use std::path::Path;

use super::{LabInfo, MFA_CODE, USERS, pki};

/// One ready-to-paste command and the HTTP status it prints.
pub struct Try {
    pub what: &'static str,
    pub command: String,
    pub expect: u16,
}

fn curl(ca: &Path, args: &str) -> String {
    format!(
        "curl -s --cacert '{}' -o /dev/null -w '%{{http_code}}\\n' {args}",
        ca.display()
    )
}

/// The commands to try against a running lab.
pub fn tries(info: &LabInfo, dir: &Path, exe: &Path) -> Vec<Try> {
    let p = &info.proxy;
    let ca = dir.join(pki::CA_FILE);
    let curl = |args: &str| curl(&ca, args);
    let (pilot, other) = (&USERS[0], &USERS[1]);
    let token = |user: &str, mfa: bool| {
        format!(
            "\"Authorization: Bearer $('{}' token --dir '{}' --user {user}{})\"",
            exe.display(),
            dir.display(),
            if mfa { "" } else { " --no-mfa" }
        )
    };
    vec![
        Try {
            what: "Autodiscover v2 answers anonymously",
            command: curl(&format!(
                "'{p}/autodiscover/autodiscover.json?Email={}&Protocol=AutodiscoverV1'",
                pilot.upn
            )),
            expect: 200,
        },
        Try {
            what: "Exchange asks for a token (Bearer challenge naming the lab's Azure AD)",
            command: curl(&format!("-X POST {p}/EWS/Exchange.asmx")),
            expect: 401,
        },
        Try {
            what: "the pilot user's Basic is blocked by exgate (never reaches Exchange)",
            command: curl(&format!(
                "-u '{}:{}' {p}/mapi/emsmdb/",
                pilot.upn, pilot.password
            )),
            expect: 401,
        },
        Try {
            what: "a user outside the pilot still gets through with Basic",
            command: curl(&format!(
                "-u '{}:{}' {p}/mapi/emsmdb/",
                other.upn, other.password
            )),
            expect: 200,
        },
        Try {
            what: "a token with MFA reaches the mailbox",
            command: curl(&format!("-H {} {p}/mapi/emsmdb/", token(pilot.upn, true))),
            expect: 200,
        },
        Try {
            what: "a token without MFA does not (a step-up challenge)",
            command: curl(&format!("-H {} {p}/mapi/emsmdb/", token(pilot.upn, false))),
            expect: 401,
        },
        Try {
            what: "the ProxyShell pattern is refused",
            command: curl(&format!(
                "'{p}/autodiscover/autodiscover.json?@evil.example/mapi/nspi/'"
            )),
            expect: 400,
        },
    ]
}

/// One step of the Kerberos walk: a command, and the status a `curl` prints.
pub struct KerberosStep {
    pub what: &'static str,
    pub command: String,
    /// The HTTP status `curl` prints; None for `kinit` and `exgate cmdlet`.
    pub expect: Option<u16>,
}

/// The pilot step with Kerberos tickets (a lab started with `--keytab`; empty without):
/// `kinit`, then `curl --negotiate` to MAPI under the service's host name (resolved to
/// exgate's loopback address, so that curl's GSS-API asks for a ticket for
/// `HTTP/<host>`), around the pilot cmdlet. The lab starts with the pilot in place, so
/// the walk first takes user01 out of it.
pub fn kerberos_walk(info: &LabInfo, dir: &Path, exe: &Path) -> Vec<KerberosStep> {
    let Some(k) = &info.kerberos else {
        return Vec::new();
    };
    let ca = dir.join(pki::CA_FILE);
    let port = info.proxy.rsplit(':').next().unwrap_or("18443");
    let mapi = curl(
        &ca,
        &format!(
            "--negotiate -u : --resolve {host}:{port}:127.0.0.1 https://{host}:{port}/mapi/emsmdb/",
            host = k.host
        ),
    );
    let cmdlet = |line: &str| {
        format!(
            "'{}' cmdlet --dir '{}' '{line}'",
            exe.display(),
            dir.display()
        )
    };
    let realm = "CONTOSO.COM";
    let step = |what, command: String, expect| KerberosStep {
        what,
        command,
        expect,
    };
    vec![
        step(
            "sign in as the pilot user",
            format!("kinit user01@{realm}"),
            None,
        ),
        step(
            "before the pilot: take user01 out of it",
            cmdlet("Set-User user01 -AuthenticationPolicy $null"),
            None,
        ),
        step(
            "user01's ticket reaches Exchange, which accepts it",
            mapi.clone(),
            Some(200),
        ),
        step(
            "the pilot step (the article's command)",
            cmdlet("Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth"),
            None,
        ),
        step(
            "user01's ticket is refused by exgate (never reaches Exchange)",
            mapi.clone(),
            Some(401),
        ),
        step(
            "a user outside the pilot",
            format!("kinit user02@{realm}"),
            None,
        ),
        step("user02's ticket still gets through", mapi, Some(200)),
    ]
}

/// The whole banner.
pub fn banner(info: &LabInfo, dir: &Path, exe: &Path) -> String {
    let mut out = String::new();
    let s = info.scenario;
    let _ = writeln!(out, "exgate lab — {s}: {}", s.title());
    let _ = writeln!(out);
    let _ = writeln!(out, "  exgate (clients connect here)  {}", info.proxy);
    let _ = writeln!(
        out,
        "  exgate admin                   {}  (token in {}/lab.json)",
        info.admin,
        dir.display()
    );
    let label = format!("mock Exchange ({})", s.deployment().as_str());
    let _ = writeln!(out, "  {label:<31}{}", info.exchange);
    let who = if s.mfa_by_adfs() {
        "AD FS: Permit everyone and require MFA"
    } else {
        "Azure AD: CA requires MFA for desktop clients"
    };
    let _ = writeln!(
        out,
        "  mock identity provider         {}  ({who})",
        info.idp
    );
    let _ = writeln!(out, "  lab directory                  {}", dir.display());
    let ca = dir.join(pki::CA_FILE);
    let _ = writeln!(
        out,
        "  lab CA (both serve TLS)        {}  (kept across restarts)",
        ca.display()
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Trust the lab CA in clients:");
    let _ = writeln!(out, "  curl --cacert '{}' …", ca.display());
    let _ = writeln!(
        out,
        "  export REQUESTS_CA_BUNDLE='{}'   # Python requests: MSAL, exchangelib",
        ca.display()
    );
    let _ = writeln!(
        out,
        "  export SSL_CERT_FILE='{}'        # OpenSSL-based clients, Python's ssl",
        ca.display()
    );
    let _ = writeln!(
        out,
        "  MSAL: authority='{}/{}', instance_discovery=False; the one-time code as data={{\"mfa_code\": \"{MFA_CODE}\"}}",
        info.idp,
        super::TENANT
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Users (one-time MFA code: {MFA_CODE}):");
    for (i, u) in USERS.iter().enumerate() {
        let note = if i == 0 {
            "  ← pilot: Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth"
        } else {
            ""
        };
        let _ = writeln!(out, "  {:<22} {:<18} {}{note}", u.upn, u.sam, u.password);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Policy loaded from {}/policies.ps1 (the article's commands):",
        dir.display()
    );
    for line in s.policy_script().lines() {
        let _ = writeln!(out, "  {line}");
    }
    // Cmdlets sent to an earlier run of this lab are replayed after the script.
    let replayed = std::fs::read_to_string(dir.join("state.ps1")).unwrap_or_default();
    let replayed: Vec<&str> = replayed.lines().filter(|l| !l.trim().is_empty()).collect();
    if !replayed.is_empty() {
        let _ = writeln!(
            out,
            "then replayed from {}/state.ps1 (cmdlets sent to this lab before; `exgate lab reset` clears them):",
            dir.display()
        );
        for line in &replayed {
            let _ = writeln!(out, "  {line}");
        }
    }
    let _ = writeln!(out);
    let _ = match replayed.is_empty() {
        true => writeln!(out, "Try (each prints the HTTP status):"),
        false => writeln!(
            out,
            "Try (each prints the HTTP status; the expected ones are a fresh lab's, before the cmdlets above):"
        ),
    };
    for t in tries(info, dir, exe) {
        let _ = writeln!(out, "  # {}", t.what);
        let _ = writeln!(out, "  {}   # expect {}", t.command, t.expect);
    }
    let _ = writeln!(out);
    if let Some(k) = &info.kerberos {
        let _ = writeln!(
            out,
            "Kerberos (--keytab {}: exgate and the mock Exchange read HTTP/{} tickets with it).",
            k.keytab.display(),
            k.host
        );
        let _ = writeln!(
            out,
            "Walk the pilot step with your realm's tickets, in a shell where KRB5_CONFIG names the realm's\nkrb5.conf (README, \"Kerberos in the lab\"); the password is the principal's:"
        );
        for step in kerberos_walk(info, dir, exe) {
            let _ = writeln!(out, "  # {}", step.what);
            let _ = match step.expect {
                Some(status) => writeln!(out, "  {}   # expect {status}", step.command),
                None => writeln!(out, "  {}", step.command),
            };
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Walk the article's numbered steps:   '{}' lab walk --dir '{}'",
        exe.display(),
        dir.display()
    );
    let _ = writeln!(
        out,
        "Roll out to everyone, report-only first ('Rolling out' in the README):\n                                      '{}' cmdlet --dir '{}' 'New-AuthenticationPolicy -Name OrgBlockLegacy{}'",
        exe.display(),
        dir.display(),
        match s.deployment() {
            crate::policy::Deployment::Online => " -ReportOnly",
            crate::policy::Deployment::OnPremises => {
                " -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc -BlockLegacyAuthWebServices -ReportOnly"
            }
        }
    );
    let _ = writeln!(
        out,
        "Who still uses legacy auth:          '{}' report '{}'",
        exe.display(),
        dir.join("audit/exgate.jsonl").display()
    );
    let _ = writeln!(
        out,
        "Start over (after Ctrl-C):           '{}' lab reset --dir '{}'",
        exe.display(),
        dir.display()
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "exgate lab ready. Ctrl-C stops it.");
    out
}
