//! Just enough DER to walk SPNEGO: read one tag-length-value, bounds-checked.

/// One DER element: its tag byte and its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
}

/// Reads the element at the start of `input`; returns it and what follows, or None when
/// the length is indefinite, longer than four bytes, or runs past the input.
pub fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Tlv {
            tag,
            content: &rest[..len],
        },
        &rest[len..],
    ))
}

/// Whether the element at the start of `input` is DER exgate is willing to hand to a
/// third-party decoder: every element, to `max_depth` levels of nesting, has a
/// low-number tag and a definite length of at most four bytes that stays inside its
/// parent, and every constructed element is exactly filled by its children. Iterative
/// over siblings, recursive only per level, so the stack stays bounded by `max_depth`.
///
/// `picky-asn1-der` adds lengths without checking for overflow: an eight-byte length
/// anywhere inside a ticket made it panic (found by the `kerberos` fuzz target).
pub fn well_formed(input: &[u8], max_depth: usize) -> bool {
    read(input).is_some_and(|(first, _)| element_ok(first, max_depth))
}

fn element_ok(tlv: Tlv<'_>, depth: usize) -> bool {
    const CONSTRUCTED: u8 = 0x20;
    if tlv.tag & 0x1f == 0x1f {
        return false; // high-tag-number form: no Kerberos type uses it
    }
    if tlv.tag & CONSTRUCTED == 0 {
        return true;
    }
    if depth == 0 {
        return false;
    }
    let mut rest = tlv.content;
    while !rest.is_empty() {
        match read(rest) {
            Some((child, after)) if element_ok(child, depth - 1) => rest = after,
            _ => return false,
        }
    }
    true
}

/// The elements of a constructed content, in order, stopping at the first bad one.
pub fn children(mut content: &[u8]) -> impl Iterator<Item = Tlv<'_>> {
    std::iter::from_fn(move || {
        let (tlv, rest) = read(content)?;
        content = rest;
        Some(tlv)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        assert_eq!(
            read(&[0x04, 0x02, 0xaa, 0xbb, 0xcc]),
            Some((
                Tlv {
                    tag: 4,
                    content: &[0xaa, 0xbb]
                },
                &[0xcc][..]
            ))
        );
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7, 256));
        let (tlv, rest) = read(&long).unwrap();
        assert_eq!((tlv.content.len(), rest.len()), (256, 0));
    }

    #[test]
    fn refuses_truncated_indefinite_and_oversized_lengths() {
        assert_eq!(read(&[]), None);
        assert_eq!(read(&[0x30]), None);
        assert_eq!(read(&[0x30, 0x05, 1, 2]), None);
        assert_eq!(read(&[0x30, 0x80, 0, 0]), None);
        assert_eq!(read(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(read(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
