//! The attacker's tables (issue "enforcement that holds"): for each kind of bypass, every
//! variant we could think of, decided by the pure engine. The proxy-level tables (what
//! reached the upstream) are in `tests/it/attacks.rs`.

use super::*;
use crate::auth::{Credentials, Mechanism, Scheme, parse_header};
use crate::test_support::*;

/// On-premises, the article's pilot: user01 blocked for MAPI, Autodiscover, OAB and RPC;
/// EWS allowed. user02 has no policy of their own; the organization default is `Open`.
const PILOT: &str = "New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -BlockLegacyAuthAutodiscover -BlockLegacyAuthMapi -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthRpc
New-AuthenticationPolicy -Name Open
Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth
Set-OrganizationConfig -DefaultAuthenticationPolicy Open
";

/// On-premises, the organization default blocks MAPI for everyone.
const ORG_BLOCKS_MAPI: &str = "New-AuthenticationPolicy -Name NoMapi -BlockLegacyAuthMapi
Set-OrganizationConfig -DefaultAuthenticationPolicy NoMapi
";

fn identity(scheme: Scheme, subject: ConnectionSubject) -> ConnectionIdentity {
    ConnectionIdentity { scheme, subject }
}

fn on_connection(
    e: &Engine,
    target: &str,
    header: Option<&[u8]>,
    id: &ConnectionIdentity,
) -> Decision {
    let ctx = Context {
        connection: Some(id),
        prior_mechanism: Some(Mechanism::Ntlm),
        ..Context::default()
    };
    e.evaluate(target, header, ctx).decision
}

/// Every later request shape on a connection user01 authenticated, to a protocol their
/// policy blocks: refused, and counted as user01's legacy request under the connection's
/// scheme.
#[test]
fn an_authenticated_connection_carries_its_user_to_every_later_request() {
    let e = engine(Deployment::OnPremises, PILOT);
    let user01 = |scheme| identity(scheme, ConnectionSubject::User("CONTOSO\\user01".into()));
    let later: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("none", None),
        ("bearer probe", Some(b"Bearer".to_vec())),
        ("bearer", Some(b"Bearer eyJ0.eyJ0.c2ln".to_vec())),
        (
            "negotiate continuation",
            Some(b"Negotiate oQcwBaADCgEA".to_vec()),
        ),
        ("negotiate garbage", Some(b"Negotiate !!!!".to_vec())),
        ("ntlm garbage", Some(b"NTLM AAAA".to_vec())),
        (
            "basic of an allowed user",
            Some(basic("user02@contoso.com")),
        ),
        ("digest", Some(br#"Digest username="user02""#.to_vec())),
        ("other scheme", Some(b"Foo bar".to_vec())),
    ];
    for scheme in [Scheme::Ntlm, Scheme::NegotiateNtlm] {
        for path in [
            "/mapi/emsmdb/",
            "/Autodiscover/Autodiscover.xml",
            "/OAB/x/oab.xml",
            "/rpc/rpcproxy.dll",
        ] {
            for (what, header) in &later {
                let d = on_connection(&e, path, header.as_deref(), &user01(scheme));
                let cell = format!("{scheme} then {what} to {path}");
                assert_eq!(d.action, Action::Block, "{cell}");
                assert!(d.connection && d.legacy, "{cell}");
                assert_eq!(d.scheme, scheme, "{cell}");
                assert_eq!(d.reason, Reason::LegacyBlocked, "{cell}");
                assert_eq!(d.user, Some(UserId(0)), "{cell}");
            }
        }
        // EWS is allowed for user01: a bare request is forwarded as their legacy request.
        let d = on_connection(&e, "/EWS/Exchange.asmx", None, &user01(scheme));
        assert_eq!(
            (d.action, d.reason, d.connection, d.legacy),
            (Action::Allow, Reason::PolicyAllows, true, true)
        );
        // A request with credentials of its own, where the connection's user is allowed,
        // is decided on them.
        let d = on_connection(
            &e,
            "/EWS/Exchange.asmx",
            Some(&basic("user02@contoso.com")),
            &user01(scheme),
        );
        assert_eq!(
            (d.action, d.connection, d.scheme),
            (Action::Allow, false, Scheme::Basic)
        );
    }
}

#[test]
fn a_new_handshake_on_an_authenticated_connection_is_decided_on_its_own() {
    let e = engine(Deployment::OnPremises, PILOT);
    let id = identity(
        Scheme::Ntlm,
        ConnectionSubject::User("CONTOSO\\user01".into()),
    );
    // A new Type 1 starts a handshake: forwarded, the Type 3 decides.
    let d = on_connection(&e, "/mapi/emsmdb/", Some(&ntlm_type1()), &id);
    assert_eq!(
        (d.action, d.reason, d.connection),
        (Action::Allow, Reason::NtlmHandshake, false)
    );
    // A Type 3 of another user replaces the identity: decided as that user.
    let d = on_connection(
        &e,
        "/mapi/emsmdb/",
        Some(&ntlm_type3("CONTOSO", "user02")),
        &id,
    );
    assert_eq!((d.action, d.connection), (Action::Allow, false));
    let d = on_connection(
        &e,
        "/mapi/emsmdb/",
        Some(&negotiate_type3("CONTOSO", "user01")),
        &id,
    );
    assert_eq!((d.action, d.connection), (Action::Block, false));
}

#[test]
fn kerberos_and_unidentified_connections_are_decided_by_their_policy() {
    let e = engine(Deployment::OnPremises, ORG_BLOCKS_MAPI);
    let kerberos = identity(Scheme::Kerberos, ConnectionSubject::Hidden);
    let d = on_connection(&e, "/mapi/emsmdb/", None, &kerberos);
    assert_eq!(
        (d.action, d.scheme, d.connection),
        (Action::Block, Scheme::Kerberos, true)
    );
    let d = on_connection(&e, "/EWS/Exchange.asmx", None, &kerberos);
    assert_eq!(d.action, Action::Allow);
    // Unidentified: the strictest policy that could apply.
    let e = engine(Deployment::OnPremises, PILOT);
    let nobody = identity(Scheme::Negotiate, ConnectionSubject::Unidentified);
    let d = on_connection(&e, "/mapi/emsmdb/", None, &nobody);
    assert_eq!(
        (d.action, d.reason),
        (Action::Block, Reason::UnidentifiedLegacy)
    );
}

#[test]
fn the_connection_identity_follows_policy_changes_and_report_only() {
    let id = identity(
        Scheme::Ntlm,
        ConnectionSubject::User("user01@contoso.com".into()),
    );
    let report = PILOT.replace("-BlockLegacyAuthRpc", "-BlockLegacyAuthRpc -ReportOnly");
    let e = engine(Deployment::OnPremises, &report);
    let d = on_connection(&e, "/mapi/emsmdb/", None, &id);
    assert_eq!((d.action, d.connection), (Action::ReportOnly, true));
    let e = engine(Deployment::OnPremises, "New-AuthenticationPolicy Open");
    assert_eq!(
        on_connection(&e, "/mapi/emsmdb/", None, &id).action,
        Action::Allow
    );
    // OWA and ECP stay ungoverned.
    let e = engine(Deployment::OnPremises, PILOT);
    let d = on_connection(&e, "/owa/", None, &id);
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::NotGoverned));
}

