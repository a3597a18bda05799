//! `Authorization` header parsing (SPEC §3): what a client presented, never whether it is
//! right. Pure functions over bytes; every parser here is fed attacker-controlled input
//! and is bounds-checked rather than trusting any length or offset it reads.

mod basic;
pub(crate) mod der;
mod digest;
pub mod negotiate;
pub mod ntlm;
mod secret;

use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

pub use basic::BasicCredentials;
pub use negotiate::{ApReq, KerberosLeg, Mechanism};
pub use ntlm::{NtlmIdentity, NtlmMessage};
pub use secret::Secret;

/// Standard base64 that accepts missing padding: clients differ, and refusing one of them
/// would only turn a legacy attempt into an unclassifiable one.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

/// What the `Authorization` header carried.
///
/// `Debug` never prints a password or token: those live in [`Secret`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// No header: anonymous (Autodiscover v2, challenges).
    None,
    /// `Basic` — well-formed or not (a malformed one has no user).
    Basic(BasicCredentials),
    /// `Digest`, with the `username` parameter when present.
    Digest { user: Option<String> },
    /// An NTLM message, raw under `NTLM` or `Negotiate`, or wrapped in SPNEGO.
    Ntlm {
        /// The header scheme was `Negotiate` (raw or SPNEGO), not `NTLM`.
        negotiate: bool,
        message: NtlmMessage,
    },
    /// `Negotiate` carrying Kerberos: the user is hidden in the ticket, which only the
    /// service's keytab opens (`kerberos::TicketReader`).
    Kerberos(KerberosLeg),
    /// `Negotiate` NegTokenResp with no NTLM inside: a later leg of whatever mechanism
    /// this connection negotiated earlier.
    NegotiateContinuation,
    /// `Negotiate` whose token could not be decoded or names no known mechanism.
    NegotiateUnknown,
    /// `Bearer` with no token: a client probing for modern authentication.
    BearerProbe,
    /// `Bearer <token>`, not yet validated.
    Bearer(Secret),
    /// Any other scheme.
    Other,
}

/// The scheme as a metric label value (`exgate_requests_total{scheme}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    None,
    Basic,
    Digest,
    Ntlm,
    NegotiateNtlm,
    Kerberos,
    Negotiate,
    Bearer,
    Other,
}

