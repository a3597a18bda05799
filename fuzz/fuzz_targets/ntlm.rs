//! The NTLM message decoder (MS-NLMP 2.2.1) on raw, already base64-decoded bytes, then the
//! same bytes under every wrapping a client can use: raw `Negotiate`, SPNEGO NegTokenInit
//! and NegTokenResp, and the base64 `NTLM`/`Negotiate` headers. Never panics, and each
//! wrapping yields the message the raw bytes decode to.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use exgate::auth::negotiate::{Token, build_spnego_init, build_spnego_response, classify};
use exgate::auth::ntlm::{self, SIGNATURE};
use exgate::auth::{Credentials, NtlmMessage, parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let message = ntlm::parse(data);
    if let NtlmMessage::Authenticate(id) = &message {
        let name = id.presented_name();
        assert_eq!(name.is_none(), id.anonymous || id.user.is_empty());
        if let Some(name) = name {
            assert!(name.ends_with(id.user.as_str()));
        }
    }
    if !data.starts_with(SIGNATURE) {
        assert_eq!(message, NtlmMessage::Malformed);
    }
    let header = |scheme: &str, token: &[u8]| {
        let mut h = format!("{scheme} ").into_bytes();
        h.extend_from_slice(STANDARD.encode(token).as_bytes());
        h
    };
    if !data.is_empty() {
        assert_eq!(
            parse_header(&header("NTLM", data)),
            Credentials::Ntlm {
                negotiate: false,
                message: message.clone(),
            }
        );
    }
    // The SPNEGO builders take at most 64 KiB, as any header limit does.
    if data.starts_with(SIGNATURE) && data.len() <= 60_000 {
        let expected = Token::Ntlm(message.clone());
        assert_eq!(classify(data), expected);
        let init = build_spnego_init(data);
        assert_eq!(classify(&init), expected);
        let resp = build_spnego_response(data);
        assert_eq!(classify(&resp), expected);
        let negotiate = Credentials::Ntlm {
            negotiate: true,
            message,
        };
        assert_eq!(parse_header(&header("Negotiate", data)), negotiate);
        assert_eq!(parse_header(&header("Negotiate", &resp)), negotiate);
    }
});
