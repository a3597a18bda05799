//! The one-command lab (feature `lab`): a mock Exchange, a mock identity provider (Entra
//! ID with Conditional Access, or AD FS with an access control policy) and exgate in
//! front, in one process on loopback, wired for one of the four architectures of
//! Microsoft's "MFA-protected Outlook desktop access in hybrid messaging" article.

mod autodiscover;
mod banner;
pub mod console;
mod ews;
mod exchange;
mod idp;
mod kerberos;
mod mailbox;
pub mod ntlm;
pub mod pki;
mod soap;
mod spnego;
#[cfg(test)]
mod tests;
mod walk;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub use banner::{KerberosStep, Try, banner, kerberos_walk, tries};
pub use walk::{Step, heading, walk};

use crate::policy::Deployment;
use crate::token::mint::SigningKey;

/// The tenant every lab token is issued for.
pub const TENANT: &str = "6f3b5b2a-1c4d-4e8f-9a0b-7c6d5e4f3a2b";
/// The Conditional Access authentication context the lab's exgate asks a token without
/// MFA for (`tokens.mfa.auth_context_ids`, SPEC §5 step-up).
pub const STEP_UP_CONTEXT: &str = "c1";
/// The one-time code the lab's "authenticator" accepts.
pub const MFA_CODE: &str = "246810";
/// Outlook desktop's client id: the "Mobile apps and desktop clients" of Conditional
/// Access.
pub const OUTLOOK_CLIENT_ID: &str = "d3590ed6-52b3-4102-aeff-aad2292ab01c";

/// A lab user: their names and password.
#[derive(Clone, Copy, Debug)]
pub struct LabUser {
    pub upn: &'static str,
    pub sam: &'static str,
    pub password: &'static str,
}

/// The lab's users. user01 is the article's pilot user.
pub const USERS: [LabUser; 3] = [
    LabUser {
        upn: "user01@contoso.com",
        sam: "CONTOSO\\user01",
        password: "Pilot-Passw0rd-01",
    },
    LabUser {
        upn: "user02@contoso.com",
        sam: "CONTOSO\\user02",
        password: "Lab-Passw0rd-02",
    },
    LabUser {
        upn: "user03@contoso.com",
        sam: "CONTOSO\\user03",
        password: "Lab-Passw0rd-03",
    },
];

/// Finds a lab user by UPN, `DOMAIN\name` or bare name, case-insensitively.
pub fn find_user(name: &str) -> Option<&'static LabUser> {
    USERS.iter().find(|u| {
        let bare = u.upn.split('@').next().unwrap_or(u.upn);
        [u.upn, u.sam, bare]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    })
}

/// The four architectures of the article.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Mailbox in Exchange Online; MFA by Conditional Access.
    OnlineCa,
    /// Mailbox in Exchange Online; MFA by an AD FS access control policy.
    OnlineAdfs,
    /// Mailbox in Exchange Server on-premises (hybrid modern auth); MFA by Conditional Access.
    OnpremCa,
    /// Mailbox in Exchange Server on-premises; MFA by AD FS.
    OnpremAdfs,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 4] = [
        Scenario::OnlineCa,
        Scenario::OnlineAdfs,
        Scenario::OnpremCa,
        Scenario::OnpremAdfs,
    ];

    /// The command-line name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scenario::OnlineCa => "online-ca",
            Scenario::OnlineAdfs => "online-adfs",
            Scenario::OnpremCa => "onprem-ca",
            Scenario::OnpremAdfs => "onprem-adfs",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The article's title for this architecture.
    pub const fn title(self) -> &'static str {
        match self {
            Scenario::OnlineCa => "mailbox in Exchange Online, MFA by Conditional Access",
            Scenario::OnlineAdfs => "mailbox in Exchange Online, MFA by AD FS",
            Scenario::OnpremCa => "mailbox in Exchange on-premises, MFA by Conditional Access",
            Scenario::OnpremAdfs => "mailbox in Exchange on-premises, MFA by AD FS",
        }
    }

    /// Exchange Online or Exchange Server.
    pub const fn deployment(self) -> Deployment {
        match self {
            Scenario::OnlineCa | Scenario::OnlineAdfs => Deployment::Online,
            Scenario::OnpremCa | Scenario::OnpremAdfs => Deployment::OnPremises,
        }
    }

    /// MFA is enforced by AD FS (not by Conditional Access).
    pub const fn mfa_by_adfs(self) -> bool {
        matches!(self, Scenario::OnlineAdfs | Scenario::OnpremAdfs)
    }

    /// The resource (token audience) Outlook asks for.
    pub const fn audience(self) -> &'static str {
        match self.deployment() {
            Deployment::Online => "https://outlook.office365.com",
            Deployment::OnPremises => "https://mail.contoso.com",
        }
    }

    /// The article's authentication-policy commands for this architecture, verbatim,
    /// with the policy assigned to the pilot user first, as the article advises.
    pub const fn policy_script(self) -> &'static str {
        match self.deployment() {
            Deployment::Online => {
                "New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -AllowBasicAuthRpc:$false -AllowBasicAuthMapi:$false -AllowBasicAuthAutodiscover:$false\n-AllowBasicAuthWebServices:$false -AllowBasicAuthOfflineAddressBook:$false\nSet-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth\n"
            }
            Deployment::OnPremises => {
                "New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc\nSet-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth\n"
            }
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a running lab writes to `lab.json` so that `lab walk`, `token` and `cmdlet` can
/// find it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabInfo {
    pub scenario: Scenario,
    /// exgate, where clients connect.
    pub proxy: String,
    /// exgate's admin listener.
    pub admin: String,
    pub admin_token: String,
    /// The mock Exchange, behind exgate (reachable directly only to inspect it).
    pub exchange: String,
    /// The mock identity provider.
    pub idp: String,
    pub config: PathBuf,
    /// The lab CA's certificate, which exgate's and the identity provider's chain to.
    #[serde(default)]
    pub ca: PathBuf,
    /// The lab console's URL, its secret included (`http://127.0.0.1:<port>/<secret>/`):
    /// as private as the admin token.
    #[serde(default)]
    pub console: String,
    /// With `--keytab` (on-premises): the keytab exgate and the mock Exchange read
    /// tickets with, and the host of its `HTTP/<host>` service, the name in clients' URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kerberos: Option<KerberosInfo>,
}

