//! `Negotiate` tokens (RFC 4559, RFC 4178): raw NTLMSSP (as IIS accepts), SPNEGO
//! NegTokenInit/NegTokenResp wrapping NTLM or Kerberos, and raw Kerberos GSS tokens.

use super::der::{self, Tlv};
use super::ntlm::{self, NtlmMessage};

const OID_SPNEGO: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
const OID_NTLMSSP: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];
const OID_KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
const OID_MS_KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02];
const OID_KRB5_U2U: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x03];

const TAG_GSS_INITIAL: u8 = 0x60;
const TAG_OID: u8 = 0x06;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_ENUMERATED: u8 = 0x0a;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_NEG_TOKEN_INIT: u8 = 0xa0;
const TAG_NEG_TOKEN_RESP: u8 = 0xa1;

/// The mechanism a connection negotiated, remembered by the proxy between legs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Ntlm,
    Kerberos,
}

/// The GSS-API token identifier of a Kerberos AP-REQ (RFC 4121 §4.1: `TOK_ID` 01 00).
const TOK_ID_AP_REQ: [u8; 2] = [0x01, 0x00];
/// The tag of a Kerberos AP-REQ: `[APPLICATION 14]` (RFC 4120 §5.5.1).
const TAG_AP_REQ: u8 = 0x6e;

/// A Kerberos AP-REQ (RFC 4120 §5.5.1) as DER, copied out of its GSS and SPNEGO framing.
/// `Debug` prints its length only: the ticket is not a password, but it is a credential.
#[derive(Clone, PartialEq, Eq)]
pub struct ApReq(Box<[u8]>);

impl ApReq {
    /// Wraps DER that starts with the AP-REQ tag (`0x6e`); the rest is read by the keytab
    /// stage (`kerberos::TicketReader`), which never trusts it.
    pub fn new(der: &[u8]) -> ApReq {
        ApReq(der.into())
    }

    /// The AP-REQ's DER.
    pub fn der(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ApReq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApReq({} bytes)", self.0.len())
    }
}

/// What a Kerberos leg of `Negotiate` carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KerberosLeg {
    /// An AP-REQ: its ticket names the client to whoever holds the service's key.
    ApReq(ApReq),
    /// Kerberos named as the preferred mechanism (a NegTokenInit without an optimistic
    /// token, a NegTokenResp's `supportedMech` without a `responseToken`): the handshake
    /// starts, nobody is named yet.
    Offered,
    /// A Kerberos token with no AP-REQ exgate can find (another `TOK_ID`, a
    /// `responseToken` that is not a GSS Kerberos token): it names nobody.
    Unreadable,
}

/// What a decoded Negotiate token turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    Ntlm(NtlmMessage),
    Kerberos(KerberosLeg),
    /// A NegTokenResp that names no mechanism and carries no NTLM message.
    Continuation,
    Unknown,
}

/// Classifies a decoded Negotiate token.
pub fn classify(token: &[u8]) -> Token {
    if token.starts_with(ntlm::SIGNATURE) {
        return Token::Ntlm(ntlm::parse(token));
    }
    match token.first() {
        Some(&TAG_GSS_INITIAL) => classify_initial(token),
        Some(&TAG_NEG_TOKEN_RESP) => classify_response(token),
        _ => Token::Unknown,
    }
}

