//! JWT bearer tokens for the Kore webhook: minted by voxhook for each request with `appId`,
//! `sub`, `iat`, a short `exp`, a fresh `jti` and optionally `userIdentity` (= `from.id`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::bot::BotError;
use crate::config::{JwtAlgorithm, KoreSettings, SensitiveString};

/// Token claims.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The app's client id.
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Subject (any value; ours names the daemon).
    pub sub: String,
    /// Issued at (s).
    pub iat: u64,
    /// Expiry (s).
    pub exp: u64,
    /// Unique token id: apps may reject reuse.
    pub jti: String,
    /// Must equal `from.id` when present.
    #[serde(rename = "userIdentity", skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<String>,
}

/// Signs tokens with the configured key.
pub struct TokenMinter {
    key: EncodingKey,
    header: Header,
    app_id: String,
    ttl: Duration,
    with_identity: bool,
}

impl TokenMinter {
    /// Parses the key once; a bad key fails at startup, never mid-call.
    pub fn new(
        alg: JwtAlgorithm,
        key: &SensitiveString,
        app_id: &str,
        ttl: Duration,
        with_identity: bool,
    ) -> Result<Self, BotError> {
        let (algorithm, key) = match alg {
            JwtAlgorithm::Hs256 => (
                Algorithm::HS256,
                EncodingKey::from_secret(key.expose().as_bytes()),
            ),
            JwtAlgorithm::Hs512 => (
                Algorithm::HS512,
                EncodingKey::from_secret(key.expose().as_bytes()),
            ),
            JwtAlgorithm::Rs256 | JwtAlgorithm::Rs512 => {
                let k = EncodingKey::from_rsa_pem(key.expose().as_bytes())
                    // The error text never contains key material.
                    .map_err(|e| BotError::Signing(format!("private key: {e}")))?;
                let a = if alg == JwtAlgorithm::Rs256 {
                    Algorithm::RS256
                } else {
                    Algorithm::RS512
                };
                (a, k)
            }
        };
        Ok(Self {
            key,
            header: Header::new(algorithm),
            app_id: app_id.to_string(),
            ttl,
            with_identity,
        })
    }

    /// The minter the Kore client builds from its settings (`voxhook token` uses it too).
    pub fn from_settings(s: &KoreSettings) -> Result<Self, BotError> {
        Self::new(
            s.jwt_algorithm,
            &s.signing_key,
            &s.client_id,
            s.jwt_ttl,
            s.jwt_user_identity,
        )
    }

    /// A fresh token for a request on behalf of `user_id`.
    pub fn mint(&self, user_id: &str) -> Result<String, BotError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            app_id: self.app_id.clone(),
            sub: "voxhook".into(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
            user_identity: self.with_identity.then(|| user_id.to_string()),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map_err(|e| BotError::Signing(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    #[test]
    fn claims_are_complete_fresh_and_short_lived() {
        let secret = SensitiveString::new("0123456789abcdef0123456789abcdef");
        let m = TokenMinter::new(
            JwtAlgorithm::Hs256,
            &secret,
            "cs-app",
            Duration::from_secs(60),
            true,
        )
        .unwrap();
        let t1 = m.mint("+15550001111").unwrap();
        let t2 = m.mint("+15550001111").unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.set_required_spec_claims(&["exp", "iat"]);
        let key = DecodingKey::from_secret(secret.expose().as_bytes());
        let c1 = decode::<Claims>(&t1, &key, &v).unwrap().claims;
        let c2 = decode::<Claims>(&t2, &key, &v).unwrap().claims;
        assert_eq!(c1.app_id, "cs-app");
        assert_eq!(c1.user_identity.as_deref(), Some("+15550001111"));
        assert_eq!(c1.exp - c1.iat, 60);
        assert_ne!(c1.jti, c2.jti, "every token has its own jti");
        assert!(decode::<Claims>(&t1, &DecodingKey::from_secret(b"wrong"), &v).is_err());
    }

    #[test]
    fn identity_is_optional_and_hs512_works() {
        let secret = SensitiveString::new("k");
        let m = TokenMinter::new(
            JwtAlgorithm::Hs512,
            &secret,
            "a",
            Duration::from_secs(30),
            false,
        )
        .unwrap();
        let t = m.mint("u").unwrap();
        let c = decode::<Claims>(
            &t,
            &DecodingKey::from_secret(b"k"),
            &Validation::new(Algorithm::HS512),
        )
        .unwrap()
        .claims;
        assert_eq!(c.user_identity, None);
    }

    #[test]
    fn a_bad_rsa_key_fails_without_echoing_it() {
        let key = SensitiveString::new(
            "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----",
        );
        let err = TokenMinter::new(
            JwtAlgorithm::Rs256,
            &key,
            "a",
            Duration::from_secs(30),
            false,
        )
        .err()
        .unwrap();
        assert!(!err.to_string().contains("not-a-key"));
    }
}
