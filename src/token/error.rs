//! Why a bearer token was refused, and how each reason is reported: the metric label,
//! the `error_description` of the Bearer challenge, and Exchange's `x-ms-diagnostics`.

/// A refused token. Data, not an I/O error: each variant maps to one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("untrusted issuer")]
    UntrustedIssuer,
    #[error("tenant does not match issuer")]
    TenantMismatch,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("audience not accepted")]
    Audience,
    /// No signing keys could be had for the issuer at all: a 503, not the client's fault.
    #[error("no signing keys available")]
    NoKeys,
}

impl TokenError {
    /// Every error, for exhaustive tests and metric labels.
    pub const ALL: [TokenError; 10] = [
        TokenError::Malformed,
        TokenError::Algorithm,
        TokenError::UntrustedIssuer,
        TokenError::TenantMismatch,
        TokenError::UnknownKey,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::Audience,
        TokenError::NoKeys,
    ];

    /// The `result` label of `exgate_token_validations_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::Algorithm => "bad_algorithm",
            TokenError::UntrustedIssuer => "bad_issuer",
            TokenError::TenantMismatch => "bad_tenant",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::Audience => "bad_audience",
            TokenError::NoKeys => "no_keys",
        }
    }

    /// The `error_description` of the Bearer challenge (RFC 6750 §3).
    pub const fn description(self) -> &'static str {
        match self {
            TokenError::Malformed => "The access token is malformed",
            TokenError::Algorithm => "The access token's signing algorithm is not accepted",
            TokenError::UntrustedIssuer => "The access token's issuer is not trusted",
            TokenError::TenantMismatch => "The access token's tenant does not match its issuer",
            TokenError::UnknownKey => "The access token is signed with an unknown key",
            TokenError::BadSignature => "The access token's signature is invalid",
            TokenError::Expired => "The access token is expired",
            TokenError::NotYetValid => "The access token is not yet valid",
            TokenError::Audience => "The access token's audience is not accepted",
            TokenError::NoKeys => "The token issuer's signing keys are unavailable",
        }
    }

    /// The `x-ms-diagnostics` value, in Exchange's `<code>;reason="…";error_category="…"`
    /// form: 2000003 for an audience Exchange would reject, 2000001 otherwise.
    pub fn diagnostics(self) -> String {
        let (code, category) = match self {
            TokenError::Audience => (2_000_003, "invalid_resource"),
            _ => (2_000_001, "invalid_token"),
        };
        format!(
            "{code};reason=\"{}.\";error_category=\"{category}\"",
            self.description()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_knows_every_error_label() {
        assert_eq!(
            TokenError::ALL.map(TokenError::as_str),
            crate::metrics::TOKEN_ERRORS
        );
    }

    #[test]
    fn labels_are_unique_and_descriptions_are_header_safe() {
        let mut seen = std::collections::HashSet::new();
        for e in TokenError::ALL {
            assert!(seen.insert(e.as_str()));
            assert!(!e.description().contains(['"', '\\', '\r', '\n']));
            assert!(hyper::header::HeaderValue::from_str(&e.diagnostics()).is_ok());
        }
        assert_eq!(
            TokenError::Malformed.diagnostics(),
            "2000001;reason=\"The access token is malformed.\";error_category=\"invalid_token\""
        );
        assert!(TokenError::Audience.diagnostics().starts_with("2000003;"));
    }
}
