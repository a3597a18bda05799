//! `Digest` (RFC 7616): only the `username` parameter matters, to find the user's policy.

/// The `username` auth-param of a Digest header, if one can be read.
pub fn username(params: &[u8]) -> Option<String> {
    let mut rest = params;
    loop {
        rest = rest.trim_ascii_start();
        let eq = rest.iter().position(|b| *b == b'=')?;
        let name = rest[..eq].trim_ascii();
        rest = rest[eq + 1..].trim_ascii_start();
        let (value, after) = if rest.first() == Some(&b'"') {
            quoted_string(&rest[1..])?
        } else {
            let end = rest.iter().position(|b| *b == b',').unwrap_or(rest.len());
            (rest[..end].trim_ascii().to_vec(), &rest[end..])
        };
        if name.eq_ignore_ascii_case(b"username") {
            return String::from_utf8(value).ok().filter(|u| !u.is_empty());
        }
        let comma = after.iter().position(|b| *b == b',')?;
        rest = &after[comma + 1..];
    }
}

/// Reads a quoted-string body (after the opening quote): its unescaped value and the rest.
fn quoted_string(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut value = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => return Some((value, &s[i + 1..])),
            b'\\' => {
                value.push(*s.get(i + 1)?);
                i += 2;
            }
            b => {
                value.push(b);
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_is_read_wherever_it_stands() {
        assert_eq!(
            username(br#"username="CONTOSO\\user01", realm="x", nonce="a,b""#).as_deref(),
            Some(r"CONTOSO\user01")
        );
        assert_eq!(
            username(br#"realm="a,b", nonce=xyz, username=user01@contoso.com"#).as_deref(),
            Some("user01@contoso.com")
        );
    }

    #[test]
    fn missing_or_broken_username_is_none() {
        assert_eq!(username(b""), None);
        assert_eq!(username(br#"realm="x""#), None);
        assert_eq!(username(br#"username="unterminated"#), None);
        assert_eq!(username(br#"username="""#), None);
        assert_eq!(username(b"garbage"), None);
    }
}
