//! Bearer tokens before and through signature verification, against a fixed key set: the
//! compact-JWS split, the JOSE header (`alg`, `kid`), the unverified claims, issuer and
//! tenant matching and the algorithm allowlist, via the public `TokenValidator` (the
//! pieces are private); tokens as the proxy finds them in `Bearer` and in a Basic
//! password under `BasicAuthToOAuthConversion`; the `Claims` JSON and its accessors;
//! JWKS documents; `{tenantid}` issuer patterns. The first byte picks which ('0'–'4').
//! Never panics.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use exgate::auth::{Credentials, parse_header};
use exgate::token::{IssuerConfig, KeySource, TokensConfig};
use exgate::metrics::Metrics;
use exgate::token::{Claims, IssuerPattern, KeySet, TokenError, TokenValidator};
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;

/// The public half of a throwaway RSA key (`kid` fuzz1); fuzz/corpus/bearer holds tokens
/// signed with it, so the fuzzer starts from tokens that verify.
const JWKS: &str = r#"{"keys":[{"kty":"RSA","use":"sig","kid":"fuzz1","alg":"RS256","n":"5jH5_AD1928gAc05XrLyHJ7oWwcT4oZQhzjwBNbGU-psUmxjzM_XEjQMexR6eX6bK3pQU80ehPnK83RCbN2BX0l21FmEpEhOINr2qKhoqs4RH35oipWqth4iocY7oUTG0CvZpnCHY2hx5EoF-ZQITQIIAxr6xRFkP2rrYlnJoVnQIZbW93O_3C4UAx4syVwwhXwv3FXHuYhK9DtL8YSX_hXdQk3A0MWdtsU4cQMz411tnJ9nW23PdHYCCBJYZIXrhA1Dfkfgr3NaeWrFYSuujMpcmdWWFZg1Z-L71DPtnG4UPHhxAkgZId2uP-39Ja78oAjobTOjUXwz4rGWUHKY5Q","e":"AQAB"}]}"#;
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AUDIENCE: &str = "https://outlook.office365.com";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    validator: TokenValidator,
    /// `EXGATE_FUZZ_DEBUG` set: print each validation's outcome (to check the seeds).
    debug: bool,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("exgate-fuzz-jwks-{}.json", std::process::id()));
        std::fs::write(&path, JWKS).unwrap();
        let issuer = |iss: &str| {
            let mut c = IssuerConfig::new(
                iss,
                &[AUDIENCE, "urn:exchange"],
                KeySource::JwksFile(path.clone()),
            );
            c.algorithms = vec![Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];
            // One fetch at start-up; an unknown kid never reads the file again.
            c.unknown_kid_refresh_min = Duration::from_secs(86_400 * 365);
            c
        };
        let config = TokensConfig {
            issuers: vec![
                issuer("https://sts.windows.net/{tenantid}/"),
                issuer("https://login.microsoftonline.com/{tenantid}/v2.0"),
                issuer("https://adfs.contoso.com/adfs"),
            ],
            auth_context_ids: vec!["c1".into()],
            cache_max_entries: 64,
            ..TokensConfig::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let validator = TokenValidator::new(&config, Arc::new(Metrics::new())).unwrap();
        runtime.block_on(validator.refresh_all());
        assert!(validator.ready());
        let _ = std::fs::remove_file(&path);
        Fixture {
            runtime,
            validator,
            debug: std::env::var_os("EXGATE_FUZZ_DEBUG").is_some(),
        }
    })
}

fn validate(token: &[u8]) -> Result<(), TokenError> {
    let f = fixture();
    let result = f.runtime.block_on(f.validator.validate(token));
    if f.debug {
        eprintln!("{:?}", result.as_ref().map(|v| (&v.user, v.mfa)));
    }
    let verified = result?;
    // Only a token signed with the fixed key gets here.
    assert!(verified.issuer < 3);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Seeds spell the mode as an ASCII digit; any byte picks one.
    match mode.wrapping_sub(b'0') % 5 {
        // A compact JWS as it stands after `Bearer `.
        0 => {
            let _ = validate(rest);
        }
        // An `Authorization` value, the token taken from it as the proxy takes it.
        1 => match parse_header(rest) {
            Credentials::Bearer(token) => {
                let _ = validate(token.expose());
            }
            Credentials::Basic(basic) => {
                if let Some(token) = basic.token() {
                    let _ = validate(token);
                }
            }
            _ => {}
        },
        // The claims JSON, read unverified to pick the issuer.
        2 => {
            if let Ok(claims) = serde_json::from_slice::<Claims>(rest) {
                let _ = claims.has_mfa(&["c1".to_owned()]);
                if let Some(user) = claims.user() {
                    assert!(!user.is_empty());
                }
                let _ = claims.aud.any(|a| a == AUDIENCE);
            }
        }
        // A JWKS document, as an issuer's endpoint or file serves it.
        3 => {
            if let Ok(keys) = KeySet::from_jwks(rest) {
                assert!(!keys.is_empty());
                let _ = keys.get(Some("fuzz1"));
                let _ = keys.get(None);
            }
        }
        // An issuer pattern, an `iss` and a `tid`, split at 0xff.
        _ => {
            let mut parts = rest.split(|b| *b == 0xff).map(String::from_utf8_lossy);
            let pattern = IssuerPattern::new(&parts.next().unwrap_or_default());
            let iss = parts.next().unwrap_or_default();
            let tid = parts.next();
            if pattern.matches(&iss) {
                let _ = pattern.check_tenant(&iss, tid.as_deref());
            }
            let _ = pattern.check_tenant(&iss, Some(TENANT));
        }
    }
});
