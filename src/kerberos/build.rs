//! Builds AP-REQs whose tickets a keytab opens, as a KDC would encrypt them: for unit
//! tests, benchmarks, fuzzing seeds and the lab's clients. The authenticator is opaque
//! bytes (exgate never reads it). Encryption by `picky-krb` (AES) and `kerberos_crypto`
//! (RC4-HMAC), the libraries that decrypt.

use kerberos_crypto::KerberosCipher as _;
use picky_asn1::bit_string::BitString;
use picky_asn1::date::{Date, GeneralizedTime};
use picky_asn1::restricted_string::Ia5String;
use picky_asn1::wrapper::{
    Asn1SequenceOf, BitStringAsn1, ExplicitContextTag0, ExplicitContextTag1, ExplicitContextTag2,
    ExplicitContextTag3, ExplicitContextTag4, ExplicitContextTag5, ExplicitContextTag7,
    GeneralStringAsn1, GeneralizedTimeAsn1, IntegerAsn1, OctetStringAsn1, Optional,
};
use picky_krb::crypto::CipherSuite;
use picky_krb::data_types::{
    EncTicketPart, EncTicketPartInner, EncryptedData, EncryptionKey, PrincipalName, Ticket,
    TicketInner, TransitedEncoding,
};
use picky_krb::messages::{ApReq, ApReqInner};

use super::keytab::{Principal, etype};

/// What a ticket says and how it is sealed.
#[derive(Clone, Debug)]
pub struct TicketSpec<'a> {
    /// The client (`cname`, `crealm`).
    pub client: &'a Principal,
    /// The service (`sname`, `realm`).
    pub service: &'a Principal,
    /// The service key's version, written as the `enc-part` kvno.
    pub kvno: u32,
    /// [`etype`] of `key`.
    pub etype: i32,
    /// The service key.
    pub key: &'a [u8],
    /// `endtime`, Unix seconds.
    pub endtime: u64,
    /// Bytes of authorization data to add, as a Windows PAC makes a ticket bigger.
    pub authorization_bytes: usize,
}

fn text(s: &str) -> GeneralStringAsn1 {
    GeneralStringAsn1::from(Ia5String::from_string(s.into()).expect("ASCII name"))
}

fn int(n: i64) -> IntegerAsn1 {
    IntegerAsn1::from_bytes_be_signed(n.to_be_bytes().to_vec())
}

fn name(components: &[String]) -> PrincipalName {
    PrincipalName {
        name_type: ExplicitContextTag0::from(int(1)),
        name_string: ExplicitContextTag1::from(Asn1SequenceOf::from(
            components.iter().map(|c| text(c)).collect::<Vec<_>>(),
        )),
    }
}

fn time(unix: u64) -> GeneralizedTimeAsn1 {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = crate::audit::civil_from_days(days as i64);
    let date: GeneralizedTime = Date::new(
        y as u16,
        m as u8,
        d as u8,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
    )
    .expect("valid date");
    GeneralizedTimeAsn1::from(date)
}

/// Encrypts `plain` with `key` of `etype` for key usage `usage`.
pub fn encrypt(etype: i32, key: &[u8], usage: i32, plain: &[u8]) -> Vec<u8> {
    match etype {
        etype::AES256_CTS_HMAC_SHA1_96 => CipherSuite::Aes256CtsHmacSha196
            .cipher()
            .encrypt(key, usage, plain)
            .expect("AES encryption"),
        etype::AES128_CTS_HMAC_SHA1_96 => CipherSuite::Aes128CtsHmacSha196
            .cipher()
            .encrypt(key, usage, plain)
            .expect("AES encryption"),
        etype::RC4_HMAC => kerberos_crypto::Rc4Cipher::new().encrypt(key, usage, plain),
        other => panic!("cannot encrypt with etype {other}"),
    }
}

/// A ticket per `spec`, as DER.
pub fn ticket(spec: &TicketSpec<'_>) -> Vec<u8> {
    sealed_ticket(spec, &enc_ticket_part(spec))
}

