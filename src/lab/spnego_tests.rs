use super::*;
use crate::auth::negotiate::{self, Token, build_spnego_init, build_spnego_response};
use crate::auth::ntlm::{AuthenticateParts, NtlmMessage, build_authenticate, build_negotiate};
use crate::lab::ntlm::ServerHandshake;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `mechTypes` offering NTLMSSP only, in DER: what NTLM-only clients send and sign.
const NTLM_ONLY_MECH_TYPES: &str = "300c060a2b06010401823702020a";

/// A NegTokenInit from curl --negotiate with Debian's gss-ntlmssp (captured in the lab).
const CURL_GSS_NTLMSSP_INIT: &str = "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa22a04284e544c4d5353500001000000178208e200000000000000000000000000000000060200000000000f";

/// One NTLM-in-SPNEGO handshake between pyspnego 0.12.4's client and its acceptor
/// (user CONTOSO\user02, password Lab-Passw0rd-02), token by token.
mod pyspnego {
    pub const INIT: &str = "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa22a04284e544c4d5353500001000000378208e200000000280000000000000028000000000c04000000000f";
    pub const CHALLENGE_RESP: &str = "a1819030818da0030a0103a10c060a2b06010401823702020aa27804764e544c4d5353500002000000040004003800000035828ae2f012ac5bd18d9c5300000000000000003a003a003c000000000c04000000000f56004d000100040056004d000200160057004f0052004b00530054004100540049004f004e000300040076006d00070008007883fd7cfc80dd0100000000";
    pub const AUTHENTICATE_RESP: &str = "a18201633082015fa0030a0101a28201420482013e4e544c4d53535000030000001800180058000000a000a000700000000e000e00100100000c000c001e010000040004002a010000100010002e01000035828ae2000c04000000000f06d67da8c17889104d42ef2777983d600000000000000000000000000000000000000000000000002e07b43d62bd52c4308774df7c04312601010000000000007883fd7cfc80dd01662deeac1cc82d38000000000100040056004d000200160057004f0052004b00530054004100540049004f004e000300040076006d00070008007883fd7cfc80dd0109002a0068006f00730074002f006d00610069006c002e0063006f006e0074006f0073006f002e0063006f006d000600040002000000000000000000000043004f004e0054004f0053004f0075007300650072003000320056004d000690ade80756deae88b1572aa62ebbc9a312041001000000bb48b68274fa068800000000";
    pub const FINAL: &str = "a11b3019a0030a0100a31204100100000022406fc96b0a636200000000";
}

