//! The MIT keytab file format: the service keys exgate decrypts tickets with.
//!
//! Source: MIT Kerberos, "Keytab file format" (`doc/formats/keytab_file_format.rst`).
//! Only version `0x0502` (big-endian, what MIT `ktutil`/`kadmin`, Heimdal and Windows
//! `ktpass` write) is read; `0x0501` (native byte order) predates them all.
//!
//! ```text
//! keytab       { uint16 version = 0x0502; entry[*] }
//! entry        { int32 size;              -- negative: a hole of -size bytes
//!                uint16 num_components; counted realm; counted components[num_components];
//!                uint32 name_type; uint32 timestamp; uint8 vno8;
//!                uint16 keytype; counted key;
//!                uint32 vno;              -- only if 4 bytes are left in the entry
//!                uint32 flags }           -- likewise
//! counted      { uint16 length; uint8 data[length] }
//! ```

use std::fmt;

/// The only keytab version read (MIT's `KRB5_KT_VNO`).
const VERSION: [u8; 2] = [0x05, 0x02];

/// Kerberos encryption type numbers (RFC 3961 §8, RFC 4757, RFC 3962).
pub mod etype {
    /// `aes256-cts-hmac-sha1-96` (RFC 3962).
    pub const AES256_CTS_HMAC_SHA1_96: i32 = 18;
    /// `aes128-cts-hmac-sha1-96` (RFC 3962).
    pub const AES128_CTS_HMAC_SHA1_96: i32 = 17;
    /// `rc4-hmac` / `arcfour-hmac` (RFC 4757).
    pub const RC4_HMAC: i32 = 23;

    /// The name MIT tools print for an encryption type (`klist -e`).
    pub fn name(etype: i32) -> String {
        match etype {
            AES256_CTS_HMAC_SHA1_96 => "aes256-cts-hmac-sha1-96".into(),
            AES128_CTS_HMAC_SHA1_96 => "aes128-cts-hmac-sha1-96".into(),
            RC4_HMAC => "rc4-hmac".into(),
            19 => "aes128-cts-hmac-sha256-128".into(),
            20 => "aes256-cts-hmac-sha384-192".into(),
            16 => "des3-cbc-sha1".into(),
            1 | 3 => "des-cbc".into(),
            other => format!("etype {other}"),
        }
    }

    /// Whether exgate can decrypt tickets of this type.
    pub fn supported(etype: i32) -> bool {
        matches!(
            etype,
            AES256_CTS_HMAC_SHA1_96 | AES128_CTS_HMAC_SHA1_96 | RC4_HMAC
        )
    }
}

/// A Kerberos principal name: its components (`HTTP`, `mail.contoso.com`) and realm.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    pub components: Vec<String>,
    pub realm: String,
}

impl Principal {
    /// Whether `components`@`realm` names this principal. Compared without regard to ASCII
    /// case: Active Directory, which issues Exchange's tickets, matches SPNs and realms
    /// that way, and clients differ in how they spell the host.
    pub fn matches(&self, components: &[&str], realm: &str) -> bool {
        self.realm.eq_ignore_ascii_case(realm)
            && self.components.len() == components.len()
            && self
                .components
                .iter()
                .zip(components)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.components.join("/"), self.realm)
    }
}

/// Key material: a secret. `Debug` prints its length only; it is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBytes(Box<[u8]>);

impl KeyBytes {
    /// The raw key, for decryption only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// One key of one principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeytabEntry {
    pub principal: Principal,
    /// The key version number (the 32-bit field when present and non-zero, else `vno8`).
    pub kvno: u32,
    /// The encryption type ([`etype`]).
    pub etype: i32,
    pub key: KeyBytes,
}

/// Why a keytab could not be read. Never contains key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeytabError {
    #[error("not an MIT keytab of version 0x0502 (first bytes {0})")]
    Version(String),
    #[error("entry {entry} (at byte {offset}) is truncated or malformed: {what}")]
    Malformed {
        entry: usize,
        offset: usize,
        what: &'static str,
    },
    #[error("the keytab holds no keys")]
    Empty,
    #[error("{principal} kvno {kvno}: a {etype} key must be {expected} bytes, not {actual}")]
    KeyLength {
        principal: String,
        kvno: u32,
        etype: String,
        expected: usize,
        actual: usize,
    },
}

/// A parsed keytab.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keytab {
    pub entries: Vec<KeytabEntry>,
}

/// A bounds-checked big-endian reader over one entry.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn counted(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn text(&mut self) -> Option<String> {
        self.counted()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

