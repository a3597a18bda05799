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

/// The directory the attacker's tables below run against: ASCII names, a hiragana name,
/// a name with `ß`-to-be and an `æ` alias, and a name declared with an accent.
fn contoso() -> Directory {
    Directory::new(vec![
        user("user01@contoso.com", Some("CONTOSO\\user01"), &[]),
        user("user02@contoso.com", Some("CONTOSO\\user02"), &[]),
        user("たなか@contoso.com", None, &[]),
        user("strasse@contoso.com", None, &["aeris@contoso.com"]),
        user("josé@contoso.com", None, &[]),
    ])
    .unwrap()
}

/// Red team: spellings Active Directory takes for user01 (its UnicodeString comparison,
/// MS-ADTS 3.1.1.2.2.4.13 and 6.5.1, ignores case, width, kana type, non-spacing marks
/// and characters without weight) were unknown to exgate, so user01's own policy and
/// lockout counter did not apply. Every one finds the declared user.
#[test]
fn every_spelling_active_directory_takes_for_a_declared_name_finds_the_user() {
    let d = contoso();
    let table: &[(&str, &str, u32)] = &[
        // Width (NORM_IGNOREWIDTH), and the compatibility variants NFKD folds with it.
        ("fullwidth", "ｕｓｅｒ０１@contoso.com", 0),
        (
            "fullwidth throughout",
            "ｕｓｅｒ０１＠ｃｏｎｔｏｓｏ．ｃｏｍ",
            0,
        ),
        ("fullwidth domain", "user01@ｃｏｎｔｏｓｏ.com", 0),
        ("fullwidth after DOMAIN\\", "CONTOSO\\ｕｓｅｒ０１", 0),
        ("fullwidth backslash", "ＣＯＮＴＯＳＯ＼ｕｓｅｒ０１", 0),
        ("fullwidth, IIS default domain", "\\ｕｓｅｒ０１", 0),
        ("fullwidth, dot default domain", ".\\ｕｓｅｒ０１", 0),
        ("fullwidth bare", "ｕｓｅｒ０１", 0),
        ("mathematical bold", "𝐮𝐬𝐞𝐫𝟎𝟏@contoso.com", 0),
        ("circled letter", "ⓤser01@contoso.com", 0),
        ("subscript digits", "user₀₁@contoso.com", 0),
        // Width and case mixed (NORM_IGNORECASE).
        ("fullwidth upper case", "ＵＳＥＲ０１@Contoso.COM", 0),
        ("fullwidth mixed case", "ｕＳｅＲ０１@contoso.com", 0),
        (
            "fullwidth upper, DNS domain",
            "CONTOSO.COM\\ＵＳＥＲ０１",
            0,
        ),
        // Non-spacing marks (NORM_IGNORENONSPACE), precomposed and combining.
        ("precomposed acute", "usér01@contoso.com", 0),
        ("precomposed upper case", "ÜSÉR01@contoso.com", 0),
        ("combining acute", "use\u{301}r01@contoso.com", 0),
        (
            "stacked combining marks",
            "u\u{308}\u{301}\u{323}ser01@contoso.com",
            0,
        ),
        ("accented domain", "user01@cöntoso.com", 0),
        ("accented DOMAIN\\", "CÖNTOSO\\user01", 0),
        ("accent and fullwidth", "ｕｓé\u{301}ｒ０１@contoso.com", 0),
        // Characters without weight (Default_Ignorable_Code_Point).
        ("soft hyphen", "user\u{AD}01@contoso.com", 0),
        ("zero-width space", "user\u{200B}01@contoso.com", 0),
        ("zero-width non-joiner", "user\u{200C}01@contoso.com", 0),
        ("zero-width joiner", "user\u{200D}01@contoso.com", 0),
        ("left-to-right mark", "user01\u{200E}@contoso.com", 0),
        ("right-to-left override", "\u{202E}user01@contoso.com", 0),
        ("word joiner", "user\u{2060}01", 0),
        ("byte order mark first", "\u{FEFF}user01@contoso.com", 0),
        ("byte order mark last", "user01@contoso.com\u{FEFF}", 0),
        ("variation selector", "user01\u{FE0F}@contoso.com", 0),
        ("combining grapheme joiner", "CONTOSO\\user\u{34F}01", 0),
        ("Mongolian vowel separator", "user\u{180E}01", 0),
        ("Hangul filler", "user\u{3164}01", 0),
        ("tag character", "user\u{E0041}01@contoso.com", 0),
        (
            "zero-width space in the domain",
            "user01@contoso\u{200B}.com",
            0,
        ),
        ("soft hyphen in DOMAIN\\", "CON\u{AD}TOSO\\user01", 0),
        // Everything at once.
        (
            "width, case, accent, soft hyphen, ZWSP, BOM",
            "\u{FEFF}Ｕｓ\u{AD}é\u{200B}ｒ０１@Contoso.com",
            0,
        ),
        (
            "width and ZWJ after DOMAIN\\",
            "CONTOSO\\ｕｓｅｒ\u{200D}０２",
            1,
        ),
        (
            "the red team's fullwidth user02",
            "ｕｓｅｒ０２@contoso.com",
            1,
        ),
        ("the red team's accented user02", "usér02@contoso.com", 1),
        ("the red team's soft hyphen", "user\u{AD}02@contoso.com", 1),
        (
            "the red team's zero-width space",
            "user\u{200B}02@contoso.com",
            1,
        ),
        (
            "the red team's CONTOSO\\ fullwidth",
            "CONTOSO\\ｕｓｅｒ０２",
            1,
        ),
        // Kana type (NORM_IGNOREKANATYPE), width, and voiced marks (non-spacing).
        ("hiragana as declared", "たなか@contoso.com", 2),
        ("katakana", "タナカ@contoso.com", 2),
        ("halfwidth katakana", "ﾀﾅｶ@contoso.com", 2),
        ("katakana bare", "タナカ", 2),
        ("voiced hiragana", "だなか@contoso.com", 2),
        ("voiced katakana", "ダナガ", 2),
        // Windows' expansions, and a declared accent.
        ("sharp s", "straße@contoso.com", 3),
        ("capital sharp s", "STRAẞE@contoso.com", 3),
        ("ae ligature alias", "æris@contoso.com", 3),
        ("declared accent, presented without", "jose@contoso.com", 4),
        ("declared accent, upper case", "JOSÉ@CONTOSO.COM", 4),
        ("declared accent, combining", "jose\u{301}@contoso.com", 4),
        ("declared accent, bare", "Jose", 4),
    ];
    for (what, name, id) in table {
        assert_eq!(
            d.lookup(name),
            Lookup::Found(UserId(*id)),
            "{what}: {name:?}"
        );
    }
}