/// The Kerberos side of an on-premises lab started with `--keytab`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KerberosInfo {
    /// The keytab, absolute.
    pub keytab: PathBuf,
    /// The host of its `HTTP/<host>` principal (`mail.contoso.com`): clients reach exgate
    /// under this name, so that they ask the KDC for a ticket for that service.
    pub host: String,
}

impl LabInfo {
    /// Reads `lab.json` from a lab directory; the error for a folder without one says
    /// how to start `scenario`'s lab there.
    pub fn read(dir: &Path, scenario: Scenario) -> anyhow::Result<LabInfo> {
        let path = dir.join("lab.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            let start = match dir == default_dir(scenario) {
                true => format!("exgate lab --scenario {scenario}"),
                false => format!("exgate lab --scenario {scenario} --dir {}", dir.display()),
            };
            format!(
                "no running lab in {} (start one with `{start}`)",
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }
}

/// The default lab directory of a scenario.
pub fn default_dir(scenario: Scenario) -> PathBuf {
    std::env::temp_dir()
        .join("exgate-lab")
        .join(scenario.as_str())
}

/// How to start a lab.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub scenario: Scenario,
    pub dir: PathBuf,
    /// exgate's port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// The console's port on 127.0.0.1 (0: any free port).
    pub console_port: u16,
}

/// A running lab.
pub struct Lab {
    pub info: LabInfo,
    pub running: crate::proxy::Running,
    /// What the lab console shows: every request through exgate, the identity provider's
    /// sign-ins, what the mock Exchange received.
    pub bus: console::Bus,
    /// `lab.lock`, held while the lab runs: another lab refuses this directory.
    _lock: std::fs::File,
}

/// The lock file a running lab holds in its directory.
const LOCK_FILE: &str = "lab.lock";

/// Takes the lab directory's lock (an advisory lock on `lab.lock`, released when the
/// process ends, however it ends). Fails, before any file is written, when another
/// running lab holds it.
fn lock_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .with_context(|| format!("opening {}", dir.join(LOCK_FILE).display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another lab is running in {}: stop it first (a new lab can use its own --dir)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", dir.join(LOCK_FILE).display()))
        }
    }
}

/// What `exgate lab reset` removes: the state a lab accumulates (cmdlets sent to it,
/// the audit log, its configuration and `lab.json`). The CA and the identity provider's
/// keys stay, so clients that trust the lab keep trusting it.
pub const RESET_REMOVES: [&str; 5] = [
    "state.ps1",
    "audit",
    "lab.json",
    "exgate.toml",
    "policies.ps1",
];