/// A GSS-API initial-context token: SPNEGO NegTokenInit, or Kerberos directly.
fn classify_initial(token: &[u8]) -> Token {
    let Some(outer) = only(token) else {
        return Token::Unknown;
    };
    let Some((oid, inner)) = der::read(outer.content).filter(|(t, _)| t.tag == TAG_OID) else {
        return Token::Unknown;
    };
    if is_kerberos(oid.content) {
        return Token::Kerberos(kerberos_leg(inner));
    }
    if oid.content != OID_SPNEGO {
        return Token::Unknown;
    }
    let Some(init) = only(inner).filter(|t| t.tag == TAG_NEG_TOKEN_INIT) else {
        return Token::Unknown;
    };
    // NegTokenInit ::= SEQUENCE { mechTypes [0], reqFlags [1], mechToken [2],
    // mechListMIC [3] } (RFC 4178 §4.2.1).
    let Some(fields) = strict_fields(init) else {
        return Token::Unknown;
    };
    let first_mech = match fields[0] {
        None => None,
        Some(types) if types.tag == TAG_SEQUENCE => {
            // MechTypeList ::= SEQUENCE OF OID, and nothing else.
            let mut first = None;
            let mut rest = types.content;
            while !rest.is_empty() {
                match der::read(rest) {
                    Some((m, after)) if m.tag == TAG_OID => {
                        first = first.or(Some(m.content));
                        rest = after;
                    }
                    _ => return Token::Unknown,
                }
            }
            first
        }
        Some(_) => return Token::Unknown,
    };
    if fields[1].is_some_and(|f| f.tag != TAG_BIT_STRING)
        || fields[3].is_some_and(|f| f.tag != TAG_OCTET_STRING)
        || fields[4].is_some()
    {
        return Token::Unknown;
    }
    let mech_token = match fields[2] {
        None => None,
        Some(t) if t.tag == TAG_OCTET_STRING => Some(t.content),
        // A constructed or otherwise encoded token is a token all the same, to a BER
        // decoder such as Windows': never read it as "no token".
        Some(_) => return Token::Unknown,
    };
    match mech_token {
        Some(inner) if inner.starts_with(ntlm::SIGNATURE) => Token::Ntlm(ntlm::parse(inner)),
        Some(inner) => match kerberos_initial(inner) {
            Some(leg) => Token::Kerberos(leg),
            None => Token::Unknown,
        },
        // No optimistic token: the preferred mechanism says what comes next.
        None => match first_mech {
            Some(OID_NTLMSSP) => Token::Ntlm(NtlmMessage::Negotiate),
            Some(m) if is_kerberos(m) => Token::Kerberos(KerberosLeg::Offered),
            _ => Token::Unknown,
        },
    }
}

/// The inner token of a GSS Kerberos initial-context token (after the mechanism OID):
/// `TOK_ID` 01 00 and an AP-REQ (RFC 4121 §4.1), else unreadable.
fn kerberos_leg(inner: &[u8]) -> KerberosLeg {
    match inner.strip_prefix(&TOK_ID_AP_REQ) {
        Some(ap_req) if ap_req.first() == Some(&TAG_AP_REQ) => {
            KerberosLeg::ApReq(ApReq::new(ap_req))
        }
        _ => KerberosLeg::Unreadable,
    }
}

/// A GSS initial-context token for Kerberos (RFC 4121 §4.1), as an optimistic mechToken
/// or a `responseToken` carries it; None when the token is not one. Read one level deep,
/// never recursively: no client nests SPNEGO in SPNEGO, and following such nesting would
/// recurse once per ~30 bytes of the header, deep enough within a 1 MiB header to
/// overflow a thread's stack and abort the process.
fn kerberos_initial(token: &[u8]) -> Option<KerberosLeg> {
    let outer = only(token).filter(|outer| outer.tag == TAG_GSS_INITIAL)?;
    let (oid, inner) = der::read(outer.content)?;
    (oid.tag == TAG_OID && is_kerberos(oid.content)).then(|| kerberos_leg(inner))
}

