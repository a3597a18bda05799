//! Real NTLMv2 for the lab (MS-NLMP 3.3.2): the mock Exchange's server side (a CHALLENGE
//! answering the client's NEGOTIATE as Windows does, then an AUTHENTICATE checked against
//! the lab user's password, its MIC included, leaving the session keys of [`security`])
//! and the client side the walkthrough and the load generator use. MD4, MD5, HMAC-MD5 and
//! RC4 come from RustCrypto.

pub mod security;

use hmac::{Hmac, KeyInit, Mac};
use md4::{Digest, Md4};
use md5::Md5;

use crate::auth::ntlm::{AuthenticateParts, SIGNATURE, build_authenticate};
pub use security::Session;

const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_SIGN: u32 = 0x0000_0010;
const NEGOTIATE_SEAL: u32 = 0x0000_0020;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_VERSION: u32 = 0x0200_0000;
const NEGOTIATE_128: u32 = 0x2000_0000;
const NEGOTIATE_KEY_EXCH: u32 = 0x4000_0000;
const NEGOTIATE_56: u32 = 0x8000_0000;

/// What the lab's server always sets in a CHALLENGE: Unicode, NTLMv2 with extended
/// session security, a domain target with its TargetInfo, and a version.
const CHALLENGE_FLAGS: u32 = NEGOTIATE_UNICODE
    | REQUEST_TARGET
    | NEGOTIATE_NTLM
    | TARGET_TYPE_DOMAIN
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_TARGET_INFO
    | NEGOTIATE_VERSION;
/// The client's requests the server grants when asked, as Windows does (MS-NLMP
/// 3.2.5.1.1): signing and sealing, key exchange and key strength.
const GRANTED_ON_REQUEST: u32 = NEGOTIATE_SIGN
    | NEGOTIATE_SEAL
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_128
    | NEGOTIATE_KEY_EXCH
    | NEGOTIATE_56;

/// The lab server's NetBIOS and DNS names, as a Windows server lists them in TargetInfo.
const COMPUTER: &str = "LAB-EXCH01";
const DNS_DOMAIN: &str = "contoso.com";
const DNS_COMPUTER: &str = "lab-exch01.contoso.com";

/// MsvAvFlags bit: the AUTHENTICATE message carries a MIC (MS-NLMP 2.2.2.1).
const AV_FLAG_MIC: u32 = 0x0000_0002;
/// Where the MIC sits in an AUTHENTICATE message that has a Version (MS-NLMP 2.2.1.3).
const MIC_RANGE: std::ops::Range<usize> = 72..88;

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

/// Now as a Windows FILETIME: 100-nanosecond intervals since 1601-01-01 (MS-DTYP 2.3.3),
/// what a CHALLENGE's MsvAvTimestamp carries.
pub fn filetime_now() -> u64 {
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let hundred_ns = u64::try_from(since_unix.as_nanos() / 100).unwrap_or(u64::MAX);
    hundred_ns.saturating_add(116_444_736_000_000_000)
}

fn av_pair(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(value);
}

/// The AV pairs of a challenge's TargetInfo (MS-NLMP 2.2.2.1), as Windows sends them: the
/// NetBIOS and DNS names of domain and server, then MsvAvTimestamp, whose presence tells
/// clients to protect the AUTHENTICATE message with a MIC.
fn target_info(domain: &str, timestamp: u64) -> Vec<u8> {
    let mut info = Vec::new();
    av_pair(&mut info, 2, &utf16(domain)); // MsvAvNbDomainName
    av_pair(&mut info, 1, &utf16(COMPUTER)); // MsvAvNbComputerName
    av_pair(&mut info, 4, &utf16(DNS_DOMAIN)); // MsvAvDnsDomainName
    av_pair(&mut info, 3, &utf16(DNS_COMPUTER)); // MsvAvDnsComputerName
    av_pair(&mut info, 5, &utf16(DNS_DOMAIN)); // MsvAvDnsTreeName
    av_pair(&mut info, 7, &timestamp.to_le_bytes()); // MsvAvTimestamp
    av_pair(&mut info, 0, &[]); // MsvAvEOL
    info
}

/// A CHALLENGE (Type 2) message for `domain` with `server_challenge` and `flags`.
fn build_challenge(domain: &str, server_challenge: [u8; 8], flags: u32, timestamp: u64) -> Vec<u8> {
    let name = utf16(domain);
    let info = target_info(domain, timestamp);
    let header_len = 56u32;
    let mut m = Vec::with_capacity(56 + name.len() + info.len());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&2u32.to_le_bytes());
    let name_len = u16::try_from(name.len()).unwrap_or(0);
    m.extend_from_slice(&name_len.to_le_bytes());
    m.extend_from_slice(&name_len.to_le_bytes());
    m.extend_from_slice(&header_len.to_le_bytes());
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

/// The server's side of one NTLM handshake (MS-NLMP 3.2.5): the NEGOTIATE it received
/// and the CHALLENGE it answered with, both of which the AUTHENTICATE's MIC covers.
#[derive(Clone, Debug)]
pub struct ServerHandshake {
    negotiate: Vec<u8>,
    challenge: Vec<u8>,
    server_challenge: [u8; 8],
}

