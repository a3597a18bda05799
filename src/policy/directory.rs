//! The user directory: which declared user a presented name belongs to (SPEC §4).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

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

/// Declared users with an index over every name they can present, keyed by [`fold`]:
/// names Active Directory takes for one account are one key.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    users: Vec<UserEntry>,
    index: HashMap<String, Slot>,
    /// The account part (before `@`, after `\`) of every declared name, folded: a
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
    ///
    /// Every name is indexed [`fold`]ed, the way lookups fold presented names. Two
    /// declared names that fold alike (`user01@contoso.com` and `ｕｓｅｒ０１@contoso.com`)
    /// are one name to Active Directory (MS-ADTS 3.1.1.2.2.4.13), so declaring them
    /// for two users is the same error as declaring one name twice.
    pub fn new(users: Vec<UserEntry>) -> Result<Directory, Vec<DirectoryError>> {
        let mut errors = Vec::new();
        // Names a user declared explicitly must be unique; derived names may collide.
        // Each folded name keeps the user and the spelling that declared it first.
        let mut explicit: HashMap<String, (usize, &str)> = HashMap::new();
        let mut index = HashMap::new();
        let mut derived: Vec<(String, UserId)> = Vec::new();
        let mut accounts = HashSet::new();
        let suffixes: HashSet<String> = users
            .iter()
            .filter_map(|u| split_upn(&fold(&u.upn)).map(|(_, d)| d.to_owned()))
            .collect();
        for (i, user) in users.iter().enumerate() {
            let id = UserId(u32::try_from(i).expect("more than 4 billion users"));
            let mut err = |field: &str, message: String| {
                errors.push(DirectoryError {
                    key: format!("users[{i}].{field}"),
                    message,
                })
            };
            let upn = fold(&user.upn);
            let Some((upn_name, upn_domain)) = split_upn(&upn) else {
                err(
                    "upn",
                    format!("'{}' is not of the form name@domain", user.upn),
                );
                continue;
            };
            let mut names = vec![("upn", user.upn.as_str(), upn.to_string())];
            derived.push((upn_name.to_owned(), id));
            derived.push((format!("{upn_domain}\\{upn_name}"), id));
            if let Some(sam) = &user.sam {
                let key = fold(sam);
                match split_sam(&key) {
                    Some((netbios, name)) => {
                        derived.push((name.to_owned(), id));
                        for dns in suffixes.iter().filter(|d| first_label(d) == netbios) {
                            derived.push((format!("{name}@{dns}"), id));
                            derived.push((format!("{dns}\\{name}"), id));
                        }
                        names.push(("sam", sam.as_str(), key.to_string()));
                    }
                    None => err("sam", format!("'{sam}' is not of the form DOMAIN\\name")),
                }
            }
            for (j, alias) in user.aliases.iter().enumerate() {
                let key = fold(alias);
                if key.trim().is_empty() {
                    err(&format!("aliases[{j}]"), "alias is empty".into());
                } else {
                    names.push(("aliases", alias.as_str(), key.into_owned()));
                }
            }
            for (field, name, key) in names {
                accounts.insert(account_part(&key).to_owned());
                match explicit.get(&key) {
                    Some(&(other, _)) if other == i => {}
                    Some(&(other, first)) if first.to_lowercase() == name.to_lowercase() => err(
                        field,
                        format!("'{name}' is already a name of users[{other}]"),
                    ),
                    Some(&(other, first)) => err(
                        field,
                        format!(
                            "'{name}' is the name '{first}' of users[{other}] to Active \
                             Directory, which ignores case, width, kana type, accents and \
                             invisible characters in names"
                        ),
                    ),
                    None => {
                        explicit.insert(key.clone(), (i, name));
                    }
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

    /// Finds the user a presented name belongs to under every form Active Directory and
    /// IIS accept for one account (SPEC §3): `user@domain`, `DOMAIN\user` (NetBIOS or DNS
    /// domain), `\user` and `.\user` (IIS's default domain), the bare `user`, and
    /// aliases; each compared as Active Directory compares names ([`fold`]: case, width,
    /// kana type, accents and invisible characters do not count).
    ///
    /// [`Lookup::Unknown`] means no declared user could be meant (the organization
    /// default applies). A name exgate cannot map with certainty — a known account under
    /// a domain it cannot confirm (`FABRIKAM\user01`), a form no directory accepts
    /// (`a\b\c`, `user@`, surrounding blanks, control characters), a declared name
    /// with characters exgate cannot weigh (`user01😀`: Windows' sorting tables give no
    /// weight to code points they do not define, so Active Directory may ignore them) —
    /// is [`Lookup::Ambiguous`], so that the decision fails closed.
    pub fn lookup(&self, presented: &str) -> Lookup {
        if presented.is_empty() {
            return Lookup::Unknown;
        }
        // Most names arrive in ASCII lower case already: no copy then.
        let key = fold(presented);
        match self.resolve(&key) {
            // ASCII has nothing exgate cannot weigh (control characters are Ambiguous).
            Lookup::Unknown if !key.is_ascii() => match skeleton(&key) {
                Cow::Owned(bare) if self.resolve(&bare) != Lookup::Unknown => Lookup::Ambiguous,
                _ => Lookup::Unknown,
            },
            lookup => lookup,
        }
    }

    /// The key lockout counts a presented name under when [`Directory::lookup`] does not
    /// find one user for it: the declared user's UPN when the name's account alone
    /// (`user01` of `user01@contoso.com.` or `FABRIKAM\user01`) finds one, else
    /// [`account_key`]. So every spelling Active Directory may take for one account
    /// counts against one threshold; a stranger's spellings share theirs.
    pub fn unmapped_key(&self, presented: &str) -> Cow<'_, str> {
        let account = account_key(presented);
        match self.lookup(&account) {
            Lookup::Found(id) => Cow::Borrowed(&self.user(id).upn),
            Lookup::Unknown | Lookup::Ambiguous => Cow::Owned(account),
        }
    }

    /// [`Directory::lookup`] of a folded name.
    fn resolve(&self, key: &str) -> Lookup {
        if let Some(found) = self.lookup_exact(key) {
            return found;
        }
        let Some(form) = NameForm::parse(key) else {
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

/// A name folded the way Active Directory compares `sAMAccountName` and
/// `userPrincipalName` values: the UnicodeString comparison rule of MS-ADTS
/// 3.1.1.2.2.4.13, which compares Windows sort keys made with `NORM_IGNORECASE |
/// NORM_IGNOREKANATYPE | NORM_IGNORENONSPACE | NORM_IGNOREWIDTH` (MS-ADTS 6.5.1). Two
/// names Active Directory takes for one account fold to one string:
///
/// - width (`NORM_IGNOREWIDTH`) and other compatibility variants: Unicode compatibility
///   decomposition (NFKD), so `ｕｓｅｒ０１` is `user01` and `é` is `e` + a combining mark;
/// - non-spacing marks (`NORM_IGNORENONSPACE`): every combining mark (General_Category
///   Mark) is dropped — also the spacing vowel signs of Indic scripts, which may merge
///   two names Active Directory tells apart: one user's policy for both, never none;
/// - kana type (`NORM_IGNOREKANATYPE`): hiragana becomes katakana;
/// - characters a sort key gives no weight: the Default_Ignorable_Code_Point characters
///   (soft hyphen, zero-width space and joiners, bidirectional controls, variation
///   selectors, the byte order mark, tags…) are dropped;
/// - case (`NORM_IGNORECASE`): Unicode lower case; `ß`, `æ` and `œ`, which Windows'
///   sorting tables expand to two letters, become `ss`, `ae` and `oe`.
///
/// Look-alike letters of other scripts stay themselves (Cyrillic `ѕ` is not `s`, to
/// Active Directory either). Pure ASCII, what almost every name is, only loses its upper
/// case, and is not copied when it has none.
pub fn fold(name: &str) -> Cow<'_, str> {
    match name
        .bytes()
        .position(|b| !b.is_ascii() || b.is_ascii_uppercase())
    {
        None => return Cow::Borrowed(name),
        // (`to_lowercase` converts ASCII in chunks: faster than `to_ascii_lowercase`.)
        Some(i) if name.as_bytes()[i..].is_ascii() => return Cow::Owned(name.to_lowercase()),
        Some(_) => {}
    }
    let mut folded = String::with_capacity(name.len());
    for c in name.nfkd() {
        if is_combining_mark(c) || is_default_ignorable(c) {
            continue;
        }
        for c in katakana(c).to_lowercase() {
            match c {
                'ß' => folded.push_str("ss"),
                'æ' => folded.push_str("ae"),
                'œ' => folded.push_str("oe"),
                c => folded.push(c),
            }
        }
    }
    Cow::Owned(folded)
}

/// The key that counts bad passwords against one account when the name is no declared
/// user's: the account part of the name, [`fold`]ed — `carol` for `carol@contoso.com`,
/// `CONTOSO\carol`, `Carol`, `carol@contoso.com.` and ` carol@contoso.com `.
///
/// The domain goes (`DOMAIN\name` → `name`, `name@suffix` → `name`), and so do blanks
/// around the account, trailing dots, control characters, and non-ASCII characters that
/// are neither letters nor digits (Windows' sorting tables give no weight to code points
/// they do not define, so Active Directory may ignore an emoji). Two accounts with one
/// name in two domains share a key: stricter, never laxer.
pub fn account_key(name: &str) -> String {
    let folded = fold(name);
    let kept = skeleton(&folded);
    account_part(&kept)
        .trim_start()
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        .to_owned()
}

/// Hiragana as the katakana of the same sound (`NORM_IGNOREKANATYPE`): the two blocks
/// are parallel from ぁ/ァ to ゖ/ヶ, and for the iteration marks ゝゞ/ヽヾ.
fn katakana(c: char) -> char {
    match c {
        '\u{3041}'..='\u{3096}' | '\u{309D}'..='\u{309E}' => {
            char::from_u32(c as u32 + 0x60).unwrap_or(c)
        }
        c => c,
    }
}

/// Unicode's Default_Ignorable_Code_Point characters (DerivedCoreProperties.txt), which
/// are invisible and which a Windows sort key gives no weight.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// A folded name without the characters exgate cannot weigh: control characters, and
/// non-ASCII characters that are neither letters nor digits (emoji, symbols, code points
/// Unicode or Windows does not define). Borrowed when there are none.
fn skeleton(folded: &str) -> Cow<'_, str> {
    let unweighed = |c: char| c.is_control() || (!c.is_ascii() && !c.is_alphanumeric());
    match folded.contains(unweighed) {
        true => Cow::Owned(folded.chars().filter(|c| !unweighed(*c)).collect()),
        false => Cow::Borrowed(folded),
    }
}

fn split_upn(upn: &str) -> Option<(&str, &str)> {
    let (name, domain) = upn.rsplit_once('@')?;
    (!name.is_empty() && !domain.is_empty() && !name.contains('\\')).then_some((name, domain))
}

/// The shapes a presented (folded) name can have.
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