/// Decodes one of our answers with the crate, for the assertions.
fn decoded(token: &[u8]) -> NegTokenResp<'_> {
    match NegotiationToken::from_der(token).unwrap() {
        NegotiationToken::Resp(resp) => resp,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_first_answer_is_a_neg_token_resp_selecting_ntlmssp_with_the_challenge() {
    let handshake = ServerHandshake::start(&build_negotiate(), "CONTOSO", [5; 8], 1).unwrap();
    let token = accept_incomplete(handshake.challenge());
    // exgate's own SPNEGO reader finds the CHALLENGE inside.
    assert_eq!(
        negotiate::classify(&token),
        Token::Ntlm(NtlmMessage::Challenge)
    );
    let resp = decoded(&token);
    assert_eq!(resp.neg_state, Some(NegState::AcceptIncomplete));
    assert_eq!(resp.supported_mech, Some(NTLMSSP));
    assert_eq!(
        resp.response_token.map(OctetStringRef::as_bytes),
        Some(handshake.challenge())
    );
    assert_eq!(resp.mech_list_mic, None);
    // [1] { SEQUENCE { [0] ENUMERATED 1, [1] OID 1.3.6.1.4.1.311.2.2.10, [2] OCTET STRING
    let head = hex("a0030a0101a10c060a2b06010401823702020aa2");
    assert_eq!(&token[0], &0xa1);
    assert!(token.windows(head.len()).any(|w| w == head), "{token:02x?}");
}

#[test]
fn the_last_answer_is_byte_for_byte_what_pyspnego_accepts_with() {
    let mic = hex("0100000022406fc96b0a636200000000");
    let token = accept_completed(Some(&mic));
    assert_eq!(token, hex(pyspnego::FINAL));
    let resp = decoded(&token);
    assert_eq!(resp.neg_state, Some(NegState::AcceptCompleted));
    assert_eq!((resp.supported_mech, resp.response_token), (None, None));
    // Without a MIC: negState alone, the shortest NegTokenResp.
    assert_eq!(accept_completed(None), hex("a1073005a0030a0100"));
    assert_eq!(negotiate::classify(&token), Token::Continuation);
}

#[test]
fn real_clients_first_legs_are_read() {
    for init in [CURL_GSS_NTLMSSP_INIT, pyspnego::INIT] {
        let init = hex(init);
        let Some(ClientToken::Init {
            mech_types,
            mech_token: Some(mech_token),
        }) = parse(&init)
        else {
            panic!("{:?}", parse(&init));
        };
        assert_eq!(mech_types, hex(NTLM_ONLY_MECH_TYPES));
        assert_eq!(crate::auth::ntlm::parse(mech_token), NtlmMessage::Negotiate);
    }
}

#[test]
fn exgate_own_spnego_builders_are_read() {
    let init = build_spnego_init(&build_negotiate());
    assert_eq!(
        parse(&init),
        Some(ClientToken::Init {
            mech_types: hex(NTLM_ONLY_MECH_TYPES),
            mech_token: Some(&build_negotiate()[..]),
        })
    );
    let t3 = build_authenticate(&AuthenticateParts {
        domain: "CONTOSO",
        user: "user01",
        workstation: "WS",
        unicode: true,
        lm_response: &[0; 24],
        nt_response: &[1; 24],
        session_key: &[],
    });
    assert_eq!(
        parse(&build_spnego_response(&t3)),
        Some(ClientToken::Resp {
            response_token: Some(&t3[..]),
            mech_list_mic: None,
        })
    );
}

#[test]
fn raw_ntlm_garbage_and_truncated_tokens_are_not_spnego() {
    assert_eq!(parse(&build_negotiate()), None);
    assert_eq!(parse(b""), None);
    assert_eq!(parse(b"\x60\x80\x06"), None);
    let full = hex(pyspnego::AUTHENTICATE_RESP);
    for len in 0..full.len() {
        assert_eq!(parse(&full[..len]), None, "len {len}");
    }
    let init = hex(pyspnego::INIT);
    for len in 0..init.len() {
        assert_eq!(parse(&init[..len]), None, "len {len}");
    }
    // A framed token naming another mechanism than SPNEGO (Kerberos) is not ours.
    let mut krb = init.clone();
    krb[4..10].copy_from_slice(&hex("2b0601050503"));
    assert_eq!(parse(&krb), None);
    // Trailing bytes after the framing are refused (strict DER).
    let mut trailing = init;
    trailing.push(0);
    assert_eq!(parse(&trailing), None);
}

/// The whole handshake on pyspnego's bytes: the server side of the lab checks pyspnego's
/// AUTHENTICATE (its MIC included) and mechListMIC, and signs what pyspnego's own
/// acceptor signed, so the last answer comes out identical.
#[test]
fn the_mech_list_mic_of_a_real_client_verifies_and_ours_matches_a_real_acceptor() {
    let init = hex(pyspnego::INIT);
    let Some(ClientToken::Init {
        mech_types,
        mech_token: Some(negotiate),
    }) = parse(&init)
    else {
        panic!()
    };
    let challenge_resp = hex(pyspnego::CHALLENGE_RESP);
    let challenge = decoded(&challenge_resp).response_token.unwrap().as_bytes();
    let handshake = ServerHandshake::replay(negotiate, challenge);
    let auth_resp = hex(pyspnego::AUTHENTICATE_RESP);
    let Some(ClientToken::Resp {
        response_token: Some(authenticate),
        mech_list_mic: Some(mic),
    }) = parse(&auth_resp)
    else {
        panic!()
    };
    let session = handshake
        .finish(authenticate, "CONTOSO", "user02", "Lab-Passw0rd-02")
        .unwrap();
    assert!(session.mic_present());
    assert!(session.verify_client_signature(&mech_types, mic));
    let ours = session.server_signature(&mech_types).unwrap();
    assert_eq!(accept_completed(Some(&ours)), hex(pyspnego::FINAL));

    // A mechListMIC over another list (a downgrade in flight) does not verify.
    let mut other = mech_types.clone();
    other[13] ^= 1;
    assert!(!session.verify_client_signature(&other, mic));
    assert!(
        handshake
            .finish(authenticate, "CONTOSO", "user02", "wrong")
            .is_none()
    );
}