/// A SPNEGO NegTokenResp: a later leg. NTLM Type 3 travels here in its responseToken.
fn classify_response(token: &[u8]) -> Token {
    let Some(resp) = only(token) else {
        return Token::Unknown;
    };
    // NegTokenResp ::= SEQUENCE { negState [0], supportedMech [1], responseToken [2],
    // mechListMIC [3] } (RFC 4178 §4.2.2).
    let Some(fields) = strict_fields(resp) else {
        return Token::Unknown;
    };
    if fields[0].is_some_and(|f| f.tag != TAG_ENUMERATED)
        || fields[3].is_some_and(|f| f.tag != TAG_OCTET_STRING)
        || fields[4].is_some()
    {
        return Token::Unknown;
    }
    let supported = match fields[1] {
        None => None,
        Some(m) if m.tag == TAG_OID => Some(m.content),
        Some(_) => return Token::Unknown,
    };
    let response = match fields[2] {
        None => None,
        Some(t) if t.tag == TAG_OCTET_STRING => Some(t.content),
        Some(_) => return Token::Unknown,
    };
    match (response, supported) {
        (Some(inner), _) if inner.starts_with(ntlm::SIGNATURE) => Token::Ntlm(ntlm::parse(inner)),
        // The AP-REQ of a client that offered Kerberos without an optimistic token
        // travels here (RFC 4178 §4.2.2); a raw AP-REQ is taken as one too.
        (Some(inner), _) if inner.first() == Some(&TAG_AP_REQ) => {
            Token::Kerberos(KerberosLeg::ApReq(ApReq::new(inner)))
        }
        (Some(inner), supported) => match kerberos_initial(inner) {
            Some(leg) => Token::Kerberos(leg),
            None if supported.is_some_and(is_kerberos) => Token::Kerberos(KerberosLeg::Unreadable),
            None => Token::Continuation,
        },
        (None, Some(m)) if is_kerberos(m) => Token::Kerberos(KerberosLeg::Offered),
        (None, _) => Token::Continuation,
    }
}

fn is_kerberos(oid: &[u8]) -> bool {
    oid == OID_KRB5 || oid == OID_MS_KRB5 || oid == OID_KRB5_U2U
}

/// The one element `input` holds, None when it holds anything else (nothing, a bad
/// element, or bytes after it).
fn only(input: &[u8]) -> Option<Tlv<'_>> {
    der::read(input).and_then(|(t, rest)| rest.is_empty().then_some(t))
}

