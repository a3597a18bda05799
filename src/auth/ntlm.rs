//! NTLM messages (MS-NLMP 2.2.1): the message type, and from an AUTHENTICATE (Type 3)
//! message the domain and user, which is the first point at which the proxy knows who is
//! authenticating. Every length and offset is checked against the buffer.

use std::borrow::Cow;

/// `NTLMSSP\0`, the signature every NTLM message starts with.
pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const NEGOTIATE_OEM: u32 = 0x0000_0002;
const NEGOTIATE_ANONYMOUS: u32 = 0x0000_0800;
/// Type 3 header up to and including NegotiateFlags.
const AUTHENTICATE_HEADER_LEN: usize = 64;

/// Which NTLM message a header carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NtlmMessage {
    /// Type 1, NEGOTIATE: the handshake starts; no user yet.
    Negotiate,
    /// Type 2, CHALLENGE: a server message, never valid from a client.
    Challenge,
    /// Type 3, AUTHENTICATE: carries the user.
    Authenticate(NtlmIdentity),
    /// Not an NTLM message, or one whose fields point outside it.
    Malformed,
}

/// Who an AUTHENTICATE message claims to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NtlmIdentity {
    pub domain: String,
    pub user: String,
    /// The anonymous flag was set: a null session, no user.
    pub anonymous: bool,
}

impl NtlmIdentity {
    /// The name in the form the user directory understands: `DOMAIN\user`, or the bare
    /// user (often a UPN) when the domain is empty. None for anonymous or empty users.
    pub fn presented_name(&self) -> Option<Cow<'_, str>> {
        if self.anonymous || self.user.is_empty() {
            None
        } else if self.domain.is_empty() {
            Some(Cow::Borrowed(&self.user))
        } else {
            Some(Cow::Owned(format!("{}\\{}", self.domain, self.user)))
        }
    }
}

/// Parses a decoded NTLM message.
pub fn parse(msg: &[u8]) -> NtlmMessage {
    if msg.len() < 12 || &msg[..8] != SIGNATURE {
        return NtlmMessage::Malformed;
    }
    match read_u32(msg, 8) {
        Some(1) => NtlmMessage::Negotiate,
        Some(2) => NtlmMessage::Challenge,
        Some(3) => parse_authenticate(msg).unwrap_or(NtlmMessage::Malformed),
        _ => NtlmMessage::Malformed,
    }
}

fn parse_authenticate(msg: &[u8]) -> Option<NtlmMessage> {
    if msg.len() < AUTHENTICATE_HEADER_LEN {
        return None;
    }
    let flags = read_u32(msg, 60)?;
    let unicode = flags & NEGOTIATE_UNICODE != 0;
    let domain = decode_string(field(msg, 28)?, unicode)?;
    let user = decode_string(field(msg, 36)?, unicode)?;
    let nt_response = field(msg, 20)?;
    let lm_response = field(msg, 12)?;
    let anonymous = flags & NEGOTIATE_ANONYMOUS != 0
        || (user.is_empty() && nt_response.is_empty() && lm_response.len() <= 1);
    Some(NtlmMessage::Authenticate(NtlmIdentity {
        domain,
        user,
        anonymous,
    }))
}

/// Reads the `{Len u16, MaxLen u16, Offset u32}` field descriptor at `at` and returns the
/// bytes it points to, or None if they are not all inside the message.
fn field(msg: &[u8], at: usize) -> Option<&[u8]> {
    let len = usize::from(u16::from_le_bytes(msg.get(at..at + 2)?.try_into().ok()?));
    let offset = usize::try_from(read_u32(msg, at + 4)?).ok()?;
    msg.get(offset..offset.checked_add(len)?)
}

fn read_u32(msg: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(msg.get(at..at + 4)?.try_into().ok()?))
}

/// UTF-16LE when the Unicode flag is set (an odd length is malformed), else OEM code
/// page 437, which is what Windows clients in Western locales send.
fn decode_string(bytes: &[u8], unicode: bool) -> Option<String> {
    if unicode {
        if !bytes.len().is_multiple_of(2) {
            return None;
        }
        let units = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        Some(
            char::decode_utf16(units)
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect(),
        )
    } else {
        Some(bytes.iter().map(|&b| oem_char(b)).collect())
    }
}

/// Code page 437 above 0x7f, in order from 0x80.
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

fn oem_char(b: u8) -> char {
    if b.is_ascii() {
        char::from(b)
    } else {
        CP437_HIGH
            .chars()
            .nth(usize::from(b - 0x80))
            .unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

/// A NEGOTIATE (Type 1) message with the usual flags, as Windows clients send it.
/// For tests, benchmarks and the lab's clients.
pub fn build_negotiate() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&0xe208_8297u32.to_le_bytes());
    m.extend_from_slice(&[0; 16]); // empty domain and workstation fields
    m.extend_from_slice(&[10, 0, 0x61, 0x4a, 0, 0, 0, 0x0f]); // version
    m
}

/// The strings and responses of an AUTHENTICATE (Type 3) message to build.
#[derive(Clone, Debug)]
pub struct AuthenticateParts<'a> {
    pub domain: &'a str,
    pub user: &'a str,
    pub workstation: &'a str,
    /// Encode the strings as UTF-16LE (the Unicode flag) or as OEM (ASCII only here).
    pub unicode: bool,
    pub lm_response: &'a [u8],
    pub nt_response: &'a [u8],
    pub session_key: &'a [u8],
}

/// An AUTHENTICATE (Type 3) message with Version and MIC, payload after the 88-byte
/// header. For tests, benchmarks and the lab's clients.
pub fn build_authenticate(parts: &AuthenticateParts<'_>) -> Vec<u8> {
    let encode = |s: &str| -> Vec<u8> {
        if parts.unicode {
            s.encode_utf16().flat_map(u16::to_le_bytes).collect()
        } else {
            s.bytes().collect()
        }
    };
    let payloads = [
        parts.lm_response.to_vec(),
        parts.nt_response.to_vec(),
        encode(parts.domain),
        encode(parts.user),
        encode(parts.workstation),
        parts.session_key.to_vec(),
    ];
    let mut header = Vec::with_capacity(88);
    header.extend_from_slice(SIGNATURE);
    header.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = 88u32;
    let mut body = Vec::new();
    for p in &payloads {
        let len = u16::try_from(p.len()).expect("NTLM field longer than 65535 bytes");
        header.extend_from_slice(&len.to_le_bytes());
        header.extend_from_slice(&len.to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offset += u32::from(len);
        body.extend_from_slice(p);
    }
    let charset = if parts.unicode {
        NEGOTIATE_UNICODE
    } else {
        NEGOTIATE_OEM
    };
    header.extend_from_slice(&(0xe288_8214u32 | charset).to_le_bytes());
    header.extend_from_slice(&[10, 0, 0x61, 0x4a, 0, 0, 0, 0x0f]); // version
    header.extend_from_slice(&[0; 16]); // MIC
    header.extend_from_slice(&body);
    header
}

#[cfg(test)]
#[path = "ntlm_tests.rs"]
mod tests;
