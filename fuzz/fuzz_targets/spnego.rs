//! The `Negotiate` token decoder on raw DER: SPNEGO NegTokenInit and NegTokenResp, GSS
//! initial-context tokens (Kerberos, nested), raw NTLMSSP, and the bounds-checked DER
//! reader under them. Never panics, and the base64 `Negotiate` header carrying the same
//! bytes classifies exactly as the decoder does.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use exgate::auth::negotiate::{Token, classify};
use exgate::auth::{Credentials, parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let token = classify(data);
    let mut header = b"Negotiate ".to_vec();
    header.extend_from_slice(STANDARD.encode(data).as_bytes());
    let expected = match token {
        Token::Ntlm(message) => Credentials::Ntlm {
            negotiate: true,
            message,
        },
        Token::Kerberos(leg) => Credentials::Kerberos(leg),
        Token::Continuation => Credentials::NegotiateContinuation,
        Token::Unknown => Credentials::NegotiateUnknown,
    };
    assert_eq!(parse_header(&header), expected);
});
