use super::*;
use crate::policy::directory::{UserEntry, UserId};
use crate::policy::protocol::Switch;

/// The commands published in Microsoft's article, verbatim (one is wrapped onto a
/// second line exactly as it appears there).
const ARTICLE_ONLINE: &str = "New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -AllowBasicAuthRpc:$false -AllowBasicAuthMapi:$false -AllowBasicAuthAutodiscover:$false
-AllowBasicAuthWebServices:$false -AllowBasicAuthOfflineAddressBook:$false
Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth
Set-OrganizationConfig -DefaultAuthenticationPolicy BlockLegacyOutlookAuth
";

const ARTICLE_ONPREM: &str = "New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc
Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth
Set-OrganizationConfig -DefaultAuthenticationPolicy BlockLegacyOutlookAuth
";

fn directory() -> Directory {
    Directory::new(vec![
        UserEntry {
            upn: "user01@contoso.com".into(),
            sam: Some("CONTOSO\\user01".into()),
            aliases: vec![],
        },
        UserEntry {
            upn: "user02@contoso.com".into(),
            sam: Some("CONTOSO\\user02".into()),
            aliases: vec![],
        },
    ])
    .unwrap()
}

fn run(deployment: Deployment, script: &str) -> Result<Applied, Vec<ScriptError>> {
    run_in(deployment, script, &PolicyStore::default())
}

fn run_in(
    deployment: Deployment,
    script: &str,
    store: &PolicyStore,
) -> Result<Applied, Vec<ScriptError>> {
    let dir = directory();
    run_script(
        script,
        store,
        ScriptContext {
            deployment,
            directory: &dir,
        },
    )
}

fn first_error(deployment: Deployment, script: &str) -> ScriptError {
    run(deployment, script).unwrap_err().remove(0)
}

#[test]
fn the_articles_online_commands_apply() {
    let applied = run(Deployment::Online, ARTICLE_ONLINE).unwrap();
    let store = applied.store;
    let id = store.find("BlockLegacyOutlookAuth").unwrap();
    let p = store.policy(id);
    for s in Switch::ALL {
        assert!(!p.allow_basic.contains(s), "{s:?}");
    }
    assert_eq!(store.user_policy(UserId(0)), Some(id));
    assert_eq!(store.user_policy(UserId(1)), None);
    assert_eq!(store.org_default(), Some(id));
}

#[test]
fn the_articles_set_command_reenables_imap() {
    let script = "New-AuthenticationPolicy -Name BlockOutlook\nSet-AuthenticationPolicy -Identity BlockOutlook -AllowBasicAuthImap:$true\n";
    let store = run(Deployment::Online, script).unwrap().store;
    let p = store.policy(store.find("blockoutlook").unwrap());
    assert!(p.allow_basic.contains(Switch::Imap));
    assert!(!p.allow_basic.contains(Switch::Mapi));
}

#[test]
fn the_articles_on_premises_commands_apply() {
    let store = run(Deployment::OnPremises, ARTICLE_ONPREM).unwrap().store;
    let p = store.policy(store.find("BlockLegacyOutlookAuth").unwrap());
    for s in [
        Switch::Autodiscover,
        Switch::Mapi,
        Switch::OfflineAddressBook,
        Switch::Rpc,
    ] {
        assert!(p.block_legacy.contains(s), "{s:?}");
    }
    assert!(!p.block_legacy.contains(Switch::WebServices));
    assert!(!p.block_legacy.contains(Switch::ActiveSync));
}

#[test]
fn switch_alone_means_true_and_explicit_values_are_honoured() {
    let store = run(
        Deployment::Online,
        "New-AuthenticationPolicy P -AllowBasicAuthMapi -AllowBasicAuthRpc:$TRUE -AllowBasicAuthPop:$false",
    )
    .unwrap()
    .store;
    let p = store.policy(PolicyId(0));
    assert!(p.allow_basic.contains(Switch::Mapi) && p.allow_basic.contains(Switch::Rpc));
    assert!(!p.allow_basic.contains(Switch::Pop));
    let store = run_in(
        Deployment::Online,
        "Set-AuthenticationPolicy P -AllowBasicAuthMapi:$false",
        &store,
    )
    .unwrap()
    .store;
    assert!(!store.policy(PolicyId(0)).allow_basic.contains(Switch::Mapi));
}