/// Look-alikes Active Directory tells apart stay apart: a letter of another script is
/// another letter (Cyrillic `ѕ` is not `s`), so the name is a stranger's.
#[test]
fn look_alikes_active_directory_tells_apart_are_not_the_user() {
    let d = contoso();
    for name in [
        "uѕer01@contoso.com", // Cyrillic dze
        "usеr01@contoso.com", // Cyrillic ie
        "υser01@contoso.com", // Greek upsilon
        "CONTOSO\\uѕer01",
        "uѕer01",
        "ｕѕｅｒ０１@contoso.com", // fullwidth around a Cyrillic letter
        "user0l@contoso.com",      // letter l for digit 1
        "user 01@contoso.com",     // a space counts
        "user-01@contoso.com",     // so does a hyphen
        "ただなか@contoso.com",
        "\u{200B}",
        "\u{AD}\u{FEFF}",
    ] {
        assert_eq!(d.lookup(name), Lookup::Unknown, "{name:?}");
    }
}

/// A declared account with something exgate cannot weigh or map around it is not
/// "unknown": Windows' sorting tables give no weight to code points they do not define,
/// and IIS may trim what exgate cannot confirm, so the decision fails closed.
#[test]
fn declared_accounts_with_characters_exgate_cannot_weigh_are_ambiguous() {
    let d = contoso();
    for name in [
        "user01😀@contoso.com",
        "user01😀",
        "CONTOSO\\user01\u{1F600}",
        "user\u{378}01",    // unassigned
        "user01\u{10FFFD}", // private use
        "user01\u{FFFF}",   // noncharacter
        "user01★",
        "user01@contoso.com.",
        "ｕｓｅｒ０１@contoso.com.",
        "user01@contoso.com ",
        "ｕｓｅｒ０１ ",
        "user01\u{3000}", // ideographic space: a blank after NFKD
        "user01\u{A0}",   // no-break space, likewise
        "user\u{0}01",
        "ＦＡＢＲＩＫＡＭ\\ｕｓｅｒ０１",
        "ｕｓｅｒ０１@fabrikam.com",
    ] {
        assert_eq!(d.lookup(name), Lookup::Ambiguous, "{name:?}");
    }
    // A stranger with the same characters is just a stranger.
    assert_eq!(d.lookup("carol😀@contoso.com"), Lookup::Unknown);
}

