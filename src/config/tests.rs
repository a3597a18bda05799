use std::collections::HashMap;
use std::path::PathBuf;

use super::*;
use crate::policy::{Deployment, Mode, OtherPaths};

/// A fresh folder holding `exgate.toml` and, optionally, `policies.ps1`.
fn write(toml: &str, script: Option<&str>) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("exgate-config-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("exgate.toml"), toml).unwrap();
    if let Some(s) = script {
        std::fs::write(dir.join("policies.ps1"), s).unwrap();
    }
    dir.join("exgate.toml")
}

fn keys(errors: &ConfigErrors) -> Vec<&str> {
    errors.0.iter().map(|e| e.key.as_str()).collect()
}

const MINIMAL: &str = r#"
[upstream]
servers = ["http://127.0.0.1:8080"]
[exchange]
deployment = "onpremises"
[policy]
script = "policies.ps1"
[[users]]
upn = "user01@contoso.com"
sam = "CONTOSO\\user01"
"#;

#[test]
fn the_shipped_example_config_loads_and_builds() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/exgate.toml");
    let cfg = load_with_env(&path, Some(HashMap::new())).unwrap();
    assert_eq!(cfg.policy.settings.deployment, Deployment::Online);
    let engine = build_engine(&cfg).unwrap();
    let store = engine.store();
    assert_eq!(store.policies().count(), 3);
    let default = store.org_default().unwrap();
    assert_eq!(store.policy(default).name, "OrgBlockLegacy");
    assert_eq!(engine.directory().len(), 2);
}

#[test]
fn defaults_apply_and_relative_paths_follow_the_config_file() {
    let path = write(
        MINIMAL,
        Some("New-AuthenticationPolicy P -BlockLegacyAuthMapi"),
    );
    let cfg = load_with_env(&path, Some(HashMap::new())).unwrap();
    assert_eq!(cfg.policy.settings.mode, Mode::Enforce);
    assert_eq!(cfg.policy.settings.other_paths, OtherPaths::BlockLegacy);
    assert_eq!(
        cfg.policy.script.as_deref(),
        Some(path.with_file_name("policies.ps1").as_path())
    );
    assert!(build_engine(&cfg).is_ok());
}

#[test]
fn environment_overrides_file_values() {
    let path = write(MINIMAL, Some(""));
    let env = HashMap::from([
        (
            "EXGATE__POLICY__MODE".to_string(),
            "report-only".to_string(),
        ),
        (
            "EXGATE__EXCHANGE__DEPLOYMENT".to_string(),
            "online".to_string(),
        ),
    ]);
    let cfg = load_with_env(&path, Some(env)).unwrap();
    assert_eq!(cfg.policy.settings.mode, Mode::ReportOnly);
    assert_eq!(cfg.policy.settings.deployment, Deployment::Online);
}

#[test]
fn every_unknown_key_is_reported_with_its_path() {
    let toml = format!(
        "{MINIMAL}colour = 1\n[[users]]\nupn = \"b@contoso.com\"\nnickname = \"b\"\n[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"y\"\n"
    );
    let errors = load_with_env(&write(&toml, Some("")), Some(HashMap::new())).unwrap_err();
    let mut k = keys(&errors);
    k.sort();
    assert_eq!(k, ["server.lisen", "users[0].colour", "users[1].nickname"]);
    assert!(errors.0.iter().all(|e| e.message == "unknown key"));
}

#[test]
fn every_bad_value_is_reported_at_once() {
    let toml = r#"
[exchange]
deployment = "hybrid"
[policy]
mode = "audit"
other_paths = "allow"
[[users]]
upn = "nodomain"
[[users]]
sam = "CONTOSO\\x"
[tokens.mfa]
require_for = ["Mapi", "Imap"]
[[tokens.issuers]]
issuer = "https://sts.windows.net/{tenantid}/"
audiences = []
algorithms = ["HS256"]
[upstream]
servers = ["ftp://exchange"]
"#;
    let errors = load_with_env(&write(toml, None), Some(HashMap::new())).unwrap_err();
    assert_eq!(
        keys(&errors),
        [
            "exchange.deployment",
            "policy.mode",
            "policy.other_paths",
            "users[1].upn",
            "users[0].upn",
            "upstream.servers[0]",
            "tokens.mfa.require_for[1]",
            "tokens.issuers[0].audiences",
            "tokens.issuers[0]",
            "tokens.issuers[0].algorithms[0]",
        ]
    );
    assert!(errors.to_string().starts_with("10 configuration errors:\n"));
}

#[test]
fn missing_deployment_and_servers_are_errors() {
    let errors = load_with_env(&write("[policy]\n", None), Some(HashMap::new())).unwrap_err();
    assert_eq!(keys(&errors), ["exchange.deployment", "upstream.servers"]);
}

