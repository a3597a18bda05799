//! The claims exgate reads from an Entra ID or AD FS access token: who the user is, and
//! whether MFA was performed (SPEC §5).

use serde::Deserialize;

/// The AD FS claim type that carries authentication methods through federation.
pub const AUTHN_METHODS_REFERENCES: &str =
    "http://schemas.microsoft.com/claims/authnmethodsreferences";
/// The AD FS value for multi-factor authentication.
pub const MULTIPLE_AUTHN: &str = "http://schemas.microsoft.com/claims/multipleauthn";

/// A claim that may be a string or an array of strings.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// Whether any value satisfies `f`.
    pub fn any(&self, f: impl Fn(&str) -> bool) -> bool {
        match self {
            OneOrMany::None => false,
            OneOrMany::One(v) => f(v),
            OneOrMany::Many(vs) => vs.iter().any(|v| f(v)),
        }
    }

    fn contains(&self, value: &str) -> bool {
        match self {
            OneOrMany::None => false,
            OneOrMany::One(v) => v == value,
            OneOrMany::Many(vs) => vs.iter().any(|v| v == value),
        }
    }
}

/// The claims that matter here; everything else in the token is ignored.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub tid: Option<String>,
    #[serde(default)]
    pub aud: OneOrMany,
    #[serde(default)]
    pub exp: Option<u64>,
    #[serde(default)]
    pub nbf: Option<u64>,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(
        default,
        rename = "http://schemas.microsoft.com/claims/authnmethodsreferences"
    )]
    pub authn_methods: OneOrMany,
    #[serde(default)]
    pub acrs: Vec<String>,
    #[serde(default)]
    pub upn: Option<String>,
    #[serde(default)]
    pub unique_name: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub oid: Option<String>,
}

impl Claims {
    /// Whether the token shows multi-factor authentication: `amr` contains `mfa` or
    /// `ngcmfa` (Entra v1), the AD FS `authnmethodsreferences` claim holds
    /// `multipleauthn`, or `acrs` holds one of `auth_context_ids` (v2 tokens).
    pub fn has_mfa(&self, auth_context_ids: &[String]) -> bool {
        self.amr.iter().any(|m| m == "mfa" || m == "ngcmfa")
            || self.authn_methods.contains(MULTIPLE_AUTHN)
            || self.acrs.iter().any(|a| auth_context_ids.contains(a))
    }

    /// The user: `upn`, else `unique_name`, else `preferred_username`, else `oid`.
    pub fn user(&self) -> Option<&str> {
        [
            &self.upn,
            &self.unique_name,
            &self.preferred_username,
            &self.oid,
        ]
        .into_iter()
        .find_map(|c| c.as_deref().filter(|s| !s.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn mfa_is_read_from_amr_adfs_claim_or_auth_context() {
        let none: &[String] = &[];
        assert!(claims(r#"{"amr":["pwd","mfa"]}"#).has_mfa(none));
        assert!(claims(r#"{"amr":["ngcmfa"]}"#).has_mfa(none));
        assert!(!claims(r#"{"amr":["pwd","rsa"]}"#).has_mfa(none));
        assert!(!claims(r#"{"amr":["wiaormfa"]}"#).has_mfa(none));
        let adfs = format!(r#"{{"{AUTHN_METHODS_REFERENCES}":"{MULTIPLE_AUTHN}"}}"#);
        assert!(claims(&adfs).has_mfa(none));
        let adfs_list = format!(
            r#"{{"{AUTHN_METHODS_REFERENCES}":["urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport","{MULTIPLE_AUTHN}"]}}"#
        );
        assert!(claims(&adfs_list).has_mfa(none));
        let pwd_only = format!(r#"{{"{AUTHN_METHODS_REFERENCES}":"urn:x:password"}}"#);
        assert!(!claims(&pwd_only).has_mfa(none));
        let v2 = claims(r#"{"acrs":["c1","c3"]}"#);
        assert!(!v2.has_mfa(none));
        assert!(v2.has_mfa(&["c3".to_string()]));
    }

    #[test]
    fn user_prefers_upn_then_unique_name_then_preferred_username_then_oid() {
        assert_eq!(
            claims(r#"{"upn":"a@x","unique_name":"b","oid":"o"}"#).user(),
            Some("a@x")
        );
        assert_eq!(claims(r#"{"unique_name":"b","oid":"o"}"#).user(), Some("b"));
        assert_eq!(
            claims(r#"{"preferred_username":"c","oid":"o"}"#).user(),
            Some("c")
        );
        assert_eq!(claims(r#"{"oid":"o"}"#).user(), Some("o"));
        assert_eq!(claims(r#"{"upn":""}"#).user(), None);
    }
}