#[test]
fn what_each_final_leg_leaves_on_the_connection() {
    let established = |h: &[u8], prior| {
        ConnectionIdentity::established_by(&parse_header(h), prior, TicketRead::NoKeytab)
            .map(|i| (i.scheme, i.subject))
    };
    assert_eq!(
        established(&ntlm_type3("CONTOSO", "user01"), None),
        Some((
            Scheme::Ntlm,
            ConnectionSubject::User("CONTOSO\\user01".into())
        ))
    );
    assert_eq!(
        established(&negotiate_type3("", "user01@contoso.com"), None),
        Some((
            Scheme::NegotiateNtlm,
            ConnectionSubject::User("user01@contoso.com".into())
        ))
    );
    assert_eq!(
        established(&kerberos(), None),
        Some((Scheme::Kerberos, ConnectionSubject::Hidden))
    );
    assert_eq!(
        established(b"Negotiate oQcwBaADCgEA", Some(Mechanism::Kerberos)),
        Some((Scheme::Negotiate, ConnectionSubject::Hidden))
    );
    assert_eq!(
        established(b"Negotiate oQcwBaADCgEA", None),
        Some((Scheme::Negotiate, ConnectionSubject::Unidentified))
    );
    assert_eq!(
        established(b"NTLM AAAA", None).map(|i| i.1),
        Some(ConnectionSubject::Unidentified)
    );
    // A handshake start Exchange accepted without the rest: nobody exgate knows.
    assert_eq!(
        established(&ntlm_type1(), None).map(|i| i.1),
        Some(ConnectionSubject::Unidentified)
    );
    assert_eq!(
        established(&negotiate_type1(), None).map(|i| i.1),
        Some(ConnectionSubject::Unidentified)
    );
    assert_eq!(established(&basic("user01"), None), None);
    assert_eq!(established(b"Bearer x.y.z", None), None);
    assert!(matches!(
        parse_header(&ntlm_type1()),
        Credentials::Ntlm { .. }
    ));
}

