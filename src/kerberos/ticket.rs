//! Reading the client out of a Kerberos AP-REQ's ticket (RFC 4120 §5.3, §5.5.1) with the
//! service's keys. Every input byte is the client's; nothing here trusts a length, a
//! count or a type it reads.

use picky_asn1::date::Date;
use picky_asn1::wrapper::IntegerAsn1;
use picky_krb::crypto::CipherSuite;
use picky_krb::data_types::{EncTicketPart, PrincipalName, Ticket};
use picky_krb::messages::ApReq;

use kerberos_crypto::KerberosCipher as _;

use super::keytab::{Keytab, KeytabEntry, etype};
use crate::auth::der;

/// The key usage of a ticket's `enc-part` (RFC 4120 §7.5.1: 2, "AS-REP Ticket and
/// TGS-REP Ticket ... encrypted with the service key").
const KEY_USAGE_TICKET: i32 = 2;

/// How deep DER may nest before it is handed to `picky-asn1-der`: an AP-REQ's principal
/// names sit 10 levels down, an `EncTicketPart`'s authorization data 7.
const MAX_DER_DEPTH: usize = 24;

/// The largest AP-REQ read: Windows caps a whole Kerberos token at `MaxTokenSize`, 48,000
/// bytes by default (a ticket carrying a PAC of many groups). A bigger one is malformed,
/// so that no request makes exgate decrypt more than this, whatever the header limit.
pub const MAX_AP_REQ_BYTES: usize = 64 * 1024;

/// At most this many keys are tried on one ticket: a keytab rarely holds more than a few
/// keys of one type and version, and a ticket that opens with none must not cost more.
const MAX_KEYS_TRIED: usize = 8;

/// The client a ticket names, and until when the ticket is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketClient {
    /// `cname@crealm`: `user01@CONTOSO.COM`, the name the directory looks up (SPEC §3:
    /// the realm is a UPN domain or a NetBIOS domain).
    pub principal: String,
    /// The ticket's `endtime`, Unix seconds.
    pub endtime: u64,
    /// The ticket's encryption type ([`etype`]).
    pub etype: i32,
}

/// Why a ticket names nobody exgate can trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// The AP-REQ, its ticket, or the decrypted `EncTicketPart` is not valid DER of the
    /// expected shape.
    #[error("malformed AP-REQ or ticket")]
    Malformed,
    /// The keytab holds no key of the ticket's encryption type and key version (an old
    /// key version, another service, an encryption type exgate does not decrypt).
    #[error("no key in the keytab for the ticket's encryption type and key version")]
    NoKey,
    /// No key of that type and version decrypted the ticket with a valid checksum: the
    /// ticket was made for another service, or tampered with.
    #[error("the ticket does not decrypt with the keytab's keys")]
    Integrity,
    /// The client is not a plain user principal (several components, an enterprise
    /// name, blanks or separators): nobody exgate can map with certainty.
    #[error("the ticket's client is not a plain user principal")]
    UnusualName,
    /// The ticket ended (`endtime`) more than the Kerberos clock skew ago: Exchange
    /// refuses it, and exgate names nobody with it.
    #[error("the ticket has ended")]
    Expired,
}

impl TicketError {
    /// The `outcome` label of `exgate_kerberos_tickets_total`.
    pub fn label(self) -> &'static str {
        match self {
            TicketError::Malformed => "malformed",
            TicketError::NoKey => "no_key",
            TicketError::Integrity => "integrity",
            TicketError::UnusualName => "unusual_name",
            TicketError::Expired => "expired",
        }
    }
}

/// The DER of the ticket inside an AP-REQ (`[APPLICATION 14] SEQUENCE { …, [3] Ticket,
/// … }`), located without decoding anything else: the cache key.
pub fn ticket_der(ap_req: &[u8]) -> Option<&[u8]> {
    let (app, _) = der::read(ap_req).filter(|(t, _)| t.tag == 0x6e)?;
    let (seq, _) = der::read(app.content).filter(|(t, _)| t.tag == 0x30)?;
    let field = der::children(seq.content).find(|f| f.tag == 0xa3)?;
    let (_, after) = der::read(field.content).filter(|(t, _)| t.tag == 0x61)?;
    Some(&field.content[..field.content.len() - after.len()])
}

