//! Bearer tokens: `mnt_<16 hex id>_<64 hex secret>`. The server stores only the id and the
//! SHA-256 of the whole token; the secret (256 random bits) is shown once, at issue.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "mnt_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A token as stored: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id (the part before the secret).
    pub id: String,
    /// SHA-256 of the full token text.
    pub hash: [u8; 32],
    /// Operator the token acts as.
    pub operator_id: String,
    /// Milliseconds since the Unix epoch.
    pub issued_at_ms: i64,
    /// Milliseconds since the Unix epoch after which the token is refused.
    pub expires_at_ms: i64,
    /// Revoked tokens are refused.
    pub revoked: bool,
    /// Lowercase hex SHA-256 of the client certificate the token is bound to.
    pub cert_fingerprint: Option<String>,
}

/// A newly minted token: the secret text and its stored form.
pub struct MintedToken {
    /// The token text to hand to the operator once.
    pub secret: SecretString,
    /// What the store keeps.
    pub record: TokenRecord,
}

/// Why a presented token is not even looked up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed token")]
pub struct MalformedToken;

/// Mints a token for `operator_id`.
pub fn mint(
    rng: &SystemRandom,
    operator_id: &str,
    now_ms: i64,
    ttl_ms: i64,
    cert_fingerprint: Option<String>,
) -> Result<MintedToken, ring::error::Unspecified> {
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill(&mut id)?;
    rng.fill(&mut secret)?;
    let id = hex::encode(id);
    let text = SecretString::from(format!("{PREFIX}{id}_{}", hex::encode(secret)));
    secret.fill(0);
    let record = TokenRecord {
        hash: token_hash(&text),
        id,
        operator_id: operator_id.to_owned(),
        issued_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(ttl_ms),
        revoked: false,
        cert_fingerprint,
    };
    Ok(MintedToken {
        secret: text,
        record,
    })
}

/// Extracts the public id of a presented token, checking its shape.
pub fn token_id(token: &SecretString) -> Result<String, MalformedToken> {
    let rest = token
        .expose_secret()
        .strip_prefix(PREFIX)
        .ok_or(MalformedToken)?;
    let (id, secret) = rest.split_once('_').ok_or(MalformedToken)?;
    let is_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if is_hex(id, ID_BYTES * 2) && is_hex(secret, SECRET_BYTES * 2) {
        Ok(id.to_owned())
    } else {
        Err(MalformedToken)
    }
}

/// SHA-256 of the token text. A plain hash suffices: the secret has 256 random bits.
pub fn token_hash(token: &SecretString) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, token.expose_secret().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Compares two hashes in constant time.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_token_parses_and_hash_matches() {
        let rng = SystemRandom::new();
        let minted = mint(&rng, "op", 0, 1000, None).expect("mint");
        assert_eq!(token_id(&minted.secret), Ok(minted.record.id.clone()));
        assert!(hashes_equal(
            &token_hash(&minted.secret),
            &minted.record.hash
        ));
        assert!(!format!("{:?}", minted.record).contains(minted.secret.expose_secret()));
    }

    #[test]
    fn rejects_malformed_tokens() {
        for bad in [
            "",
            "mnt_",
            "Bearer x",
            "mnt_0011223344556677_zz",
            "mnt_00112233_00",
        ] {
            assert_eq!(
                token_id(&SecretString::from(bad)),
                Err(MalformedToken),
                "{bad}"
            );
        }
    }
}