/// The fields `[0]`…`[4]` of `[n] SEQUENCE { … }`, each field's one element, read
/// strictly: the wrapper holds exactly one SEQUENCE, the SEQUENCE nothing but context
/// fields in increasing order, none repeated, each holding exactly one element. None when
/// anything else is there.
///
/// Two readers of one token, exgate's and Exchange's, must never find different fields in
/// it: with a repeated `mechToken`, exgate read the last and MIT's GSS-API the first, so
/// user01's ticket followed by a Type 1 was decided as a handshake start and reached MAPI
/// authenticated as user01 (found by the red team, issue 13). A token read any other way
/// names nobody.
fn strict_fields(wrapper: Tlv<'_>) -> Option<[Option<Tlv<'_>>; 5]> {
    let seq = only(wrapper.content).filter(|s| s.tag == TAG_SEQUENCE)?;
    let mut fields = [None; 5];
    let mut next = 0;
    let mut rest = seq.content;
    while !rest.is_empty() {
        let (field, after) = der::read(rest)?;
        let index = usize::from(field.tag.checked_sub(0xa0)?);
        if index < next || index >= fields.len() {
            return None;
        }
        fields[index] = Some(only(field.content)?);
        next = index + 1;
        rest = after;
    }
    Some(fields)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n <= 0xff => out.extend_from_slice(&[0x81, n as u8]),
        n => {
            let n = u16::try_from(n).expect("SPNEGO token longer than 64 KiB");
            out.push(0x82);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(content);
    out
}

/// A SPNEGO NegTokenInit offering NTLM with `mech_token` (a Type 1) as the optimistic
/// token, as Windows sends it. For tests, benchmarks and the lab's clients.
pub fn build_spnego_init(mech_token: &[u8]) -> Vec<u8> {
    let mech_types = tlv(0xa0, &tlv(TAG_SEQUENCE, &tlv(TAG_OID, OID_NTLMSSP)));
    let token = tlv(0xa2, &tlv(TAG_OCTET_STRING, mech_token));
    let init = tlv(
        TAG_NEG_TOKEN_INIT,
        &tlv(TAG_SEQUENCE, &[mech_types, token].concat()),
    );
    tlv(TAG_GSS_INITIAL, &[tlv(TAG_OID, OID_SPNEGO), init].concat())
}

/// A SPNEGO NegTokenResp carrying `response_token` (an NTLM Type 3).
pub fn build_spnego_response(response_token: &[u8]) -> Vec<u8> {
    let token = tlv(0xa2, &tlv(TAG_OCTET_STRING, response_token));
    tlv(TAG_NEG_TOKEN_RESP, &tlv(TAG_SEQUENCE, &token))
}

/// A Kerberos GSS initial token wrapped in SPNEGO, with an opaque AP-REQ of `ap_req_len`
/// bytes (which no keytab opens).
pub fn build_spnego_kerberos(ap_req_len: usize) -> Vec<u8> {
    build_spnego_ap_req(&vec![TAG_AP_REQ; ap_req_len])
}

/// `ap_req` (DER) in a Kerberos GSS initial token (RFC 4121 §4.1) wrapped in a SPNEGO
/// NegTokenInit, as Windows sends it. For tests, benchmarks and the lab's clients.
pub fn build_spnego_ap_req(ap_req: &[u8]) -> Vec<u8> {
    let mut krb = tlv(TAG_OID, OID_MS_KRB5);
    krb.extend_from_slice(&TOK_ID_AP_REQ);
    krb.extend_from_slice(ap_req);
    let krb = tlv(TAG_GSS_INITIAL, &krb);
    let mech_types = tlv(0xa0, &tlv(TAG_SEQUENCE, &tlv(TAG_OID, OID_MS_KRB5)));
    let token = tlv(0xa2, &tlv(TAG_OCTET_STRING, &krb));
    let init = tlv(
        TAG_NEG_TOKEN_INIT,
        &tlv(TAG_SEQUENCE, &[mech_types, token].concat()),
    );
    tlv(TAG_GSS_INITIAL, &[tlv(TAG_OID, OID_SPNEGO), init].concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ntlm::{AuthenticateParts, build_authenticate, build_negotiate};

    fn type3() -> Vec<u8> {
        build_authenticate(&AuthenticateParts {
            domain: "CONTOSO",
            user: "user01",
            workstation: "WS",
            unicode: true,
            lm_response: &[0; 24],
            nt_response: &[1; 24],
            session_key: &[],
        })
    }

    #[test]
    fn raw_ntlmssp_is_ntlm() {
        assert_eq!(
            classify(&build_negotiate()),
            Token::Ntlm(NtlmMessage::Negotiate)
        );
    }

    #[test]
    fn spnego_init_with_ntlm_type1_is_ntlm() {
        assert_eq!(
            classify(&build_spnego_init(&build_negotiate())),
            Token::Ntlm(NtlmMessage::Negotiate)
        );
    }

    #[test]
    fn spnego_response_with_type3_carries_the_user() {
        match classify(&build_spnego_response(&type3())) {
            Token::Ntlm(NtlmMessage::Authenticate(id)) => assert_eq!(id.user, "user01"),
            other => panic!("{other:?}"),
        }
    }

    fn ap_req(bytes: &[u8]) -> Token {
        Token::Kerberos(KerberosLeg::ApReq(ApReq::new(bytes)))
    }

    #[test]
    fn spnego_kerberos_carries_its_ap_req() {
        match classify(&build_spnego_kerberos(1200)) {
            Token::Kerberos(KerberosLeg::ApReq(a)) => {
                assert_eq!(a.der().len(), 1200);
                assert_eq!(format!("{a:?}"), "ApReq(1200 bytes)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raw_kerberos_gss_token_carries_its_ap_req() {
        let mut krb = tlv(TAG_OID, OID_KRB5);
        krb.extend_from_slice(&[1, 0, 0x6e, 0x82]);
        assert_eq!(classify(&tlv(TAG_GSS_INITIAL, &krb)), ap_req(&[0x6e, 0x82]));
    }

    #[test]
    fn kerberos_tokens_without_an_ap_req_are_unreadable() {
        // TOK_ID 03 00 (KRB_ERROR), an AP-REQ tag missing, nothing at all.
        for inner in [&[3u8, 0, 0x7e, 0][..], &[1, 0, 0x30, 0], &[1, 0], &[]] {
            let mut krb = tlv(TAG_OID, OID_KRB5);
            krb.extend_from_slice(inner);
            let token = tlv(TAG_GSS_INITIAL, &krb);
            assert_eq!(
                classify(&token),
                Token::Kerberos(KerberosLeg::Unreadable),
                "{inner:?}"
            );
        }
    }

    /// A NegTokenResp with a `supportedMech` and a `responseToken`.
    fn response(supported: Option<&[u8]>, token: &[u8]) -> Vec<u8> {
        let mut fields = Vec::new();
        if let Some(oid) = supported {
            fields.extend(tlv(0xa1, &tlv(TAG_OID, oid)));
        }
        fields.extend(tlv(0xa2, &tlv(TAG_OCTET_STRING, token)));
        tlv(TAG_NEG_TOKEN_RESP, &tlv(TAG_SEQUENCE, &fields))
    }

    #[test]
    fn an_ap_req_in_a_response_token_is_found() {
        // A client that offered Kerberos without an optimistic token sends its AP-REQ in
        // the next leg: exgate must read it there too, or the offer would be a way around
        // the ticket's user (the AP-REQ would ride on the offer's decision).
        let mut gss = tlv(TAG_OID, OID_MS_KRB5);
        gss.extend_from_slice(&[1, 0, 0x6e, 0x01, 0x00]);
        let gss = tlv(TAG_GSS_INITIAL, &gss);
        let expected = ap_req(&[0x6e, 0x01, 0x00]);
        assert_eq!(classify(&response(Some(OID_KRB5), &gss)), expected);
        assert_eq!(classify(&response(None, &gss)), expected);
        assert_eq!(classify(&response(None, &[0x6e, 0x01, 0x00])), expected);
        assert_eq!(
            classify(&response(Some(OID_KRB5), b"junk")),
            Token::Kerberos(KerberosLeg::Unreadable)
        );
        assert_eq!(classify(&response(None, b"junk")), Token::Continuation);
    }

    #[test]
    fn spnego_init_without_token_follows_the_first_mechanism() {
        let init_with = |oid: &[u8]| {
            let mech_types = tlv(0xa0, &tlv(TAG_SEQUENCE, &tlv(TAG_OID, oid)));
            let init = tlv(TAG_NEG_TOKEN_INIT, &tlv(TAG_SEQUENCE, &mech_types));
            tlv(TAG_GSS_INITIAL, &[tlv(TAG_OID, OID_SPNEGO), init].concat())
        };
        assert_eq!(
            classify(&init_with(OID_NTLMSSP)),
            Token::Ntlm(NtlmMessage::Negotiate)
        );
        assert_eq!(
            classify(&init_with(OID_KRB5)),
            Token::Kerberos(KerberosLeg::Offered)
        );
        assert_eq!(classify(&init_with(&[0x2a, 0x03])), Token::Unknown);
    }

    #[test]
    fn bare_neg_token_resp_is_a_continuation() {
        let accept = tlv(0xa0, &tlv(0x0a, &[0]));
        let resp = tlv(TAG_NEG_TOKEN_RESP, &tlv(TAG_SEQUENCE, &accept));
        assert_eq!(classify(&resp), Token::Continuation);
        let krb = tlv(0xa1, &tlv(TAG_OID, OID_KRB5));
        let resp = tlv(TAG_NEG_TOKEN_RESP, &tlv(TAG_SEQUENCE, &krb));
        assert_eq!(classify(&resp), Token::Kerberos(KerberosLeg::Offered));
    }

    /// The red team's table (issue 13): every SPNEGO token that a BER decoder, or a
    /// decoder taking the first of repeated fields, could read differently from exgate.
    /// Each names nobody (Unknown), never a handshake start or another user's leg.
    #[test]
    fn tokens_two_readers_could_read_differently_name_nobody() {
        let mut gss = tlv(TAG_OID, OID_KRB5);
        gss.extend_from_slice(&[1, 0, 0x6e, 0x01, 0x00]);
        let ticket = tlv(TAG_GSS_INITIAL, &gss);
        let type1 = build_negotiate();
        let mech_types = tlv(0xa0, &tlv(TAG_SEQUENCE, &tlv(TAG_OID, OID_KRB5)));
        let token_field = |t: &[u8]| tlv(0xa2, &tlv(TAG_OCTET_STRING, t));
        let init = |fields: &[u8]| {
            let init = tlv(TAG_NEG_TOKEN_INIT, &tlv(TAG_SEQUENCE, fields));
            tlv(TAG_GSS_INITIAL, &[tlv(TAG_OID, OID_SPNEGO), init].concat())
        };
        let resp = |fields: &[u8]| tlv(TAG_NEG_TOKEN_RESP, &tlv(TAG_SEQUENCE, fields));
        // The well-formed token is read, so the table below tests the variants.
        assert!(matches!(
            classify(&init(&[mech_types.clone(), token_field(&ticket)].concat())),
            Token::Kerberos(KerberosLeg::ApReq(_))
        ));
        let constructed = tlv(0xa2, &tlv(0x24, &tlv(TAG_OCTET_STRING, &ticket)));
        let mut indefinite = vec![0xa2, 0x80];
        indefinite.extend(tlv(TAG_OCTET_STRING, &ticket));
        indefinite.extend([0, 0]);
        let high_tag = [&[0xbf, 0x02][..], &tlv(TAG_OCTET_STRING, &ticket)[..]].concat();
        let two_elements = tlv(
            0xa2,
            &[
                tlv(TAG_OCTET_STRING, &ticket),
                tlv(TAG_OCTET_STRING, &type1),
            ]
            .concat(),
        );
        let bad_types = tlv(
            0xa0,
            &tlv(
                TAG_SEQUENCE,
                &[tlv(TAG_OID, OID_KRB5), tlv(TAG_OCTET_STRING, b"x")].concat(),
            ),
        );
        let variants: Vec<(&str, Vec<u8>)> = vec![
            (
                "ticket then Type 1",
                init(
                    &[
                        mech_types.clone(),
                        token_field(&ticket),
                        token_field(&type1),
                    ]
                    .concat(),
                ),
            ),
            (
                "ticket then an empty SEQUENCE",
                init(
                    &[
                        mech_types.clone(),
                        token_field(&ticket),
                        tlv(0xa2, &tlv(TAG_SEQUENCE, &[])),
                    ]
                    .concat(),
                ),
            ),
            (
                "mechToken before mechTypes",
                init(&[token_field(&ticket), mech_types.clone()].concat()),
            ),
            (
                "mechTypes twice",
                init(&[mech_types.clone(), mech_types.clone(), token_field(&ticket)].concat()),
            ),
            (
                "constructed OCTET STRING",
                init(&[mech_types.clone(), constructed].concat()),
            ),
            (
                "indefinite length",
                init(&[mech_types.clone(), indefinite].concat()),
            ),
            (
                "high-tag-number field",
                init(&[mech_types.clone(), high_tag].concat()),
            ),
            (
                "two elements in one field",
                init(&[mech_types.clone(), two_elements].concat()),
            ),
            (
                "a field [5]",
                init(
                    &[
                        mech_types.clone(),
                        token_field(&ticket),
                        tlv(0xa5, &tlv(0x05, &[])),
                    ]
                    .concat(),
                ),
            ),
            (
                "mechTypes with a non-OID",
                init(&[bad_types, token_field(&ticket)].concat()),
            ),
            (
                "mechToken of another type",
                init(&[mech_types.clone(), tlv(0xa2, &tlv(0x0c, &ticket))].concat()),
            ),
            (
                "trailing bytes after the token",
                [
                    init(&[mech_types.clone(), token_field(&ticket)].concat()),
                    vec![0],
                ]
                .concat(),
            ),
            (
                "responseToken twice",
                resp(&[token_field(&ticket), token_field(&type1)].concat()),
            ),
            (
                "responseToken constructed",
                resp(&tlv(0xa2, &tlv(0x24, &tlv(TAG_OCTET_STRING, &ticket)))),
            ),
            (
                "supportedMech not an OID",
                resp(
                    &[
                        tlv(0xa1, &tlv(TAG_OCTET_STRING, OID_KRB5)),
                        token_field(&ticket),
                    ]
                    .concat(),
                ),
            ),
            (
                "trailing bytes after the response",
                [resp(&token_field(&ticket)), vec![0]].concat(),
            ),
        ];
        for (name, token) in variants {
            assert_eq!(classify(&token), Token::Unknown, "{name}");
        }
    }

    /// A NegTokenInit whose mechToken is another NegTokenInit, `depth` deep, around `inner`.
    /// Built from the inside out in linear time; lengths in long form as needed.
    fn nested_spnego(depth: usize, inner: &[u8]) -> Vec<u8> {
        let head = |tag: u8, len: usize| {
            let mut h = vec![tag];
            if len < 0x80 {
                h.push(len as u8);
            } else {
                let bytes = len.to_be_bytes();
                let skip = bytes.iter().take_while(|b| **b == 0).count();
                h.push(0x80 | (bytes.len() - skip) as u8);
                h.extend_from_slice(&bytes[skip..]);
            }
            h
        };
        let mut levels = Vec::with_capacity(depth);
        let mut size = inner.len();
        for _ in 0..depth {
            let mut level = Vec::new();
            for tag in [TAG_OCTET_STRING, 0xa2, TAG_SEQUENCE, TAG_NEG_TOKEN_INIT] {
                let h = head(tag, size);
                size += h.len();
                level.splice(0..0, h);
            }
            let oid = tlv(TAG_OID, OID_SPNEGO);
            size += oid.len();
            level.splice(0..0, oid);
            let h = head(TAG_GSS_INITIAL, size);
            size += h.len();
            level.splice(0..0, h);
            levels.push(level);
        }
        let mut token: Vec<u8> = levels.into_iter().rev().flatten().collect();
        token.extend_from_slice(inner);
        assert_eq!(token.len(), size);
        token
    }

    #[test]
    fn nested_spnego_is_unknown_and_read_without_recursion() {
        // Found by review and reproduced with the `spnego` fuzz binary: the decoder
        // followed SPNEGO nested in SPNEGO recursively, ~28 bytes per level, so a 1 MiB
        // header (server.max_header_bytes allows it) overflowed a 2 MiB stack such as a
        // tokio worker's and aborted the process. One level deep is no client's either.
        assert_eq!(
            classify(&nested_spnego(2, &build_negotiate())),
            Token::Unknown
        );
        assert_eq!(
            classify(&nested_spnego(1, &build_spnego_kerberos(100))),
            Token::Unknown
        );
        let deep = nested_spnego(23_000, &build_spnego_kerberos(100));
        assert!(deep.len() < 786_432, "fits a 1 MiB header in base64");
        let token = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || classify(&deep))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(token, Token::Unknown);
    }

    #[test]
    fn garbage_and_truncated_tokens_are_unknown() {
        assert_eq!(classify(b""), Token::Unknown);
        assert_eq!(classify(b"hello"), Token::Unknown);
        let full = build_spnego_init(&build_negotiate());
        for len in 1..full.len() {
            assert_ne!(
                classify(&full[..len]),
                Token::Ntlm(NtlmMessage::Challenge),
                "len {len}"
            );
        }
        assert_eq!(classify(&full[..5]), Token::Unknown);
        assert_eq!(classify(&[0x60, 0x03, 0x06, 0x01, 0x00]), Token::Unknown);
    }
}