#[test]
fn parameter_names_are_case_insensitive_and_may_be_abbreviated() {
    let store = run(
        Deployment::OnPremises,
        "new-authenticationpolicy -NAME 'Pilot Users' -blocklegacyauthmapi\nset-user -Ident user02 -Auth \"Pilot Users\"",
    )
    .unwrap()
    .store;
    let id = store.find("pilot users").unwrap();
    assert!(store.policy(id).block_legacy.contains(Switch::Mapi));
    assert_eq!(store.user_policy(UserId(1)), Some(id));
}

#[test]
fn backtick_continuation_comments_and_semicolons_work() {
    let script = "# pilot\nNew-AuthenticationPolicy -Name A `\n  -AllowBasicAuthMapi ; Set-User user01 -AuthenticationPolicy A # assign\n";
    let store = run(Deployment::Online, script).unwrap().store;
    assert!(store.policy(PolicyId(0)).allow_basic.contains(Switch::Mapi));
    assert_eq!(store.user_policy(UserId(0)), Some(PolicyId(0)));
}

#[test]
fn null_unassigns() {
    let store = run(Deployment::Online, ARTICLE_ONLINE).unwrap().store;
    let store = run_in(
        Deployment::Online,
        "Set-User user01 -AuthenticationPolicy $null\nSet-OrganizationConfig -DefaultAuthenticationPolicy:$null",
        &store,
    )
    .unwrap()
    .store;
    assert_eq!(store.user_policy(UserId(0)), None);
    assert_eq!(store.org_default(), None);
}

#[test]
fn report_only_is_an_exgate_extension_switch() {
    let store = run(Deployment::Online, "New-AuthenticationPolicy P -ReportOnly")
        .unwrap()
        .store;
    assert!(store.policy(PolicyId(0)).report_only);
}

#[test]
fn a_switch_of_the_other_dialect_is_rejected_with_exchanges_words() {
    let e = first_error(
        Deployment::Online,
        "New-AuthenticationPolicy -Name X -BlockLegacyAuthMapi",
    );
    assert!(
        e.message.starts_with(
            "A parameter cannot be found that matches parameter name 'BlockLegacyAuthMapi'."
        ),
        "{}",
        e.message
    );
    assert_eq!((e.pos.line, e.pos.column), (1, 34));
    let e = first_error(
        Deployment::OnPremises,
        "New-AuthenticationPolicy -Name X\nSet-AuthenticationPolicy X -AllowBasicAuthMapi:$true",
    );
    assert!(e.message.starts_with(
        "A parameter cannot be found that matches parameter name 'AllowBasicAuthMapi'."
    ));
    assert!(e.message.contains("Exchange Online"));
    assert_eq!((e.pos.line, e.pos.column), (2, 28));
}

#[test]
fn on_premises_has_no_powershell_switch() {
    let e = first_error(
        Deployment::OnPremises,
        "New-AuthenticationPolicy X -BlockLegacyAuthPowershell",
    );
    assert_eq!(
        e.message,
        "A parameter cannot be found that matches parameter name 'BlockLegacyAuthPowershell'."
    );
}