/// `exgate lab reset`: returns a stopped lab directory to a fresh lab's state. Refuses
/// while a lab runs there. Returns what was removed.
pub fn reset(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let _lock = lock_dir(dir)?;
    let mut removed = Vec::new();
    for name in RESET_REMOVES {
        let path = dir.join(name);
        let result = match path.is_dir() {
            true => std::fs::remove_dir_all(&path),
            false => std::fs::remove_file(&path),
        };
        match result {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(removed)
}

/// The identity provider's signing keys, kept in the lab directory so that tokens and
/// `exgate token` survive a restart.
fn load_or_create_keys(dir: &Path) -> anyhow::Result<Vec<SigningKey>> {
    #[derive(Serialize, Deserialize)]
    struct Stored {
        kid: String,
        pkcs8: String,
    }
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let path = dir.join("idp-keys.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let stored: Vec<Stored> = serde_json::from_str(&text)?;
        let keys: Option<Vec<SigningKey>> = stored
            .iter()
            .map(|s| SigningKey::from_pkcs8(&s.kid, &b64.decode(&s.pkcs8).ok()?))
            .collect();
        if let Some(keys) = keys.filter(|k| !k.is_empty()) {
            return Ok(keys);
        }
    }
    let keys = vec![SigningKey::generate(&new_kid())];
    save_keys(dir, &keys)?;
    Ok(keys)
}

fn save_keys(dir: &Path, keys: &[SigningKey]) -> anyhow::Result<()> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let stored: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| serde_json::json!({"kid": k.kid(), "pkcs8": b64.encode(k.pkcs8())}))
        .collect();
    // The private keys: whoever reads them can mint tokens every lab accepts.
    write_private(
        &dir.join("idp-keys.json"),
        serde_json::to_string_pretty(&stored)?.as_bytes(),
    )
}

/// Writes a file readable and writable by its owner only (0600): a key, or the admin
/// token in `lab.json` and `exgate.toml`, in a folder that may sit in a shared `/tmp`. A
/// file that already exists (from an older lab) is made 0600 before anything is written.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> {
        let mut file = options.open(path)?;
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        file.write_all(contents)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Creates the lab directory, and any missing parent, for its owner only (0700). A
/// directory that already exists keeps its mode; the files with secrets in it are 0600
/// anyway ([`write_private`]).
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Whether `dir` holds a lab identity provider's signing keys (`idp-keys.json`).
pub fn has_signing_keys(dir: &Path) -> bool {
    dir.join("idp-keys.json").is_file()
}

/// The signing key `exgate token` mints with: the identity provider's current key.
pub fn current_signing_key(dir: &Path) -> anyhow::Result<SigningKey> {
    load_or_create_keys(dir)?
        .into_iter()
        .next()
        .context("the lab has no signing key")
}

/// The claims of a JWT, read without verifying it: what the lab shows of a token it
/// issued (the user, `amr`), never the token. An unreadable token gives `Value::Null`.
pub(crate) fn token_claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random source works");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_kid() -> String {
    format!("lab-{}", random_hex(6))
}

/// Starts the mock identity provider, the mock Exchange and exgate, and writes the
/// lab's configuration and `lab.json` into `options.dir`.
pub async fn start(options: LabOptions) -> anyhow::Result<Lab> {
    start_with_keytab(options, None).await
}

/// Why `--keytab` is ignored in the Exchange Online scenarios.
pub const ONLINE_KEYTAB_IGNORED: &str = "Exchange Online offers clients no Kerberos (exgate refuses Negotiate there, as Exchange Online would)";