impl Keytab {
    /// Parses a keytab file's bytes.
    ///
    /// Errors: a version other than `0x0502`, an entry that runs past its size or the
    /// file, or a file without a single key. Holes (negative sizes, left by `ktremove`)
    /// are skipped; a zero size ends the file, as MIT's reader treats it.
    pub fn parse(bytes: &[u8]) -> Result<Keytab, KeytabError> {
        let Some(rest) = bytes.strip_prefix(&VERSION) else {
            let head: String = bytes.iter().take(2).map(|b| format!("{b:02x}")).collect();
            return Err(KeytabError::Version(head));
        };
        let mut entries = Vec::new();
        let mut file = Reader { bytes: rest };
        let mut index = 0;
        loop {
            let offset = bytes.len() - file.bytes.len();
            let malformed = |what| KeytabError::Malformed {
                entry: index,
                offset,
                what,
            };
            if file.bytes.is_empty() {
                break;
            }
            let size = file.u32().ok_or_else(|| malformed("size"))? as i32;
            match size {
                0 => break,
                s if s < 0 => {
                    file.take(s.unsigned_abs() as usize)
                        .ok_or_else(|| malformed("hole runs past the file"))?;
                }
                s => {
                    let body = file
                        .take(s as usize)
                        .ok_or_else(|| malformed("entry runs past the file"))?;
                    entries.push(Self::entry(body).ok_or_else(|| malformed("entry fields"))?);
                }
            }
            index += 1;
        }
        if entries.is_empty() {
            return Err(KeytabError::Empty);
        }
        for e in &entries {
            let expected = match e.etype {
                etype::AES256_CTS_HMAC_SHA1_96 => 32,
                etype::AES128_CTS_HMAC_SHA1_96 | etype::RC4_HMAC => 16,
                _ => continue,
            };
            if e.key.0.len() != expected {
                return Err(KeytabError::KeyLength {
                    principal: e.principal.to_string(),
                    kvno: e.kvno,
                    etype: etype::name(e.etype),
                    expected,
                    actual: e.key.0.len(),
                });
            }
        }
        Ok(Keytab { entries })
    }

    fn entry(body: &[u8]) -> Option<KeytabEntry> {
        let mut r = Reader { bytes: body };
        let count = r.u16()?;
        let realm = r.text()?;
        let components = (0..count).map(|_| r.text()).collect::<Option<Vec<_>>>()?;
        let _name_type = r.u32()?;
        let _timestamp = r.u32()?;
        let vno8 = r.u8()?;
        let etype = r.u16()?;
        let key = r.counted()?;
        let vno32 = if r.bytes.len() >= 4 { r.u32() } else { None };
        Some(KeytabEntry {
            principal: Principal { components, realm },
            kvno: vno32.filter(|v| *v != 0).unwrap_or(u32::from(vno8)),
            etype: i32::from(etype),
            key: KeyBytes(key.into()),
        })
    }

    /// `principal kvno etype` lines for `exgate validate`: never a key.
    pub fn describe(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| {
                let support = if etype::supported(e.etype) {
                    ""
                } else {
                    " (not used: exgate decrypts aes256, aes128 and rc4 only)"
                };
                format!(
                    "{} kvno {} {}{support}",
                    e.principal,
                    e.kvno,
                    etype::name(e.etype)
                )
            })
            .collect()
    }
}

/// Builds keytab bytes (version `0x0502`, 32-bit kvno), for tests, benchmarks and the lab.
pub fn build(entries: &[(&Principal, u32, i32, &[u8])]) -> Vec<u8> {
    let mut out = VERSION.to_vec();
    for (principal, kvno, etype, key) in entries {
        let mut e = Vec::new();
        let counted = |e: &mut Vec<u8>, b: &[u8]| {
            e.extend_from_slice(&(b.len() as u16).to_be_bytes());
            e.extend_from_slice(b);
        };
        e.extend_from_slice(&(principal.components.len() as u16).to_be_bytes());
        counted(&mut e, principal.realm.as_bytes());
        for c in &principal.components {
            counted(&mut e, c.as_bytes());
        }
        e.extend_from_slice(&1u32.to_be_bytes()); // KRB5_NT_PRINCIPAL
        e.extend_from_slice(&0u32.to_be_bytes());
        e.push(*kvno as u8);
        e.extend_from_slice(&(*etype as u16).to_be_bytes());
        counted(&mut e, key);
        e.extend_from_slice(&kvno.to_be_bytes());
        out.extend_from_slice(&(e.len() as u32).to_be_bytes());
        out.extend_from_slice(&e);
    }
    out
}