#[test]
fn wrong_types_name_their_key() {
    let errors = load_with_env(
        &write(
            "[exchange]\ndeployment = 3\n[lockout]\nthreshold = \"ten\"\n",
            None,
        ),
        Some(HashMap::new()),
    )
    .unwrap_err();
    assert!(errors.to_string().contains("threshold"), "{errors}");
}

#[test]
fn script_errors_name_file_line_and_column() {
    let path = write(
        MINIMAL,
        Some(
            "New-AuthenticationPolicy P\n  Set-User nobody -AuthenticationPolicy P\nNew-AuthenticationPolicy Q -AllowBasicAuthMapi\n",
        ),
    );
    let cfg = load_with_env(&path, Some(HashMap::new())).unwrap();
    let errors = build_engine(&cfg).unwrap_err();
    assert_eq!(errors.0.len(), 2);
    assert!(
        errors.0[0].key.ends_with("policies.ps1:2:3)"),
        "{}",
        errors.0[0].key
    );
    assert!(
        errors.0[1].key.ends_with("policies.ps1:3:28)"),
        "{}",
        errors.0[1].key
    );
    assert!(errors.0[1].message.contains("'AllowBasicAuthMapi'"));
}

#[test]
fn report_only_options_must_name_a_scripted_policy() {
    let toml = format!(
        "{MINIMAL}[policy.policies.Nope]\nreport_only = true\n[policy.policies.P]\nreport_only = true\n"
    );
    let path = write(&toml, Some("New-AuthenticationPolicy P"));
    let cfg = load_with_env(&path, Some(HashMap::new())).unwrap();
    let errors = build_engine(&cfg).unwrap_err();
    assert_eq!(keys(&errors), ["policy.policies.Nope"]);
    let path = write(
        &format!("{MINIMAL}[policy.policies.P]\nreport_only = true\n"),
        Some("New-AuthenticationPolicy P"),
    );
    let engine = build_engine(&load_with_env(&path, Some(HashMap::new())).unwrap()).unwrap();
    assert!(
        engine
            .store()
            .policy(engine.store().find("p").unwrap())
            .report_only
    );
}

#[test]
fn a_missing_script_file_is_an_error() {
    let cfg = load_with_env(&write(MINIMAL, None), Some(HashMap::new())).unwrap();
    assert_eq!(keys(&build_engine(&cfg).unwrap_err()), ["policy.script"]);
}

#[test]
fn server_and_upstream_values_are_checked() {
    let toml = format!(
        "{MINIMAL}[server]\nlisten = \"localhost\"\nmax_header_bytes = 10\nidle_timeout_seconds = 0\ntls_cert_file = \"c.pem\"\n[exchange.challenge]\nclient_id = 'a\"b'\n"
    );
    let errors = load_with_env(&write(&toml, Some("")), Some(HashMap::new())).unwrap_err();
    assert_eq!(
        keys(&errors),
        [
            "server.tls_key_file",
            "server.max_header_bytes",
            "server.listen",
            "server.idle_timeout_seconds",
            "exchange.challenge.client_id",
        ]
    );
    let toml = MINIMAL.replace("http://127.0.0.1:8080", "http://127.0.0.1:8080/ews");
    let errors = load_with_env(&write(&toml, Some("")), Some(HashMap::new())).unwrap_err();
    assert_eq!(keys(&errors), ["upstream.servers[0]"]);
}