impl Scheme {
    /// Every scheme label, for exhaustive tests and metric pre-registration.
    pub const ALL: [Scheme; 9] = [
        Scheme::None,
        Scheme::Basic,
        Scheme::Digest,
        Scheme::Ntlm,
        Scheme::NegotiateNtlm,
        Scheme::Kerberos,
        Scheme::Negotiate,
        Scheme::Bearer,
        Scheme::Other,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::None => "none",
            Scheme::Basic => "basic",
            Scheme::Digest => "digest",
            Scheme::Ntlm => "ntlm",
            Scheme::NegotiateNtlm => "negotiate_ntlm",
            Scheme::Kerberos => "kerberos",
            Scheme::Negotiate => "negotiate",
            Scheme::Bearer => "bearer",
            Scheme::Other => "other",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Two or more `Authorization` headers: which one the upstream reads is anybody's guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("more than one Authorization header")]
pub struct DuplicateAuthorization;

impl Credentials {
    /// The metric label for what was presented.
    pub fn scheme(&self) -> Scheme {
        match self {
            Credentials::None => Scheme::None,
            Credentials::Basic(_) => Scheme::Basic,
            Credentials::Digest { .. } => Scheme::Digest,
            Credentials::Ntlm {
                negotiate: false, ..
            } => Scheme::Ntlm,
            Credentials::Ntlm {
                negotiate: true, ..
            } => Scheme::NegotiateNtlm,
            Credentials::Kerberos(_) => Scheme::Kerberos,
            Credentials::NegotiateContinuation | Credentials::NegotiateUnknown => Scheme::Negotiate,
            Credentials::BearerProbe | Credentials::Bearer(_) => Scheme::Bearer,
            Credentials::Other => Scheme::Other,
        }
    }

    /// The user name as presented (`user@domain`, `DOMAIN\user` or `user`), if any.
    pub fn user(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Credentials::Basic(b) => b.user().map(Into::into),
            Credentials::Digest { user } => user.as_deref().map(Into::into),
            Credentials::Ntlm {
                message: NtlmMessage::Authenticate(id),
                ..
            } => id.presented_name(),
            _ => None,
        }
    }

    /// Whether these credentials are a leg of NTLM or Negotiate, which authenticate the
    /// connection rather than the request (RFC 4559 §6): the proxy pins it. A scheme
    /// exgate does not know counts too (fail closed): IIS 10's `Nego2`, a bare
    /// `Kerberos`, or any other may authenticate the connection at Exchange, and
    /// forwarded where nothing governs it (OWA, ECP), its connection must never reach
    /// another client through the pool (red team, issue 16).
    pub fn authenticates_connection(&self) -> bool {
        matches!(
            self,
            Credentials::Ntlm { .. }
                | Credentials::Kerberos(_)
                | Credentials::NegotiateContinuation
                | Credentials::NegotiateUnknown
                | Credentials::Other
        )
    }

    /// Whether these credentials are the first leg of a handshake (an NTLM Type 1, a
    /// Kerberos AP-REQ or offer): they carry no state of an earlier leg, so they may go
    /// on any upstream connection, a new one included.
    pub fn starts_handshake(&self) -> bool {
        matches!(
            self,
            Credentials::Ntlm {
                message: NtlmMessage::Negotiate,
                ..
            } | Credentials::Kerberos(_)
        )
    }

    /// Whether these credentials start or finish a new authentication of the connection
    /// (an NTLM Type 1 or Type 3, a Kerberos AP-REQ or offer) rather than riding on the
    /// identity an earlier handshake left on it.
    pub fn authenticates_anew(&self) -> bool {
        matches!(
            self,
            Credentials::Ntlm {
                message: NtlmMessage::Negotiate | NtlmMessage::Authenticate(_),
                ..
            } | Credentials::Kerberos(_)
        )
    }

    /// The Kerberos AP-REQ these credentials carry, for the keytab stage.
    pub fn ap_req(&self) -> Option<&ApReq> {
        match self {
            Credentials::Kerberos(KerberosLeg::ApReq(ap_req)) => Some(ap_req),
            _ => None,
        }
    }

    /// The mechanism a `Negotiate` leg established, for the proxy to remember on the
    /// connection so that a later NegTokenResp can be attributed.
    pub fn negotiated_mechanism(&self) -> Option<Mechanism> {
        match self {
            Credentials::Ntlm {
                negotiate: true, ..
            } => Some(Mechanism::Ntlm),
            Credentials::Kerberos(_) => Some(Mechanism::Kerberos),
            _ => None,
        }
    }
}

/// Parses the `Authorization` header values of one request (SPEC §3).
///
/// Takes every value so that duplicates are refused rather than silently resolved.
pub fn parse_authorization<'a, I>(values: I) -> Result<Credentials, DuplicateAuthorization>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut values = values.into_iter();
    let Some(first) = values.next() else {
        return Ok(Credentials::None);
    };
    if values.next().is_some() {
        return Err(DuplicateAuthorization);
    }
    Ok(parse_header(first))
}

/// Parses one `Authorization` header value.
pub fn parse_header(value: &[u8]) -> Credentials {
    let value = value.trim_ascii();
    let (scheme, rest) = match value.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(i) => (&value[..i], value[i..].trim_ascii()),
        None => (value, &[][..]),
    };
    if scheme.eq_ignore_ascii_case(b"Basic") {
        Credentials::Basic(BasicCredentials::parse(rest))
    } else if scheme.eq_ignore_ascii_case(b"Bearer") {
        if rest.is_empty() {
            Credentials::BearerProbe
        } else {
            Credentials::Bearer(Secret::new(rest))
        }
    } else if scheme.eq_ignore_ascii_case(b"NTLM") {
        let message = decode_base64(rest)
            .filter(|m| !m.is_empty())
            .map_or(NtlmMessage::Malformed, |m| ntlm::parse(&m));
        Credentials::Ntlm {
            negotiate: false,
            message,
        }
    } else if scheme.eq_ignore_ascii_case(b"Negotiate") {
        match decode_base64(rest).map(|t| negotiate::classify(&t)) {
            Some(negotiate::Token::Ntlm(message)) => Credentials::Ntlm {
                negotiate: true,
                message,
            },
            Some(negotiate::Token::Kerberos(leg)) => Credentials::Kerberos(leg),
            Some(negotiate::Token::Continuation) => Credentials::NegotiateContinuation,
            Some(negotiate::Token::Unknown) | None => Credentials::NegotiateUnknown,
        }
    } else if scheme.eq_ignore_ascii_case(b"Digest") {
        Credentials::Digest {
            user: digest::username(rest),
        }
    } else {
        Credentials::Other
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
