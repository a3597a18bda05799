use super::entra::{ScopeError, object_id, requested_acrs, resource_of};
use super::*;

#[test]
fn v2_scopes_name_one_resource_and_its_permissions() {
    assert_eq!(
        resource_of(
            "https://outlook.office365.com/EWS.AccessAsUser.All offline_access openid profile"
        ),
        Ok((
            "https://outlook.office365.com".into(),
            vec!["EWS.AccessAsUser.All".into()]
        ))
    );
    assert_eq!(
        resource_of("https://mail.contoso.com/.default"),
        Ok(("https://mail.contoso.com".into(), vec![".default".into()]))
    );
    assert_eq!(
        resource_of("openid profile offline_access"),
        Err(ScopeError::NoResource)
    );
    assert_eq!(
        resource_of("EWS.AccessAsUser.All"),
        Err(ScopeError::NoResource)
    );
    assert_eq!(
        resource_of(
            "https://outlook.office365.com/EWS.AccessAsUser.All https://graph.microsoft.com/Mail.Read"
        ),
        Err(ScopeError::SeveralResources)
    );
}

#[test]
fn claims_challenges_yield_their_auth_context_ids() {
    // Microsoft's documented challenge for auth context c1, as MSAL forwards it.
    assert_eq!(
        requested_acrs(r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#),
        Ok(vec!["c1".to_owned()])
    );
    assert_eq!(
        requested_acrs(r#"{"access_token":{"acrs":{"essential":true,"values":["c2","c3"]}}}"#),
        Ok(vec!["c2".to_owned(), "c3".to_owned()])
    );
    // Conditional Access's own claims (policy ids, or MSAL's client capabilities) ask
    // for no context but are still a claims request.
    assert_eq!(
        requested_acrs(r#"{"access_token":{"capolids":{"essential":true,"values":["p"]}}}"#),
        Ok(vec![])
    );
    assert_eq!(requested_acrs("not json"), Err(()));
    assert_eq!(requested_acrs("[1]"), Err(()));
}

#[test]
fn tenants_and_issuers_are_named_as_entra_names_them() {
    assert_eq!(tenant_of("common"), Some("common"));
    assert_eq!(tenant_of("Contoso.onmicrosoft.com"), Some(TENANT));
    assert_eq!(tenant_of(TENANT), Some(TENANT));
    assert_eq!(tenant_of("fabrikam.com"), None);
    assert_eq!(
        issuer(TENANT, Version::V2),
        format!("https://login.microsoftonline.com/{TENANT}/v2.0")
    );
    assert_eq!(
        issuer("common", Version::V1),
        "https://sts.windows.net/{tenantid}/"
    );
}

#[test]
fn object_ids_are_stable_and_distinct_per_user() {
    let ids: Vec<String> = crate::lab::USERS.iter().map(|u| object_id(u.upn)).collect();
    assert_eq!(ids[0], object_id("USER01@contoso.com"));
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");
    assert_eq!(ids[0].len(), 36);
}