/// Declared names that fold alike are one name to Active Directory: declaring them for
/// two users is a configuration error, reported like a duplicate, naming both spellings.
#[test]
fn declared_names_that_fold_alike_are_duplicates() {
    let errors = Directory::new(vec![
        user(
            "user01@contoso.com",
            Some("CONTOSO\\user01"),
            &["たなか@contoso.com"],
        ),
        user("ｕｓｅｒ０１@contoso.com", None, &[]),
        user("b@contoso.com", Some("CONTOSO\\ＵＳＥＲ\u{AD}０１"), &[]),
        user(
            "c@contoso.com",
            None,
            &["usér01@contoso.com", "タナカ@contoso.com"],
        ),
        user("d@contoso.com", None, &["\u{200B}\u{FEFF}"]),
        user("User\u{200B}01@Contoso.com", None, &[]),
        // One user may declare two spellings of its own name.
        user("e@contoso.com", None, &["ｅ@contoso.com", "é@contoso.com"]),
    ])
    .unwrap_err();
    let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "users[1].upn",
            "users[2].sam",
            "users[3].aliases",
            "users[3].aliases",
            "users[4].aliases[0]",
            "users[5].upn",
        ]
    );
    assert_eq!(
        errors[0].message,
        "'ｕｓｅｒ０１@contoso.com' is the name 'user01@contoso.com' of users[0] to Active \
         Directory, which ignores case, width, kana type, accents and invisible characters \
         in names"
    );
    assert!(
        errors[3]
            .message
            .contains("'たなか@contoso.com' of users[0]")
    );
    assert_eq!(errors[4].message, "alias is empty");
    // The same spelling twice keeps the plain message.
    let errors = Directory::new(vec![
        user("a@contoso.com", None, &[]),
        user("b@contoso.com", None, &["A@Contoso.com"]),
    ])
    .unwrap_err();
    assert_eq!(
        errors[0].message,
        "'A@Contoso.com' is already a name of users[0]"
    );
}

/// Red team: for names exgate cannot map to a declared user, each spelling had its own
/// lockout counter (7 spellings × the threshold reached Active Directory). The account
/// key is one per account.
#[test]
fn the_account_key_is_one_per_account() {
    for name in [
        "carol",
        "Carol",
        "CAROL",
        "carol@contoso.com",
        "Carol@Contoso.COM",
        "CONTOSO\\carol",
        "contoso.com\\carol",
        "\\carol",
        ".\\carol",
        "CONTOSO\\carol@contoso.com",
        "carol@contoso.com.",
        "carol@contoso.com ",
        " carol@contoso.com",
        "carol ",
        "carol.",
        "carol. .",
        "CONTOSO\\carol.",
        "carol@",
        "ｃａｒｏｌ@contoso.com",
        "CONTOSO\\ＣＡＲＯＬ",
        "cäröl@contoso.com",
        "ca\u{301}rol",
        "car\u{AD}ol@contoso.com",
        "car\u{200B}ol",
        "\u{FEFF}carol",
        "carol😀@contoso.com",
        "car\u{0}ol",
        "carol\t",
        "carol\u{3000}@contoso.com",
        // Another domain's carol shares the key: stricter, never laxer.
        "carol@fabrikam.com",
        "FABRIKAM\\carol",
    ] {
        assert_eq!(account_key(name), "carol", "{name:?}");
    }
    assert_eq!(account_key("たなか@contoso.com"), "タナカ");
    assert_eq!(account_key("ﾀﾅｶ"), "タナカ");
    assert_eq!(account_key("straße"), "strasse");
    // Other accounts, and look-alikes Active Directory tells apart, keep their own.
    for name in ["cаrol", "caroI", "carol2", "car ol", "dave@contoso.com"] {
        assert_ne!(account_key(name), "carol", "{name:?}");
    }
}

/// The lockout key of a name `lookup` does not map: a declared user's UPN when the
/// account alone is theirs, so that their unmappable spellings meet their own
/// threshold; else the account key.
#[test]
fn unmapped_names_count_under_their_account() {
    let d = contoso();
    for name in [
        "user01@contoso.com.",
        "user01@contoso.com ",
        "FABRIKAM\\user01",
        "user01@fabrikam.com",
        "user01😀",
        "ｕｓｅｒ０１@contoso.com.",
    ] {
        assert_ne!(d.lookup(name), Lookup::Found(UserId(0)), "{name:?}");
        assert_eq!(d.unmapped_key(name), "user01@contoso.com", "{name:?}");
    }
    let spellings = [
        "carol@contoso.com",
        "CONTOSO\\carol",
        "carol",
        "carol@contoso.com.",
        "carol@contoso.com ",
        "ｃａｒｏｌ@contoso.com",
        "car\u{AD}ol",
    ];
    for name in spellings {
        assert!(!matches!(d.lookup(name), Lookup::Found(_)), "{name:?}");
        assert_eq!(d.unmapped_key(name), "carol", "{name:?}");
    }
    // A bare name two users share stays that name: neither user's counter.
    let d = directory();
    assert_eq!(d.unmapped_key("user03@example.org"), "user03");
}

