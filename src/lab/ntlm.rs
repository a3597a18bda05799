//! Real NTLMv2 for the lab (MS-NLMP 3.3.2): the mock Exchange's server side (a Type 2
//! challenge, then a Type 3 checked against the lab user's password) and the client side
//! the walkthrough and the load generator use. MD4 and HMAC-MD5 come from RustCrypto.

use hmac::{Hmac, KeyInit, Mac};
use md4::{Digest, Md4};
use md5::Md5;

use crate::auth::ntlm::{AuthenticateParts, SIGNATURE, build_authenticate};

const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_VERSION: u32 = 0x0200_0000;

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// NTOWFv2 (MS-NLMP 3.3.2): HMAC-MD5 keyed with the NT hash (MD4 of the UTF-16LE
/// password) over the upper-cased user and the domain.
pub fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let nt_hash: [u8; 16] = Md4::digest(utf16(password)).into();
    hmac_md5(
        &nt_hash,
        &[&utf16(&format!("{}{domain}", user.to_uppercase()))],
    )
}

/// The AV pairs of a challenge's TargetInfo: the NetBIOS domain name, then MsvAvEOL.
fn target_info(domain: &str) -> Vec<u8> {
    let name = utf16(domain);
    let mut info = Vec::new();
    info.extend_from_slice(&2u16.to_le_bytes()); // MsvAvNbDomainName
    info.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_le_bytes());
    info.extend_from_slice(&name);
    info.extend_from_slice(&[0, 0, 0, 0]); // MsvAvEOL
    info
}

/// A CHALLENGE (Type 2) message for `domain` with `server_challenge`.
pub fn build_challenge(domain: &str, server_challenge: [u8; 8]) -> Vec<u8> {
    let name = utf16(domain);
    let info = target_info(domain);
    let header_len = 56u32;
    let mut m = Vec::with_capacity(56 + name.len() + info.len());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&2u32.to_le_bytes());
    let name_len = u16::try_from(name.len()).unwrap_or(0);
    m.extend_from_slice(&name_len.to_le_bytes());
    m.extend_from_slice(&name_len.to_le_bytes());
    m.extend_from_slice(&header_len.to_le_bytes());
    let flags = NEGOTIATE_UNICODE
        | REQUEST_TARGET
        | NEGOTIATE_NTLM
        | TARGET_TYPE_DOMAIN
        | NEGOTIATE_EXTENDED_SESSIONSECURITY
        | NEGOTIATE_TARGET_INFO
        | NEGOTIATE_VERSION;
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&server_challenge);
    m.extend_from_slice(&[0; 8]); // reserved
    let info_len = u16::try_from(info.len()).unwrap_or(0);
    m.extend_from_slice(&info_len.to_le_bytes());
    m.extend_from_slice(&info_len.to_le_bytes());
    m.extend_from_slice(&(header_len + u32::from(name_len)).to_le_bytes());
    m.extend_from_slice(&[10, 0, 0x61, 0x4a, 0, 0, 0, 0x0f]); // version
    m.extend_from_slice(&name);
    m.extend_from_slice(&info);
    m
}

/// The server challenge and target info of a CHALLENGE message.
pub fn parse_challenge(msg: &[u8]) -> Option<([u8; 8], Vec<u8>)> {
    if msg.len() < 48 || &msg[..8] != SIGNATURE || msg[8..12] != 2u32.to_le_bytes() {
        return None;
    }
    let challenge: [u8; 8] = msg[24..32].try_into().ok()?;
    let len = usize::from(u16::from_le_bytes(msg[40..42].try_into().ok()?));
    let offset = usize::try_from(u32::from_le_bytes(msg[44..48].try_into().ok()?)).ok()?;
    let info = msg.get(offset..offset.checked_add(len)?)?.to_vec();
    Some((challenge, info))
}

