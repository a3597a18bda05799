use super::*;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn all(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
    let mut h = map(&[
        ("connection", "keep-alive, X-Secret-Hop"),
        ("keep-alive", "timeout=5"),
        ("x-secret-hop", "1"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("proxy-authorization", "Basic eDp5"),
        ("host", "mail.contoso.com"),
        ("content-length", "76"),
        ("x-requesttype", "Connect"),
    ]);
    remove_hop_by_hop(&mut h);
    let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    left.sort();
    assert_eq!(left, ["content-length", "host", "x-requesttype"]);
}

#[test]
fn forwarded_headers_are_appended() {
    let mut h = map(&[("x-forwarded-for", "203.0.113.7")]);
    append_forwarded(&mut h, &client_address("127.0.0.1".parse().unwrap()), true);
    assert_eq!(all(&h, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"]);
    assert_eq!(all(&h, "x-forwarded-proto"), ["https"]);
    let mut h = HeaderMap::new();
    append_forwarded(&mut h, &client_address("::1".parse().unwrap()), false);
    assert_eq!(all(&h, "x-forwarded-for"), ["::1"]);
    assert_eq!(all(&h, "x-forwarded-proto"), ["http"]);
}

#[test]
fn bearer_challenge_has_exchanges_parameters() {
    let v = bearer_challenge(&ChallengeConfig::default());
    assert_eq!(
        v.to_str().unwrap(),
        "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\""
    );
}

#[test]
fn challenges_are_split_where_a_scheme_starts() {
    let exo = r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@*", token_types="app_asserted_user_v1 service_asserted_app_v1", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize",Basic Realm="""#;
    let parts = split_challenges(exo);
    assert_eq!(parts.len(), 2);
    assert!(parts[0].starts_with("Bearer client_id=") && parts[0].ends_with("authorize\""));
    assert_eq!(parts[1], r#"Basic Realm="""#);
    assert_eq!(
        split_challenges(r#"Basic Realm="",Basic Realm="""#).len(),
        2
    );
    assert_eq!(split_challenges("NTLM, Negotiate"), ["NTLM", "Negotiate"]);
    assert_eq!(
        split_challenges(r#"Digest realm = "a,b", nonce="x", Negotiate oYGB=="#),
        [r#"Digest realm = "a,b", nonce="x""#, "Negotiate oYGB=="]
    );
}

#[test]
fn legacy_challenges_are_stripped_and_bearer_added() {
    let bearer = bearer_challenge(&ChallengeConfig::default());
    let mut h = map(&[
        ("www-authenticate", "Negotiate"),
        ("www-authenticate", "NTLM"),
        ("www-authenticate", r#"Basic realm="mail.contoso.com""#),
        ("www-authenticate", "Nego2"),
        ("www-authenticate", "Kerberos"),
        ("www-authenticate", r#"Digest realm="x", nonce="y""#),
        (
            "www-authenticate",
            "NEGOTIATE, ntlm, Nego2 abc==, Future-Scheme x=1",
        ),
        ("www-authenticate", "Mutual realm=a"),
    ]);
    strip_legacy_challenges(&mut h, &bearer);
    assert_eq!(all(&h, "www-authenticate"), [bearer.to_str().unwrap()]);
}

#[test]
fn an_existing_bearer_challenge_is_kept_not_duplicated() {
    let bearer = bearer_challenge(&ChallengeConfig::default());
    let exo = r#"Bearer client_id="x", authorization_uri="https://login.windows.net/common/oauth2/authorize",Basic Realm="""#;
    let mut h = map(&[("www-authenticate", exo), ("www-authenticate", "NTLM")]);
    strip_legacy_challenges(&mut h, &bearer);
    assert_eq!(
        all(&h, "www-authenticate"),
        [
            r#"Bearer client_id="x", authorization_uri="https://login.windows.net/common/oauth2/authorize""#
        ]
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn challenge_splitting_never_panics_and_loses_no_scheme(value in "[ -~]{0,200}") {
            let parts = split_challenges(&value);
            for p in &parts {
                prop_assert!(value.contains(p));
            }
            let bearer = bearer_challenge(&ChallengeConfig::default());
            if let Ok(v) = HeaderValue::from_str(&value) {
                let mut h = HeaderMap::new();
                h.insert(header::WWW_AUTHENTICATE, v);
                strip_legacy_challenges(&mut h, &bearer);
                for v in h.get_all(header::WWW_AUTHENTICATE) {
                    let text = v.to_str().unwrap().to_ascii_lowercase();
                    for c in split_challenges(&text) {
                        prop_assert_eq!(scheme_of(c), "bearer");
                    }
                }
            }
        }
    }
}
