//! Engine behaviour beyond the matrix: NTLM legs, Kerberos, report-only, fail-closed
//! cases, rejections.

use super::*;
use crate::auth::{Mechanism, parse_header};
use crate::test_support::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const ONLINE_ARTICLE: &str = "New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -AllowBasicAuthRpc:$false -AllowBasicAuthMapi:$false -AllowBasicAuthAutodiscover:$false
-AllowBasicAuthWebServices:$false -AllowBasicAuthOfflineAddressBook:$false
Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth
";

const ONPREM_PILOT: &str = "New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc
New-AuthenticationPolicy -Name AllowAll
Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth
";

fn action(engine: &Engine, target: &str, header: &[u8]) -> (Action, Reason) {
    let d = decide(engine, target, Some(header));
    (d.action, d.reason)
}

#[test]
fn pilot_user_is_blocked_and_others_pass() {
    let e = engine(Deployment::Online, ONLINE_ARTICLE);
    assert_eq!(
        action(&e, "/mapi/emsmdb", &basic("user01@contoso.com")),
        (Action::Block, Reason::LegacyBlocked)
    );
    assert_eq!(
        action(&e, "/mapi/emsmdb", &basic("CONTOSO\\user02")),
        (Action::Allow, Reason::NoPolicy)
    );
    let d = decide(&e, "/mapi/emsmdb", Some(&basic("user01")));
    assert_eq!(
        e.store().policy(d.policy.unwrap()).name,
        "BlockLegacyOutlookAuth"
    );
    assert_eq!(
        d.user,
        Some(UserId(0)),
        "the decision names the user it found"
    );
    assert_eq!(decide(&e, "/mapi/", Some(&basic("stranger"))).user, None);
}

#[test]
fn ntlm_is_decided_at_type3_when_some_policy_allows() {
    let e = engine(Deployment::OnPremises, ONPREM_PILOT);
    assert_eq!(
        action(&e, "/mapi/", &ntlm_type1()),
        (Action::Allow, Reason::NtlmHandshake)
    );
    assert_eq!(
        action(&e, "/mapi/", &ntlm_type3("CONTOSO", "user01")),
        (Action::Block, Reason::LegacyBlocked)
    );
    assert_eq!(
        action(&e, "/mapi/", &ntlm_type3("CONTOSO", "user02")),
        (Action::Allow, Reason::NoPolicy)
    );
    assert_eq!(
        action(&e, "/mapi/", &negotiate_type3("", "user01@contoso.com")),
        (Action::Block, Reason::LegacyBlocked)
    );
}

#[test]
fn ntlm_type1_is_blocked_early_only_when_every_policy_blocks() {
    let everyone = format!(
        "{ONPREM_PILOT}Set-OrganizationConfig -DefaultAuthenticationPolicy BlockLegacyOutlookAuth\n"
    );
    let e = engine(Deployment::OnPremises, &everyone);
    assert_eq!(
        action(&e, "/rpc/rpcproxy.dll", &ntlm_type1()),
        (Action::Block, Reason::LegacyBlockedForEveryone)
    );
    assert_eq!(
        action(&e, "/rpc/rpcproxy.dll", &negotiate_type1()),
        (Action::Block, Reason::LegacyBlockedForEveryone)
    );
    // EWS is not in the article's on-premises list: the handshake goes on.
    assert_eq!(
        action(&e, "/ews/exchange.asmx", &ntlm_type1()),
        (Action::Allow, Reason::NtlmHandshake)
    );
    // One user with an allowing policy keeps Type 1 open for everyone.
    let e = engine(
        Deployment::OnPremises,
        &format!("{everyone}Set-User user02 -AuthenticationPolicy AllowAll\n"),
    );
    assert_eq!(
        action(&e, "/rpc/rpcproxy.dll", &ntlm_type1()),
        (Action::Allow, Reason::NtlmHandshake)
    );
    assert_eq!(
        action(&e, "/rpc/rpcproxy.dll", &ntlm_type3("CONTOSO", "user02")),
        (Action::Allow, Reason::PolicyAllows)
    );
    assert_eq!(
        action(&e, "/rpc/rpcproxy.dll", &ntlm_type3("CONTOSO", "user03")),
        (Action::Block, Reason::LegacyBlocked)
    );
}

#[test]
fn kerberos_is_decided_by_the_organization_default() {
    let e = engine(Deployment::OnPremises, ONPREM_PILOT);
    assert_eq!(
        action(&e, "/mapi/", &kerberos()),
        (Action::Allow, Reason::NoPolicy)
    );
    let e = engine(
        Deployment::OnPremises,
        &format!(
            "{ONPREM_PILOT}Set-OrganizationConfig -DefaultAuthenticationPolicy BlockLegacyOutlookAuth"
        ),
    );
    assert_eq!(
        action(&e, "/mapi/", &kerberos()),
        (Action::Block, Reason::LegacyBlocked)
    );
}