/// An AUTHENTICATE (Type 3) message answering a challenge with an NTLMv2 response.
pub fn build_response(
    challenge: &[u8],
    domain: &str,
    user: &str,
    password: &str,
    client_challenge: [u8; 8],
    timestamp: u64,
) -> Option<Vec<u8>> {
    let (server_challenge, info) = parse_challenge(challenge)?;
    let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
    blob.extend_from_slice(&timestamp.to_le_bytes());
    blob.extend_from_slice(&client_challenge);
    blob.extend_from_slice(&[0; 4]);
    blob.extend_from_slice(&info);
    blob.extend_from_slice(&[0; 4]);
    let key = ntowf_v2(password, user, domain);
    let proof = hmac_md5(&key, &[&server_challenge, &blob]);
    let mut nt_response = proof.to_vec();
    nt_response.extend_from_slice(&blob);
    Some(build_authenticate(&AuthenticateParts {
        domain,
        user,
        workstation: "LAB-OUTLOOK",
        unicode: true,
        lm_response: &[0; 24],
        nt_response: &nt_response,
        session_key: &[],
    }))
}

/// Checks an AUTHENTICATE message's NTLMv2 response against `password`: the server's
/// side of the handshake.
pub fn verify_response(
    authenticate: &[u8],
    server_challenge: [u8; 8],
    domain: &str,
    user: &str,
    password: &str,
) -> bool {
    let Some(nt) = field(authenticate, 20) else {
        return false;
    };
    if nt.len() < 16 + 28 {
        return false;
    }
    let (proof, blob) = nt.split_at(16);
    let key = ntowf_v2(password, user, domain);
    let expected = hmac_md5(&key, &[&server_challenge, blob]);
    // Constant time: this compares a credential proof.
    expected
        .iter()
        .zip(proof)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

fn field(msg: &[u8], at: usize) -> Option<&[u8]> {
    let len = usize::from(u16::from_le_bytes(msg.get(at..at + 2)?.try_into().ok()?));
    let offset = usize::try_from(u32::from_le_bytes(
        msg.get(at + 4..at + 8)?.try_into().ok()?,
    ))
    .ok()?;
    msg.get(offset..offset.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ntlm::{NtlmMessage, parse};

    #[test]
    fn ntowfv2_matches_the_ms_nlmp_test_vector() {
        // MS-NLMP 4.2.4.1.1: User "User", UserDom "Domain", Password "Password".
        let key = ntowf_v2("Password", "User", "Domain");
        assert_eq!(
            key,
            [
                0x0c, 0x86, 0x8a, 0x40, 0x3b, 0xfd, 0x7a, 0x93, 0xa3, 0x00, 0x1e, 0xf2, 0x2e, 0xf0,
                0x2e, 0x3f
            ]
        );
    }

    #[test]
    fn a_response_with_the_right_password_verifies_and_a_wrong_one_does_not() {
        let server_challenge = [1, 2, 3, 4, 5, 6, 7, 8];
        let challenge = build_challenge("CONTOSO", server_challenge);
        let t3 = build_response(
            &challenge,
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
        assert!(verify_response(
            &t3,
            server_challenge,
            "CONTOSO",
            "user01",
            "Passw0rd!"
        ));
        assert!(!verify_response(
            &t3,
            server_challenge,
            "CONTOSO",
            "user01",
            "wrong"
        ));
        assert!(!verify_response(
            &t3,
            [0; 8],
            "CONTOSO",
            "user01",
            "Passw0rd!"
        ));
        assert!(!verify_response(
            b"garbage",
            server_challenge,
            "CONTOSO",
            "user01",
            "Passw0rd!"
        ));
    }

    #[test]
    fn the_challenge_parses_back() {
        let c = build_challenge("CONTOSO", [7; 8]);
        assert_eq!(parse(&c), NtlmMessage::Challenge);
        let (sc, info) = parse_challenge(&c).unwrap();
        assert_eq!(sc, [7; 8]);
        assert_eq!(info, target_info("CONTOSO"));
    }
}