impl ServerHandshake {
    /// Answers a NEGOTIATE (Type 1) message: a CHALLENGE granting what the client asked
    /// for among [`GRANTED_ON_REQUEST`]. None when `negotiate` is not a NEGOTIATE message.
    pub fn start(
        negotiate: &[u8],
        domain: &str,
        server_challenge: [u8; 8],
        timestamp: u64,
    ) -> Option<ServerHandshake> {
        if negotiate.get(..8)? != SIGNATURE || read_u32(negotiate, 8)? != 1 {
            return None;
        }
        let requested = read_u32(negotiate, 12)?;
        let flags = CHALLENGE_FLAGS | (requested & GRANTED_ON_REQUEST);
        Some(ServerHandshake {
            negotiate: negotiate.to_vec(),
            challenge: build_challenge(domain, server_challenge, flags, timestamp),
            server_challenge,
        })
    }

    /// A handshake whose NEGOTIATE and CHALLENGE were recorded elsewhere (another
    /// server's), to check the rest of a recorded exchange.
    #[cfg(test)]
    pub(crate) fn replay(negotiate: &[u8], challenge: &[u8]) -> ServerHandshake {
        ServerHandshake {
            negotiate: negotiate.to_vec(),
            challenge: challenge.to_vec(),
            server_challenge: parse_challenge(challenge).expect("a CHALLENGE").0,
        }
    }

    /// The CHALLENGE (Type 2) message to send.
    pub fn challenge(&self) -> &[u8] {
        &self.challenge
    }

    /// Checks an AUTHENTICATE (Type 3) message against `password` (MS-NLMP 3.2.5.1.2):
    /// the NTLMv2 proof, then the MIC when the message says it has one. Returns the
    /// session's keys, or None when anything does not match.
    pub fn finish(
        &self,
        authenticate: &[u8],
        domain: &str,
        user: &str,
        password: &str,
    ) -> Option<Session> {
        let nt = field(authenticate, 20)?;
        if nt.len() < 16 + 28 {
            return None;
        }
        let (proof, blob) = nt.split_at(16);
        let key = ntowf_v2(password, user, domain);
        let expected = hmac_md5(&key, &[&self.server_challenge, blob]);
        // Constant time: this compares a credential proof.
        if !security::constant_time_eq(&expected, proof) {
            return None;
        }
        // NTLMv2: KeyExchangeKey is the SessionBaseKey (MS-NLMP 3.4.5.1).
        let key_exchange_key = hmac_md5(&key, &[proof]);
        let flags = read_u32(authenticate, 60)?;
        let exported_session_key =
            if flags & NEGOTIATE_KEY_EXCH != 0 && flags & (NEGOTIATE_SIGN | NEGOTIATE_SEAL) != 0 {
                let encrypted = field(authenticate, 52).filter(|k| k.len() == 16)?;
                security::rc4k(&key_exchange_key, encrypted)
                    .try_into()
                    .ok()?
            } else {
                key_exchange_key
            };
        let mic_present = av_flags(&blob[28..]) & AV_FLAG_MIC != 0;
        if mic_present {
            let mic = authenticate.get(MIC_RANGE)?;
            let mut zeroed = authenticate.to_vec();
            zeroed[MIC_RANGE].fill(0);
            let expected = hmac_md5(
                &exported_session_key,
                &[&self.negotiate, &self.challenge, &zeroed],
            );
            if !security::constant_time_eq(&expected, mic) {
                return None;
            }
        }
        Some(Session::new(flags, exported_session_key, mic_present))
    }
}

/// The MsvAvFlags value among AV pairs, 0 when absent or malformed.
fn av_flags(mut pairs: &[u8]) -> u32 {
    while pairs.len() >= 4 {
        let id = u16::from_le_bytes([pairs[0], pairs[1]]);
        let len = usize::from(u16::from_le_bytes([pairs[2], pairs[3]]));
        let Some(value) = pairs.get(4..4 + len) else {
            return 0;
        };
        match id {
            0 => return 0, // MsvAvEOL
            6 => return value.try_into().map_or(0, u32::from_le_bytes),
            _ => pairs = &pairs[4 + len..],
        }
    }
    0
}

fn read_u32(msg: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(msg.get(at..at + 4)?.try_into().ok()?))
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
    // build_authenticate asks for key exchange, so the message carries the session key
    // encrypted with the KeyExchangeKey (MS-NLMP 3.1.5.1.2). The lab's clients never sign:
    // a key derived from the proof keeps the message deterministic.
    let key_exchange_key = hmac_md5(&key, &[&proof]);
    let session_key = hmac_md5(&key_exchange_key, &[&client_challenge]);
    Some(build_authenticate(&AuthenticateParts {
        domain,
        user,
        workstation: "LAB-OUTLOOK",
        unicode: true,
        lm_response: &[0; 24],
        nt_response: &nt_response,
        session_key: &security::rc4k(&key_exchange_key, &session_key),
    }))
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
mod tests;
