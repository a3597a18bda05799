//! The keytab reader and the ticket reader against tickets built as a KDC builds them;
//! the real MIT KDC is in `tests/it/kerberos.rs`.

use std::sync::Arc;

use super::build::{TicketSpec, ap_req};
use super::keytab::{self, Keytab, KeytabError, Principal, etype};
use super::ticket::{TicketError, read_client, ticket_der};
use super::{Source, TicketReader};

const NOW: u64 = 1_800_000_000;
const AES256_KEY: [u8; 32] = [0x11; 32];
const AES128_KEY: [u8; 16] = [0x22; 16];
const RC4_KEY: [u8; 16] = [0x33; 16];

fn principal(components: &[&str], realm: &str) -> Principal {
    Principal {
        components: components.iter().map(|c| c.to_string()).collect(),
        realm: realm.into(),
    }
}

fn service() -> Principal {
    principal(&["HTTP", "mail.contoso.com"], "CONTOSO.COM")
}

fn user(name: &str) -> Principal {
    principal(&[name], "CONTOSO.COM")
}

fn keytab_of(entries: &[(&Principal, u32, i32, &[u8])]) -> Keytab {
    Keytab::parse(&keytab::build(entries)).expect("own keytab parses")
}

fn exchange_keytab() -> Keytab {
    let s = service();
    keytab_of(&[
        (&s, 3, etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY),
        (&s, 3, etype::AES128_CTS_HMAC_SHA1_96, &AES128_KEY),
        (&s, 3, etype::RC4_HMAC, &RC4_KEY),
    ])
}

fn spec<'a>(
    client: &'a Principal,
    service: &'a Principal,
    etype: i32,
    key: &'a [u8],
) -> TicketSpec<'a> {
    TicketSpec {
        client,
        service,
        kvno: 3,
        etype,
        key,
        endtime: NOW + 36_000,
        authorization_bytes: 0,
    }
}

#[test]
fn each_encryption_type_names_the_client() {
    let keytab = exchange_keytab();
    let (s, u) = (service(), user("user01"));
    for (etype, key) in [
        (etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY[..]),
        (etype::AES128_CTS_HMAC_SHA1_96, &AES128_KEY[..]),
        (etype::RC4_HMAC, &RC4_KEY[..]),
    ] {
        let client = read_client(&keytab, &ap_req(&spec(&u, &s, etype, key))).expect("reads");
        assert_eq!(client.principal, "user01@CONTOSO.COM", "etype {etype}");
        assert_eq!(client.endtime, NOW + 36_000);
        assert_eq!(client.etype, etype);
    }
}

#[test]
fn a_windows_sized_ticket_with_a_pac_is_read() {
    let (s, u) = (service(), user("user02"));
    let spec = TicketSpec {
        authorization_bytes: 1_200,
        ..spec(&u, &s, etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY)
    };
    let client = read_client(&exchange_keytab(), &ap_req(&spec)).unwrap();
    assert_eq!(client.principal, "user02@CONTOSO.COM");
}

#[test]
fn an_ap_req_above_the_windows_token_size_is_not_decrypted() {
    // A 1 MiB header could otherwise make every request decrypt ~700 KB per key tried.
    let (s, u) = (service(), user("user02"));
    let big = |n| TicketSpec {
        authorization_bytes: n,
        ..spec(&u, &s, etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY)
    };
    let keytab = exchange_keytab();
    assert!(read_client(&keytab, &ap_req(&big(48_000))).is_ok());
    assert_eq!(
        read_client(&keytab, &ap_req(&big(70_000))),
        Err(TicketError::Malformed)
    );
    let reader = TicketReader::new(Arc::new(keytab), 10);
    assert_eq!(
        reader.read(&ap_req(&big(70_000)), NOW).unwrap_err(),
        TicketError::Malformed
    );
}

