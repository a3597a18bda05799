//! Minting lab tokens (feature `lab`): RSA signing keys, their JWKS, and RS256 tokens
//! shaped like Entra ID's. Used by the lab, the load generator and the tests; a build
//! without the `lab` feature has none of this.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::auth::der;

/// An RSA-2048 signing key with its `kid`.
pub struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
    jwk: Jwk,
}

/// PKCS#8 `PrivateKeyInfo` → the PKCS#1 `RSAPrivateKey` inside it.
fn pkcs1_of(pkcs8: &[u8]) -> Option<&[u8]> {
    let (info, _) = der::read(pkcs8)?;
    let mut fields = der::children(info.content);
    let _version = fields.next()?;
    let _algorithm = fields.next()?;
    let key = fields.next().filter(|f| f.tag == 0x04)?;
    Some(key.content)
}

impl SigningKey {
    /// Generates a key.
    pub fn generate(kid: &str) -> SigningKey {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let pkcs8 = pair.as_der().expect("RSA key serializes");
        SigningKey::from_pkcs8(kid, pkcs8.as_ref()).expect("a fresh key is well-formed")
    }

    /// A key from its PKCS#8 DER encoding (as [`SigningKey::pkcs8`] returns it).
    pub fn from_pkcs8(kid: &str, pkcs8: &[u8]) -> Option<SigningKey> {
        KeyPair::from_pkcs8(pkcs8).ok()?;
        let encoding = EncodingKey::from_rsa_der(pkcs1_of(pkcs8)?);
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).ok()?;
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        Some(SigningKey {
            kid: kid.to_owned(),
            pkcs8: pkcs8.to_vec(),
            encoding,
            jwk,
        })
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`), for peers such as HAProxy's
    /// `jwt_verify`, which want a key file rather than a JWKS.
    pub fn public_key_pem(&self) -> String {
        use aws_lc_rs::signature::KeyPair as _;
        use base64::Engine as _;
        let pair = KeyPair::from_pkcs8(&self.pkcs8).expect("the key was parsed before");
        let der = pair.public_key().as_der().expect("a public key serializes");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// The private key, PKCS#8 DER, for a lab to keep across restarts.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `claims` with RS256, `kid` in the header.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        self.sign_with_header(claims, &self.header())
    }

    /// The header [`SigningKey::sign`] uses, for tests that alter it.
    pub fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        header
    }

    /// Signs `claims` with an explicit header.
    pub fn sign_with_header(&self, claims: &serde_json::Value, header: &Header) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("signing with a valid key")
    }
}

/// A JWKS document publishing `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    let set = JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    };
    serde_json::to_string(&set).expect("a JWKS serializes")
}

/// Claims shaped like an Entra ID v1 access token for Exchange: `amr` holds `mfa` when
/// `mfa` is true; `lifetime_seconds` from now.
pub fn entra_v1_claims(
    tenant: &str,
    audience: &str,
    upn: &str,
    mfa: bool,
    lifetime_seconds: i64,
) -> serde_json::Value {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
    .unwrap_or(0);
    let amr: Vec<&str> = if mfa { vec!["pwd", "mfa"] } else { vec!["pwd"] };
    serde_json::json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_seconds,
        "amr": amr,
        "appid": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
        "appidacr": "0",
        "ipaddr": "127.0.0.1",
        "name": upn.split('@').next().unwrap_or(upn),
        "oid": "3a9c6d41-7f0e-4b8a-9c2d-5e1f0a6b7c8d",
        "scp": "EWS.AccessAsUser.All Mail.ReadWrite",
        "sub": "xWq3f7Lr0vK8bH2nJ5mT9pY1cZ4dG6sA",
        "tid": tenant,
        "unique_name": upn,
        "upn": upn,
        "ver": "1.0",
    })
}

/// Rewrites Entra claims for MFA performed at AD FS: Entra passes AD FS's
/// `authnmethodsreferences: multipleauthn` through, and `amr` says only `fed`.
pub fn mfa_at_adfs(claims: &mut serde_json::Value) {
    claims["amr"] = serde_json::json!(["fed"]);
    claims[crate::token::AUTHN_METHODS_REFERENCES] =
        serde_json::json!(crate::token::MULTIPLE_AUTHN);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_against_the_published_jwk() {
        let key = SigningKey::generate("k1");
        let claims = entra_v1_claims(
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "https://outlook.office365.com",
            "user01@contoso.com",
            true,
            3600,
        );
        let token = key.sign(&claims);
        let decoding = jsonwebtoken::DecodingKey::from_jwk(key.jwk()).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.set_audience(&["https://outlook.office365.com"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &v).unwrap();
        assert_eq!(data.claims["upn"], "user01@contoso.com");
        assert!(jwks(&[&key]).contains("\"kid\":\"k1\""));
        let again = SigningKey::from_pkcs8("k1", key.pkcs8()).unwrap();
        assert_eq!(again.jwk(), key.jwk());
    }
}
