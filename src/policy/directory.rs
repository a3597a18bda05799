//! The user directory: which declared user a presented name belongs to (SPEC §4).

use std::collections::HashMap;

/// A user as declared in `[[users]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEntry {
    /// `name@domain`.
    pub upn: String,
    /// `DOMAIN\name`, when the user has an on-premises account.
    pub sam: Option<String>,
    /// Other names the user signs in with (SMTP addresses, old UPNs).
    pub aliases: Vec<String>,
}

/// The index of a user in the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub u32);

/// The result of looking a presented name up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(UserId),
    /// Nobody has this name: the organization default applies.
    Unknown,
    /// A bare name shared by two users: the proxy cannot tell who it is.
    Ambiguous,
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    One(UserId),
    Ambiguous,
}

/// A problem with the declared users, naming the entry (`users[2].upn`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct DirectoryError {
    pub key: String,
    pub message: String,
}

/// Declared users with a case-insensitive index over every name they can present.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    users: Vec<UserEntry>,
    index: HashMap<String, Slot>,
}

impl Directory {
    /// Builds the directory, reporting every malformed or duplicate name at once.
    pub fn new(users: Vec<UserEntry>) -> Result<Directory, Vec<DirectoryError>> {
        let mut errors = Vec::new();
        // Names a user declared explicitly must be unique; bare names may collide.
        let mut explicit: HashMap<String, usize> = HashMap::new();
        let mut index = HashMap::new();
        for (i, user) in users.iter().enumerate() {
            let id = UserId(u32::try_from(i).expect("more than 4 billion users"));
            let mut err = |field: &str, message: String| {
                errors.push(DirectoryError {
                    key: format!("users[{i}].{field}"),
                    message,
                })
            };
            let Some((upn_name, _)) = split_upn(&user.upn) else {
                err(
                    "upn",
                    format!("'{}' is not of the form name@domain", user.upn),
                );
                continue;
            };
            let mut names = vec![("upn", user.upn.as_str())];
            let mut bare = vec![upn_name];
            if let Some(sam) = &user.sam {
                match split_sam(sam) {
                    Some((_, name)) => {
                        names.push(("sam", sam.as_str()));
                        bare.push(name);
                    }
                    None => err("sam", format!("'{sam}' is not of the form DOMAIN\\name")),
                }
            }
            for (j, alias) in user.aliases.iter().enumerate() {
                if alias.trim().is_empty() {
                    err(&format!("aliases[{j}]"), "alias is empty".into());
                } else {
                    names.push(("aliases", alias.as_str()));
                }
            }
            for (field, name) in names {
                let key = name.to_lowercase();
                match explicit.insert(key.clone(), i) {
                    Some(other) if other != i => err(
                        field,
                        format!("'{name}' is already a name of users[{other}]"),
                    ),
                    _ => {}
                }
                index.insert(key, Slot::One(id));
            }
            for name in bare {
                let key = name.to_lowercase();
                if explicit.contains_key(&key) {
                    continue;
                }
                index
                    .entry(key)
                    .and_modify(|slot| {
                        if !matches!(slot, Slot::One(existing) if *existing == id) {
                            *slot = Slot::Ambiguous;
                        }
                    })
                    .or_insert(Slot::One(id));
            }
        }
        if errors.is_empty() {
            Ok(Directory { users, index })
        } else {
            Err(errors)
        }
    }

    /// Finds the user a presented name (`user@domain`, `DOMAIN\user`, `user`, alias)
    /// belongs to, case-insensitively. A DNS-style domain (`contoso.com\user`, as NTLM
    /// may present it) also matches the UPN `user@contoso.com`.
    pub fn lookup(&self, presented: &str) -> Lookup {
        let key = presented.to_lowercase();
        match self.index.get(&key) {
            Some(Slot::One(id)) => Lookup::Found(*id),
            Some(Slot::Ambiguous) => Lookup::Ambiguous,
            None => match split_sam(&key) {
                Some((domain, name)) if domain.contains('.') => {
                    self.lookup_exact(&format!("{name}@{domain}"))
                }
                _ => Lookup::Unknown,
            },
        }
    }

    fn lookup_exact(&self, key: &str) -> Lookup {
        match self.index.get(key) {
            Some(Slot::One(id)) => Lookup::Found(*id),
            Some(Slot::Ambiguous) => Lookup::Ambiguous,
            None => Lookup::Unknown,
        }
    }

    /// The declared user behind an id.
    pub fn user(&self, id: UserId) -> &UserEntry {
        &self.users[id.0 as usize]
    }

    /// How many users are declared.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no users are declared.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn split_upn(upn: &str) -> Option<(&str, &str)> {
    let (name, domain) = upn.rsplit_once('@')?;
    (!name.is_empty() && !domain.is_empty() && !name.contains('\\')).then_some((name, domain))
}

fn split_sam(sam: &str) -> Option<(&str, &str)> {
    let (domain, name) = sam.split_once('\\')?;
    (!domain.is_empty() && !name.is_empty() && !name.contains('\\')).then_some((domain, name))
}

#[cfg(test)]
mod tests {
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
            "u.one@contoso.com",
            "contoso.com\\user01",
        ] {
            assert_eq!(d.lookup(name), Lookup::Found(UserId(0)), "{name}");
        }
        // The sam name differs from the UPN name: both bare names work.
        assert_eq!(d.lookup("jsmith"), Lookup::Found(UserId(1)));
        assert_eq!(d.lookup("user02"), Lookup::Found(UserId(1)));
    }

    #[test]
    fn unknown_names_are_unknown() {
        let d = directory();
        for name in ["nobody", "user01@fabrikam.com", "FABRIKAM\\user01", ""] {
            assert_eq!(d.lookup(name), Lookup::Unknown, "{name}");
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
}