#[test]
fn only_a_plain_user_principal_names_a_client() {
    // The red team's table: names that are nobody exgate can map with certainty fail
    // closed instead of being "unknown" (and so getting the organization default).
    let s = service();
    let keytab = exchange_keytab();
    let read = |c: &Principal| {
        read_client(
            &keytab,
            &ap_req(&spec(c, &s, etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY)),
        )
    };
    assert_eq!(
        read(&user("user01")).unwrap().principal,
        "user01@CONTOSO.COM"
    );
    assert_eq!(
        read(&user("user01$")).unwrap().principal,
        "user01$@CONTOSO.COM"
    );
    for odd in [
        principal(&["user01", "admin"], "CONTOSO.COM"),
        principal(&["host", "user01"], "CONTOSO.COM"),
        principal(&["user01@contoso.com"], "CONTOSO.COM"),
        principal(&["user01 "], "CONTOSO.COM"),
        principal(&["user 01"], "CONTOSO.COM"),
        principal(&["CONTOSO\\user01"], "CONTOSO.COM"),
        principal(&["user01\t"], "CONTOSO.COM"),
        principal(&["user01"], "CONTOSO .COM"),
        principal(&["user01"], ""),
        principal(&[], "CONTOSO.COM"),
    ] {
        assert_eq!(read(&odd), Err(TicketError::UnusualName), "{odd:?}");
    }
}

#[test]
fn every_way_a_ticket_fails_is_an_error_never_a_name() {
    // The attacker's table: a ticket exgate cannot open must name nobody.
    let (s, u) = (service(), user("user01"));
    let keytab = exchange_keytab();
    let other = principal(&["HTTP", "other.contoso.com"], "CONTOSO.COM");
    let aes = |spec: TicketSpec<'_>| read_client(&keytab, &ap_req(&spec));
    let base = spec(&u, &s, etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY);
    // Another service's key (same type and version): the checksum fails.
    assert_eq!(
        aes(TicketSpec {
            service: &other,
            key: &[0x44; 32],
            ..base.clone()
        }),
        Err(TicketError::Integrity)
    );
    // The right service name, the wrong key.
    assert_eq!(
        aes(TicketSpec {
            key: &[0x45; 32],
            ..base.clone()
        }),
        Err(TicketError::Integrity)
    );
    // An old key version: no key.
    assert_eq!(
        aes(TicketSpec {
            kvno: 2,
            ..base.clone()
        }),
        Err(TicketError::NoKey)
    );
    // An encryption type exgate does not decrypt (DES3), or the keytab lacks.
    let des3 = 16u8;
    assert_eq!(
        read_client(&keytab, &with_etype(&ap_req(&base), des3)),
        Err(TicketError::NoKey)
    );
    let only_aes128 = keytab_of(&[(&s, 3, etype::AES128_CTS_HMAC_SHA1_96, &AES128_KEY)]);
    assert_eq!(
        read_client(&only_aes128, &ap_req(&base)),
        Err(TicketError::NoKey)
    );
    // RC4 ticket encrypted with the AES128 key's bytes under the RC4 etype.
    assert_eq!(
        aes(TicketSpec {
            etype: etype::RC4_HMAC,
            key: &AES128_KEY,
            ..base.clone()
        }),
        Err(TicketError::Integrity)
    );
    // Flipped ciphertext bytes, anywhere: integrity.
    let good = ap_req(&base);
    let t = ticket_der(&good).unwrap();
    let tail = good.len() - (good.len() - t.len()) / 2; // inside the ticket's cipher
    for at in [t.len() / 2, tail.min(good.len() - 1)] {
        let mut bad = good.clone();
        let offset = good.windows(t.len()).position(|w| w == t).unwrap();
        let i = (offset + at).min(offset + t.len() - 1);
        bad[i] ^= 0x01;
        assert!(read_client(&keytab, &bad).is_err(), "flip at {i}");
    }
    // Truncations and garbage: malformed, never a panic.
    for len in 0..good.len() {
        assert!(
            read_client(&keytab, &good[..len]).is_err(),
            "truncated to {len}"
        );
    }
    assert_eq!(
        read_client(&keytab, b"\x6e\x00"),
        Err(TicketError::Malformed)
    );
}

/// Rewrites the ticket's `enc-part` etype (the single byte after `a0 03 02 01`).
fn with_etype(ap_req: &[u8], etype: u8) -> Vec<u8> {
    let t = ticket_der(ap_req).unwrap();
    let offset = ap_req.windows(t.len()).position(|w| w == t).unwrap();
    let mut out = ap_req.to_vec();
    let enc = out[offset..offset + t.len()]
        .windows(4)
        .rposition(|w| w == [0xa0, 0x03, 0x02, 0x01])
        .unwrap();
    out[offset + enc + 4] = etype;
    out
}