/// [`start`], and with `keytab` (the keytab of Exchange's HTTP service principal, from a
/// real KDC) in an on-premises scenario, Kerberos: exgate's configuration gets
/// `[kerberos] keytab` and the mock Exchange accepts tickets for that service. The
/// keytab is read before anything is written; the online scenarios ignore it
/// ([`ONLINE_KEYTAB_IGNORED`]: the caller says so).
pub async fn start_with_keytab(options: LabOptions, keytab: Option<&Path>) -> anyhow::Result<Lab> {
    let scenario = options.scenario;
    let keytab = match keytab {
        Some(path) if scenario.deployment() == Deployment::OnPremises => {
            let keytab = kerberos::LabKeytab::load(path)?;
            for warning in &keytab.warnings {
                errln!("exgate lab: --keytab: {warning}");
            }
            Some(keytab)
        }
        _ => None,
    };
    let dir = &options.dir;
    create_private_dir(dir)?;
    let lock = lock_dir(dir)?;
    let keys = load_or_create_keys(dir)?;
    // A keytab for another host than mail.contoso.com: exgate's certificate names it too.
    let extra_names: Vec<&str> = keytab.iter().map(|k| k.host.as_str()).collect();
    let pki = pki::prepare(dir, &extra_names)?;
    let bus = console::Bus::new();
    let idp = idp::start(scenario, keys, dir.to_owned(), &pki.idp, bus.clone()).await?;
    let exchange = exchange::start(
        scenario,
        idp.keys.clone(),
        &idp.url,
        keytab.as_ref(),
        bus.clone(),
    )
    .await?;

    let admin_token = random_hex(16);
    std::fs::write(dir.join("policies.ps1"), scenario.policy_script())?;
    let config_path = dir.join("exgate.toml");
    // exgate.toml and lab.json hold the admin token: 0600.
    write_private(
        &config_path,
        config_text(
            scenario,
            options.port,
            &exchange.url,
            &idp.url,
            &admin_token,
            keytab.as_ref().map(|k| k.path.as_path()),
        )?
        .as_bytes(),
    )?;
    let config = crate::config::load(&config_path).map_err(anyhow::Error::new)?;
    let running = crate::proxy::start(config).await?;
    // Serve only once exgate holds the identity provider's keys.
    for _ in 0..200 {
        if running.shared.ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::ensure!(
        running.shared.ready(),
        "exgate did not get the lab's signing keys"
    );
    console::watch_proxy(&running.shared, bus.clone(), scenario);
    let console = console::start(
        scenario,
        bus.clone(),
        running.shared.clone(),
        options.console_port,
    )
    .await?;

    let info = LabInfo {
        scenario,
        proxy: format!("https://localhost:{}", running.proxy_addr.port()),
        admin: format!("http://{}", running.admin_addr),
        admin_token,
        exchange: exchange.url.clone(),
        idp: idp.url.clone(),
        config: config_path,
        ca: pki.ca,
        console: console.url,
        kerberos: keytab.map(|k| KerberosInfo {
            keytab: k.path,
            host: k.host,
        }),
    };
    write_private(
        &dir.join("lab.json"),
        serde_json::to_string_pretty(&info)?.as_bytes(),
    )?;
    Ok(Lab {
        info,
        running,
        bus,
        _lock: lock,
    })
}

fn config_text(
    scenario: Scenario,
    port: u16,
    exchange: &str,
    idp: &str,
    admin_token: &str,
    keytab: Option<&Path>,
) -> anyhow::Result<String> {
    let users: String = USERS
        .iter()
        .map(|u| format!("[[users]]\nupn = \"{}\"\nsam = '{}'\n", u.upn, u.sam))
        .collect();
    let kerberos = match keytab {
        None => String::new(),
        Some(path) => format!(
            "\n# `exgate lab --keytab`: the keytab of Exchange's HTTP service principal. exgate reads\n# who a Kerberos ticket names and decides as that user.\n[kerberos]\nkeytab = {}\n",
            toml_string(path)?
        ),
    };
    Ok(format!(
        r#"# Written by `exgate lab --scenario {scenario}`; rewritten at every start.
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:0"
# Issued at every start by the lab's CA (ca.pem, kept across restarts).
tls_cert_file = "exgate.pem"
tls_key_file = "exgate-key.pem"

[upstream]
servers = ["{exchange}"]

[exchange]
deployment = "{deployment}"

[exchange.challenge]
authorization_uri = "{idp}/common/oauth2/authorize"

[policy]
script = "policies.ps1"
# Cmdlets sent with `exgate cmdlet` land here and survive a restart.
state_file = "state.ps1"

{users}
[[tokens.issuers]]
issuer = "https://sts.windows.net/{{tenantid}}/"
audiences = ["{audience}"]
openid_configuration_url = "{idp}/common/.well-known/openid-configuration"
# The identity provider's certificate is the lab CA's, not a public one.
ca_file = "ca.pem"
unknown_kid_refresh_min_seconds = 1

[tokens.mfa]
require_for = ["Autodiscover", "Mapi", "OfflineAddressBook", "WebServices"]
{step_up}
[admin]
token = "{admin_token}"

# Every decision, one JSON line each: `exgate report audit/exgate.jsonl`.
[audit]
path = "audit/exgate.jsonl"
{kerberos}"#,
        deployment = scenario.deployment().as_str(),
        audience = scenario.audience(),
        step_up = match scenario.mfa_by_adfs() {
            // AD FS has no authentication contexts: RFC 9470's challenge.
            true => String::new(),
            // Conditional Access: a token without MFA gets the claims challenge for the
            // lab's authentication context, on which MSAL (and Outlook) steps up.
            false => format!(
                "# A token without MFA gets Conditional Access's claims challenge for this\n# authentication context, the answer MSAL steps up on.\nauth_context_ids = [\"{STEP_UP_CONTEXT}\"]\n"
            ),
        },
    ))
}

/// A path as a TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// Shared by the lab's servers.
pub(crate) type SharedKeys = Arc<arc_swap::ArcSwap<Vec<SigningKey>>>;
