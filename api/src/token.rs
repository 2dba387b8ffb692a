//! Access tokens: compact JWS (RFC 7515) signed with Ed25519, issued by the
//! core and verified by the core and by modules with this code, on the
//! `jsonwebtoken` crate.
//!
//! A token is read only with `alg: EdDSA`, `typ: JWT` and a `kid`, so `alg:
//! none` and HMAC-with-the-public-key forgeries cannot pass; its signature,
//! issuer and audience are checked by `jsonwebtoken`, its time window
//! against the verifier's clock with a leeway.
//!
//! A valid token says only who signed in and until when: whether its
//! session is still live is for the core to say (`VerifyToken`).

use std::{collections::HashMap, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::v1::Jwk;

/// The only algorithm issued or accepted.
pub const ALGORITHM: &str = "EdDSA";

/// Longest token read, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The claims of a Plinth access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: Uuid,
    /// The tenant id.
    pub tid: Uuid,
    /// The session id.
    pub sid: Uuid,
    pub jti: Uuid,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

/// Why a token was refused. Callers answer every kind alike
/// (UNAUTHENTICATED); the kind is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is oversized or not a compact EdDSA JWT with a kid")]
    Malformed,
    #[error("no published key has the token's kid")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token names another issuer or audience")]
    WrongParty,
    #[error("the token is expired, not yet valid or issued in the future")]
    OutsideValidity,
}

/// An Ed25519 public key that verifies tokens.
#[derive(Clone)]
pub struct VerifyingKey(DecodingKey);

impl VerifyingKey {
    /// From the raw 32-byte public key.
    pub fn from_bytes(public_key: &[u8]) -> Result<VerifyingKey, TokenError> {
        if public_key.len() != 32 {
            return Err(TokenError::Malformed);
        }
        Ok(VerifyingKey(DecodingKey::from_ed_der(public_key)))
    }

    /// From one key of `GetJwks`: only `OKP` / `Ed25519` keys for `EdDSA`.
    pub fn from_jwk(jwk: &Jwk) -> Result<VerifyingKey, TokenError> {
        if jwk.kty != "OKP" || jwk.crv != "Ed25519" || jwk.alg != ALGORITHM {
            return Err(TokenError::Malformed);
        }
        let public_key = URL_SAFE_NO_PAD
            .decode(&jwk.x)
            .map_err(|_| TokenError::Malformed)?;
        VerifyingKey::from_bytes(&public_key)
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("VerifyingKey(Ed25519)")
    }
}

/// The published keys by `kid`.
pub type KeySet = HashMap<String, VerifyingKey>;

/// Reads the keys of a `GetJwks` answer, skipping any this verifier cannot
/// use (another algorithm or a malformed key).
pub fn key_set(keys: &[Jwk]) -> KeySet {
    keys.iter()
        .filter_map(|jwk| Some((jwk.kid.clone(), VerifyingKey::from_jwk(jwk).ok()?)))
        .collect()
}

/// What a verifier expects of a token: its issuer and audience, and the
/// clock skew it tolerates.
#[derive(Debug, Clone)]
pub struct TokenRules {
    validation: Validation,
    leeway_seconds: i64,
}

impl TokenRules {
    pub fn new(issuer: &str, audience: &str, leeway: Duration) -> TokenRules {
        let mut validation = Validation::new(Algorithm::EdDSA);
        // The time window is checked against the verifier's clock below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        TokenRules {
            validation,
            leeway_seconds: i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// The `kid` of a token whose header is acceptable, so the verifier can
    /// find the key.
    pub fn key_id(&self, token: &str) -> Result<String, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some("JWT") {
            return Err(TokenError::Malformed);
        }
        header.kid.ok_or(TokenError::Malformed)
    }

    /// Verifies header, signature, issuer and audience with `key`, and that
    /// the token is valid at `now` (Unix seconds).
    pub fn verify(
        &self,
        token: &str,
        key: &VerifyingKey,
        now: i64,
    ) -> Result<AccessClaims, TokenError> {
        self.key_id(token)?;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.0, &self.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => TokenError::WrongParty,
                _ => TokenError::Malformed,
            })?
            .claims;
        let leeway = self.leeway_seconds;
        let started =
            claims.nbf.saturating_sub(leeway) <= now && claims.iat.saturating_sub(leeway) <= now;
        if !started || self.expired(&claims, now) {
            return Err(TokenError::OutsideValidity);
        }
        Ok(claims)
    }

    /// Whether a token that verified has expired by `now` (Unix seconds).
    pub fn expired(&self, claims: &AccessClaims, now: i64) -> bool {
        claims.exp.saturating_add(self.leeway_seconds) <= now
    }
}

