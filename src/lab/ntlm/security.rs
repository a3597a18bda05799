//! NTLM session security (MS-NLMP 3.4) as far as the mock Exchange needs it: the keys an
//! NTLMv2 handshake leaves both sides with, and the signatures that SPNEGO's mechListMIC
//! is made of (MS-SPNG 3.3.5.1). RC4 comes from RustCrypto's `rc4`.

use md5::{Digest, Md5};
use rc4::{KeyInit, Rc4, StreamCipher};

use super::{
    NEGOTIATE_56, NEGOTIATE_128, NEGOTIATE_ALWAYS_SIGN, NEGOTIATE_EXTENDED_SESSIONSECURITY,
    NEGOTIATE_KEY_EXCH, NEGOTIATE_SIGN, hmac_md5,
};

const CLIENT_SIGNING: &[u8] = b"session key to client-to-server signing key magic constant\0";
const SERVER_SIGNING: &[u8] = b"session key to server-to-client signing key magic constant\0";
const CLIENT_SEALING: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const SERVER_SEALING: &[u8] = b"session key to server-to-client sealing key magic constant\0";

/// RC4K (MS-NLMP 6): RC4 keyed with `key` over `data`, from a fresh key state.
pub fn rc4k(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    Rc4::new_from_slice(key)
        .expect("RC4 takes keys of 1 to 256 bytes")
        .apply_keystream(&mut out);
    out
}

/// The keys one completed NTLM handshake leaves the server with (MS-NLMP 3.2.5.1.2), and
/// the signatures made with them (MS-NLMP 3.4.4.2, extended session security).
#[derive(Clone)]
pub struct Session {
    /// The NegotiateFlags of the AUTHENTICATE message: what both sides agreed on.
    flags: u32,
    exported_session_key: [u8; 16],
    /// The AUTHENTICATE message carried a MIC (MsvAvFlags bit 0x2), which makes SPNEGO's
    /// mechListMIC mandatory for Windows (MS-SPNG Appendix A, note on 3.1.5.1).
    mic_present: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("flags", &format_args!("{:#010x}", self.flags))
            .field("exported_session_key", &"[redacted]")
            .field("mic_present", &self.mic_present)
            .finish()
    }
}

impl Session {
    pub(super) fn new(flags: u32, exported_session_key: [u8; 16], mic_present: bool) -> Session {
        Session {
            flags,
            exported_session_key,
            mic_present,
        }
    }

    /// The AUTHENTICATE message carried a MIC: a SPNEGO server must then exchange
    /// mechListMICs (MS-SPNG Appendix A, note on 3.1.5.1).
    pub fn mic_present(&self) -> bool {
        self.mic_present
    }

    /// Checks the client's signature of `message` as the first message it signed
    /// (sequence number 0, RC4 state fresh: MS-SPNG 3.3.5.1 restores the state after the
    /// mechListMIC, so the mechListMIC is always signed from the initial state).
    pub fn verify_client_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        self.signature(true, message)
            .is_some_and(|expected| constant_time_eq(&expected, signature))
    }

    /// The server's signature of `message` as the first message it signs (sequence
    /// number 0, fresh RC4 state; MS-SPNG 3.3.5.1), or None when the flags agreed on
    /// leave no way to sign (no extended session security, or neither signing flag).
    pub fn server_signature(&self, message: &[u8]) -> Option<[u8; 16]> {
        self.signature(false, message)
    }

    fn signature(&self, client: bool, message: &[u8]) -> Option<[u8; 16]> {
        if self.flags & NEGOTIATE_SIGN == 0 {
            // What Windows' SSPI gives for a context with ALWAYS_SIGN only: version 1 and
            // nothing else. Without even that, signing is not available.
            return (self.flags & NEGOTIATE_ALWAYS_SIGN != 0).then(|| {
                let mut dummy = [0; 16];
                dummy[0] = 1;
                dummy
            });
        }
        if self.flags & NEGOTIATE_EXTENDED_SESSIONSECURITY == 0 {
            return None; // NTLMv1 session security (MS-NLMP 3.4.4.1): not offered by the lab
        }
        let sign_key = sign_key(&self.exported_session_key, client);
        let mut handle =
            Rc4::new_from_slice(&seal_key(self.flags, &self.exported_session_key, client))
                .expect("a 16-byte RC4 key");
        Some(mac(self.flags, &mut handle, &sign_key, 0, message))
    }
}

