use super::*;
use crate::auth::ntlm::{NtlmMessage, build_negotiate, parse};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn negotiate_with(flags: u32) -> Vec<u8> {
    let mut m = build_negotiate();
    m[12..16].copy_from_slice(&flags.to_le_bytes());
    m
}

fn challenge_flags(challenge: &[u8]) -> u32 {
    read_u32(challenge, 20).unwrap()
}

#[test]
fn ntowfv2_matches_the_ms_nlmp_test_vector() {
    // MS-NLMP 4.2.4.1.1: User "User", UserDom "Domain", Password "Password".
    let key = ntowf_v2("Password", "User", "Domain");
    assert_eq!(key.to_vec(), hex("0c868a403bfd7a93a3001ef22ef02e3f"));
}

#[test]
fn a_response_with_the_right_password_verifies_and_a_wrong_one_does_not() {
    let server_challenge = [1, 2, 3, 4, 5, 6, 7, 8];
    let handshake =
        ServerHandshake::start(&build_negotiate(), "CONTOSO", server_challenge, 0).unwrap();
    let t3 = build_response(
        handshake.challenge(),
        "CONTOSO",
        "user01",
        "Passw0rd!",
        [9; 8],
        133_000_000_000_000_000,
    )
    .unwrap();
    match parse(&t3) {
        NtlmMessage::Authenticate(id) => {
            assert_eq!(id.presented_name().as_deref(), Some("CONTOSO\\user01"))
        }
        other => panic!("{other:?}"),
    }
    let session = handshake.finish(&t3, "CONTOSO", "user01", "Passw0rd!");
    assert!(!session.unwrap().mic_present());
    assert!(
        handshake
            .finish(&t3, "CONTOSO", "user01", "wrong")
            .is_none()
    );
    assert!(
        handshake
            .finish(&t3, "CONTOSO", "user02", "Passw0rd!")
            .is_none()
    );
    let other = ServerHandshake::start(&build_negotiate(), "CONTOSO", [0; 8], 0).unwrap();
    assert!(
        other
            .finish(&t3, "CONTOSO", "user01", "Passw0rd!")
            .is_none()
    );
    assert!(
        handshake
            .finish(b"garbage", "CONTOSO", "user01", "Passw0rd!")
            .is_none()
    );
}

#[test]
fn the_challenge_grants_what_the_client_asked_for_and_parses_back() {
    // gss-ntlmssp's NEGOTIATE (as curl --negotiate sends it) asks for signing, key
    // exchange and 128-bit keys; curl's own NTLM only for ALWAYS_SIGN.
    let gss = ServerHandshake::start(&negotiate_with(0xe208_8217), "CONTOSO", [7; 8], 1).unwrap();
    let flags = challenge_flags(gss.challenge());
    assert_eq!(
        flags,
        CHALLENGE_FLAGS | (GRANTED_ON_REQUEST & !NEGOTIATE_SEAL)
    );
    let curl = ServerHandshake::start(&negotiate_with(0x0008_8206), "CONTOSO", [7; 8], 1).unwrap();
    assert_eq!(
        challenge_flags(curl.challenge()),
        CHALLENGE_FLAGS | NEGOTIATE_ALWAYS_SIGN
    );
    // Never both character sets: the lab's strings are Unicode.
    assert_eq!(flags & 0x3, NEGOTIATE_UNICODE);

    assert_eq!(parse(gss.challenge()), NtlmMessage::Challenge);
    let (sc, info) = parse_challenge(gss.challenge()).unwrap();
    assert_eq!(sc, [7; 8]);
    assert_eq!(info, target_info("CONTOSO", 1));
    // gss-ntlmssp refuses a signing context whose target names no NetBIOS computer;
    // MsvAvTimestamp makes clients add a MIC.
    let ids: Vec<u16> = {
        let mut ids = Vec::new();
        let mut rest = &info[..];
        while rest.len() >= 4 {
            ids.push(u16::from_le_bytes([rest[0], rest[1]]));
            let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
            rest = &rest[4 + len..];
        }
        ids
    };
    assert_eq!(ids, [2, 1, 4, 3, 5, 7, 0]);
}

#[test]
fn start_refuses_what_is_not_a_negotiate_message() {
    let c = ServerHandshake::start(&build_negotiate(), "CONTOSO", [7; 8], 1).unwrap();
    for msg in [
        &b""[..],
        b"NTLMSSP\0",
        c.challenge(),
        b"garbage garbage garbage",
    ] {
        assert!(ServerHandshake::start(msg, "CONTOSO", [7; 8], 1).is_none());
    }
}

