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
    assert!(stdout.contains("OK (online deployment, 2 users, 2 policies, organization default: BlockLegacyOutlookAuth)"), "{stdout}");
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
    assert!(err.contains("2 configuration errors:"), "{err}");
    assert!(err.contains("server.lisen: unknown key"), "{err}");
    assert!(
        err.contains("exchange.deployment: \"cloud\" is not one of \"online\", \"onpremises\""),
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
