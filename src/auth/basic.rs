//! `Basic` credentials (RFC 7617): the user is extracted for policy; the password is kept
//! only as a [`Secret`] because `BasicAuthToOAuthConversion` carries a token there.

use std::fmt;

use super::{Secret, decode_base64};

/// A parsed `Basic` header. A malformed one (invalid base64, no `:`, empty user) has no
/// user but is still Basic, and still legacy.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    user: Option<String>,
    password: Secret,
}

impl BasicCredentials {
    /// Parses the token after `Basic `.
    pub fn parse(token: &[u8]) -> BasicCredentials {
        let Some(decoded) = decode_base64(token) else {
            return BasicCredentials::malformed();
        };
        let Some(colon) = decoded.iter().position(|b| *b == b':') else {
            return BasicCredentials::malformed();
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let user = (!user.is_empty()).then(|| decode_user(user));
        let password = Secret::new(password);
        // Overwrite the decoded copy: only the Secret keeps the password.
        let mut decoded = decoded;
        decoded.iter_mut().for_each(|b| *b = 0);
        BasicCredentials { user, password }
    }

    fn malformed() -> BasicCredentials {
        BasicCredentials {
            user: None,
            password: Secret::new(b""),
        }
    }

    /// The user as presented: `user@domain`, `DOMAIN\user` or `user`.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether the header could not be read as `user:password`.
    pub fn is_malformed(&self) -> bool {
        self.user.is_none()
    }

    /// The password (an OAuth token under `BasicAuthToOAuthConversion`).
    pub fn password(&self) -> &Secret {
        &self.password
    }

    /// The OAuth access token the password carries under `BasicAuthToOAuthConversion`
    /// (SPEC §3): the password itself or what follows `Bearer ` in it, when that has the
    /// shape of a JWS compact serialization (RFC 7515 §7.1: three base64url parts, the
    /// first a JSON object). None when the password is a password.
    pub fn token(&self) -> Option<&[u8]> {
        let password = self.password.expose();
        let token = match password.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case(b"Bearer ") => password[7..].trim_ascii(),
            _ => password,
        };
        looks_like_jwt(token).then_some(token)
    }
}

/// Three non-empty base64url parts whose first decodes to a JSON object (`{…`).
fn looks_like_jwt(token: &[u8]) -> bool {
    use base64::Engine as _;
    let mut parts = token.split(|b| *b == b'.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let base64url = |p: &[u8]| {
        !p.is_empty()
            && p.iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    };
    if !(base64url(header) && base64url(payload) && base64url(signature)) {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .is_ok_and(|h| h.trim_ascii_start().first() == Some(&b'{'))
}

/// RFC 7617 leaves the charset to the server; Windows clients send UTF-8 or Latin-1.
fn decode_user(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}