#[test]
fn server_defaults_and_relative_tls_paths() {
    let toml =
        format!("{MINIMAL}[server]\ntls_cert_file = \"tls/c.pem\"\ntls_key_file = \"tls/k.pem\"\n");
    let path = write(&toml, None);
    let tls = path.with_file_name("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["mail.contoso.com".into()]).unwrap();
    std::fs::write(tls.join("c.pem"), cert.cert.pem()).unwrap();
    std::fs::write(tls.join("k.pem"), cert.signing_key.serialize_pem()).unwrap();
    let cfg = load_with_env(&path, Some(HashMap::new())).unwrap();
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8443");
    assert_eq!(cfg.server.admin_listen.to_string(), "127.0.0.1:9464");
    assert_eq!(
        cfg.server.tls.unwrap().files.cert,
        path.with_file_name("tls/c.pem")
    );
    assert_eq!(cfg.upstream.connect_timeout.as_secs(), 3);
    assert_eq!(cfg.upstream.response_header_timeout.as_secs(), 120);
    assert_eq!(
        cfg.upstream.health_check_interval,
        Some(std::time::Duration::from_secs(5))
    );
    assert_eq!(cfg.server.max_connections, None);
    assert_eq!(cfg.challenge, ChallengeConfig::default());
}

#[test]
fn a_static_jwks_file_is_read_at_validation() {
    let issuer = |file: &str| {
        format!(
            "{MINIMAL}[[tokens.issuers]]\nissuer = \"https://adfs.contoso.com/adfs\"\naudiences = [\"a\"]\njwks_file = \"{file}\"\n"
        )
    };
    let path = write(&issuer("missing.json"), Some(""));
    let errors = load_with_env(&path, Some(HashMap::new())).unwrap_err();
    assert_eq!(keys(&errors), ["tokens.issuers[0].jwks_file"]);
    std::fs::write(path.with_file_name("bad.json"), r#"{"keys":[]}"#).unwrap();
    std::fs::write(path.with_file_name("exgate.toml"), issuer("bad.json")).unwrap();
    let errors = load_with_env(&path, Some(HashMap::new())).unwrap_err();
    assert!(
        errors.0[0].message.contains("no usable signing key"),
        "{errors}"
    );
}

#[test]
fn an_issuer_ca_file_is_read_at_validation() {
    let issuer = |source: &str, ca: &str| {
        format!(
            "{MINIMAL}[[tokens.issuers]]\nissuer = \"https://adfs.contoso.com/adfs\"\naudiences = [\"a\"]\n{source}\nca_file = \"{ca}\"\n"
        )
    };
    let https = "openid_configuration_url = \"https://adfs.contoso.com/adfs/.well-known/openid-configuration\"";
    let path = write(&issuer(https, "ca.pem"), Some(""));
    let errors = load_with_env(&path, Some(HashMap::new())).unwrap_err();
    assert_eq!(keys(&errors), ["tokens.issuers[0].ca_file"]);
    std::fs::write(path.with_file_name("ca.pem"), "not a certificate\n").unwrap();
    let errors = load_with_env(&path, Some(HashMap::new())).unwrap_err();
    assert!(
        errors.0[0].message.contains("holds no PEM certificate"),
        "{errors}"
    );

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap();
    std::fs::write(path.with_file_name("ca.pem"), ca.pem()).unwrap();
    let cfg = load_with_env(&path, Some(HashMap::new())).unwrap();
    assert_eq!(
        cfg.tokens.issuers[0].ca_roots.as_ref().map(|r| r.len()),
        Some(1)
    );

    // A static key file is fetched from nowhere: a CA for it is a mistake.
    std::fs::write(&path, issuer("jwks_file = \"jwks.json\"", "ca.pem")).unwrap();
    let errors = load_with_env(&path, Some(HashMap::new())).unwrap_err();
    assert!(
        keys(&errors).contains(&"tokens.issuers[0].ca_file"),
        "{errors}"
    );
}

#[test]
fn mfa_without_issuers_is_an_error() {
    let toml = format!("{MINIMAL}[tokens.mfa]\nrequire_for = [\"Mapi\"]\n");
    let errors = load_with_env(&write(&toml, Some("")), Some(HashMap::new())).unwrap_err();
    assert_eq!(keys(&errors), ["tokens.mfa.require_for"]);
}

/// Issue "availability": a TOML error on the `admin.token` line printed the line, and a
/// wrong type printed the value. Neither may appear in any error message.
#[test]
fn configuration_errors_never_quote_a_value() {
    let secret = "SuperSecretAdminToken123";
    for toml in [
        format!("{MINIMAL}[admin]\ntoken = \"{secret} oops\n"),
        format!("{MINIMAL}[admin]\ntoken = '{secret}\n"),
        format!("{MINIMAL}[admin]\ntoken = {secret}\n"),
        format!("{MINIMAL}[server]\nmax_header_bytes = \"{secret}\"\n"),
    ] {
        let errors = load(&write(&toml, None)).unwrap_err();
        let text = errors.to_string();
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains("SuperSecret"), "{text}");
        assert!(!text.is_empty());
    }
}

#[test]
fn redaction_keeps_positions_and_keys() {
    let toml_error = "TOML parse error at line 8, column 39\n  |\n8 | token = \"x\n  |        ^\ninvalid basic string, expected `\"`\n";
    assert_eq!(
        redact(toml_error),
        "TOML parse error at line 8, column 39\ninvalid basic string, expected `\"`"
    );
    assert_eq!(
        redact("invalid type: string \"hunter2\", expected an integer for key `server.x`"),
        "invalid type: string [redacted], expected an integer for key `server.x`"
    );
    assert_eq!(
        redact("invalid value: integer `-5`, expected u64"),
        "invalid value: integer [redacted], expected u64"
    );
}

#[test]
fn a_wrong_type_hides_no_other_error() {
    let toml = format!(
        "{MINIMAL}[server]\nidle_timeout_seconds = \"abc\"\nlisten_backlog = [1]\n[lockout]\nenabled = 1\n[spray]\nblock = \"yes\"\n"
    )
    .replace("\"onpremises\"", "\"cloud\"");
    let errors =
        load_with_env(&write(&toml, Some("Bogus-Cmdlet\n")), Some(HashMap::new())).unwrap_err();
    let mut k = keys(&errors);
    k.sort();
    assert_eq!(k.len(), 6, "{errors}");
    // The script error's key carries its file and position: `policy.script (…:1:1)`.
    for (key, expected) in k.iter().zip([
        "exchange.deployment",
        "lockout.enabled",
        "policy.script (",
        "server.idle_timeout_seconds",
        "server.listen_backlog",
        "spray.block",
    ]) {
        assert!(
            key.starts_with(expected),
            "{key} is not {expected}: {errors}"
        );
    }
    let text = errors.to_string();
    assert!(
        text.contains("server.idle_timeout_seconds: expected"),
        "{text}"
    );
    assert!(
        text.contains("lockout.enabled: expected true or false, found an integer"),
        "{text}"
    );
    assert!(
        !text.contains("abc") && !text.contains("yes"),
        "a value is quoted: {text}"
    );
}

#[test]
fn list_keys_come_from_the_environment_as_comma_separated_values() {
    let env = HashMap::from([
        (
            "EXGATE__UPSTREAM__SERVERS".to_owned(),
            "http://10.0.0.1:80, http://10.0.0.2:80".to_owned(),
        ),
        (
            "EXGATE__TOKENS__MFA__AUTH_CONTEXT_IDS".to_owned(),
            "c1,c2".to_owned(),
        ),
        (
            "EXGATE__ADMIN__TOKEN".to_owned(),
            "0012345678901234567".to_owned(),
        ),
    ]);
    let cfg = load_with_env(&write(MINIMAL, Some("")), Some(env)).unwrap();
    let servers: Vec<String> = cfg.upstream.servers.iter().map(|u| u.to_string()).collect();
    assert_eq!(servers, ["http://10.0.0.1:80/", "http://10.0.0.2:80/"]);
    assert_eq!(cfg.tokens.auth_context_ids, ["c1", "c2"]);
    // A token of digits stays the string it was (leading zeros included).
    assert_eq!(
        cfg.admin_token.unwrap().expose(),
        b"0012345678901234567".as_slice()
    );
}

#[test]
fn an_error_in_an_environment_value_names_the_variable() {
    let env = HashMap::from([
        (
            "EXGATE__SERVER__MAX_CONNECTIONS".to_owned(),
            "many".to_owned(),
        ),
        ("EXGATE__POLCY__MODE".to_owned(), "enforce".to_owned()),
    ]);
    let errors = load_with_env(&write(MINIMAL, Some("")), Some(env)).unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("server.max_connections: expected an integer, found a string (set by EXGATE__SERVER__MAX_CONNECTIONS)"),
        "{text}"
    );
    assert!(
        text.contains("polcy: unknown key (set by EXGATE__POLCY__MODE)"),
        "{text}"
    );
}