/// The `EncTicketPart` (DER, before encryption) of a ticket per `spec`.
pub fn enc_ticket_part(spec: &TicketSpec<'_>) -> Vec<u8> {
    let authorization_data = match spec.authorization_bytes {
        0 => Optional::from(None),
        n => {
            // AD-IF-RELEVANT (1) around opaque bytes, the shape a PAC travels in.
            let entry = picky_krb::data_types::AuthorizationDataInner {
                ad_type: ExplicitContextTag0::from(int(1)),
                ad_data: ExplicitContextTag1::from(OctetStringAsn1::from(vec![0x5a; n])),
            };
            Optional::from(Some(picky_asn1::wrapper::ExplicitContextTag10::from(
                Asn1SequenceOf::from(vec![entry]),
            )))
        }
    };
    let part = EncTicketPart::from(EncTicketPartInner {
        flags: ExplicitContextTag0::from(BitStringAsn1::from(BitString::with_bytes(vec![
            0x40, 0xe1, 0, 0,
        ]))),
        key: ExplicitContextTag1::from(EncryptionKey {
            key_type: ExplicitContextTag0::from(int(i64::from(spec.etype))),
            key_value: ExplicitContextTag1::from(OctetStringAsn1::from(vec![7; spec.key.len()])),
        }),
        crealm: ExplicitContextTag2::from(text(&spec.client.realm)),
        cname: ExplicitContextTag3::from(name(&spec.client.components)),
        transited: ExplicitContextTag4::from(TransitedEncoding {
            tr_type: ExplicitContextTag0::from(int(1)),
            contents: ExplicitContextTag1::from(OctetStringAsn1::from(Vec::new())),
        }),
        auth_time: ExplicitContextTag5::from(time(spec.endtime.saturating_sub(36_000))),
        starttime: Optional::from(None),
        endtime: ExplicitContextTag7::from(time(spec.endtime)),
        renew_till: Optional::from(None),
        caddr: Optional::from(None),
        authorization_data,
    });
    picky_asn1_der::to_vec(&part).expect("EncTicketPart encodes")
}

/// A ticket for `spec`'s service whose `enc-part` seals `plain` as it is (any bytes:
/// the fuzz target feeds the decoder of `EncTicketPart` this way).
pub fn sealed_ticket(spec: &TicketSpec<'_>, plain: &[u8]) -> Vec<u8> {
    let cipher = encrypt(spec.etype, spec.key, 2, plain);
    let ticket = Ticket::from(TicketInner {
        tkt_vno: ExplicitContextTag0::from(int(5)),
        realm: ExplicitContextTag1::from(text(&spec.service.realm)),
        sname: ExplicitContextTag2::from(name(&spec.service.components)),
        enc_part: ExplicitContextTag3::from(EncryptedData {
            etype: ExplicitContextTag0::from(int(i64::from(spec.etype))),
            kvno: Optional::from(Some(ExplicitContextTag1::from(int(i64::from(spec.kvno))))),
            cipher: ExplicitContextTag2::from(OctetStringAsn1::from(cipher)),
        }),
    });
    picky_asn1_der::to_vec(&ticket).expect("Ticket encodes")
}

/// An AP-REQ (DER) carrying a ticket per `spec` and an opaque authenticator.
pub fn ap_req(spec: &TicketSpec<'_>) -> Vec<u8> {
    ap_req_with(spec, &ticket(spec))
}

/// An AP-REQ (DER) carrying `ticket` (DER) and an opaque authenticator of `spec`'s etype.
pub fn ap_req_with(spec: &TicketSpec<'_>, ticket: &[u8]) -> Vec<u8> {
    let ticket: Ticket = picky_asn1_der::from_bytes(ticket).expect("own ticket decodes");
    let ap_req = ApReq::from(ApReqInner {
        pvno: ExplicitContextTag0::from(int(5)),
        msg_type: ExplicitContextTag1::from(int(14)),
        ap_options: ExplicitContextTag2::from(picky_krb::data_types::ApOptions::from(
            BitString::with_bytes(vec![0x20, 0, 0, 0]),
        )),
        ticket: ExplicitContextTag3::from(ticket),
        authenticator: ExplicitContextTag4::from(EncryptedData {
            etype: ExplicitContextTag0::from(int(i64::from(spec.etype))),
            kvno: Optional::from(None),
            cipher: ExplicitContextTag2::from(OctetStringAsn1::from(vec![0xa5; 120])),
        }),
    });
    picky_asn1_der::to_vec(&ap_req).expect("AP-REQ encodes")
}
