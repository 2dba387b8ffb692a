//! The forged-token suite: tokens that every verifier of Plinth access
//! tokens must refuse, the core's `VerifyToken` and the client-rs layer
//! alike, made with signing keys the test controls.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use plinth_platform::{
    audit::{Actor, AuditDraft},
    clock,
    identity::tokens::{AccessClaims, encode},
    store::{
        Store,
        signing_keys::{self, SigningKeyRecord},
    },
};
use ring::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use uuid::Uuid;

/// Two keys published through the store as rotations would: one current,
/// one rotated out long past its grace (15 min + leeway).
pub struct Forger {
    claims: AccessClaims,
    current: (Ed25519KeyPair, SigningKeyRecord),
    retired: (Ed25519KeyPair, SigningKeyRecord),
}

impl Forger {
    /// Publishes the keys; tokens name user `user_id` of `tenant_id` in
    /// session `session_id`.
    pub async fn publish(
        store: &Store,
        user_id: Uuid,
        tenant_id: Uuid,
        session_id: Uuid,
    ) -> Forger {
        let now = clock::now();
        let retired = key(now - chrono::Duration::hours(2));
        let current = key(now - chrono::Duration::hours(1));
        for (_, published) in [&retired, &current] {
            let audit =
                AuditDraft::new(Actor::default(), "test.key", "signing_key", &published.kid);
            let mut tx = store.begin().await.unwrap();
            signing_keys::rotate_in(&mut tx, published, audit)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let claims = AccessClaims {
            iss: "plinth".to_owned(),
            aud: "plinth".to_owned(),
            sub: user_id,
            tid: tenant_id,
            sid: session_id,
            jti: Uuid::now_v7(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: now.timestamp() + 600,
        };
        Forger {
            claims,
            current,
            retired,
        }
    }

    pub fn current_kid(&self) -> &str {
        &self.current.1.kid
    }

    pub fn retired_kid(&self) -> &str {
        &self.retired.1.kid
    }

    /// A well-formed token from the current test key: the control.
    pub fn genuine(&self) -> String {
        self.with(|_| {})
    }

    fn with(&self, change: fn(&mut AccessClaims)) -> String {
        let mut changed = self.claims.clone();
        change(&mut changed);
        encode(self.current_kid(), &changed, &self.current.0)
    }

    /// Tokens to refuse, each named for what is wrong with it.
    pub fn forgeries(&self) -> Vec<(&'static str, String)> {
        let (pair, record) = &self.current;
        let claims = &self.claims;
        let header = |alg: &str| serde_json::json!({ "alg": alg, "typ": "JWT", "kid": record.kid });
        let hmac_with_public_key = |message: &[u8]| {
            let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pair.public_key().as_ref());
            ring::hmac::sign(&secret, message).as_ref().to_vec()
        };
        let (stranger, _) = key(clock::now());
        vec![
            ("alg none", craft(header("none"), claims, |_| Vec::new())),
            (
                "HS256 with the public key",
                craft(header("HS256"), claims, hmac_with_public_key),
            ),
            ("unknown kid", encode("no-such-kid", claims, pair)),
            (
                "signed by an unpublished key",
                encode(&record.kid, claims, &stranger),
            ),
            ("expired", self.with(|claims| claims.exp = claims.iat - 120)),
            ("not yet valid", self.with(|claims| claims.nbf += 120)),
            (
                "issued in the future",
                self.with(|claims| claims.iat += 120),
            ),
            (
                "wrong issuer",
                self.with(|claims| claims.iss = "someone-else".to_owned()),
            ),
            (
                "wrong audience",
                self.with(|claims| claims.aud = "another-api".to_owned()),
            ),
            (
                "rotated-out key past its grace",
                encode(self.retired_kid(), claims, &self.retired.0),
            ),
            ("garbage", "not.a.token".to_owned()),
            ("two parts", "abc.def".to_owned()),
            ("oversized", format!("{}.{}", "a".repeat(9000), "b")),
            ("tampered claims", {
                let token = self.genuine();
                let mut parts: Vec<&str> = token.split('.').collect();
                let mut other = claims.clone();
                other.sub = Uuid::now_v7();
                let tampered = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
                parts[1] = &tampered;
                parts.join(".")
            }),
        ]
    }
}

fn key(created_at: chrono::DateTime<chrono::Utc>) -> (Ed25519KeyPair, SigningKeyRecord) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let record = SigningKeyRecord {
        kid: Uuid::now_v7().simple().to_string(),
        algorithm: "EdDSA".to_owned(),
        public_key: pair.public_key().as_ref().to_vec(),
        encrypted_private_key: vec![0; 16],
        created_at,
        retired_at: None,
    };
    (pair, record)
}

fn craft(
    header: serde_json::Value,
    claims: &AccessClaims,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    let signed = format!("{header}.{claims}");
    let signature = URL_SAFE_NO_PAD.encode(sign(signed.as_bytes()));
    format!("{signed}.{signature}")
}