/// SIGNKEY (MS-NLMP 3.4.5.2), extended session security.
fn sign_key(exported_session_key: &[u8; 16], client: bool) -> [u8; 16] {
    let magic = if client {
        CLIENT_SIGNING
    } else {
        SERVER_SIGNING
    };
    Md5::new()
        .chain_update(exported_session_key)
        .chain_update(magic)
        .finalize()
        .into()
}

/// SEALKEY (MS-NLMP 3.4.5.3), extended session security: the key of the RC4 handle that
/// encrypts checksums, from 128, 56 or 40 bits of the session key.
fn seal_key(flags: u32, exported_session_key: &[u8; 16], client: bool) -> [u8; 16] {
    let bits = if flags & NEGOTIATE_128 != 0 {
        &exported_session_key[..]
    } else if flags & NEGOTIATE_56 != 0 {
        &exported_session_key[..7]
    } else {
        &exported_session_key[..5]
    };
    let magic = if client {
        CLIENT_SEALING
    } else {
        SERVER_SEALING
    };
    Md5::new()
        .chain_update(bits)
        .chain_update(magic)
        .finalize()
        .into()
}

/// MAC (MS-NLMP 3.4.4.2, extended session security): version 1, the first eight bytes of
/// HMAC-MD5(SigningKey, SeqNum ‖ Message) — RC4-encrypted with `handle` when keys were
/// exchanged — and the sequence number.
fn mac(flags: u32, handle: &mut Rc4, sign_key: &[u8; 16], seq: u32, message: &[u8]) -> [u8; 16] {
    let digest = hmac_md5(sign_key, &[&seq.to_le_bytes(), message]);
    let mut checksum: [u8; 8] = digest[..8].try_into().expect("8 of 16 bytes");
    if flags & NEGOTIATE_KEY_EXCH != 0 {
        handle.apply_keystream(&mut checksum);
    }
    let mut signature = [0; 16];
    signature[..4].copy_from_slice(&1u32.to_le_bytes());
    signature[4..12].copy_from_slice(&checksum);
    signature[12..].copy_from_slice(&seq.to_le_bytes());
    signature
}