/// ASCII names keep the fast path: not copied unless they have upper case.
#[test]
fn ascii_names_fold_without_copying_when_lower_case() {
    assert!(matches!(fold("contoso\\user01"), Cow::Borrowed(_)));
    assert!(matches!(fold("user01@contoso.com"), Cow::Borrowed(_)));
    assert_eq!(fold("CONTOSO\\User01"), "contoso\\user01");
    assert_eq!(fold("ＣＯＮＴＯＳＯ＼ｕｓé\u{AD}ｒ０１"), "contoso\\user01");
    assert_eq!(fold("ﾀﾞﾅｶ"), "タナカ");
}

/// Folding is idempotent for every code point, and it works character by character
/// (NFKD only reorders marks of non-zero combining class, and every such character is a
/// mark, which folding drops), so it is idempotent on every string: a name and its
/// folded form are one account.
#[test]
fn folding_every_code_point_is_idempotent() {
    use unicode_normalization::char::canonical_combining_class;
    for c in (0..=0x10FFFF).filter_map(char::from_u32) {
        let one = c.to_string();
        let once = fold(&one).into_owned();
        assert_eq!(fold(&once), once.as_str(), "U+{:04X}", c as u32);
        if canonical_combining_class(c) != 0 {
            assert!(is_combining_mark(c), "U+{:04X}", c as u32);
        }
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// How a character of a declared name is disguised: as itself, upper case,
    /// fullwidth, followed by a combining mark, or preceded by an ignorable character.
    fn disguise(name: &str, how: &[(u8, u8)]) -> String {
        const MARKS: [char; 4] = ['\u{301}', '\u{308}', '\u{327}', '\u{3099}'];
        const IGNORABLE: [char; 8] = [
            '\u{AD}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{FE0F}',
            '\u{E0020}',
        ];
        let mut out = String::new();
        for (c, &(kind, pick)) in name.chars().zip(how.iter().cycle()) {
            match kind % 5 {
                1 => out.extend(c.to_uppercase()),
                2 if ('!'..='~').contains(&c) => {
                    out.push(char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap())
                }
                3 => {
                    out.push(c);
                    out.push(MARKS[pick as usize % MARKS.len()]);
                }
                4 => {
                    out.push(IGNORABLE[pick as usize % IGNORABLE.len()]);
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Folding is idempotent, so a name and its folded form look up alike and have
        /// one account key.
        #[test]
        fn folding_is_idempotent(
            name in prop_oneof![
                any::<String>(),
                "(\\PC|[\u{AD}\u{200B}-\u{200F}\u{FEFF}\u{3041}-\u{30FF}\u{FF01}-\u{FFEE}\u{300}-\u{36F}ßæœẞ@\\\\.])*",
            ]
        ) {
            let once = fold(&name).into_owned();
            prop_assert_eq!(fold(&once), once.as_str());
            let d = contoso();
            prop_assert_eq!(d.lookup(&name), d.lookup(&once));
            prop_assert_eq!(account_key(&name), account_key(&once));
        }

        /// Any disguise of any declared name by width, case, marks and ignorable
        /// characters finds the same user.
        #[test]
        fn disguised_declared_names_find_their_user(
            which in 0usize..12,
            how in proptest::collection::vec((any::<u8>(), any::<u8>()), 1..40),
        ) {
            let names = [
                ("user01@contoso.com", 0), ("CONTOSO\\user01", 0), ("contoso.com\\user01", 0),
                ("user01", 0), ("\\user01", 0), ("user02@contoso.com", 1),
                ("CONTOSO\\user02", 1), ("user02@contoso", 1), ("たなか@contoso.com", 2),
                ("strasse@contoso.com", 3), ("aeris@contoso.com", 3), ("jose@contoso.com", 4),
            ];
            let (name, id) = names[which];
            let disguised = disguise(name, &how);
            prop_assert_eq!(contoso().lookup(&disguised), Lookup::Found(UserId(id)), "{:?}", disguised);
        }
    }
}