#[test]
fn negotiate_continuations_follow_the_connections_mechanism() {
    let e = engine(
        Deployment::OnPremises,
        &format!("{ONPREM_PILOT}Set-OrganizationConfig -DefaultAuthenticationPolicy AllowAll"),
    );
    // A bare NegTokenResp (accept-completed), base64 of a1 07 30 05 a0 03 0a 01 00.
    let resp = b"Negotiate oQcwBaADCgEA";
    let target = classify("/mapi/").unwrap();
    let creds = parse_header(resp);
    let with = |prior| {
        let ctx = Context {
            prior_mechanism: prior,
            token_user: None,
            ..Context::default()
        };
        let d = e.decide(&target, &creds, ctx);
        (d.action, d.reason)
    };
    assert_eq!(
        with(Some(Mechanism::Kerberos)),
        (Action::Allow, Reason::PolicyAllows)
    );
    // With no (or an NTLM) mechanism it names nobody: the strictest policy applies.
    assert_eq!(with(None), (Action::Block, Reason::UnidentifiedLegacy));
    assert_eq!(
        with(Some(Mechanism::Ntlm)),
        (Action::Block, Reason::UnidentifiedLegacy)
    );
}

#[test]
fn unidentified_legacy_fails_closed() {
    let e = engine(Deployment::OnPremises, ONPREM_PILOT);
    for h in [
        &b"Basic !!!"[..],
        b"NTLM AAAA",
        b"Negotiate Zm9v",
        br#"Digest realm="x""#,
    ] {
        assert_eq!(
            action(&e, "/mapi/", h),
            (Action::Block, Reason::UnidentifiedLegacy),
            "{}",
            String::from_utf8_lossy(h)
        );
    }
    // Where no policy blocks the protocol, nothing is blocked.
    assert_eq!(
        action(&e, "/ews/", b"Basic !!!"),
        (Action::Allow, Reason::NoPolicy)
    );
}

#[test]
fn an_ambiguous_bare_name_gets_the_strictest_policy() {
    let directory = Directory::new(vec![
        UserEntry {
            upn: "pat@contoso.com".into(),
            sam: None,
            aliases: vec![],
        },
        UserEntry {
            upn: "pat@fabrikam.com".into(),
            sam: None,
            aliases: vec![],
        },
    ])
    .unwrap();
    let ctx = cmdlet::ScriptContext {
        deployment: Deployment::Online,
        directory: &directory,
    };
    let store = cmdlet::run_script(
        "New-AuthenticationPolicy Strict\nNew-AuthenticationPolicy Loose -AllowBasicAuthMapi\nSet-User pat@contoso.com -AuthenticationPolicy Strict\nSet-OrganizationConfig -DefaultAuthenticationPolicy Loose",
        &PolicyStore::default(),
        ctx,
    )
    .unwrap()
    .store;
    let e = Engine::new(settings(Deployment::Online), directory, store);
    assert_eq!(
        action(&e, "/mapi/", &basic("pat")),
        (Action::Block, Reason::UnidentifiedLegacy)
    );
    assert_eq!(
        action(&e, "/mapi/", &basic("pat@fabrikam.com")),
        (Action::Allow, Reason::PolicyAllows)
    );
}

#[test]
fn report_only_policy_forwards_and_records() {
    let e = engine(
        Deployment::Online,
        &format!("{ONLINE_ARTICLE}Set-AuthenticationPolicy BlockLegacyOutlookAuth -ReportOnly"),
    );
    let d = decide(&e, "/ews/exchange.asmx", Some(&basic("user01")));
    assert_eq!(
        (d.action, d.reason),
        (Action::ReportOnly, Reason::LegacyBlocked)
    );
    assert!(d.action.forwards() && d.legacy);
}

#[test]
fn global_report_only_turns_every_block_into_a_report_but_not_rejections() {
    let mut s = settings(Deployment::Online);
    s.mode = Mode::ReportOnly;
    let e = engine_with(s, ONLINE_ARTICLE);
    for (target, h, reason) in [
        ("/mapi/", basic("user01"), Reason::LegacyBlocked),
        ("/mapi/", ntlm_type1(), Reason::LegacyNotOffered),
        ("/x", basic("user02"), Reason::OtherPathLegacy),
        ("/mapi/", b"Foo bar".to_vec(), Reason::UnsupportedScheme),
    ] {
        assert_eq!(action(&e, target, &h), (Action::ReportOnly, reason));
    }
    assert_eq!(
        action(&e, "/mapi/", b"Bearer"),
        (Action::Challenge, Reason::BearerProbe)
    );
    assert_eq!(
        action(&e, "/../mapi", b"Bearer"),
        (Action::Reject, Reason::AmbiguousPath)
    );
    // A path parameter on the virtual directory is refused even in report-only mode,
    // whatever the credentials: a bearer token (without MFA) never rides it upstream.
    for h in [&b"Bearer eyJ.a.b"[..], &basic("user01")[..], b""] {
        assert_eq!(
            action(&e, "/mapi;x/emsmdb/", h),
            (Action::Reject, Reason::AmbiguousPath)
        );
    }
}