/// Compares two secrets-derived values without an early exit.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// MS-NLMP 4.2.4: the NTLMv2 example's flags (KEY_EXCH, 56, 128, VERSION,
    /// TARGET_INFO, EXTENDED_SESSIONSECURITY, TARGET_TYPE_SERVER, ALWAYS_SIGN, NTLM, SEAL,
    /// SIGN, OEM, UNICODE) and its RandomSessionKey.
    const FLAGS_4_2_4: u32 = 0xe28a_8233;
    const SESSION_KEY_4_2_4: [u8; 16] = [0x55; 16];

    #[test]
    fn key_exchange_matches_ms_nlmp_4_2_4_2_3() {
        // RC4K(SessionBaseKey, RandomSessionKey) is the EncryptedRandomSessionKey.
        let session_base_key = hex("8de40ccadbc14a82f15cb0ad0de95ca3");
        assert_eq!(
            rc4k(&session_base_key, &SESSION_KEY_4_2_4),
            hex("c5dad2544fc9799094ce1ce90bc9d03e")
        );
    }

    #[test]
    fn keys_and_sealed_signatures_match_ms_nlmp_4_2_4_4() {
        let plaintext: Vec<u8> = utf16le("Plaintext");
        // Client to server, as printed in MS-NLMP 4.2.4.4.
        assert_eq!(
            sign_key(&SESSION_KEY_4_2_4, true).to_vec(),
            hex("4788dc861b4782f35d43fd98fe1a2d39")
        );
        let seal = seal_key(FLAGS_4_2_4, &SESSION_KEY_4_2_4, true);
        assert_eq!(seal.to_vec(), hex("59f600973cc4960a25480a7c196e4c58"));
        // GSS_WrapEx seals the message, then encrypts the checksum with the same handle.
        let mut handle = Rc4::new_from_slice(&seal).unwrap();
        let mut sealed = plaintext.clone();
        handle.apply_keystream(&mut sealed);
        assert_eq!(sealed, hex("54e50165bf1936dc996020c1811b0f06fb5f"));
        let sign = sign_key(&SESSION_KEY_4_2_4, true);
        assert_eq!(
            mac(FLAGS_4_2_4, &mut handle, &sign, 0, &plaintext).to_vec(),
            hex("010000007fb38ec5c55d497600000000")
        );
        // Server to client: the same example with the server's keys.
        let mut handle =
            Rc4::new_from_slice(&seal_key(FLAGS_4_2_4, &SESSION_KEY_4_2_4, false)).unwrap();
        let mut sealed = plaintext.clone();
        handle.apply_keystream(&mut sealed);
        assert_eq!(sealed, hex("160871b730ba74e946c453d7465b54278dd0"));
        let sign = sign_key(&SESSION_KEY_4_2_4, false);
        assert_eq!(
            mac(FLAGS_4_2_4, &mut handle, &sign, 0, &plaintext).to_vec(),
            hex("01000000b298b847ce7c580700000000")
        );
    }

    #[test]
    fn a_signature_is_the_first_message_signed_and_checks_on_the_other_side() {
        let session = Session::new(FLAGS_4_2_4, SESSION_KEY_4_2_4, true);
        let sig = session.server_signature(b"mechTypes").unwrap();
        assert_eq!((&sig[..4], &sig[12..]), (&[1, 0, 0, 0][..], &[0; 4][..]));
        // The client's signature of the same bytes differs (other keys), and only the
        // client's is accepted as the client's.
        let mut handle =
            Rc4::new_from_slice(&seal_key(FLAGS_4_2_4, &SESSION_KEY_4_2_4, true)).unwrap();
        let client = mac(
            FLAGS_4_2_4,
            &mut handle,
            &sign_key(&SESSION_KEY_4_2_4, true),
            0,
            b"mechTypes",
        );
        assert_ne!(client, sig);
        assert!(session.verify_client_signature(b"mechTypes", &client));
        assert!(!session.verify_client_signature(b"mechTypes", &sig));
        assert!(!session.verify_client_signature(b"mechtypes", &client));
        assert!(!session.verify_client_signature(b"mechTypes", &client[..15]));
    }

    #[test]
    fn without_key_exchange_the_checksum_is_not_encrypted() {
        let flags = NEGOTIATE_SIGN | NEGOTIATE_EXTENDED_SESSIONSECURITY | NEGOTIATE_128;
        let session = Session::new(flags, SESSION_KEY_4_2_4, false);
        let sig = session.server_signature(b"m").unwrap();
        let digest = hmac_md5(&sign_key(&SESSION_KEY_4_2_4, false), &[&[0; 4], b"m"]);
        assert_eq!(sig[4..12], digest[..8]);
    }

    #[test]
    fn without_signing_only_always_sign_gives_its_placeholder() {
        let always = Session::new(NEGOTIATE_ALWAYS_SIGN, SESSION_KEY_4_2_4, false);
        let mut placeholder = [0; 16];
        placeholder[0] = 1;
        assert_eq!(always.server_signature(b"m"), Some(placeholder));
        assert_eq!(
            Session::new(0, SESSION_KEY_4_2_4, false).server_signature(b"m"),
            None
        );
        let v1 = Session::new(NEGOTIATE_SIGN, SESSION_KEY_4_2_4, false);
        assert_eq!(v1.server_signature(b"m"), None);
    }

    #[test]
    fn debug_hides_the_session_key() {
        let text = format!("{:?}", Session::new(FLAGS_4_2_4, SESSION_KEY_4_2_4, true));
        assert!(
            text.contains("[redacted]") && !text.contains("85"),
            "{text}"
        );
    }

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }
}
