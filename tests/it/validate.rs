//! `exgate validate`: exit codes and error listings, through the real binary.

use crate::support::*;

const CONFIG: &str = r#"
[upstream]
servers = ["http://127.0.0.1:8080"]
[exchange]
deployment = "online"
[policy]
script = "policies.ps1"
[[users]]
upn = "user01@contoso.com"
sam = "CONTOSO\\user01"
"#;

#[test]
fn the_shipped_config_validates() {
    let out = exgate(&["validate", "--config", "config/exgate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "OK (online deployment, 2 users, 3 policies, organization default: OrgBlockLegacy)"
        ),
        "{stdout}"
    );
}

#[test]
fn validate_defaults_to_config_exgate_toml() {
    let out = exgate(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn the_articles_script_validates_in_both_dialects() {
    let onprem = std::fs::read_to_string(repo().join("config/scenarios/onprem.ps1")).unwrap();
    let dir = write_files(&[
        (
            "exgate.toml",
            &CONFIG.replace("\"online\"", "\"onpremises\""),
        ),
        ("policies.ps1", &onprem),
    ]);
    let out = exgate(&["validate", "--config", arg(&dir.join("exgate.toml"))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn every_error_is_listed_with_its_key_or_line_and_exit_is_78() {
    let config =
        format!("{CONFIG}[policy.policies.Ghost]\nreport_only = true\n[server]\nlisen = \"x\"\n")
            .replace("\"online\"", "\"cloud\"");
    let dir = write_files(&[("exgate.toml", &config), ("policies.ps1", "")]);
    let out = exgate(&["validate", "--config", arg(&dir.join("exgate.toml"))]);
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    // The policy script and the per-policy options are checked too, beside the
    // configuration's own errors.
    assert!(err.contains("3 configuration errors:"), "{err}");
    assert!(err.contains("server.lisen: unknown key"), "{err}");
    assert!(
        err.contains("policy.policies.Ghost: no policy of this name"),
        "{err}"
    );
    assert!(
        err.contains("exchange.deployment: is not one of \"online\", \"onpremises\""),
        "{err}"
    );
}

#[test]
fn script_errors_are_listed_with_line_and_column() {
    let script = "New-AuthenticationPolicy -Name P -BlockLegacyAuthMapi\nSet-User ghost -AuthenticationPolicy P\n";
    let dir = write_files(&[("exgate.toml", CONFIG), ("policies.ps1", script)]);
    let out = exgate(&["validate", "--config", arg(&dir.join("exgate.toml"))]);
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    assert!(err.contains("policies.ps1:1:34): A parameter cannot be found that matches parameter name 'BlockLegacyAuthMapi'."), "{err}");
    assert!(err.contains("policies.ps1:2:1): The operation couldn't be performed because object 'ghost' couldn't be found"), "{err}");
}

#[test]
fn a_missing_config_file_is_a_configuration_error() {
    let out = exgate(&["validate", "--config", "/nonexistent/exgate.toml"]);
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(exgate(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(exgate(&["validate", "--nope"]).status.code(), Some(2));
}

/// `[kerberos] keytab` (issue 13): `validate` reads the keytab, names its principals, key
/// versions and encryption types and never a key; a missing, foreign or truncated keytab,
/// or a key of the wrong length, is a configuration error (78) that names no key either.
#[test]
fn validate_reads_the_keytab_and_names_its_keys_without_showing_them() {
    use exgate::kerberos::keytab::{self, Principal, etype};
    let service = Principal {
        components: vec!["HTTP".into(), "mail.contoso.com".into()],
        realm: "CONTOSO.COM".into(),
    };
    let (aes256, rc4) = ([0xa7u8; 32], [0xb3u8; 16]);
    let good = keytab::build(&[
        (&service, 5, etype::AES256_CTS_HMAC_SHA1_96, &aes256),
        (&service, 5, etype::RC4_HMAC, &rc4),
        (&service, 4, 16, &[0xc1; 24]),
    ]);
    let short = keytab::build(&[(&service, 5, etype::AES256_CTS_HMAC_SHA1_96, &rc4)]);
    let config = format!("{CONFIG}[kerberos]\nkeytab = \"exchange.keytab\"\n");
    let run = |keytab: Option<&[u8]>| {
        let dir = write_files(&[("exgate.toml", &config), ("policies.ps1", "")]);
        if let Some(bytes) = keytab {
            std::fs::write(dir.join("exchange.keytab"), bytes).unwrap();
        }
        let out = exgate(&["validate", "--config", arg(&dir.join("exgate.toml"))]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        for secret in [&aes256[..4], &rc4[..4]] {
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!all.contains(&hex), "a key leaked: {all}");
            assert!(
                !all.contains(&format!("{:?}", &secret[..3])),
                "a key leaked: {all}"
            );
        }
        (out.status.code(), all)
    };
    let (code, out) = run(Some(&good));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("exchange.keytab: 3 keys"), "{out}");
    assert!(
        out.contains("  HTTP/mail.contoso.com@CONTOSO.COM kvno 5 aes256-cts-hmac-sha1-96\n"),
        "{out}"
    );
    assert!(
        out.contains("  HTTP/mail.contoso.com@CONTOSO.COM kvno 5 rc4-hmac\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "kvno 4 des3-cbc-sha1 (not used: exgate decrypts aes256, aes128 and rc4 only)"
        ),
        "{out}"
    );
    for (keytab, expected) in [
        (None, "kerberos.keytab: cannot read"),
        (
            Some(&b"\x05\x01\x00\x00"[..]),
            "not an MIT keytab of version 0x0502",
        ),
        (Some(&good[..good.len() - 3]), "is truncated or malformed"),
        (
            Some(&short[..]),
            "a aes256-cts-hmac-sha1-96 key must be 32 bytes, not 16",
        ),
    ] {
        let (code, out) = run(keytab);
        assert_eq!(code, Some(78), "{out}");
        assert!(out.contains(expected), "{expected}: {out}");
        assert!(out.contains("kerberos.keytab"), "{out}");
    }
}
