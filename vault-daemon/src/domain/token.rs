//! Bearer tokens: `mnt_<16 hex id>_<64 hex secret>`. The server stores only the id and the
//! SHA-256 of the whole token; the secret (256 random bits) is shown once, at issue.
//!
//! A token an admin asks for another operator is made of two shares (split knowledge, so that
//! no single admin ever holds a working token for someone else): `mns_<id>_1_<64 hex>` goes to
//! the requester, `mns_<id>_2_<64 hex>` to the admin whose approval applies the request, and
//! only the two combined, `mnt_<id>_<share 1><share 2>` (128 hex), authenticate. The server
//! keeps SHA-256(`MNL-SPLIT-TOKEN-v1` ‖ SHA-256(share 1) ‖ SHA-256(share 2)): share 1's hash is
//! held with the request, share 2 is drawn when the request is applied.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "mnt_";
const SHARE_PREFIX: &str = "mns_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
const SPLIT_TAG: &[u8] = b"MNL-SPLIT-TOKEN-v1";

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

/// One share of a split token, and what the server keeps of it.
pub struct TokenShare {
    /// The share's text, `mns_<id>_<n>_<64 hex>`, handed out once.
    pub text: SecretString,
    /// SHA-256 of its 32 secret bytes.
    pub hash: [u8; 32],
}

/// Mints the first share of a token for `operator_id` and the token's stored form, not yet
/// usable: its hash is set by [`complete_split`] when the second share is drawn.
pub fn mint_split(
    rng: &SystemRandom,
    operator_id: &str,
    now_ms: i64,
    ttl_ms: i64,
    cert_fingerprint: Option<String>,
) -> Result<(TokenShare, TokenRecord), ring::error::Unspecified> {
    let mut id = [0u8; ID_BYTES];
    rng.fill(&mut id)?;
    let id = hex::encode(id);
    let share = draw_share(rng, &id, 1)?;
    let record = TokenRecord {
        hash: [0u8; 32],
        id,
        operator_id: operator_id.to_owned(),
        issued_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(ttl_ms),
        revoked: false,
        cert_fingerprint,
    };
    Ok((share, record))
}

/// Draws share `number` (1 or 2) of token `id`.
pub fn draw_share(
    rng: &SystemRandom,
    id: &str,
    number: u8,
) -> Result<TokenShare, ring::error::Unspecified> {
    let mut secret = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    rng.fill(&mut secret[..])?;
    let hex_secret = zeroize::Zeroizing::new(hex::encode(secret.as_ref()));
    Ok(TokenShare {
        text: SecretString::from(format!(
            "{SHARE_PREFIX}{id}_{number}_{}",
            hex_secret.as_str()
        )),
        hash: sha256(secret.as_ref()),
    })
}

/// The stored hash of a split token whose shares hash to `first` and `second`.
pub fn split_token_hash(first: &[u8; 32], second: &[u8; 32]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(SPLIT_TAG);
    context.update(first);
    context.update(second);
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
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
    let secret_ok = is_hex(secret, SECRET_BYTES * 2) || is_hex(secret, SECRET_BYTES * 4);
    if is_hex(id, ID_BYTES * 2) && secret_ok {
        Ok(id.to_owned())
    } else {
        Err(MalformedToken)
    }
}

/// The hash to compare with the stored one: SHA-256 of the token text, or for a combined
/// split token (128 hex) [`split_token_hash`] of its two shares. A plain hash suffices: each
/// secret has 256 random bits.
pub fn token_hash(token: &SecretString) -> [u8; 32] {
    let text = token.expose_secret();
    let secret = text.rsplit('_').next().unwrap_or_default();
    if secret.len() == SECRET_BYTES * 4 {
        let decoded = zeroize::Zeroizing::new(hex::decode(secret).unwrap_or_default());
        if decoded.len() == SECRET_BYTES * 2 {
            let (first, second) = decoded.split_at(SECRET_BYTES);
            return split_token_hash(&sha256(first), &sha256(second));
        }
    }
    sha256(text.as_bytes())
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
    fn only_both_shares_combined_authenticate() {
        let rng = SystemRandom::new();
        let (first, mut record) = mint_split(&rng, "op", 0, 1000, None).expect("mint");
        let second = draw_share(&rng, &record.id, 2).expect("share");
        record.hash = split_token_hash(&first.hash, &second.hash);
        let secret = |share: &TokenShare| {
            share
                .text
                .expose_secret()
                .rsplit('_')
                .next()
                .expect("secret")
                .to_owned()
        };
        let combined = SecretString::from(format!(
            "mnt_{}_{}{}",
            record.id,
            secret(&first),
            secret(&second)
        ));
        assert_eq!(token_id(&combined), Ok(record.id.clone()));
        assert!(hashes_equal(&token_hash(&combined), &record.hash));
        // Either share alone, as a share or dressed as a token, is refused.
        for share in [&first, &second] {
            assert_eq!(token_id(&share.text), Err(MalformedToken));
            let alone = SecretString::from(format!("mnt_{}_{}", record.id, secret(share)));
            assert!(!hashes_equal(&token_hash(&alone), &record.hash));
        }
        // In the wrong order.
        let swapped = SecretString::from(format!(
            "mnt_{}_{}{}",
            record.id,
            secret(&second),
            secret(&first)
        ));
        assert!(!hashes_equal(&token_hash(&swapped), &record.hash));
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
