use super::*;

fn user(upn: &str, sam: Option<&str>, aliases: &[&str]) -> UserEntry {
    UserEntry {
        upn: upn.into(),
        sam: sam.map(Into::into),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
    }
}

fn directory() -> Directory {
    Directory::new(vec![
        user(
            "user01@contoso.com",
            Some("CONTOSO\\user01"),
            &["u.one@contoso.com"],
        ),
        user("user02@contoso.com", Some("CONTOSO\\jsmith"), &[]),
        user("user03@contoso.com", None, &[]),
        user("user03@fabrikam.com", None, &[]),
    ])
    .unwrap()
}

#[test]
fn every_form_of_a_name_finds_the_user_case_insensitively() {
    let d = directory();
    for name in [
        "user01@contoso.com",
        "USER01@Contoso.Com",
        "CONTOSO\\user01",
        "contoso\\USER01",
        "user01",
        "USER01",
        "u.one@contoso.com",
        "contoso.com\\user01",
        "CONTOSO.COM\\User01",
        // IIS's default domain.
        "\\user01",
        ".\\user01",
        "\\USER01",
        // The NetBIOS name as a UPN suffix.
        "user01@contoso",
        "user01@CONTOSO",
    ] {
        assert_eq!(d.lookup(name), Lookup::Found(UserId(0)), "{name}");
    }
    // The sam name differs from the UPN name: both bare names, and the implicit UPN
    // and DNS-domain forms of the sam name, are that user.
    for name in [
        "jsmith",
        "user02",
        "\\jsmith",
        ".\\jsmith",
        "jsmith@contoso.com",
        "contoso.com\\jsmith",
        "CONTOSO\\jsmith",
        "jsmith@contoso",
    ] {
        assert_eq!(d.lookup(name), Lookup::Found(UserId(1)), "{name}");
    }
}

#[test]
fn unknown_names_are_unknown() {
    let d = directory();
    for name in [
        "nobody",
        "nobody@contoso.com",
        "CONTOSO\\nobody",
        "\\nobody",
        "fabrikam.com\\nobody",
        "",
    ] {
        assert_eq!(d.lookup(name), Lookup::Unknown, "{name}");
    }
}

/// A name Active Directory might map to a declared user but exgate cannot confirm is
/// not "unknown": the decision must fail closed.
#[test]
fn names_that_cannot_be_mapped_are_ambiguous() {
    let d = directory();
    for name in [
        // A known account under a domain exgate cannot confirm.
        "user01@fabrikam.com",
        "FABRIKAM\\user01",
        "fabrikam.com\\user01",
        "user01@evil",
        // A UPN under a domain prefix.
        "CONTOSO\\user01@contoso.com",
        // Alias account parts.
        "u.one",
        // Forms no directory accepts.
        "user01@",
        "@contoso.com",
        "user01@contoso.com@contoso.com",
        "CONTOSO\\",
        "a\\b\\user01",
        "\\\\user01",
        ".\\user01@contoso.com",
        " user01",
        "user01 ",
        "user01\t",
        "user\u{0}01",
    ] {
        assert_eq!(d.lookup(name), Lookup::Ambiguous, "{name:?}");
    }
}

#[test]
fn a_bare_name_shared_by_two_users_is_ambiguous() {
    let d = directory();
    assert_eq!(d.lookup("user03"), Lookup::Ambiguous);
    assert_eq!(d.lookup("user03@fabrikam.com"), Lookup::Found(UserId(3)));
}

#[test]
fn malformed_and_duplicate_names_are_all_reported() {
    let errors = Directory::new(vec![
        user("nodomain", None, &[]),
        user("a@contoso.com", Some("noslash"), &[" "]),
        user("b@contoso.com", None, &["A@contoso.com"]),
    ])
    .unwrap_err();
    let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "users[0].upn",
            "users[1].sam",
            "users[1].aliases[0]",
            "users[2].aliases"
        ]
    );
}
