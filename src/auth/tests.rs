use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

use super::negotiate::{build_spnego_init, build_spnego_kerberos, build_spnego_response};
use super::ntlm::build_negotiate;
use super::*;
use crate::test_support::type3;

fn basic(user_pass: &str) -> Vec<u8> {
    format!("Basic {}", STANDARD.encode(user_pass)).into_bytes()
}

fn header(scheme: &str, token: &[u8]) -> Vec<u8> {
    format!("{scheme} {}", STANDARD.encode(token)).into_bytes()
}

#[test]
fn no_header_is_anonymous() {
    assert_eq!(parse_authorization([]), Ok(Credentials::None));
}

#[test]
fn two_headers_are_refused() {
    let a = basic("u:p");
    assert_eq!(
        parse_authorization([a.as_slice(), a.as_slice()]),
        Err(DuplicateAuthorization)
    );
}

#[test]
fn basic_user_is_extracted_in_all_three_forms() {
    for (pair, user) in [
        ("user01@contoso.com:Secr3t!", "user01@contoso.com"),
        ("CONTOSO\\user01:Secr3t!", "CONTOSO\\user01"),
        ("user01:Secr3t!", "user01"),
        ("user01:pass:with:colons", "user01"),
        ("user01:", "user01"),
    ] {
        let creds = parse_header(&basic(pair));
        assert_eq!(creds.user().as_deref(), Some(user), "{pair}");
        assert_eq!(creds.scheme(), Scheme::Basic);
    }
}

#[test]
fn basic_password_is_kept_only_as_a_secret() {
    let Credentials::Basic(b) = parse_header(&basic("user01:pass:with:colons")) else {
        panic!()
    };
    assert_eq!(b.password().expose(), b"pass:with:colons");
}

#[test]
fn basic_latin1_user_is_decoded() {
    let mut raw = b"j\xfcrgen:pw".to_vec();
    let h = format!("Basic {}", STANDARD.encode(&raw)).into_bytes();
    assert_eq!(parse_header(&h).user().as_deref(), Some("jürgen"));
    raw.clear();
}

#[test]
fn basic_without_padding_is_accepted() {
    let h = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode("ab:c")
    );
    assert_eq!(parse_header(h.as_bytes()).user().as_deref(), Some("ab"));
}

// One test per malformed credential.

#[test]
fn basic_with_invalid_base64_is_malformed_basic() {
    let Credentials::Basic(b) = parse_header(b"Basic !!!not-base64!!!") else {
        panic!()
    };
    assert!(b.is_malformed());
}

#[test]
fn basic_without_colon_is_malformed_basic() {
    let Credentials::Basic(b) = parse_header(&basic("justauser")) else {
        panic!()
    };
    assert!(b.is_malformed());
}

#[test]
fn basic_with_empty_user_is_malformed_basic() {
    let Credentials::Basic(b) = parse_header(&basic(":password")) else {
        panic!()
    };
    assert!(b.is_malformed());
}

#[test]
fn basic_with_no_token_is_malformed_basic() {
    let Credentials::Basic(b) = parse_header(b"Basic") else {
        panic!()
    };
    assert!(b.is_malformed());
}

#[test]
fn ntlm_with_invalid_base64_is_malformed_ntlm() {
    assert_eq!(
        parse_header(b"NTLM %%%"),
        Credentials::Ntlm {
            negotiate: false,
            message: NtlmMessage::Malformed
        }
    );
    assert_eq!(
        parse_header(b"NTLM"),
        Credentials::Ntlm {
            negotiate: false,
            message: NtlmMessage::Malformed
        }
    );
}

#[test]
fn negotiate_with_invalid_base64_is_unknown() {
    assert_eq!(
        parse_header(b"Negotiate %%%"),
        Credentials::NegotiateUnknown
    );
    assert_eq!(parse_header(b"Negotiate"), Credentials::NegotiateUnknown);
}

