//! `Authorization` header parsing on arbitrary bytes: every scheme (Basic, Bearer, NTLM
//! Type 1/2/3, Negotiate with raw NTLM, SPNEGO or Kerberos, Digest, unknown), through
//! `parse_header` and `parse_authorization` (one or two values, split at 0xff), then every
//! accessor of the resulting `Credentials`. Never panics, and the classifications agree
//! with each other the way the proxy relies on.
#![no_main]

use exgate::auth::{
    Credentials, DuplicateAuthorization, NtlmMessage, Scheme, parse_authorization, parse_header,
};
use libfuzzer_sys::fuzz_target;

fn check(creds: &Credentials) {
    let scheme = creds.scheme();
    assert!(Scheme::ALL.contains(&scheme));
    let _ = scheme.to_string();
    // Debug is what logs print; it must render whatever was parsed.
    let _ = format!("{creds:?}");
    let user = creds.user();
    if user.is_some() {
        assert!(matches!(
            scheme,
            Scheme::Basic | Scheme::Digest | Scheme::Ntlm | Scheme::NegotiateNtlm
        ));
    }
    // A new authentication, or a remembered mechanism, is always a connection leg.
    if creds.authenticates_anew() || creds.negotiated_mechanism().is_some() {
        assert!(creds.authenticates_connection());
    }
    match creds {
        Credentials::Basic(b) => {
            assert_eq!(b.is_malformed(), b.user().is_none());
            assert_eq!(user.as_deref(), b.user());
            let password = b.password();
            assert_eq!(password.len(), password.expose().len());
            assert_eq!(password.is_empty(), password.expose().is_empty());
            if let Some(token) = b.token() {
                // The token is the password or its tail, never something else.
                let p = password.expose();
                assert!(p.windows(token.len()).any(|w| w == token));
                assert_eq!(token.iter().filter(|c| **c == b'.').count(), 2);
            }
        }
        Credentials::Ntlm {
            message: NtlmMessage::Authenticate(id),
            ..
        } => {
            let name = id.presented_name();
            assert_eq!(name.is_none(), id.anonymous || id.user.is_empty());
        }
        Credentials::Bearer(secret) => assert!(!secret.is_empty()),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let values: Vec<&[u8]> = data.split(|b| *b == 0xff).collect();
    let result = parse_authorization(values.iter().copied());
    match values.as_slice() {
        [one] => {
            let creds = parse_header(one);
            assert_eq!(result, Ok(creds.clone()));
            // Surrounding blanks are never part of the credentials.
            assert_eq!(parse_header(one.trim_ascii()), creds);
            check(&creds);
        }
        many => {
            assert_eq!(result, Err(DuplicateAuthorization));
            for v in many {
                check(&parse_header(v));
            }
        }
    }
});
