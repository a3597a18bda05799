//! What the engine knows of a request besides its target and `Authorization`: the
//! connection it came on (who authenticated it, which Negotiate mechanism), the token
//! stage's user, and the request facts the ProxyShell guard reads. Plain data.

use crate::auth::{Credentials, KerberosLeg, Mechanism, NtlmMessage, Scheme};

/// Facts about the connection and earlier stages that the request alone does not carry.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    /// The mechanism an earlier `Negotiate` leg on this connection established.
    pub prior_mechanism: Option<Mechanism>,
    /// The user of a validated bearer token (from the token stage), for on-premises
    /// `BlockModernAuth*`. Without it the organization default decides, as for Kerberos.
    pub token_user: Option<&'a str>,
    /// Who authenticated this client connection earlier (SPEC §3 "Connection identity").
    pub connection: Option<&'a ConnectionIdentity>,
    /// What the keytab stage read from this request's Kerberos ticket.
    pub ticket: TicketRead<'a>,
    /// What the ProxyShell guard reads besides the target (SPEC §2).
    pub request: RequestFacts<'a>,
}

/// What the keytab stage (`[kerberos] keytab`, SPEC §3 "Kerberos") made of a request's
/// Kerberos leg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TicketRead<'a> {
    /// No keytab is configured: Kerberos hides the user, the organization default decides.
    #[default]
    NoKeytab,
    /// The ticket's client, as a user name (`user01@CONTOSO.COM`).
    Client(&'a str),
    /// A keytab is configured and the leg names nobody it can vouch for: its ticket did
    /// not decrypt, or it carries none.
    Unread,
}

/// Who a Kerberos leg names, as [`kerberos_subject`] maps it.
pub(crate) enum KerberosSubject<'a> {
    /// No keytab: the organization default decides.
    Hidden,
    /// An offer without a ticket: a handshake starts, like an NTLM Type 1.
    Offer,
    /// The ticket's client.
    User(&'a str),
    /// Nobody the keytab can vouch for: the strictest applicable policy decides.
    Unidentified,
}

/// The subject of a Kerberos leg (`leg`), or of a later `Negotiate` leg (`leg` None) on a
/// connection that negotiated Kerberos: the organization default without a keytab, else
/// the ticket's client or, failing that, nobody (fail closed).
pub(crate) fn kerberos_subject<'a>(
    ticket: TicketRead<'a>,
    leg: Option<&KerberosLeg>,
) -> KerberosSubject<'a> {
    match (ticket, leg) {
        (TicketRead::NoKeytab, _) => KerberosSubject::Hidden,
        (_, Some(KerberosLeg::Offered)) => KerberosSubject::Offer,
        (TicketRead::Client(user), Some(KerberosLeg::ApReq(_))) => KerberosSubject::User(user),
        _ => KerberosSubject::Unidentified,
    }
}

/// Parts of a request other than its target and `Authorization` that the ProxyShell
/// guard reads on Autodiscover v2 paths: Exchange also takes `Email` from a form body and
/// from a cookie (SPEC §2).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestFacts<'a> {
    /// The request method; None when the caller does not know it (benches, unit tests).
    pub method: Option<&'a str>,
    /// The request has a body (a `Content-Length` above 0 or a chunked body).
    pub has_body: bool,
    /// The values of the request's `Cookie` headers.
    pub cookies: &'a [&'a [u8]],
}

/// Who authenticated a client connection with NTLM or Negotiate, remembered by the proxy
/// because Exchange serves every later request on that connection as that user, with or
/// without an `Authorization` header (SPEC §3 "Connection identity").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionIdentity {
    /// The scheme that authenticated the connection (`ntlm`, `negotiate_ntlm`,
    /// `kerberos`, `negotiate`): later requests are counted under it.
    pub scheme: Scheme,
    /// Who that was, as far as exgate can tell.
    pub subject: ConnectionSubject,
}

/// The user behind a [`ConnectionIdentity`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionSubject {
    /// The user an NTLM Type 3 named, as presented (`DOMAIN\user`, `user@domain`), or
    /// the client of a Kerberos ticket the keytab opened (`user01@CONTOSO.COM`).
    User(String),
    /// Kerberos without a keytab: the ticket hides the user, so the organization default
    /// decides.
    Hidden,
    /// Credentials that named nobody: the strictest applicable policy decides.
    Unidentified,
}

impl ConnectionIdentity {
    /// The identity an authentication leg leaves on its connection when Exchange accepted
    /// it (did not answer 401): an NTLM Type 3's user, a Kerberos AP-REQ's client (as
    /// `ticket` read it), nobody for a later Negotiate leg, an undecodable Negotiate token
    /// or a leg that only starts a handshake (NTLM Type 1/2, a Kerberos offer with a
    /// keytab configured: accepted without the rest, the connection is nobody's exgate
    /// knows — found by the red team, issue 13). None for credentials that do not
    /// authenticate a connection.
    pub fn established_by(
        credentials: &Credentials,
        prior: Option<Mechanism>,
        ticket: TicketRead<'_>,
    ) -> Option<ConnectionIdentity> {
        let kerberos = |leg| match kerberos_subject(ticket, leg) {
            KerberosSubject::Hidden => Some(ConnectionSubject::Hidden),
            KerberosSubject::Offer => Some(ConnectionSubject::Unidentified),
            KerberosSubject::User(u) => Some(ConnectionSubject::User(u.to_owned())),
            KerberosSubject::Unidentified => Some(ConnectionSubject::Unidentified),
        };
        let subject = match credentials {
            Credentials::Ntlm { message, .. } => match message {
                // A leg that only starts a handshake names nobody: if Exchange accepted
                // it without the rest, the connection is nobody's we know (Exchange's
                // usual answer, a 401 challenge, leaves no identity at all).
                NtlmMessage::Negotiate | NtlmMessage::Challenge => ConnectionSubject::Unidentified,
                NtlmMessage::Authenticate(_) => credentials
                    .user()
                    .map_or(ConnectionSubject::Unidentified, |u| {
                        ConnectionSubject::User(u.into_owned())
                    }),
                NtlmMessage::Malformed => ConnectionSubject::Unidentified,
            },
            Credentials::Kerberos(leg) => kerberos(Some(leg))?,
            Credentials::NegotiateContinuation => match prior {
                Some(Mechanism::Kerberos) => kerberos(None)?,
                Some(Mechanism::Ntlm) | None => ConnectionSubject::Unidentified,
            },
            Credentials::NegotiateUnknown => ConnectionSubject::Unidentified,
            // A scheme exgate does not know, accepted where nothing governs it: the
            // connection is nobody's exgate knows (see `authenticates_connection`).
            Credentials::Other => ConnectionSubject::Unidentified,
            _ => return None,
        };
        Some(ConnectionIdentity {
            scheme: credentials.scheme(),
            subject,
        })
    }

    /// The user name as presented, for the audit log and lockout.
    pub fn user(&self) -> Option<&str> {
        match &self.subject {
            ConnectionSubject::User(u) => Some(u),
            ConnectionSubject::Hidden | ConnectionSubject::Unidentified => None,
        }
    }
}