#[test]
fn a_failing_script_changes_nothing_and_reports_every_error() {
    let before = run(Deployment::Online, ARTICLE_ONLINE).unwrap().store;
    let script = "Set-User user02 -AuthenticationPolicy BlockLegacyOutlookAuth\nSet-User nobody -AuthenticationPolicy BlockLegacyOutlookAuth\nNew-AuthenticationPolicy -Name Y -Bogus\n";
    let errors = run_in(Deployment::Online, script, &before).unwrap_err();
    let lines: Vec<u32> = errors.iter().map(|e| e.pos.line).collect();
    assert_eq!(lines, [2, 3]);
    assert_eq!(
        errors[0].message,
        "The operation couldn't be performed because object 'nobody' couldn't be found on 'exgate'."
    );
    // The store handed in is untouched: user02's assignment on line 1 did not stick.
    assert_eq!(before.user_policy(UserId(1)), None);
}

#[test]
fn errors_name_line_and_column() {
    let e = first_error(Deployment::Online, "\n\n   Frobnicate-Policy -Name X");
    assert_eq!((e.pos.line, e.pos.column), (3, 4));
    assert!(
        e.message
            .starts_with("The term 'Frobnicate-Policy' is not recognized")
    );
    assert_eq!(e.to_string().split(':').next(), Some("line 3, column 4"));
}

#[test]
fn binding_errors_use_powershells_wording() {
    let cases = [
        (
            "New-AuthenticationPolicy",
            "Cannot process command because of one or more missing mandatory parameters: Name.",
        ),
        (
            "New-AuthenticationPolicy -Name",
            "Missing an argument for parameter 'Name'. Specify a parameter of type 'System.String' and try again.",
        ),
        (
            "New-AuthenticationPolicy A B",
            "A positional parameter cannot be found that accepts argument 'B'.",
        ),
        (
            "New-AuthenticationPolicy A -AllowBasicAuthMapi $false",
            "A positional parameter cannot be found that accepts argument '$false'.",
        ),
        (
            "New-AuthenticationPolicy -Name A -Name B",
            "Cannot bind parameter because parameter 'Name' is specified more than once.",
        ),
    ];
    for (script, message) in cases {
        assert_eq!(
            first_error(Deployment::Online, script).message,
            message,
            "{script}"
        );
    }
    let e = first_error(
        Deployment::Online,
        "New-AuthenticationPolicy A -AllowBasicAuth",
    );
    assert!(e.message.contains("is ambiguous"), "{}", e.message);
    let e = first_error(
        Deployment::Online,
        "New-AuthenticationPolicy A -AllowBasicAuthMapi:yes",
    );
    assert!(e.message.contains("SwitchParameter"), "{}", e.message);
    let e = first_error(Deployment::Online, "New-AuthenticationPolicy $name");
    assert!(e.message.contains("has not been set"), "{}", e.message);
}

#[test]
fn semantic_errors() {
    let base = run(Deployment::Online, ARTICLE_ONLINE).unwrap().store;
    let err = |script: &str| -> String {
        run_in(Deployment::Online, script, &base)
            .unwrap_err()
            .remove(0)
            .message
    };
    assert!(err("New-AuthenticationPolicy blocklegacyoutlookauth").contains("already exists"));
    assert!(err("Set-AuthenticationPolicy Nope -AllowBasicAuthMapi").contains("object 'Nope'"));
    assert!(err("Remove-AuthenticationPolicy BlockLegacyOutlookAuth").contains("is assigned"));
    assert!(err("Set-User user01 -AuthenticationPolicy Nope").contains("object 'Nope'"));
    assert!(
        err(&format!("New-AuthenticationPolicy {}", "x".repeat(65)))
            .contains("maximum length is 64")
    );
    assert!(err("Get-AuthenticationPolicy | Select-Object Name").contains("Format-List"));
}

#[test]
fn remove_shifts_later_ids_and_keeps_assignments_right() {
    let script = "New-AuthenticationPolicy A\nNew-AuthenticationPolicy B -AllowBasicAuthMapi\nSet-User user01 -AuthenticationPolicy B\nRemove-AuthenticationPolicy A -Confirm:$false";
    let store = run(Deployment::Online, script).unwrap().store;
    let b = store.user_policy(UserId(0)).unwrap();
    assert_eq!(store.policy(b).name, "B");
    assert!(store.find("A").is_none());
}