/// Every name form AD and IIS accept for user01, in Basic, Digest and NTLM Type 3, to a
/// protocol only user01's policy blocks: refused. Names exgate cannot map fail closed.
#[test]
fn every_name_form_of_a_blocked_user_is_blocked() {
    let e = engine(Deployment::OnPremises, PILOT);
    let forms = [
        "user01@contoso.com",
        "USER01@CONTOSO.COM",
        "CONTOSO\\user01",
        "contoso.com\\user01",
        "\\user01",
        ".\\user01",
        "user01",
        "User01",
        "user01@contoso",
        // Cannot be mapped with certainty: fail closed.
        "FABRIKAM\\user01",
        "user01@fabrikam.com",
        "CONTOSO\\user01@contoso.com",
        "user01 ",
        " user01",
        "a\\b\\user01",
        "user01@",
        "@contoso.com",
        "user01@@contoso.com",
    ];
    for name in forms {
        let basic = basic(name);
        let digest = format!(
            "Digest username=\"{}\", realm=\"x\"",
            name.replace('\\', "\\\\")
        )
        .into_bytes();
        let (domain, user) = name.split_once('\\').unwrap_or(("", name));
        for (what, header) in [
            ("basic", basic),
            ("digest", digest),
            ("ntlm", ntlm_type3(domain, user)),
            ("negotiate", negotiate_type3(domain, user)),
        ] {
            let d = decide(&e, "/mapi/emsmdb/", Some(&header));
            assert_eq!(d.action, Action::Block, "{what} {name:?}");
        }
    }
    // user02 (no policy of their own) under the same forms is allowed; so is a stranger.
    for name in [
        "user02@contoso.com",
        "\\user02",
        ".\\user02",
        "contoso.com\\user02",
        "stranger@contoso.com",
        "CONTOSO\\stranger",
    ] {
        let d = decide(&e, "/mapi/emsmdb/", Some(&basic(name)));
        assert_eq!(d.action, Action::Allow, "{name}");
    }
}

/// Red team: spellings Active Directory takes for user01 (MS-ADTS 3.1.1.2.2.4.13:
/// case, width, kana type, non-spacing marks and characters without weight do not
/// count) fell back to the organization default. In Basic, Digest, NTLM and Negotiate,
/// to a protocol only user01's policy blocks: refused. Look-alikes of other scripts are
/// other accounts to Active Directory too: the organization default decides them.
#[test]
fn every_spelling_active_directory_folds_of_a_blocked_user_is_blocked() {
    let e = engine(Deployment::OnPremises, PILOT);
    let spellings = [
        "ｕｓｅｒ０１@contoso.com",
        "ＵＳＥＲ０１@Contoso.com",
        "usér01@contoso.com",
        "use\u{301}r01@contoso.com",
        "user\u{AD}01@contoso.com",
        "user\u{200B}01@contoso.com",
        "user\u{200D}01@contoso.com",
        "\u{FEFF}user01@contoso.com",
        "ｕｓé\u{AD}ｒ０１",
        "CONTOSO\\ｕｓｅｒ０１",
        "CONTOSO\\user\u{200B}01",
        "\\ｕｓｅｒ０１",
        // Fail closed: exgate cannot weigh the emoji, nor confirm the trailing dot.
        "user01😀@contoso.com",
        "ｕｓｅｒ０１@contoso.com.",
    ];
    for name in spellings {
        let digest = format!(
            "Digest username=\"{}\", realm=\"x\"",
            name.replace('\\', "\\\\")
        )
        .into_bytes();
        let (domain, user) = name.split_once('\\').unwrap_or(("", name));
        for (what, header) in [
            ("basic", basic(name)),
            ("digest", digest),
            ("ntlm", ntlm_type3(domain, user)),
            ("negotiate", negotiate_type3(domain, user)),
        ] {
            let d = decide(&e, "/mapi/emsmdb/", Some(&header));
            assert_eq!(d.action, Action::Block, "{what} {name:?}");
        }
    }
    for name in ["uѕer01@contoso.com", "CONTOSO\\uѕer01", "usеr01"] {
        let d = decide(&e, "/mapi/emsmdb/", Some(&basic(name)));
        assert_eq!(d.action, Action::Allow, "{name}");
        assert_eq!(d.user, None, "{name}");
    }
}

