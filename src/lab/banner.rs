//! What `exgate lab` prints: the endpoints, the users, and commands to paste, each with
//! the status it answers under the policy the lab serves — the script and any cmdlets
//! replayed from `state.ps1` (a test runs them exactly as printed, fresh and replayed).

use std::fmt::Write as _;
use std::path::Path;

use super::{LabInfo, LabUser, MFA_CODE, USERS, pki};
use crate::policy::{Action, Context, Decision, Engine, Lookup, Reason};

/// One ready-to-paste command and the HTTP status it prints.
pub struct Try {
    /// What the command shows, said for the policy in force.
    pub what: String,
    pub command: String,
    pub expect: u16,
}

/// The MAPI path the banner's credentialed tries use.
const MAPI: &str = "/mapi/emsmdb/";

/// The name of the policy that decided, or `fallback`.
fn policy_name<'e>(engine: &'e Engine, decision: &Decision, fallback: &'e str) -> &'e str {
    decision
        .policy
        .map_or(fallback, |id| engine.store().policy(id).name.as_str())
}

/// The status and wording of `user`'s Basic (right password) to MAPI under `engine`:
/// forwarded, the mock Exchange answers 200; refused, exgate answers 401 (400 for a
/// rejected request), as the proxy does.
pub(super) fn basic_try(engine: &Engine, user: &LabUser) -> (u16, String) {
    use base64::Engine as _;
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", user.upn, user.password))
    );
    let decision = engine
        .evaluate(MAPI, [header.as_bytes()], Context::default())
        .decision;
    let upn = user.upn;
    match decision.action {
        Action::Allow => match decision.policy {
            Some(_) => (
                200,
                format!(
                    "{upn}'s Basic gets through ({} allows it)",
                    policy_name(engine, &decision, "")
                ),
            ),
            None => (
                200,
                format!("{upn}'s Basic gets through (no policy applies)"),
            ),
        },
        Action::ReportOnly => (
            200,
            format!(
                "{upn}'s Basic gets through, recorded as report_only under {}",
                policy_name(engine, &decision, "policy.mode")
            ),
        ),
        Action::Block | Action::Challenge => (
            401,
            format!(
                "{upn}'s Basic is blocked by exgate under {} (never reaches Exchange)",
                policy_name(engine, &decision, "its rules")
            ),
        ),
        Action::Reject => (400, format!("{upn}'s Basic is refused as malformed")),
    }
}

/// The status and wording of a valid lab token for `user` to MAPI, with or without MFA:
/// on-premises `BlockModernAuthMapi` refuses it (403) whatever it carries; otherwise a
/// token without MFA gets the step-up challenge (401: the lab requires MFA for MAPI),
/// and one with MFA reaches the mailbox (200).
pub(super) fn bearer_try(engine: &Engine, user: &LabUser, mfa: bool) -> (u16, String) {
    // The token stage validates the token, then the engine decides as its user.
    let ctx = Context {
        token_user: Some(user.upn),
        ..Context::default()
    };
    let decision = engine
        .evaluate(MAPI, [b"Bearer lab.token.value".as_slice()], ctx)
        .decision;
    let with = if mfa { "with" } else { "without" };
    match (decision.action, decision.reason) {
        (Action::Block, Reason::ModernAuthBlocked) => (
            403,
            format!(
                "a token {with} MFA is refused: {} blocks modern authentication for MAPI",
                policy_name(engine, &decision, "a policy")
            ),
        ),
        (action, _) if action.forwards() && mfa => {
            (200, "a token with MFA reaches the mailbox".to_owned())
        }
        (action, _) if action.forwards() => (
            401,
            "a token without MFA does not (a step-up challenge)".to_owned(),
        ),
        (Action::Reject, _) => (400, format!("a token {with} MFA is refused as malformed")),
        _ => (401, format!("a token {with} MFA is refused by exgate")),
    }
}

