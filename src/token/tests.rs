//! The validator against a static JWKS file and tokens minted in process.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::mint::{SigningKey, entra_v1_claims, jwks};
use super::*;
use crate::policy::Protocol;
use crate::token::{IssuerConfig, KeySource, TokensConfig};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AUDIENCE: &str = "https://outlook.office365.com";

struct Fixture {
    key: SigningKey,
    validator: TokenValidator,
    metrics: Arc<Metrics>,
}

fn jwks_file(content: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("exgate-jwks-{}-{n}.json", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

fn config(source: KeySource) -> TokensConfig {
    TokensConfig {
        issuers: vec![IssuerConfig::new(
            "https://sts.windows.net/{tenantid}/",
            &[AUDIENCE],
            source,
        )],
        require_mfa: [false; Protocol::ALL.len()],
        auth_context_ids: vec![],
        cache_max_entries: 1000,
    }
}

async fn fixture() -> Fixture {
    let key = SigningKey::generate("k1");
    let path = jwks_file(&jwks(&[&key]));
    let metrics = Arc::new(Metrics::new());
    let validator =
        TokenValidator::new(&config(KeySource::JwksFile(path)), metrics.clone()).unwrap();
    assert!(!validator.ready());
    validator.refresh_all().await;
    assert!(validator.ready());
    Fixture {
        key,
        validator,
        metrics,
    }
}

fn claims(mfa: bool) -> serde_json::Value {
    entra_v1_claims(TENANT, AUDIENCE, "user01@contoso.com", mfa, 3600)
}

impl Fixture {
    async fn check(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        self.validator.validate(token.as_bytes()).await
    }
}

#[tokio::test]
async fn a_valid_token_yields_its_user_and_mfa() {
    let f = fixture().await;
    let v = f.check(&f.key.sign(&claims(true))).await.unwrap();
    assert_eq!(v.user.as_deref(), Some("user01@contoso.com"));
    assert!(v.mfa);
    let v = f.check(&f.key.sign(&claims(false))).await.unwrap();
    assert!(!v.mfa);
}

#[tokio::test]
async fn a_repeated_token_is_served_from_the_cache() {
    let f = fixture().await;
    let token = f.key.sign(&claims(true));
    f.check(&token).await.unwrap();
    f.check(&token).await.unwrap();
    f.check(&token).await.unwrap();
    let text = f.metrics.render();
    assert!(
        text.contains(r#"exgate_token_validations_total{result="valid"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"exgate_token_validations_total{result="cached"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn each_kind_of_bad_token_is_refused_with_its_reason() {
    let f = fixture().await;
    let mut c = claims(true);
    let with = |c: &mut serde_json::Value, k: &str, v: serde_json::Value| c[k] = v;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();

    let mut expired = c.clone();
    with(&mut expired, "exp", (now - 1000).into());
    assert_eq!(
        f.check(&f.key.sign(&expired)).await.unwrap_err(),
        TokenError::Expired
    );

    let mut early = c.clone();
    with(&mut early, "nbf", (now + 1000).into());
    assert_eq!(
        f.check(&f.key.sign(&early)).await.unwrap_err(),
        TokenError::NotYetValid
    );

    // Within the 300 s leeway both are still fine.
    let mut nearly = c.clone();
    with(&mut nearly, "exp", (now - 100).into());
    assert!(f.check(&f.key.sign(&nearly)).await.is_ok());

    let mut aud = c.clone();
    with(&mut aud, "aud", "https://graph.microsoft.com".into());
    assert_eq!(
        f.check(&f.key.sign(&aud)).await.unwrap_err(),
        TokenError::Audience
    );

    let mut no_aud = c.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        f.check(&f.key.sign(&no_aud)).await.unwrap_err(),
        TokenError::Audience
    );

    let mut iss = c.clone();
    with(&mut iss, "iss", "https://evil.example/".into());
    assert_eq!(
        f.check(&f.key.sign(&iss)).await.unwrap_err(),
        TokenError::UntrustedIssuer
    );

    let mut tenant = c.clone();
    with(
        &mut tenant,
        "tid",
        "00000000-0000-0000-0000-000000000000".into(),
    );
    assert_eq!(
        f.check(&f.key.sign(&tenant)).await.unwrap_err(),
        TokenError::TenantMismatch
    );

    let mut header = f.key.header();
    header.kid = Some("nobody".into());
    assert_eq!(
        f.check(&f.key.sign_with_header(&c, &header))
            .await
            .unwrap_err(),
        TokenError::UnknownKey
    );

    // Another key signs with the published kid: the signature does not verify.
    let forger = SigningKey::generate("k1");
    assert_eq!(
        f.check(&forger.sign(&c)).await.unwrap_err(),
        TokenError::BadSignature
    );

    // A payload swapped under a valid signature.
    let good = f.key.sign(&c);
    with(&mut c, "upn", "admin@contoso.com".into());
    let swapped = f.key.sign(&c);
    let parts: Vec<&str> = good.split('.').collect();
    let other: Vec<&str> = swapped.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other[1], parts[2]);
    assert_eq!(
        f.check(&spliced).await.unwrap_err(),
        TokenError::BadSignature
    );
}

#[tokio::test]
async fn none_and_hmac_are_refused_even_with_the_public_key_as_secret() {
    let f = fixture().await;
    let c = claims(true);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(c.to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let e = f.check(&token).await.unwrap_err();
        assert!(
            matches!(e, TokenError::Algorithm | TokenError::Malformed),
            "{e:?}"
        );
    }
    assert_eq!(
        f.check(&format!("{header}.{payload}.")).await.unwrap_err(),
        TokenError::Algorithm
    );
    // The classic confusion: HS256 keyed with the issuer's public key material.
    let public = serde_json::to_vec(f.key.jwk()).unwrap();
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(f.check(&hs).await.unwrap_err(), TokenError::Algorithm);
}

#[tokio::test]
async fn malformed_tokens_are_malformed() {
    let f = fixture().await;
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        "e30.e30.",
        "e30.e30.c2ln",
    ] {
        assert_eq!(
            f.check(token).await.unwrap_err().as_str(),
            "malformed",
            "{token}"
        );
    }
    assert_eq!(
        f.validator.validate(&[0xff, 0xfe]).await.unwrap_err(),
        TokenError::Malformed
    );
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(f.check(&huge).await.unwrap_err(), TokenError::Malformed);
}

#[tokio::test]
async fn no_keys_at_all_is_no_keys_not_an_invalid_token() {
    let metrics = Arc::new(Metrics::new());
    let missing = std::env::temp_dir().join("exgate-no-such-jwks.json");
    let validator = TokenValidator::new(&config(KeySource::JwksFile(missing)), metrics).unwrap();
    validator.refresh_all().await;
    assert!(!validator.ready());
    let key = SigningKey::generate("k1");
    let e = validator
        .validate(key.sign(&claims(true)).as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e, TokenError::NoKeys);
}

#[tokio::test]
async fn a_cached_token_dies_with_its_key() {
    let f = fixture().await;
    let token = f.key.sign(&claims(true));
    f.check(&token).await.unwrap();
    // Rotate the file to a new key and refresh: the old kid is gone.
    let next = SigningKey::generate("k2");
    let KeySource::JwksFile(path) = &f.validator.issuers[0].keys_source() else {
        panic!()
    };
    std::fs::write(path, jwks(&[&next])).unwrap();
    f.validator.refresh_all().await;
    assert_eq!(f.check(&token).await.unwrap_err(), TokenError::UnknownKey);
    assert!(f.check(&next.sign(&claims(true))).await.is_ok());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_tokens_never_panic_and_never_validate(token in "[A-Za-z0-9_.=-]{0,400}") {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let f = rt.block_on(fixture_shared());
            prop_assert!(rt.block_on(f.check(&token)).is_err());
        }
    }

    async fn fixture_shared() -> &'static Fixture {
        static F: tokio::sync::OnceCell<Fixture> = tokio::sync::OnceCell::const_new();
        F.get_or_init(fixture).await
    }
}