/// The ProxyShell family, with every place an `Email` value can hide (SPEC §2).
#[test]
fn proxyshell_family_is_rejected_wherever_email_hides() {
    let e = engine(Deployment::OnPremises, "New-AuthenticationPolicy Open");
    let h = basic("user02@contoso.com");
    let reject = |target: &str, method: &str, has_body: bool, cookies: &[&[u8]]| {
        let ctx = Context {
            request: RequestFacts {
                method: Some(method),
                has_body,
                cookies,
            },
            ..Context::default()
        };
        let d = e.evaluate(target, Some(h.as_slice()), ctx).decision;
        (d.action, d.reason)
    };
    let refused = (Action::Reject, Reason::ProxyShell);
    let cookie: &[&[u8]] = &[b"Email=autodiscover/admin@localhost"];
    for (target, method, has_body, cookies) in [
        // The issue's three inputs.
        (
            "/autodiscover/admin@localhost//powershell/autodiscover.json?x=a",
            "POST",
            false,
            cookie,
        ),
        (
            "/autodiscover/autodiscover.json?a..foo.var/powershell/?&Protocol=XYZ",
            "GET",
            false,
            &[b"Email=autodiscover/autodiscover.json?a..foo.var".as_slice()][..],
        ),
        (
            "/autodiscover/autodiscover.json?a..foo.var/mapi/nspi/",
            "POST",
            true,
            &[][..],
        ),
        // autodiscover.json anywhere else in the path.
        ("/autodiscover/x/autodiscover.json", "GET", false, &[][..]),
        ("/ews/autodiscover.json", "GET", false, &[][..]),
        ("/mapi/autodiscover.json/", "GET", false, &[][..]),
        (
            "/autodiscover/autodiscover.json/v1.0/user@contoso.com/mapi",
            "GET",
            false,
            &[][..],
        ),
        (
            "/autodiscover/autodiscover.json/v2.0/user@contoso.com",
            "GET",
            false,
            &[][..],
        ),
        (
            "/autodiscover/autodiscover.json/v1.0/not-an-address",
            "GET",
            false,
            &[][..],
        ),
        (
            "/autodiscover/autodiscover.json/v1.0/a@b@c",
            "GET",
            false,
            &[][..],
        ),
        ("/autodiscover//autodiscover.json", "GET", false, &[][..]),
        ("/autodiscover/./autodiscover.json", "GET", false, &[][..]),
        (
            "/x/../autodiscover/autodiscover.json",
            "GET",
            false,
            &[][..],
        ),
        ("/autodiscover\\autodiscover.json", "GET", false, &[][..]),
        (
            "/autodiscover/autodiscover.json/../../mapi/nspi/",
            "GET",
            false,
            &[][..],
        ),
        (
            "/autodiscover/autodiscover%2ejson/../../mapi/",
            "GET",
            false,
            &[][..],
        ),
        ("/AUTODISCOVER/AUTODISCOVER.JSON.x", "GET", false, &[][..]),
        (
            "/autodiscover/autodiscover.json.aspx",
            "GET",
            false,
            &[][..],
        ),
        // Email from a cookie, in any case and spelling.
        (
            "/autodiscover/autodiscover.json?Email=user@contoso.com",
            "GET",
            false,
            &[b"EMAIL=user@contoso.com".as_slice()][..],
        ),
        (
            "/autodiscover/autodiscover.json",
            "GET",
            false,
            &[b"a=b; email=x".as_slice()][..],
        ),
        (
            "/autodiscover/autodiscover.json",
            "GET",
            false,
            &[b"a=b".as_slice(), b" Em%61il =x".as_slice()][..],
        ),
        // Email from a body, or any body, or a method Autodiscover v2 does not use.
        (
            "/autodiscover/autodiscover.json?Email=user@contoso.com",
            "GET",
            true,
            &[][..],
        ),
        ("/autodiscover/autodiscover.json", "POST", false, &[][..]),
        ("/autodiscover/autodiscover.json", "PUT", true, &[][..]),
        // Query forms.
        (
            "/autodiscover/autodiscover.json?@evil.com/owa/&Email=autodiscover/autodiscover.json%3f@evil.com",
            "GET",
            false,
            &[][..],
        ),
        (
            "/autodiscover/autodiscover.json?Email=user@contoso.com&x=@evil",
            "GET",
            false,
            &[][..],
        ),
        (
            "/autodiscover/autodiscover.json?Email=a@b@c",
            "GET",
            false,
            &[][..],
        ),
        (
            "/autodiscover/autodiscover.json?Email=user",
            "GET",
            false,
            &[][..],
        ),
        (
            "/autodiscover/autodiscover.json?Email=user@contoso.com%3Fx",
            "GET",
            false,
            &[][..],
        ),
        (
            "/autodiscover/autodiscover.json?a/b=1",
            "GET",
            false,
            &[][..],
        ),
        ("/mapi/nspi/?x=autodiscover%252ejson", "GET", false, &[][..]),
        (
            "/mapi/nspi/?x=autodiscover%25252ejson",
            "GET",
            false,
            &[][..],
        ),
        (
            "/ews/?Email=autodiscover/autodiscover.json%3F@x",
            "GET",
            false,
            &[][..],
        ),
    ] {
        assert_eq!(
            reject(target, method, has_body, cookies),
            refused,
            "{method} {target} body={has_body} {cookies:?}"
        );
    }
    // Legitimate Outlook Autodiscover v2 forms keep working.
    for (target, cookies) in [
        (
            "/autodiscover/autodiscover.json?Email=user01@contoso.com&Protocol=EWS&RedirectCount=1",
            &[][..],
        ),
        (
            "/autodiscover/autodiscover.json/v1.0/user01@contoso.com?Protocol=Rest",
            &[][..],
        ),
        (
            "/autodiscover/autodiscover.json/v1.0/user01%40contoso.com?Protocol=AutodiscoverV1",
            &[][..],
        ),
        (
            "/Autodiscover/Autodiscover.json?Email=user01%40contoso.com&Protocol=ActiveSync",
            &[][..],
        ),
        ("/autodiscover/autodiscover.json/", &[][..]),
        (
            "/autodiscover/autodiscover.json?Email=user01@contoso.com",
            &[b"X-BackEndCookie=abc; ClientId=42".as_slice()][..],
        ),
    ] {
        let (action, _) = reject(target, "GET", false, cookies);
        assert_eq!(action, Action::Allow, "{target}");
    }
    // Cookies and bodies elsewhere are none of the guard's business.
    assert_eq!(
        reject("/autodiscover/autodiscover.xml", "POST", true, cookie).0,
        Action::Allow
    );
    assert_eq!(
        reject("/ews/exchange.asmx", "POST", true, cookie).0,
        Action::Allow
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// Name lookup, the ProxyShell guard's cookie and body checks, and decisions on
        /// an authenticated connection never panic on what a client sends.
        #[test]
        fn hostile_names_cookies_and_targets_never_panic(
            name in "\\PC{0,60}",
            cookie in proptest::collection::vec(any::<u8>(), 0..200),
            target in "/(autodiscover|mapi|ews)?[a-zA-Z%./\\\\?@&=;:0-9-]{0,80}",
            method in prop::sample::select(vec!["GET", "POST", "HEAD", "PUT"]),
            has_body in any::<bool>(),
        ) {
            let e = engine(Deployment::OnPremises, PILOT);
            let _ = e.directory().lookup(&name);
            let identity = identity(Scheme::Ntlm, ConnectionSubject::User(name.clone()));
            let cookies = [cookie.as_slice()];
            let ctx = Context {
                connection: Some(&identity),
                request: RequestFacts { method: Some(method), has_body, cookies: &cookies },
                ..Context::default()
            };
            let _ = e.evaluate(&target, Some(basic(&name).as_slice()), ctx);
        }
    }
}