/// Who has which policy, as the lab serves it: `user01 → BlockLegacyOutlookAuth`.
fn assigned_policy<'e>(engine: &'e Engine, user: &LabUser) -> Option<&'e str> {
    match engine.directory().lookup(user.upn) {
        Lookup::Found(id) => engine
            .store()
            .user_policy(id)
            .map(|p| engine.store().policy(p).name.as_str()),
        Lookup::Unknown | Lookup::Ambiguous => None,
    }
}

fn curl(ca: &Path, args: &str) -> String {
    format!(
        "curl -s --cacert '{}' -o /dev/null -w '%{{http_code}}\\n' {args}",
        ca.display()
    )
}

/// The commands to try against a running lab, each with the status it returns under
/// `engine`, the policy the lab serves.
pub fn tries(info: &LabInfo, dir: &Path, exe: &Path, engine: &Engine) -> Vec<Try> {
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
    let basic = |user: &LabUser| {
        let (expect, what) = basic_try(engine, user);
        Try {
            what,
            command: curl(&format!("-u '{}:{}' {p}{MAPI}", user.upn, user.password)),
            expect,
        }
    };
    let bearer = |user: &LabUser, mfa: bool| {
        let (expect, what) = bearer_try(engine, user, mfa);
        Try {
            what,
            command: curl(&format!("-H {} {p}{MAPI}", token(user.upn, mfa))),
            expect,
        }
    };
    vec![
        Try {
            what: "Autodiscover v2 answers anonymously".to_owned(),
            command: curl(&format!(
                "'{p}/autodiscover/autodiscover.json?Email={}&Protocol=AutodiscoverV1'",
                pilot.upn
            )),
            expect: 200,
        },
        Try {
            what: "Exchange asks for a token (Bearer challenge naming the lab's Azure AD)"
                .to_owned(),
            command: curl(&format!("-X POST {p}/EWS/Exchange.asmx")),
            expect: 401,
        },
        basic(pilot),
        basic(other),
        bearer(pilot, true),
        bearer(pilot, false),
        Try {
            what: "the ProxyShell pattern is refused".to_owned(),
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

/// The whole banner of the running `lab`, whose directory is `dir`; `exe` is the
/// binary its commands name.
pub fn banner(lab: &super::Lab, dir: &Path, exe: &Path) -> String {
    let info = &lab.info;
    let snapshot = lab.running.shared.snapshot.load();
    let engine = &snapshot.engine;
    let mut out = String::new();
    let s = info.scenario;
    let _ = writeln!(out, "exgate lab — {s}: {}", s.title());
    let _ = writeln!(out);
    let _ = writeln!(out, "  exgate (clients connect here)  {}", info.proxy);
    let _ = writeln!(
        out,
        "  {:<31}{}  (open in a browser: requests live, the rollout switch; the URL is the key)",
        "lab console", info.console
    );
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
        // Each user's own policy, as the lab serves it (the script, then state.ps1).
        let note = match assigned_policy(engine, u) {
            Some(policy) if i == 0 && policy == "BlockLegacyOutlookAuth" => {
                format!("  ← policy {policy} (the article's pilot)")
            }
            Some(policy) => format!("  ← policy {policy}"),
            None => String::new(),
        };
        let _ = writeln!(out, "  {:<22} {:<18} {}{note}", u.upn, u.sam, u.password);
    }
    let org = engine
        .store()
        .org_default()
        .map(|id| engine.store().policy(id));
    let _ = match org {
        Some(p) if p.report_only => writeln!(
            out,
            "  everyone else          organization default {} (report only)",
            p.name
        ),
        Some(p) => writeln!(
            out,
            "  everyone else          organization default {}",
            p.name
        ),
        None => writeln!(
            out,
            "  everyone else          no organization default (legacy authentication allowed)"
        ),
    };
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
            "Try (each prints the HTTP status; expected under the policy above, replayed cmdlets included):"
        ),
    };
    for t in tries(info, dir, exe, engine) {
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
        if !replayed.is_empty() {
            let _ = writeln!(
                out,
                "  # the statuses below are a fresh lab's: the cmdlets replayed above may change them (`exgate lab reset` first)"
            );
        }
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
