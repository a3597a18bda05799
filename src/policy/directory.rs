//! The user directory: which declared user a presented name belongs to (SPEC §4).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

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
    /// The account part (before `@`, after `\`) of every declared name, lower-cased: a
    /// presented name with one of these accounts but a domain exgate cannot confirm may
    /// still be that user to Active Directory, so it is not "unknown".
    accounts: HashSet<String>,
}

impl Directory {
    /// Builds the directory, reporting every malformed or duplicate name at once.
    ///
    /// Besides the declared names, each user is indexed under the names Active Directory
    /// derives from them: the bare account names, `dns.domain\name` for a UPN, and, for a
    /// `DOMAIN\sam` whose NetBIOS name is the first label of a UPN suffix of the directory
    /// (`CONTOSO` ↔ `contoso.com`), the implicit UPN `sam@contoso.com` and
    /// `contoso.com\sam`.
    pub fn new(users: Vec<UserEntry>) -> Result<Directory, Vec<DirectoryError>> {
        let mut errors = Vec::new();
        // Names a user declared explicitly must be unique; derived names may collide.
        let mut explicit: HashMap<String, usize> = HashMap::new();
        let mut index = HashMap::new();
        let mut derived: Vec<(String, UserId)> = Vec::new();
        let mut accounts = HashSet::new();
        let suffixes: HashSet<String> = users
            .iter()
            .filter_map(|u| split_upn(&u.upn).map(|(_, d)| d.to_lowercase()))
            .collect();
        for (i, user) in users.iter().enumerate() {
            let id = UserId(u32::try_from(i).expect("more than 4 billion users"));
            let mut err = |field: &str, message: String| {
                errors.push(DirectoryError {
                    key: format!("users[{i}].{field}"),
                    message,
                })
            };
            let Some((upn_name, upn_domain)) = split_upn(&user.upn) else {
                err(
                    "upn",
                    format!("'{}' is not of the form name@domain", user.upn),
                );
                continue;
            };
            let mut names = vec![("upn", user.upn.as_str())];
            derived.push((upn_name.to_lowercase(), id));
            derived.push((format!("{upn_domain}\\{upn_name}").to_lowercase(), id));
            if let Some(sam) = &user.sam {
                match split_sam(sam) {
                    Some((netbios, name)) => {
                        names.push(("sam", sam.as_str()));
                        derived.push((name.to_lowercase(), id));
                        let netbios = netbios.to_lowercase();
                        let name = name.to_lowercase();
                        for dns in suffixes.iter().filter(|d| first_label(d) == netbios) {
                            derived.push((format!("{name}@{dns}"), id));
                            derived.push((format!("{dns}\\{name}"), id));
                        }
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
                accounts.insert(account_part(&key).to_owned());
                match explicit.insert(key.clone(), i) {
                    Some(other) if other != i => err(
                        field,
                        format!("'{name}' is already a name of users[{other}]"),
                    ),
                    _ => {}
                }
                index.insert(key, Slot::One(id));
            }
        }
        for (key, id) in derived {
            if explicit.contains_key(&key) {
                continue;
            }
            accounts.insert(account_part(&key).to_owned());
            index
                .entry(key)
                .and_modify(|slot| {
                    if !matches!(slot, Slot::One(existing) if *existing == id) {
                        *slot = Slot::Ambiguous;
                    }
                })
                .or_insert(Slot::One(id));
        }
        if errors.is_empty() {
            Ok(Directory {
                users,
                index,
                accounts,
            })
        } else {
            Err(errors)
        }
    }

    /// Finds the user a presented name belongs to, case-insensitively, under every form
    /// Active Directory and IIS accept for one account (SPEC §3): `user@domain`,
    /// `DOMAIN\user` (NetBIOS or DNS domain), `\user` and `.\user` (IIS's default
    /// domain), the bare `user`, and aliases.
    ///
    /// [`Lookup::Unknown`] means no declared user could be meant (the organization
    /// default applies). A name exgate cannot map with certainty — a known account under
    /// a domain it cannot confirm (`FABRIKAM\user01`), a form no directory accepts
    /// (`a\b\c`, `user@`, surrounding blanks, control characters) — is
    /// [`Lookup::Ambiguous`], so that the decision fails closed.
    pub fn lookup(&self, presented: &str) -> Lookup {
        if presented.is_empty() {
            return Lookup::Unknown;
        }
        // Most names arrive in lower case already: no copy then.
        let key: Cow<'_, str> = match presented
            .bytes()
            .any(|b| !b.is_ascii() || b.is_ascii_uppercase())
        {
            true => Cow::Owned(presented.to_lowercase()),
            false => Cow::Borrowed(presented),
        };
        if let Some(found) = self.lookup_exact(&key) {
            return found;
        }
        let Some(form) = NameForm::parse(&key) else {
            return Lookup::Ambiguous;
        };
        let (account, alternate) = match form {
            NameForm::Bare(name) => (name, None),
            // IIS's default domain: the account, whichever domain that is.
            NameForm::DefaultDomain(name) => (name, Some(name.to_owned())),
            // `user@CONTOSO`: the NetBIOS name where a UPN suffix belongs.
            NameForm::Upn(name, domain) if !domain.contains('.') => {
                (name, Some(format!("{domain}\\{name}")))
            }
            NameForm::Upn(name, _) => (name, None),
            NameForm::DomainAccount(name) => (account_part(name), None),
        };
        if let Some(found) = alternate.and_then(|k| self.lookup_exact(&k)) {
            return found;
        }
        if self.accounts.contains(account) {
            Lookup::Ambiguous
        } else {
            Lookup::Unknown
        }
    }

    fn lookup_exact(&self, key: &str) -> Option<Lookup> {
        self.index.get(key).map(|slot| match slot {
            Slot::One(id) => Lookup::Found(*id),
            Slot::Ambiguous => Lookup::Ambiguous,
        })
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

/// The shapes a presented (lower-cased) name can have.
enum NameForm<'a> {
    /// `user`.
    Bare(&'a str),
    /// `\user` or `.\user`.
    DefaultDomain(&'a str),
    /// `user@domain`.
    Upn(&'a str, &'a str),
    /// `DOMAIN\user` (the user part may itself look like a UPN); the domain is not kept
    /// because a `DOMAIN\user` the index does not hold is never certain.
    DomainAccount(&'a str),
}

impl<'a> NameForm<'a> {
    /// None for a name no directory accepts: blanks around it, control characters,
    /// empty parts, or more than one separator.
    fn parse(name: &'a str) -> Option<NameForm<'a>> {
        let blank_or_control = match name.is_ascii() {
            true => {
                let b = name.as_bytes();
                b.iter().any(u8::is_ascii_control)
                    || b.first().is_some_and(u8::is_ascii_whitespace)
                    || b.last().is_some_and(u8::is_ascii_whitespace)
            }
            false => name.trim() != name || name.chars().any(char::is_control),
        };
        if blank_or_control {
            return None;
        }
        let form = match name.split_once('\\') {
            Some((_, user)) if user.contains('\\') || user.is_empty() => return None,
            Some(("" | ".", user)) if !user.contains('@') => NameForm::DefaultDomain(user),
            Some(("" | ".", _)) => return None,
            Some((_, user)) => NameForm::DomainAccount(user),
            None => match name.split_once('@') {
                Some((user, domain))
                    if !user.is_empty() && !domain.is_empty() && !domain.contains('@') =>
                {
                    NameForm::Upn(user, domain)
                }
                Some(_) => return None,
                None => NameForm::Bare(name),
            },
        };
        Some(form)
    }
}

/// `user` of `user@domain`, `DOMAIN\user` or `DOMAIN\user@domain`.
fn account_part(name: &str) -> &str {
    let name = name.rsplit_once('\\').map_or(name, |(_, n)| n);
    name.split_once('@').map_or(name, |(n, _)| n)
}

fn first_label(dns: &str) -> &str {
    dns.split_once('.').map_or(dns, |(label, _)| label)
}

fn split_sam(sam: &str) -> Option<(&str, &str)> {
    let (domain, name) = sam.split_once('\\')?;
    (!domain.is_empty() && !name.is_empty() && !name.contains('\\')).then_some((domain, name))
}

#[cfg(test)]
#[path = "directory_tests.rs"]
mod tests;