/// Decodes the AP-REQ, finds the keys for its ticket, decrypts the ticket's `enc-part`
/// and reads `cname`, `crealm` and `endtime`.
///
/// Keys tried: those of the ticket's encryption type and key version (any version when
/// the ticket names none), those of the ticket's service principal first, then the other
/// principals' (as Windows does: a ticket for any SPN of the Exchange service account is
/// encrypted with that account's one key). The first key whose checksum verifies wins.
pub fn read_client(keytab: &Keytab, ap_req: &[u8]) -> Result<TicketClient, TicketError> {
    if ap_req.len() > MAX_AP_REQ_BYTES {
        return Err(TicketError::Malformed);
    }
    let ap_req: ApReq = decode(ap_req)?;
    let ticket: &Ticket = &ap_req.0.ticket.0;
    let ticket = &ticket.0;
    let enc = &ticket.enc_part.0;
    let etype = small_int(&enc.etype.0).ok_or(TicketError::Malformed)?;
    let kvno = match &enc.kvno.0 {
        Some(k) => Some(small_int(&k.0).ok_or(TicketError::Malformed)?),
        None => None,
    };
    let realm = ticket.realm.0.0.as_utf8();
    let sname = names(&ticket.sname.0);
    let mut candidates: Vec<&KeytabEntry> = keytab
        .entries
        .iter()
        .filter(|e| {
            i64::from(e.etype) == etype
                && etype::supported(e.etype)
                && kvno.is_none_or(|k| i64::from(e.kvno) == k)
        })
        .collect();
    if candidates.is_empty() {
        return Err(TicketError::NoKey);
    }
    // Stable: the service's own keys first, newest version first.
    candidates.sort_by_key(|e| (!e.principal.matches(&sname, realm), u32::MAX - e.kvno));
    let cipher = enc.cipher.0.as_ref();
    let plain = candidates
        .iter()
        .take(MAX_KEYS_TRIED)
        .find_map(|e| decrypt(e, cipher))
        .ok_or(TicketError::Integrity)?;
    let part: EncTicketPart = decode(&plain)?;
    let part = &part.0;
    let cname = names(&part.cname.0);
    let crealm = part.crealm.0.0.as_utf8();
    let principal = match cname.as_slice() {
        [name] if plain_name(name) && plain_name(crealm) => format!("{name}@{crealm}"),
        _ => return Err(TicketError::UnusualName),
    };
    Ok(TicketClient {
        principal,
        endtime: unix_seconds(&part.endtime.0.0).ok_or(TicketError::Malformed)?,
        etype: etype as i32,
    })
}

/// Decodes DER with `picky-asn1-der`, only once exgate's own reader found it well formed
/// ([`der::well_formed`]), and fails closed should the decoder panic all the same: a
/// ticket is the client's bytes, and the decoder is not exgate's.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, TicketError> {
    if !der::well_formed(bytes, MAX_DER_DEPTH) {
        return Err(TicketError::Malformed);
    }
    std::panic::catch_unwind(|| picky_asn1_der::from_bytes(bytes))
        .map_err(|_| TicketError::Malformed)?
        .map_err(|_| TicketError::Malformed)
}

/// A user's principal is one name component (RFC 4120 §6.2, `NT-PRINCIPAL`): a
/// service's or instance's (`host/ws01`, `user01/admin`), an enterprise name
/// (`user01@contoso.com`, RFC 6806), and a name with blanks, controls or separators are
/// nobody exgate can map with certainty, so they fail closed (found by the red team:
/// `user01/admin` and `user01 ` were "unknown", so the organization default let them pass).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '@' | '/' | '\\'))
}

/// Decrypts with one key, None when the checksum does not verify.
fn decrypt(entry: &KeytabEntry, cipher: &[u8]) -> Option<Vec<u8>> {
    let key = entry.key.expose();
    match entry.etype {
        etype::AES256_CTS_HMAC_SHA1_96 => CipherSuite::Aes256CtsHmacSha196
            .cipher()
            .decrypt(key, KEY_USAGE_TICKET, cipher)
            .ok(),
        etype::AES128_CTS_HMAC_SHA1_96 => CipherSuite::Aes128CtsHmacSha196
            .cipher()
            .decrypt(key, KEY_USAGE_TICKET, cipher)
            .ok(),
        etype::RC4_HMAC => kerberos_crypto::Rc4Cipher::new()
            .decrypt(key, KEY_USAGE_TICKET, cipher)
            .ok(),
        _ => None,
    }
}

/// The name strings of a principal name.
fn names(name: &PrincipalName) -> Vec<&str> {
    name.name_string.0.0.iter().map(|s| s.0.as_utf8()).collect()
}

/// A DER INTEGER that fits an `i64` (etype and kvno are Int32/UInt32, RFC 4120 §5.2.4).
fn small_int(value: &IntegerAsn1) -> Option<i64> {
    let bytes = value.as_signed_bytes_be();
    if bytes.is_empty() || bytes.len() > 8 {
        return None;
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 8];
    buf[8 - bytes.len()..].copy_from_slice(bytes);
    Some(i64::from_be_bytes(buf))
}

/// A KerberosTime (GeneralizedTime, UTC, RFC 4120 §5.2.3) as Unix seconds.
fn unix_seconds<TR: picky_asn1::date::TimeRepr>(date: &Date<TR>) -> Option<u64> {
    let days = crate::audit::days_from_civil(
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    );
    let secs = days * 86_400
        + i64::from(date.hour()) * 3_600
        + i64::from(date.minute()) * 60
        + i64::from(date.second());
    u64::try_from(secs).ok()
}