#[test]
fn other_paths_pass_when_configured() {
    let mut s = settings(Deployment::Online);
    s.other_paths = OtherPaths::Pass;
    let e = engine_with(s, ONLINE_ARTICLE);
    assert_eq!(
        action(&e, "/custom/", &basic("user01")),
        (Action::Allow, Reason::OtherPathPass)
    );
}

#[test]
fn basic_auth_to_oauth_conversion_is_modern_auth_only_for_a_token() {
    let e = engine(
        Deployment::Online,
        "New-AuthenticationPolicy P\nSet-OrganizationConfig -DefaultAuthenticationPolicy P",
    );
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJ1cG4iOiJ1c2VyMDFAY29udG9zby5jb20ifQ.c2lnbmF0dXJl";
    let with_password = |password: &str| {
        format!(
            "Basic {}",
            STANDARD.encode(format!("user01@contoso.com:{password}"))
        )
        .into_bytes()
    };
    let conversion = "/PowerShell-LiveID?BasicAuthToOAuthConversion=true";
    for password in [
        jwt.to_owned(),
        format!("Bearer {jwt}"),
        format!("bearer {jwt}"),
    ] {
        let h = with_password(&password);
        assert_eq!(
            action(&e, conversion, &h),
            (Action::Allow, Reason::BasicAuthToOAuth),
            "{password}"
        );
        assert!(!decide(&e, conversion, Some(&h)).legacy);
    }
    // A password is a password, wherever it is sent.
    for (target, password) in [
        (conversion, "Summer2026!"),
        (conversion, "Bearer Summer2026!"),
        (conversion, "a.b.c"),
        (conversion, "eyJ.eyJ.x y"),
        (conversion, ""),
        (
            "/PowerShell-LiveID?BasicAuthToOAuthConversion=false&BasicAuthToOAuthConversion=true",
            jwt,
        ),
        (
            "/PowerShell-LiveID?BasicAuthToOAuthConversion=true&BasicAuthToOAuthConversion=true",
            jwt,
        ),
        ("/PowerShell-LiveID?BasicAuthToOAuthConversion=1", jwt),
        ("/PowerShell-LiveID", jwt),
        ("/PowerShell?BasicAuthToOAuthConversion=true", jwt),
    ] {
        assert_eq!(
            action(&e, target, &with_password(password)),
            (Action::Block, Reason::LegacyBlocked),
            "{target} {password}"
        );
    }
}

#[test]
fn on_premises_modern_auth_block_uses_the_token_user_or_the_default() {
    let e = engine(
        Deployment::OnPremises,
        "New-AuthenticationPolicy NoModern -BlockModernAuthMapi\nSet-User user01 -AuthenticationPolicy NoModern",
    );
    let target = classify("/mapi/").unwrap();
    let creds = parse_header(b"Bearer abc.def.ghi");
    let d = |user| {
        let ctx = Context {
            prior_mechanism: None,
            token_user: user,
            ..Context::default()
        };
        let d = e.decide(&target, &creds, ctx);
        (d.action, d.reason)
    };
    assert_eq!(
        d(Some("user01@contoso.com")),
        (Action::Block, Reason::ModernAuthBlocked)
    );
    assert_eq!(
        d(Some("user02@contoso.com")),
        (Action::Allow, Reason::ModernAuth)
    );
    assert_eq!(d(None), (Action::Allow, Reason::ModernAuth));
}

#[test]
fn rejections_come_before_any_policy() {
    let e = engine(Deployment::Online, ONLINE_ARTICLE);
    let two = [basic("a").leak() as &[u8], b"Bearer"];
    let d = e.evaluate("/mapi/", two, Context::default()).decision;
    assert_eq!(
        (d.action, d.reason),
        (Action::Reject, Reason::DuplicateAuthorization)
    );
    assert_eq!(
        action(
            &e,
            "/autodiscover/autodiscover.json?@x/mapi/nspi",
            &basic("user02")
        ),
        (Action::Reject, Reason::ProxyShell)
    );
    assert_eq!(
        action(&e, "/mapi%00/", b"Bearer"),
        (Action::Reject, Reason::AmbiguousPath)
    );
}

#[test]
fn reason_and_action_labels_are_unique_snake_case() {
    let mut seen = std::collections::HashSet::new();
    for r in Reason::ALL {
        assert!(seen.insert(r.as_str()), "{r:?}");
        assert!(
            r.as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        );
    }
    for a in Action::ALL {
        assert!(seen.insert(a.as_str()), "{a:?}");
    }
}