#[test]
fn the_service_keys_are_tried_first_and_other_principals_after() {
    // Windows encrypts a ticket for any SPN of the Exchange service account with that
    // account's one key: a keytab exported for one SPN opens tickets for the others.
    let spn = service();
    let alias = principal(&["HTTP", "autodiscover.contoso.com"], "CONTOSO.COM");
    let u = user("user02");
    let keytab = keytab_of(&[
        (
            &principal(&["unrelated"], "CONTOSO.COM"),
            3,
            etype::AES256_CTS_HMAC_SHA1_96,
            &[0x99; 32],
        ),
        (&spn, 3, etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY),
    ]);
    let ticket = ap_req(&spec(
        &u,
        &alias,
        etype::AES256_CTS_HMAC_SHA1_96,
        &AES256_KEY,
    ));
    assert_eq!(
        read_client(&keytab, &ticket).unwrap().principal,
        "user02@CONTOSO.COM"
    );
}

#[test]
fn the_reader_caches_a_ticket_until_its_end_and_only_that_ticket() {
    let (s, u) = (service(), user("user01"));
    let reader = TicketReader::new(Arc::new(exchange_keytab()), 100);
    let first = ap_req(&spec(&u, &s, etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY));
    let (client, source) = reader.read(&first, NOW).unwrap();
    assert_eq!(
        (client.principal.as_str(), source),
        ("user01@CONTOSO.COM", Source::Decrypted)
    );
    assert_eq!(reader.read(&first, NOW + 10).unwrap().1, Source::Cached);
    assert_eq!(reader.cached(), 1);
    // Within the clock skew after its endtime it is still the cached ticket; after that
    // it names nobody (found by the red team: an ended ticket kept naming its user).
    assert_eq!(reader.read(&first, NOW + 36_300).unwrap().1, Source::Cached);
    assert_eq!(
        reader.read(&first, NOW + 36_301).unwrap_err(),
        TicketError::Expired
    );
    let fresh = TicketReader::new(Arc::new(exchange_keytab()), 100);
    assert_eq!(
        fresh.read(&first, NOW + 36_301).unwrap_err(),
        TicketError::Expired
    );
    assert_eq!(fresh.cached(), 0);
    // The same ticket with another authenticator is the same ticket.
    let mut other_auth = first.clone();
    let last = other_auth.len() - 1;
    other_auth[last] ^= 0xff;
    assert_eq!(
        reader.read(&other_auth, NOW + 20).unwrap().1,
        Source::Cached
    );
    // A ticket with one byte changed is not a hit.
    let t = ticket_der(&first).unwrap().to_vec();
    let mut forged = first.clone();
    let offset = first.windows(t.len()).position(|w| w == t).unwrap();
    forged[offset + t.len() / 2] ^= 0x01;
    assert!(reader.read(&forged, NOW + 30).is_err());
}

#[test]
fn the_cache_stays_within_its_bound() {
    let s = service();
    let reader = TicketReader::new(Arc::new(exchange_keytab()), 32);
    for i in 0..200 {
        let u = user(&format!("user{i:03}"));
        reader
            .read(
                &ap_req(&spec(&u, &s, etype::AES128_CTS_HMAC_SHA1_96, &AES128_KEY)),
                NOW,
            )
            .unwrap();
    }
    assert!(reader.cached() <= 32, "{} cached", reader.cached());
    let none = TicketReader::new(Arc::new(exchange_keytab()), 0);
    let u = user("user01");
    let t = ap_req(&spec(&u, &s, etype::AES128_CTS_HMAC_SHA1_96, &AES128_KEY));
    none.read(&t, NOW).unwrap();
    assert_eq!(none.read(&t, NOW).unwrap().1, Source::Decrypted);
}

