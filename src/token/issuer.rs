//! Matching a token's `iss` against configured issuers, exact or `{tenantid}` templates
//! (multi-tenant Entra: `https://sts.windows.net/{tenantid}/`, `…/{tenantid}/v2.0`).

use super::TokenError;

/// A configured issuer, split around its `{tenantid}` placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerPattern {
    prefix: String,
    /// `Some` for a template: what follows `{tenantid}`.
    suffix: Option<String>,
}

impl IssuerPattern {
    /// Parses `https://sts.windows.net/{tenantid}/` or an exact issuer.
    pub fn new(issuer: &str) -> IssuerPattern {
        match issuer.split_once("{tenantid}") {
            Some((prefix, suffix)) => IssuerPattern {
                prefix: prefix.to_owned(),
                suffix: Some(suffix.to_owned()),
            },
            None => IssuerPattern {
                prefix: issuer.to_owned(),
                suffix: None,
            },
        }
    }

    /// Whether `iss` is this issuer's (for a template: its shape, any tenant).
    pub fn matches(&self, iss: &str) -> bool {
        match &self.suffix {
            None => iss == self.prefix,
            Some(suffix) => iss
                .strip_prefix(self.prefix.as_str())
                .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                .is_some_and(|tenant| !tenant.is_empty() && !tenant.contains('/')),
        }
    }

    /// Checks a matching `iss` against the token's `tid`: for a template the tenant in
    /// the issuer must be a GUID equal to `tid`.
    pub fn check_tenant(&self, iss: &str, tid: Option<&str>) -> Result<(), TokenError> {
        let Some(suffix) = &self.suffix else {
            return Ok(());
        };
        let tenant = iss
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_suffix(suffix.as_str()))
            .ok_or(TokenError::UntrustedIssuer)?;
        match tid {
            Some(tid) if is_guid(tenant) && tenant.eq_ignore_ascii_case(tid) => Ok(()),
            _ => Err(TokenError::TenantMismatch),
        }
    }
}

/// `8-4-4-4-12` hex digits.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    #[test]
    fn exact_issuers_match_exactly() {
        let p = IssuerPattern::new("https://adfs.contoso.com/adfs");
        assert!(p.matches("https://adfs.contoso.com/adfs"));
        assert!(!p.matches("https://adfs.contoso.com/adfs/"));
        assert_eq!(
            p.check_tenant("https://adfs.contoso.com/adfs", None),
            Ok(())
        );
    }

    #[test]
    fn templates_match_any_tenant_and_check_it_against_tid() {
        for template in [
            "https://sts.windows.net/{tenantid}/",
            "https://login.microsoftonline.com/{tenantid}/v2.0",
        ] {
            let p = IssuerPattern::new(template);
            let iss = template.replace("{tenantid}", TID);
            assert!(p.matches(&iss));
            assert_eq!(p.check_tenant(&iss, Some(TID)), Ok(()));
            assert_eq!(
                p.check_tenant(&iss, Some(&TID.to_uppercase())),
                Ok(()),
                "GUIDs compare case-insensitively"
            );
            assert_eq!(
                p.check_tenant(&iss, Some("00000000-0000-0000-0000-000000000000")),
                Err(TokenError::TenantMismatch)
            );
            assert_eq!(p.check_tenant(&iss, None), Err(TokenError::TenantMismatch));
        }
    }

    #[test]
    fn template_tenant_must_be_a_single_guid_segment() {
        let p = IssuerPattern::new("https://sts.windows.net/{tenantid}/");
        assert!(!p.matches("https://sts.windows.net//"));
        assert!(!p.matches("https://sts.windows.net/a/b/"));
        assert!(!p.matches("https://evil.example/72f988bf-86f1-41af-91ab-2d7cd011db47/"));
        assert!(p.matches("https://sts.windows.net/common/"));
        assert_eq!(
            p.check_tenant("https://sts.windows.net/common/", Some("common")),
            Err(TokenError::TenantMismatch)
        );
    }
}
