//! The decision and its reason: data, not errors. Both have stable `as_str()` spellings
//! that become metric labels and audit-log values.

use std::fmt;

use super::directory::UserId;
use super::protocol::Protocol;
use super::store::PolicyId;
use crate::auth::Scheme;

/// What happens to the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Forward to Exchange.
    Allow,
    /// Forward, but record that a policy would have blocked it.
    ReportOnly,
    /// Answer 401 with the Bearer challenge: a client probing for modern auth.
    Challenge,
    /// Answer it here (401, or 403 for blocked modern auth); never forwarded.
    Block,
    /// Answer 400: the request itself is ambiguous or hostile.
    Reject,
}

impl Action {
    /// Every action, for exhaustive tests and metric pre-registration.
    pub const ALL: [Action; 5] = [
        Action::Allow,
        Action::ReportOnly,
        Action::Challenge,
        Action::Block,
        Action::Reject,
    ];

    /// The label value (`decision` in metrics and the audit log).
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::ReportOnly => "report_only",
            Action::Challenge => "challenge",
            Action::Block => "block",
            Action::Reject => "reject",
        }
    }

    /// Whether the request goes to Exchange.
    pub const fn forwards(self) -> bool {
        matches!(self, Action::Allow | Action::ReportOnly)
    }
}

/// Why the engine decided what it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No credentials: anonymous requests are Exchange's to answer.
    Anonymous,
    /// OWA and ECP are not governed by authentication policies.
    NotGoverned,
    /// Legacy authentication, and no policy applies to the user.
    NoPolicy,
    /// Legacy authentication that the user's effective policy allows.
    PolicyAllows,
    /// Legacy authentication to a protocol that has no switch in this dialect
    /// (on-premises PowerShell, Reporting Web Services, Outlook Service).
    NoSwitch,
    /// Legacy authentication to an unclassified path, with `other_paths = "pass"`.
    OtherPathPass,
    /// An NTLM Type 1 leg: the user is not known until Type 3.
    NtlmHandshake,
    /// A bearer token (its validation is the token stage's).
    ModernAuth,
    /// A Basic header whose password is an OAuth token (`BasicAuthToOAuthConversion`).
    BasicAuthToOAuth,
    /// `Authorization: Bearer` with no token.
    BearerProbe,
    /// The effective policy blocks legacy authentication for this protocol.
    LegacyBlocked,
    /// NTLM Type 1 when every policy that could apply blocks the protocol.
    LegacyBlockedForEveryone,
    /// Legacy credentials that name no identifiable user, where some policy that could
    /// apply blocks the protocol.
    UnidentifiedLegacy,
    /// Exchange Online offers no NTLM, Negotiate or Digest.
    LegacyNotOffered,
    /// Legacy authentication to an unclassified path (`other_paths = "block-legacy"`).
    OtherPathLegacy,
    /// An authentication scheme Exchange does not speak.
    UnsupportedScheme,
    /// On-premises `BlockModernAuth<Protocol>`.
    ModernAuthBlocked,
    /// The bearer token failed validation (the token stage).
    InvalidToken,
    /// The bearer token is valid but shows no MFA where `tokens.mfa.require_for` asks.
    MfaRequired,
    /// No signing keys could be had for the token's issuer.
    SigningKeysUnavailable,
    /// Smart lockout: too many bad passwords for this user from this location.
    LockedOut,
    /// Smart lockout: this user's attempts from this location already in flight could
    /// reach the threshold; this one waits (503, `Retry-After`), so that a burst of
    /// parallel guesses cannot all reach Active Directory.
    LockoutPending,
    /// The client address is a flagged password-spray source (`spray.block`).
    SpraySuspect,
    /// The path is ambiguous (SPEC §2).
    AmbiguousPath,
    /// The ProxyShell pattern.
    ProxyShell,
    /// Two or more `Authorization` headers.
    DuplicateAuthorization,
    /// Request framing a strict HTTP/1.1 server refuses (SPEC §6); the metric
    /// `exgate_client_errors_total` says which.
    BadRequest,
}

impl Reason {
    /// Every reason, for exhaustive tests.
    pub const ALL: [Reason; 27] = [
        Reason::Anonymous,
        Reason::NotGoverned,
        Reason::NoPolicy,
        Reason::PolicyAllows,
        Reason::NoSwitch,
        Reason::OtherPathPass,
        Reason::NtlmHandshake,
        Reason::ModernAuth,
        Reason::BasicAuthToOAuth,
        Reason::BearerProbe,
        Reason::LegacyBlocked,
        Reason::LegacyBlockedForEveryone,
        Reason::UnidentifiedLegacy,
        Reason::LegacyNotOffered,
        Reason::OtherPathLegacy,
        Reason::UnsupportedScheme,
        Reason::ModernAuthBlocked,
        Reason::InvalidToken,
        Reason::MfaRequired,
        Reason::SigningKeysUnavailable,
        Reason::LockedOut,
        Reason::LockoutPending,
        Reason::SpraySuspect,
        Reason::AmbiguousPath,
        Reason::ProxyShell,
        Reason::DuplicateAuthorization,
        Reason::BadRequest,
    ];

    /// The label value (`reason` in the audit log).
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Anonymous => "anonymous",
            Reason::NotGoverned => "not_governed",
            Reason::NoPolicy => "no_policy",
            Reason::PolicyAllows => "policy_allows",
            Reason::NoSwitch => "no_switch",
            Reason::OtherPathPass => "other_path_pass",
            Reason::NtlmHandshake => "ntlm_handshake",
            Reason::ModernAuth => "modern_auth",
            Reason::BasicAuthToOAuth => "basic_auth_to_oauth",
            Reason::BearerProbe => "bearer_probe",
            Reason::LegacyBlocked => "legacy_blocked",
            Reason::LegacyBlockedForEveryone => "legacy_blocked_for_everyone",
            Reason::UnidentifiedLegacy => "unidentified_legacy",
            Reason::LegacyNotOffered => "legacy_not_offered",
            Reason::OtherPathLegacy => "other_path_legacy",
            Reason::UnsupportedScheme => "unsupported_scheme",
            Reason::ModernAuthBlocked => "modern_auth_blocked",
            Reason::InvalidToken => "invalid_token",
            Reason::MfaRequired => "mfa_required",
            Reason::SigningKeysUnavailable => "signing_keys_unavailable",
            Reason::LockedOut => "locked_out",
            Reason::LockoutPending => "lockout_pending",
            Reason::SpraySuspect => "spray_suspect",
            Reason::AmbiguousPath => "ambiguous_path",
            Reason::ProxyShell => "proxyshell",
            Reason::DuplicateAuthorization => "duplicate_authorization",
            Reason::BadRequest => "bad_request",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine's answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub reason: Reason,
    pub protocol: Protocol,
    pub scheme: Scheme,
    /// The policy that decided, if one did.
    pub policy: Option<PolicyId>,
    /// The request used legacy authentication (counts in
    /// `exgate_legacy_auth_attempts_total`).
    pub legacy: bool,
    /// The declared user the credentials named, when the decision looked them up.
    pub user: Option<UserId>,
    /// Decided as the user who authenticated the connection earlier (SPEC §3
    /// "Connection identity"), not on credentials the request carried.
    pub connection: bool,
}