/// Encodes `claims` as a token signed by `sign` (Ed25519 over the bytes it
/// is given) under key `kid`: the issuing side.
pub fn encode(kid: &str, claims: &AccessClaims, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let header = serde_json::json!({ "alg": ALGORITHM, "typ": "JWT", "kid": kid });
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
    let signed = format!("{header}.{claims}");
    let signature = URL_SAFE_NO_PAD.encode(sign(signed.as_bytes()));
    format!("{signed}.{signature}")
}

#[cfg(test)]
mod tests {
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    fn key_pair() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn jwk(pair: &Ed25519KeyPair) -> Jwk {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            kid: "k1".to_owned(),
            alg: ALGORITHM.to_owned(),
            r#use: "sig".to_owned(),
        }
    }

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "plinth".to_owned(),
            aud: "plinth".to_owned(),
            sub: Uuid::now_v7(),
            tid: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            jti: Uuid::now_v7(),
            iat: now,
            nbf: now,
            exp: now + 900,
        }
    }

    #[test]
    fn only_ed25519_keys_of_32_bytes_are_read_from_a_jwks() {
        let genuine = jwk(&key_pair());
        assert!(VerifyingKey::from_jwk(&genuine).is_ok());
        let wrong = [
            Jwk {
                kty: "RSA".to_owned(),
                ..genuine.clone()
            },
            Jwk {
                crv: "X25519".to_owned(),
                ..genuine.clone()
            },
            Jwk {
                alg: "HS256".to_owned(),
                ..genuine.clone()
            },
            Jwk {
                x: URL_SAFE_NO_PAD.encode([7u8; 31]),
                ..genuine.clone()
            },
            Jwk {
                x: "not base64!".to_owned(),
                ..genuine.clone()
            },
        ];
        for jwk in &wrong {
            assert_eq!(
                VerifyingKey::from_jwk(jwk).unwrap_err(),
                TokenError::Malformed,
                "{jwk:?}"
            );
        }
        let set = key_set(&[genuine, wrong[0].clone()]);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn a_token_verifies_within_the_leeway_and_not_past_it() {
        let pair = key_pair();
        let key = VerifyingKey::from_jwk(&jwk(&pair)).unwrap();
        let rules = TokenRules::new("plinth", "plinth", Duration::from_secs(60));
        let now = 1_800_000_000;
        let token = encode("k1", &claims(now), |message| {
            pair.sign(message).as_ref().to_vec()
        });
        assert_eq!(rules.key_id(&token).unwrap(), "k1");
        assert!(
            rules.verify(&token, &key, now - 59).is_ok(),
            "issued within the leeway"
        );
        assert!(
            rules.verify(&token, &key, now + 959).is_ok(),
            "expired within the leeway"
        );
        assert_eq!(
            rules.verify(&token, &key, now - 61).unwrap_err(),
            TokenError::OutsideValidity
        );
        assert_eq!(
            rules.verify(&token, &key, now + 960).unwrap_err(),
            TokenError::OutsideValidity
        );
    }

    #[test]
    fn a_token_for_another_party_or_signed_by_another_key_is_refused() {
        let (pair, other) = (key_pair(), key_pair());
        let key = VerifyingKey::from_jwk(&jwk(&pair)).unwrap();
        let now = 1_800_000_000;
        let sign = |claims: &AccessClaims, pair: &Ed25519KeyPair| {
            encode("k1", claims, |message| pair.sign(message).as_ref().to_vec())
        };
        let rules = TokenRules::new("plinth", "plinth", Duration::ZERO);
        let stranger = sign(&claims(now), &other);
        assert_eq!(
            rules.verify(&stranger, &key, now).unwrap_err(),
            TokenError::BadSignature
        );
        let elsewhere = AccessClaims {
            aud: "billing".to_owned(),
            ..claims(now)
        };
        assert_eq!(
            rules
                .verify(&sign(&elsewhere, &pair), &key, now)
                .unwrap_err(),
            TokenError::WrongParty
        );
        let oversized = format!("{}.{}.{}", "a".repeat(MAX_TOKEN_BYTES), "b", "c");
        assert_eq!(rules.key_id(&oversized).unwrap_err(), TokenError::Malformed);
    }
}
