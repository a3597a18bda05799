//! SPNEGO (RFC 4178) as IIS speaks it to HTTP `Negotiate` clients (RFC 4559, MS-SPNG):
//! the mock Exchange reads the client's NegTokenInit and NegTokenResp and answers with
//! NegTokenResp. The types mirror RFC 4178 §4.2's ASN.1 one to one and RustCrypto's
//! `der` encodes and decodes them (strict DER, as SPNEGO requires); exgate's own reader
//! (`auth::der`) stays the one that parses untrusted tokens in the proxy.

use der::asn1::{Application, BitStringRef, ObjectIdentifier, OctetStringRef};
use der::{Choice, Decode, Encode, Enumerated, Reader, Sequence, SliceReader, TagNumber};

/// The SPNEGO mechanism, which a GSS-API initial token names (RFC 4178 §3.1).
const SPNEGO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.2");
/// NTLMSSP, the mechanism the mock Exchange selects (MS-SPNG 1.9).
pub const NTLMSSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.2.10");

/// `negState` (RFC 4178 §4.2.2).
#[derive(Clone, Copy, Debug, Eq, PartialEq, Enumerated)]
#[repr(u32)]
enum NegState {
    AcceptCompleted = 0,
    AcceptIncomplete = 1,
    Reject = 2,
    RequestMic = 3,
}

/// `NegTokenInit` (RFC 4178 §4.2.1); the module uses EXPLICIT tags.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct NegTokenInit<'a> {
    #[asn1(context_specific = "0")]
    mech_types: Vec<ObjectIdentifier>,
    #[asn1(context_specific = "1", optional = "true")]
    req_flags: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "2", optional = "true")]
    mech_token: Option<&'a OctetStringRef>,
    #[asn1(context_specific = "3", optional = "true")]
    mech_list_mic: Option<&'a OctetStringRef>,
}

/// `NegTokenResp` (RFC 4178 §4.2.2).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct NegTokenResp<'a> {
    #[asn1(context_specific = "0", optional = "true")]
    neg_state: Option<NegState>,
    #[asn1(context_specific = "1", optional = "true")]
    supported_mech: Option<ObjectIdentifier>,
    #[asn1(context_specific = "2", optional = "true")]
    response_token: Option<&'a OctetStringRef>,
    #[asn1(context_specific = "3", optional = "true")]
    mech_list_mic: Option<&'a OctetStringRef>,
}

/// `NegotiationToken` (RFC 4178 §4.2): what every leg after the first carries bare.
#[derive(Clone, Debug, Eq, PartialEq, Choice)]
enum NegotiationToken<'a> {
    #[asn1(context_specific = "0", constructed = "true")]
    Init(NegTokenInit<'a>),
    #[asn1(context_specific = "1", constructed = "true")]
    Resp(NegTokenResp<'a>),
}

/// `InitialContextToken` (RFC 2743 §3.1): `[APPLICATION 0] IMPLICIT SEQUENCE`, the
/// framing of the first leg, naming SPNEGO.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct InitialContextToken<'a> {
    this_mech: ObjectIdentifier,
    inner: NegotiationToken<'a>,
}

/// What a client's SPNEGO token carries, as far as the mock Exchange reads it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ClientToken<'a> {
    /// The first leg: a NegTokenInit in its GSS-API framing (RFC 4178 §4.2.1).
    Init {
        /// The DER of `mechTypes`, which both sides' mechListMIC sign (RFC 4178 §5).
        mech_types: Vec<u8>,
        /// The optimistic token of the client's most preferred mechanism.
        mech_token: Option<&'a [u8]>,
    },
    /// A later leg: a NegTokenResp (RFC 4178 §4.2.2).
    Resp {
        /// The mechanism's token (here an NTLM AUTHENTICATE).
        response_token: Option<&'a [u8]>,
        /// The client's signature of the mechTypes it sent first (RFC 4178 §5).
        mech_list_mic: Option<&'a [u8]>,
    },
}

/// Reads a client's `Negotiate` token as SPNEGO; None when it is not SPNEGO in strict DER
/// (raw NTLMSSP, which IIS also accepts under `Negotiate`, or garbage).
pub fn parse(token: &[u8]) -> Option<ClientToken<'_>> {
    match NegotiationToken::from_der(token).ok() {
        Some(NegotiationToken::Resp(resp)) => Some(ClientToken::Resp {
            response_token: resp.response_token.map(OctetStringRef::as_bytes),
            mech_list_mic: resp.mech_list_mic.map(OctetStringRef::as_bytes),
        }),
        Some(NegotiationToken::Init(_)) => None, // a first leg always has the framing
        None => {
            let initial = initial_context_token(token)?;
            let NegotiationToken::Init(init) = initial.inner else {
                return None;
            };
            (initial.this_mech == SPNEGO).then_some(())?;
            Some(ClientToken::Init {
                mech_types: init.mech_types.to_der().ok()?,
                mech_token: init.mech_token.map(OctetStringRef::as_bytes),
            })
        }
    }
}

fn initial_context_token(token: &[u8]) -> Option<InitialContextToken<'_>> {
    let mut reader = SliceReader::new(token).ok()?;
    let framed = Application::<InitialContextToken<'_>>::decode_implicit(&mut reader, TagNumber(0))
        .ok()??;
    reader.finish().ok()?;
    Some(framed.value)
}

fn resp(
    neg_state: NegState,
    supported_mech: Option<ObjectIdentifier>,
    response_token: Option<&[u8]>,
    mech_list_mic: Option<&[u8]>,
) -> Vec<u8> {
    fn octets(b: &[u8]) -> &OctetStringRef {
        OctetStringRef::new(b).expect("an NTLM message is far below 4 GiB")
    }
    NegotiationToken::Resp(NegTokenResp {
        neg_state: Some(neg_state),
        supported_mech,
        response_token: response_token.map(octets),
        mech_list_mic: mech_list_mic.map(octets),
    })
    .to_der()
    .expect("encoding a NegTokenResp cannot fail")
}

/// The server's first answer to an NTLM-first client (RFC 4178 §4.2.2, MS-SPNG 3.2.5.2):
/// NTLMSSP selected, the CHALLENGE as responseToken, more to come.
pub fn accept_incomplete(ntlm_challenge: &[u8]) -> Vec<u8> {
    resp(
        NegState::AcceptIncomplete,
        Some(NTLMSSP),
        Some(ntlm_challenge),
        None,
    )
}

/// The server's last answer, sent with the 200: done, with the server's mechListMIC when
/// the exchange requires one (RFC 4178 §5; MS-SPNG Appendix A, note on 3.1.5.1).
pub fn accept_completed(mech_list_mic: Option<&[u8]>) -> Vec<u8> {
    resp(NegState::AcceptCompleted, None, None, mech_list_mic)
}

#[cfg(test)]
#[path = "spnego_tests.rs"]
mod tests;