/// The AUTHENTICATE of MS-NLMP 4.2.4 (NTLMv2), built from its printed values.
fn authenticate_4_2_4() -> Vec<u8> {
    let mut temp = hex("0101000000000000"); // RespType, HiRespType, reserved
    temp.extend_from_slice(&[0; 8]); // Time
    temp.extend_from_slice(&[0xaa; 8]); // ClientChallenge
    temp.extend_from_slice(&[0; 4]);
    av_pair(&mut temp, 2, &utf16("Domain"));
    av_pair(&mut temp, 1, &utf16("Server"));
    av_pair(&mut temp, 0, &[]);
    temp.extend_from_slice(&[0; 4]);
    let mut nt_response = hex("68cd0ab851e51c96aabc927bebef6a1c"); // 4.2.4.2.2 NTProofStr
    nt_response.extend_from_slice(&temp);
    build_authenticate(&AuthenticateParts {
        domain: "Domain",
        user: "User",
        workstation: "COMPUTER",
        unicode: true,
        lm_response: &hex("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"),
        nt_response: &nt_response,
        session_key: &hex("c5dad2544fc9799094ce1ce90bc9d03e"), // 4.2.4.2.3
    })
}

#[test]
fn the_ms_nlmp_4_2_4_exchange_verifies_and_exports_its_random_session_key() {
    let handshake = ServerHandshake {
        negotiate: build_negotiate(),
        challenge: Vec::new(),
        server_challenge: hex("0123456789abcdef").try_into().unwrap(),
    };
    let auth = authenticate_4_2_4();
    let session = handshake
        .finish(&auth, "Domain", "User", "Password")
        .unwrap();
    // The exported key is the example's RandomSessionKey: the session signs exactly as
    // one built on it does.
    let flags = read_u32(&auth, 60).unwrap();
    let expected = Session::new(flags, [0x55; 16], false);
    assert_eq!(
        session.server_signature(b"mechTypes"),
        expected.server_signature(b"mechTypes")
    );
    assert!(
        handshake
            .finish(&auth, "Domain", "User", "password")
            .is_none()
    );
}

/// An AUTHENTICATE as Windows and pyspnego send it after a challenge with a timestamp:
/// MsvAvFlags with the MIC bit, an exchanged session key, and the MIC over all three
/// messages.
fn authenticate_with_mic(handshake: &ServerHandshake, tamper: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let (server_challenge, info) = parse_challenge(handshake.challenge()).unwrap();
    let mut blob = hex("0101000000000000");
    blob.extend_from_slice(&1u64.to_le_bytes());
    blob.extend_from_slice(&[0xaa; 8]);
    blob.extend_from_slice(&[0; 4]);
    av_pair(&mut blob, 6, &AV_FLAG_MIC.to_le_bytes());
    blob.extend_from_slice(&info);
    blob.extend_from_slice(&[0; 4]);
    let key = ntowf_v2("Lab-Passw0rd-02", "user02", "CONTOSO");
    let proof = hmac_md5(&key, &[&server_challenge, &blob]);
    let exported = [0x42; 16];
    let mut nt_response = proof.to_vec();
    nt_response.extend_from_slice(&blob);
    let mut auth = build_authenticate(&AuthenticateParts {
        domain: "CONTOSO",
        user: "user02",
        workstation: "WS",
        unicode: true,
        lm_response: &[0; 24],
        nt_response: &nt_response,
        session_key: &security::rc4k(&hmac_md5(&key, &[&proof]), &exported),
    });
    let mic = hmac_md5(
        &exported,
        &[&handshake.negotiate, handshake.challenge(), &auth],
    );
    auth[MIC_RANGE].copy_from_slice(&mic);
    tamper(&mut auth);
    auth
}

#[test]
fn a_mic_is_checked_against_all_three_messages() {
    let handshake =
        ServerHandshake::start(&negotiate_with(0xe208_8237), "CONTOSO", [3; 8], 1).unwrap();
    let finish = |auth: &[u8]| handshake.finish(auth, "CONTOSO", "user02", "Lab-Passw0rd-02");

    let session = finish(&authenticate_with_mic(&handshake, |_| ())).unwrap();
    assert!(session.mic_present());
    assert!(finish(&authenticate_with_mic(&handshake, |a| a[80] ^= 1)).is_none());
    // The workstation name is outside the NTLMv2 proof but inside the MIC.
    let renamed = authenticate_with_mic(&handshake, |a| {
        let n = a.len();
        a[n - 20] ^= 0x20;
    });
    assert!(finish(&renamed).is_none());
    // The NEGOTIATE the server saw is covered too (a downgrade in flight shows).
    let mut downgraded = handshake.clone();
    downgraded.negotiate = negotiate_with(0x0008_8206);
    let auth = authenticate_with_mic(&handshake, |_| ());
    assert!(
        downgraded
            .finish(&auth, "CONTOSO", "user02", "Lab-Passw0rd-02")
            .is_none()
    );
}

#[test]
fn key_exchange_without_a_16_byte_key_is_refused() {
    let handshake = ServerHandshake::start(&build_negotiate(), "CONTOSO", [1; 8], 0).unwrap();
    let t3 = build_response(handshake.challenge(), "CONTOSO", "u", "p", [9; 8], 0).unwrap();
    // Cut the EncryptedRandomSessionKey field (offset 52) to 15 bytes.
    let mut short = t3.clone();
    short[52..54].copy_from_slice(&15u16.to_le_bytes());
    assert!(handshake.finish(&t3, "CONTOSO", "u", "p").is_some());
    assert!(handshake.finish(&short, "CONTOSO", "u", "p").is_none());
}