#[test]
fn two_key_sources_are_named_as_set() {
    let toml = format!(
        "{MINIMAL}[[tokens.issuers]]\nissuer = \"https://sts.windows.net/{{tenantid}}/\"\naudiences = [\"a\"]\njwks_url = \"https://login.microsoftonline.com/common/discovery/keys\"\nopenid_configuration_url = \"https://login.microsoftonline.com/common/.well-known/openid-configuration\"\n"
    );
    let errors = load_with_env(&write(&toml, Some("")), Some(HashMap::new())).unwrap_err();
    assert_eq!(
        keys(&errors),
        ["tokens.issuers[0].openid_configuration_url, tokens.issuers[0].jwks_url"]
    );
}

#[test]
fn a_wrong_type_inside_a_list_of_tables_hides_nothing_else_in_it() {
    let toml = format!(
        "{MINIMAL}[[tokens.issuers]]\nissuer = \"x\"\naudiences = []\nleeway_seconds = -5\nalgorithms = [\"HS256\"]\n[[tokens.issuers]]\nissuer = \"y\"\naudiences = [\"a\"]\n[tokens.mfa]\nrequire_for = [\"Mapi\"]\n"
    );
    let errors = load_with_env(&write(&toml, Some("")), Some(HashMap::new())).unwrap_err();
    let mut k = keys(&errors);
    k.sort();
    assert_eq!(
        k,
        [
            "tokens.issuers[0]",
            "tokens.issuers[0].algorithms[0]",
            "tokens.issuers[0].audiences",
            "tokens.issuers[0].leeway_seconds",
            "tokens.issuers[1]",
        ],
        "{errors}"
    );
    assert!(
        errors.to_string().contains("found a negative integer"),
        "{errors}"
    );
}