#[test]
fn digest_without_username_has_no_user() {
    assert_eq!(
        parse_header(br#"Digest realm="x", nonce="y""#),
        Credentials::Digest { user: None }
    );
}

#[test]
fn scheme_names_are_case_insensitive() {
    assert_eq!(parse_header(b"bAsIc dTpw").user().as_deref(), Some("u"));
    assert_eq!(parse_header(b"BEARER"), Credentials::BearerProbe);
    assert!(matches!(
        parse_header(&header("negotiate", &build_negotiate())),
        Credentials::Ntlm {
            negotiate: true,
            ..
        }
    ));
    assert!(matches!(
        parse_header(&header("ntlm", &build_negotiate())),
        Credentials::Ntlm {
            negotiate: false,
            ..
        }
    ));
}

#[test]
fn surrounding_whitespace_and_tabs_are_tolerated() {
    assert_eq!(parse_header(b"  Bearer  \t "), Credentials::BearerProbe);
    let mut h = b"Basic\t".to_vec();
    h.extend_from_slice(STANDARD.encode("u:p").as_bytes());
    assert_eq!(parse_header(&h).user().as_deref(), Some("u"));
}

#[test]
fn bearer_empty_is_a_probe_and_a_token_is_kept_secret() {
    assert_eq!(parse_header(b"Bearer"), Credentials::BearerProbe);
    assert_eq!(parse_header(b"Bearer "), Credentials::BearerProbe);
    match parse_header(b"Bearer eyJ0eXAiOiJKV1QifQ.e30.sig") {
        Credentials::Bearer(t) => assert_eq!(t.expose(), b"eyJ0eXAiOiJKV1QifQ.e30.sig"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ntlm_legs_under_both_schemes() {
    assert_eq!(
        parse_header(&header("NTLM", &build_negotiate())),
        Credentials::Ntlm {
            negotiate: false,
            message: NtlmMessage::Negotiate
        }
    );
    let c = parse_header(&header("NTLM", &type3("CONTOSO", "user01")));
    assert_eq!(c.user().as_deref(), Some("CONTOSO\\user01"));
    assert_eq!(c.scheme(), Scheme::Ntlm);
    let c = parse_header(&header("Negotiate", &type3("CONTOSO", "user01")));
    assert_eq!(c.scheme(), Scheme::NegotiateNtlm);
    assert_eq!(c.negotiated_mechanism(), Some(Mechanism::Ntlm));
}

#[test]
fn spnego_wrapped_ntlm_and_kerberos() {
    let c = parse_header(&header("Negotiate", &build_spnego_init(&build_negotiate())));
    assert_eq!(
        c,
        Credentials::Ntlm {
            negotiate: true,
            message: NtlmMessage::Negotiate
        }
    );
    let c = parse_header(&header(
        "Negotiate",
        &build_spnego_response(&type3("", "user01@contoso.com")),
    ));
    assert_eq!(c.user().as_deref(), Some("user01@contoso.com"));
    let c = parse_header(&header("Negotiate", &build_spnego_kerberos(1500)));
    assert!(
        matches!(c, Credentials::Kerberos(KerberosLeg::ApReq(_))),
        "{c:?}"
    );
    assert_eq!(c.ap_req().map(|a| a.der().len()), Some(1500));
    assert_eq!(c.scheme(), Scheme::Kerberos);
    assert_eq!(c.negotiated_mechanism(), Some(Mechanism::Kerberos));
}

#[test]
fn unknown_schemes_are_other() {
    for h in [&b"Foo bar"[..], b"PlainText x", b"", b"   ", b"\xff\xfe"] {
        assert_eq!(parse_header(h), Credentials::Other, "{h:?}");
    }
}

/// Which credentials pin their connection (never pooled, later requests decided as its
/// user) and which may start a handshake on a new upstream connection.
#[test]
fn what_authenticates_a_connection_and_what_starts_a_handshake() {
    let type1 = header("NTLM", &build_negotiate());
    let type3 = crate::test_support::ntlm_type3("CONTOSO", "user01");
    let table: &[(&[u8], bool, bool)] = &[
        // An empty field names no scheme exgate knows.
        (b"", true, false),
        (&basic("user01@contoso.com:x"), false, false),
        (b"Bearer", false, false),
        (b"Bearer eyJ.eyJ.sig", false, false),
        (b"Digest username=\"user01\"", false, false),
        (&type1, true, true),
        (&type3, true, false),
        (&header("Negotiate", &build_spnego_kerberos(64)), true, true),
        (
            &header("Negotiate", &build_spnego_response(b"x")),
            true,
            false,
        ),
        (b"Negotiate !!!", true, false),
        // Schemes exgate does not know (IIS 10's Nego2, a bare Kerberos): fail closed.
        (b"Nego2 TlRMTVNTUAABAAAA", true, false),
        (b"Kerberos YIIB", true, false),
        (b"X-Custom abc", true, false),
    ];
    for (h, pins, starts) in table {
        let c = parse_header(h);
        assert_eq!(
            (c.authenticates_connection(), c.starts_handshake()),
            (*pins, *starts),
            "{:?}: {c:?}",
            String::from_utf8_lossy(h)
        );
    }
}

#[test]
fn debug_never_prints_secrets() {
    let password = "Tr0ub4dor&3-sekrit";
    let creds = parse_header(&basic(&format!("user01@contoso.com:{password}")));
    let dbg = format!("{creds:?}");
    assert!(!dbg.contains(password), "{dbg}");
    assert!(dbg.contains("[redacted]") && dbg.contains("user01@contoso.com"));
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    let dbg = format!("{:?}", parse_header(format!("Bearer {token}").as_bytes()));
    assert!(!dbg.contains(token) && !dbg.contains("eyJ"), "{dbg}");
}

#[test]
fn secrets_compare_by_content() {
    assert_eq!(Secret::new(b"abc"), Secret::new(b"abc"));
    assert_ne!(Secret::new(b"abc"), Secret::new(b"abd"));
    assert_ne!(Secret::new(b"abc"), Secret::new(b"ab"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn header_parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_header(&bytes);
    }

    #[test]
    fn scheme_parsers_never_panic_on_arbitrary_tokens(
        scheme in prop::sample::select(vec!["Basic", "NTLM", "Negotiate", "Digest", "Bearer"]),
        token in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = parse_header(&header(scheme, &token));
    }

    #[test]
    fn ntlm_parser_never_panics_on_mutated_type3(
        flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..12),
    ) {
        let mut msg = type3("CONTOSO", "user01");
        for (at, v) in flips {
            let at = at % msg.len();
            msg[at] = v;
        }
        let _ = ntlm::parse(&msg);
        let _ = negotiate::classify(&build_spnego_response(&msg));
    }

    #[test]
    fn spnego_parser_never_panics_on_mutated_tokens(
        flips in proptest::collection::vec((0usize..400, any::<u8>()), 1..12),
        cut in 0usize..400,
    ) {
        let mut token = build_spnego_init(&type3("CONTOSO", "user01"));
        for (at, v) in flips {
            let at = at % token.len();
            token[at] = v;
        }
        token.truncate(cut.max(1));
        let _ = negotiate::classify(&token);
    }

    #[test]
    fn basic_user_round_trips_and_password_never_shows(
        user in "[A-Za-z._@\\\\-]{1,40}",
        pass in "[0-9]{6,40}",
    ) {
        let creds = parse_header(&basic(&format!("{user}:{pass}")));
        let got = creds.user().map(|u| u.into_owned());
        prop_assert_eq!(got.as_deref(), Some(user.as_str()));
        let shown = format!("{creds:?}");
        prop_assert!(!shown.contains(&pass), "{}", shown);
    }
}