#[test]
fn get_prints_exchange_list_format() {
    let script = format!(
        "{ARTICLE_ONLINE}Get-AuthenticationPolicy BlockLegacyOutlookAuth | Format-List\nGet-AuthenticationPolicy | fl"
    );
    let applied = run(Deployment::Online, &script).unwrap();
    assert_eq!(applied.output.len(), 2);
    assert!(applied.output[0].contains("AllowBasicAuthMapi                 : False\n"));
    assert_eq!(applied.output[0], applied.output[1]);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn scripts_of_arbitrary_text_never_panic(script in "\\PC{0,300}") {
            let _ = run(Deployment::Online, &script);
            let _ = run(Deployment::OnPremises, &script);
        }

        #[test]
        fn scripts_of_cmdlet_like_tokens_never_panic(
            words in proptest::collection::vec(
                prop::sample::select(vec![
                    "New-AuthenticationPolicy", "Set-AuthenticationPolicy", "Remove-AuthenticationPolicy",
                    "Get-AuthenticationPolicy", "Set-User", "Set-OrganizationConfig", "-Name", "-Identity",
                    "-AllowBasicAuthMapi", "-AllowBasicAuthMapi:$false", "-BlockLegacyAuthRpc", "-ReportOnly",
                    "-AuthenticationPolicy", "-DefaultAuthenticationPolicy", "$null", "$true", "P", "'Q R'",
                    "user01", "|", "fl", ";", "\n", "`\n", "#", "\"x", "-", "-:", "-A:", "<#",
                ]),
                0..40,
            )
        ) {
            let script = words.join(" ");
            let _ = run(Deployment::Online, &script);
            let _ = run(Deployment::OnPremises, &script);
        }
    }
}

#[test]
fn account_cmdlets_bind_alone_and_never_in_a_policy_script() {
    use super::{AccountCommand, AccountLocation, account_commands};
    assert_eq!(account_commands("Get-AuthenticationPolicy"), None);
    assert_eq!(
        account_commands("Get-AdfsAccountActivity -Identity user01@contoso.com | fl"),
        Some(Ok(vec![AccountCommand::Activity {
            identity: "user01@contoso.com".into()
        }]))
    );
    assert_eq!(
        account_commands(
            "reset-adfsaccountlockout 'CONTOSO\\user01' -Loc unknown -Confirm:$false\nGet-AdfsAccountActivity user01"
        ),
        Some(Ok(vec![
            AccountCommand::Reset {
                identity: "CONTOSO\\user01".into(),
                location: AccountLocation::Unknown
            },
            AccountCommand::Activity {
                identity: "user01".into()
            }
        ]))
    );
    let errors = account_commands("Reset-AdfsAccountLockout user01 -Location Elsewhere")
        .unwrap()
        .unwrap_err();
    assert!(
        errors[0]
            .message
            .contains("The valid values are \"Familiar\" and \"Unknown\""),
        "{errors:?}"
    );
    let errors = account_commands("Reset-AdfsAccountLockout user01")
        .unwrap()
        .unwrap_err();
    assert!(
        errors[0]
            .message
            .contains("missing mandatory parameters: Location"),
        "{errors:?}"
    );
    let errors = account_commands(
        "Get-AdfsAccountActivity user01\nSet-OrganizationConfig -DefaultAuthenticationPolicy $null",
    )
    .unwrap()
    .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].pos.line, 2);
    assert!(
        errors[0].message.contains("in a script of their own"),
        "{errors:?}"
    );
    // In a policy script (policies.ps1) they are errors too.
    let store = PolicyStore::default();
    let directory = Directory::new(Vec::new()).unwrap();
    let ctx = ScriptContext {
        deployment: Deployment::Online,
        directory: &directory,
    };
    let errors = run_script("Get-AdfsAccountActivity user01", &store, ctx).unwrap_err();
    assert!(
        errors[0].message.contains("smart-lockout state"),
        "{errors:?}"
    );
}
