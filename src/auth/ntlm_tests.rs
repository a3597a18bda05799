use super::*;

fn parts<'a>(domain: &'a str, user: &'a str, unicode: bool) -> AuthenticateParts<'a> {
    AuthenticateParts {
        domain,
        user,
        workstation: "WS01",
        unicode,
        lm_response: &[0; 24],
        nt_response: &[0x11; 48],
        session_key: &[0x22; 16],
    }
}

fn identity(msg: &[u8]) -> NtlmIdentity {
    match parse(msg) {
        NtlmMessage::Authenticate(id) => id,
        other => panic!("expected Type 3, got {other:?}"),
    }
}

#[test]
fn type1_and_type2_are_recognised() {
    assert_eq!(parse(&build_negotiate()), NtlmMessage::Negotiate);
    let mut t2 = build_negotiate();
    t2[8] = 2;
    assert_eq!(parse(&t2), NtlmMessage::Challenge);
}

#[test]
fn type3_unicode_yields_domain_and_user() {
    let id = identity(&build_authenticate(&parts("CONTOSO", "user01", true)));
    assert_eq!(
        (id.domain.as_str(), id.user.as_str()),
        ("CONTOSO", "user01")
    );
    assert!(!id.anonymous);
    assert_eq!(id.presented_name().as_deref(), Some("CONTOSO\\user01"));
}

#[test]
fn type3_unicode_decodes_non_ascii_names() {
    let id = identity(&build_authenticate(&parts(
        "CONTOSO",
        "jürgen.ødegård",
        true,
    )));
    assert_eq!(id.user, "jürgen.ødegård");
}

#[test]
fn type3_oem_decodes_code_page_437() {
    let mut msg = build_authenticate(&parts("CONTOSO", "user01", false));
    assert_eq!(identity(&msg).user, "user01");
    // Patch the user's first byte to 0x81, which is 'ü' in code page 437.
    let offset = u32::from_le_bytes(msg[40..44].try_into().unwrap()) as usize;
    msg[offset] = 0x81;
    assert_eq!(identity(&msg).user, "üser01");
}

#[test]
fn cp437_table_has_128_characters() {
    assert_eq!(CP437_HIGH.chars().count(), 128);
    assert_eq!(oem_char(0xff), '\u{a0}');
}

#[test]
fn type3_with_upn_and_empty_domain_presents_the_upn() {
    let id = identity(&build_authenticate(&parts("", "user01@contoso.com", true)));
    assert_eq!(id.presented_name().as_deref(), Some("user01@contoso.com"));
}

#[test]
fn anonymous_type3_presents_no_user() {
    let mut p = parts("", "", true);
    p.nt_response = &[];
    p.lm_response = &[0];
    let id = identity(&build_authenticate(&p));
    assert!(id.anonymous);
    assert_eq!(id.presented_name(), None);
}

#[test]
fn payload_order_is_read_from_offsets_not_assumed() {
    // Move the user string to the very end by rewriting its descriptor.
    let mut msg = build_authenticate(&parts("CONTOSO", "user01", true));
    let name: Vec<u8> = "mallory"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let at = msg.len() as u32;
    msg.extend_from_slice(&name);
    msg[36..38].copy_from_slice(&(name.len() as u16).to_le_bytes());
    msg[40..44].copy_from_slice(&at.to_le_bytes());
    assert_eq!(identity(&msg).user, "mallory");
}

// One test per malformed NTLM input.

#[test]
fn wrong_signature_is_malformed() {
    let mut msg = build_negotiate();
    msg[0] = b'X';
    assert_eq!(parse(&msg), NtlmMessage::Malformed);
}

#[test]
fn truncated_messages_are_malformed() {
    let full = build_authenticate(&parts("CONTOSO", "user01", true));
    for len in [0, 7, 8, 11, 12, 40, 63] {
        assert_eq!(parse(&full[..len]), NtlmMessage::Malformed, "len {len}");
    }
}

#[test]
fn unknown_message_type_is_malformed() {
    let mut msg = build_negotiate();
    msg[8] = 4;
    assert_eq!(parse(&msg), NtlmMessage::Malformed);
}

#[test]
fn field_pointing_outside_the_message_is_malformed() {
    let mut msg = build_authenticate(&parts("CONTOSO", "user01", true));
    msg[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(parse(&msg), NtlmMessage::Malformed);
    let mut msg = build_authenticate(&parts("CONTOSO", "user01", true));
    msg[36..38].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(parse(&msg), NtlmMessage::Malformed);
}

#[test]
fn odd_length_unicode_string_is_malformed() {
    let mut msg = build_authenticate(&parts("CONTOSO", "user01", true));
    msg[36..38].copy_from_slice(&11u16.to_le_bytes());
    assert_eq!(parse(&msg), NtlmMessage::Malformed);
}

#[test]
fn lone_surrogate_is_replaced_not_panicked_on() {
    let mut msg = build_authenticate(&parts("CONTOSO", "ab", true));
    let offset = u32::from_le_bytes(msg[40..44].try_into().unwrap()) as usize;
    msg[offset..offset + 2].copy_from_slice(&0xd800u16.to_le_bytes());
    assert_eq!(identity(&msg).user, "\u{fffd}b");
}