#[tokio::test]
async fn a_forged_token_is_refused_from_the_failed_cache_until_the_key_set_changes() {
    let f = fixture().await;
    // Signed by another key under the published kid: a bad signature, remembered.
    let impostor = SigningKey::generate("k1");
    let forged = impostor.sign(&claims(true));
    assert_eq!(
        f.check(&forged).await.unwrap_err(),
        TokenError::BadSignature
    );
    assert_eq!(f.validator.failed.len(), 1);
    assert_eq!(
        f.check(&forged).await.unwrap_err(),
        TokenError::BadSignature
    );
    assert_eq!(f.validator.failed.len(), 1);
    let text = f.metrics.render();
    assert!(
        text.contains(r#"exgate_token_validations_total{result="bad_signature"} 2"#),
        "{text}"
    );
    // The issuer now publishes that very key under that kid: the remembered failure
    // belonged to the old key set and must not refuse the token.
    let KeySource::JwksFile(path) = &f.validator.issuers[0].keys_source() else {
        panic!()
    };
    std::fs::write(path, jwks(&[&impostor])).unwrap();
    f.validator.refresh_all().await;
    assert!(f.check(&forged).await.is_ok());
}

#[tokio::test]
async fn a_known_failure_is_a_remembered_one_that_still_holds() {
    let f = fixture().await;
    let good = f.key.sign(&claims(true));
    let impostor = SigningKey::generate("k1");
    let forged = impostor.sign(&claims(true));
    // Nothing remembered yet: only validation can tell.
    assert_eq!(f.validator.known_failure(forged.as_bytes()), None);
    assert_eq!(f.validator.known_failure(good.as_bytes()), None);
    f.check(&good).await.unwrap();
    f.check(&forged).await.unwrap_err();
    assert_eq!(f.validator.known_failure(good.as_bytes()), None);
    assert_eq!(
        f.validator.known_failure(forged.as_bytes()),
        Some(TokenError::BadSignature)
    );
    // Only validation counts.
    let text = f.metrics.render();
    assert!(
        text.contains(r#"exgate_token_validations_total{result="bad_signature"} 1"#),
        "{text}"
    );
    // Never a failure for other bytes, or for what the failed cache never keeps.
    assert_eq!(f.validator.known_failure(&forged.as_bytes()[1..]), None);
    assert_eq!(f.validator.known_failure(b"\xff"), None);
    // The key set changes: the remembered failure no longer holds.
    let KeySource::JwksFile(path) = &f.validator.issuers[0].keys_source() else {
        panic!()
    };
    std::fs::write(path, jwks(&[&impostor])).unwrap();
    f.validator.refresh_all().await;
    assert_eq!(f.validator.known_failure(forged.as_bytes()), None);
    assert!(f.check(&forged).await.is_ok());
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_voids_both_caches() {
    let f = fixture().await;
    let good = f.key.sign(&claims(true));
    let forged = SigningKey::generate("k1").sign(&claims(true));
    f.check(&good).await.unwrap();
    assert_eq!(
        f.check(&forged).await.unwrap_err(),
        TokenError::BadSignature
    );
    assert_eq!((f.validator.cache.len(), f.validator.failed.len()), (1, 1));
    let KeySource::JwksFile(path) = &f.validator.issuers[0].keys_source() else {
        panic!()
    };
    std::fs::write(path, jwks(&[&SigningKey::generate("k2")])).unwrap();
    f.validator.refresh_all().await;
    // Neither the verified nor the failed entry answers: both tokens are looked at
    // again, and their kid is no longer published.
    assert_eq!(f.check(&good).await.unwrap_err(), TokenError::UnknownKey);
    assert_eq!(f.check(&forged).await.unwrap_err(), TokenError::UnknownKey);
}

#[tokio::test]
async fn only_failures_time_cannot_change_are_remembered() {
    let f = fixture().await;
    let now = i64::try_from(now()).unwrap();
    let mut early = claims(true);
    early["nbf"] = (now + 1000).into();
    assert_eq!(
        f.check(&f.key.sign(&early)).await.unwrap_err(),
        TokenError::NotYetValid
    );
    assert_eq!(f.validator.failed.len(), 0);
    // Failures before any key is used are cheap already and not remembered either (a
    // flood of garbage must not evict remembered forgeries).
    assert!(f.check("a.b.c").await.is_err());
    let mut other = claims(true);
    other["iss"] = "https://evil.example/".into();
    assert_eq!(
        f.check(&f.key.sign(&other)).await.unwrap_err(),
        TokenError::UntrustedIssuer
    );
    assert_eq!(f.validator.failed.len(), 0);
    let mut expired = claims(true);
    expired["exp"] = (now - 1000).into();
    let expired = f.key.sign(&expired);
    assert_eq!(f.check(&expired).await.unwrap_err(), TokenError::Expired);
    assert_eq!(f.check(&expired).await.unwrap_err(), TokenError::Expired);
    assert_eq!(f.validator.failed.len(), 1);
}

#[tokio::test]
async fn a_cache_size_of_zero_remembers_no_failure() {
    let key = SigningKey::generate("k1");
    let mut config = config(KeySource::JwksFile(jwks_file(&jwks(&[&key]))));
    config.cache_max_entries = 0;
    let validator = TokenValidator::new(&config, Arc::new(Metrics::new())).unwrap();
    validator.refresh_all().await;
    let forged = SigningKey::generate("k1").sign(&claims(true));
    for _ in 0..2 {
        assert_eq!(
            validator.validate(forged.as_bytes()).await.unwrap_err(),
            TokenError::BadSignature
        );
    }
    assert!(validator.failed.is_empty() && validator.cache.is_empty());
}

#[tokio::test]
async fn a_key_replaced_under_the_same_kid_voids_its_cached_tokens() {
    // Red team (issue 16): the verified cache checked only that the kid was still
    // published, so a token of a compromised key stayed accepted after the key was
    // swapped out under the same kid.
    let f = fixture().await;
    let token = f.key.sign(&claims(true));
    f.check(&token).await.unwrap();
    f.check(&token).await.unwrap();
    let KeySource::JwksFile(path) = &f.validator.issuers[0].keys_source() else {
        panic!()
    };
    let replacement = SigningKey::generate("k1");
    std::fs::write(path, jwks(&[&replacement])).unwrap();
    f.validator.refresh_all().await;
    assert_eq!(f.check(&token).await.unwrap_err(), TokenError::BadSignature);
    assert!(f.check(&replacement.sign(&claims(true))).await.is_ok());
}

#[tokio::test]
async fn a_refresh_with_the_same_keys_verifies_cached_tokens_once_more() {
    let f = fixture().await;
    let token = f.key.sign(&claims(true));
    f.check(&token).await.unwrap();
    f.validator.refresh_all().await;
    f.check(&token).await.unwrap();
    f.check(&token).await.unwrap();
    let text = f.metrics.render();
    assert!(
        text.contains(r#"exgate_token_validations_total{result="valid"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"exgate_token_validations_total{result="cached"} 1"#),
        "{text}"
    );
}