#[test]
fn keytab_versions_holes_and_32_bit_kvnos() {
    let s = service();
    let mut bytes = keytab::build(&[(&s, 300, etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY)]);
    // A hole (deleted entry) between entries is skipped.
    let mut hole = (-6i32).to_be_bytes().to_vec();
    hole.extend_from_slice(&[0; 6]);
    bytes.extend_from_slice(&hole);
    bytes.extend_from_slice(&keytab::build(&[(&s, 4, etype::RC4_HMAC, &RC4_KEY)])[2..]);
    let keytab = Keytab::parse(&bytes).unwrap();
    assert_eq!(keytab.entries.len(), 2);
    assert_eq!(
        keytab.entries[0].kvno, 300,
        "the 32-bit kvno wins over vno8 (44)"
    );
    assert_eq!(
        keytab.describe(),
        [
            "HTTP/mail.contoso.com@CONTOSO.COM kvno 300 aes256-cts-hmac-sha1-96",
            "HTTP/mail.contoso.com@CONTOSO.COM kvno 4 rc4-hmac"
        ]
    );
    assert!(
        !format!("{keytab:?}").contains("17, 17"),
        "keys are redacted in Debug"
    );
    assert!(format!("{keytab:?}").contains("redacted"));
}

#[test]
fn bad_keytabs_are_errors_that_name_no_key() {
    let s = service();
    let good = keytab::build(&[(&s, 3, etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY)]);
    assert!(matches!(Keytab::parse(b""), Err(KeytabError::Version(_))));
    assert!(matches!(
        Keytab::parse(b"\x05\x01"),
        Err(KeytabError::Version(_))
    ));
    assert_eq!(Keytab::parse(b"\x05\x02"), Err(KeytabError::Empty));
    for len in 3..good.len() {
        let err = Keytab::parse(&good[..len]).expect_err("truncated");
        assert!(!err.to_string().contains("17"), "{err}");
    }
    let short = keytab::build(&[(&s, 3, etype::AES256_CTS_HMAC_SHA1_96, &AES128_KEY)]);
    let err = Keytab::parse(&short).unwrap_err();
    assert_eq!(
        err.to_string(),
        "HTTP/mail.contoso.com@CONTOSO.COM kvno 3: a aes256-cts-hmac-sha1-96 key must be 32 bytes, not 16"
    );
    // i32::MIN as a hole size: an error, not an overflow.
    let mut min = b"\x05\x02".to_vec();
    min.extend_from_slice(&i32::MIN.to_be_bytes());
    assert!(Keytab::parse(&min).is_err());
}

#[test]
fn der_that_would_trip_the_decoder_is_refused_before_it() {
    // Found by the `kerberos` fuzz target: an eight-byte length made picky-asn1-der add
    // with overflow (a panic in debug builds, a wrapped length in release).
    let crash = [
        0x6e, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0x30, 0x82, 0xcc, 0xcc,
        0xcc, 0xcc, 0xdf, 0x01, 0xdd, 0xf8, 0x32, 0xa1, 0x59, 0x93, 0x9c, 0x21, 0x07, 0x7d, 0xcc,
        0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0x05,
    ];
    let keytab = exchange_keytab();
    assert_eq!(read_client(&keytab, &crash), Err(TicketError::Malformed));
    // The same shapes deep inside an otherwise valid AP-REQ: an eight-byte length, an
    // indefinite length, a high-tag-number tag, nesting deeper than any ticket's.
    let (s, u) = (service(), user("user01"));
    let good = ap_req(&spec(&u, &s, etype::AES256_CTS_HMAC_SHA1_96, &AES256_KEY));
    let sname_at = good.windows(4).position(|w| w == b"HTTP").unwrap();
    for bad_len in [
        &[0x88u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
        &[0x80],
    ] {
        let mut bad = good[..sname_at - 1].to_vec();
        bad.extend_from_slice(bad_len);
        bad.extend_from_slice(&good[sname_at..]);
        assert_eq!(read_client(&keytab, &bad), Err(TicketError::Malformed));
    }
    let mut high_tag = good.clone();
    high_tag[sname_at - 2] = 0x1f;
    assert!(read_client(&keytab, &high_tag).is_err());
    let mut deep = Vec::new();
    for _ in 0..40 {
        deep.splice(0..0, [0x30, deep.len() as u8]);
    }
    let mut nested = vec![0x6e, deep.len() as u8];
    nested.extend_from_slice(&deep);
    assert_eq!(read_client(&keytab, &nested), Err(TicketError::Malformed));
}