/// Kerberos with a keytab (issue 13): every shape of a Kerberos leg, decided for the
/// pilot's user01 (MAPI blocked) and for everyone else. The AP-REQ bytes here are opaque;
/// what the keytab stage read is given as `TicketRead`.
#[test]
fn kerberos_with_a_keytab_decides_as_the_tickets_client_and_nobody_else_gets_through() {
    use crate::auth::negotiate::build_spnego_kerberos;
    use base64::Engine as _;
    let e = engine(Deployment::OnPremises, PILOT);
    let b64 = |t: &[u8]| {
        let mut h = b"Negotiate ".to_vec();
        h.extend(base64::engine::general_purpose::STANDARD.encode(t).bytes());
        h
    };
    // SPNEGO NegTokenInit naming Kerberos without a token; NegTokenResp naming Kerberos
    // with junk; a Kerberos GSS token with TOK_ID 03 00; a bare continuation.
    let offer = b"Negotiate YBsGBisGAQUFAqARMA+gDTALBgkqhkiG9xIBAgI=".to_vec();
    let resp_junk = b64(&[
        161, 21, 48, 19, 161, 11, 6, 9, 42, 134, 72, 134, 247, 18, 1, 2, 2, 162, 4, 4, 2, 106, 107,
    ]);
    let ap_req = b64(&build_spnego_kerberos(1200));
    let decide = |h: &[u8], ticket: TicketRead<'_>, prior: Option<Mechanism>| {
        let ctx = Context {
            ticket,
            prior_mechanism: prior,
            ..Context::default()
        };
        e.evaluate("/mapi/emsmdb/?MailboxId=x", Some(h), ctx)
            .decision
    };
    let u01 = TicketRead::Client("user01@CONTOSO.COM");
    let u02 = TicketRead::Client("user02@CONTOSO.COM");
    // The ticket's client decides: user01 blocked, user02 forwarded, both attributed.
    let d = decide(&ap_req, u01, None);
    assert_eq!(
        (d.action, d.reason, d.scheme),
        (Action::Block, Reason::LegacyBlocked, Scheme::Kerberos)
    );
    assert!(d.user.is_some() && d.legacy);
    assert_eq!(decide(&ap_req, u02, None).action, Action::Allow);
    // The realm is the NetBIOS domain, or any case of the UPN domain.
    for name in ["user01@CONTOSO", "USER01@contoso.com", "user01@contoso.com"] {
        assert_eq!(
            decide(&ap_req, TicketRead::Client(name), None).action,
            Action::Block,
            "{name}"
        );
    }
    // user01 under a realm exgate cannot confirm: not "unknown" (the strictest decides).
    assert_eq!(
        decide(&ap_req, TicketRead::Client("user01@FABRIKAM.COM"), None).action,
        Action::Block
    );
    // A ticket the keytab did not open names nobody: the strictest policy blocks MAPI.
    let d = decide(&ap_req, TicketRead::Unread, None);
    assert_eq!(
        (d.action, d.reason),
        (Action::Block, Reason::UnidentifiedLegacy)
    );
    // An unreadable Kerberos token and a bare continuation after Kerberos: nobody.
    for h in [&resp_junk, &b"Negotiate oQcwBaADCgEA".to_vec()] {
        let d = decide(h, TicketRead::Unread, Some(Mechanism::Kerberos));
        assert_eq!(
            (d.action, d.reason),
            (Action::Block, Reason::UnidentifiedLegacy),
            "{h:?}"
        );
    }
    // An offer without a ticket starts a handshake: allowed while someone may pass.
    let d = decide(&offer, TicketRead::Unread, None);
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::NtlmHandshake));
    // Without a keytab, the organization default (`Open`) decides every one of them.
    for h in [&ap_req, &offer, &resp_junk] {
        let d = decide(h, TicketRead::NoKeytab, Some(Mechanism::Kerberos));
        assert_eq!(
            (d.action, d.reason),
            (Action::Allow, Reason::PolicyAllows),
            "{h:?}"
        );
    }
    // What the accepted leg leaves on the connection.
    let established = |h: &[u8], ticket, prior| {
        ConnectionIdentity::established_by(&parse_header(h), prior, ticket).map(|i| i.subject)
    };
    assert_eq!(
        established(&ap_req, u01, None),
        Some(ConnectionSubject::User("user01@CONTOSO.COM".into()))
    );
    assert_eq!(
        established(&ap_req, TicketRead::Unread, None),
        Some(ConnectionSubject::Unidentified)
    );
    assert_eq!(
        established(&offer, TicketRead::Unread, None),
        Some(ConnectionSubject::Unidentified)
    );
    assert_eq!(
        established(
            b"Negotiate oQcwBaADCgEA",
            TicketRead::Unread,
            Some(Mechanism::Kerberos)
        ),
        Some(ConnectionSubject::Unidentified)
    );
    assert_eq!(
        established(&ap_req, TicketRead::NoKeytab, None),
        Some(ConnectionSubject::Hidden)
    );
    // A later bare request on user01's Kerberos connection: user01's, refused for MAPI,
    // forwarded for EWS.
    let id = identity(
        Scheme::Kerberos,
        ConnectionSubject::User("user01@CONTOSO.COM".into()),
    );
    assert_eq!(
        on_connection(&e, "/mapi/emsmdb/", None, &id).action,
        Action::Block
    );
    assert_eq!(
        on_connection(&e, "/EWS/Exchange.asmx", None, &id).action,
        Action::Allow
    );
}
