//! The anchor statement: what the key backend anchored when an export was made — the number
//! and hash of the newest anchored checkpoint, and the anchor's counter — signed with the audit
//! key. The key backend is the one place a writer of the store cannot change, so an export
//! that does not reach the checkpoint its statement names is incomplete: the log it was taken
//! from lost commits (a lossy failover, a restore) or the file was cut afterwards.
//!
//! Signed payload: `MNL-ANCHOR-STATEMENT-v1` ‖ checkpoint number (8) ‖ checkpoint hash (32) ‖
//! anchor counter (8) ‖ time in ms (8), integers big-endian; ECDSA P-256 with SHA-256, r ‖ s.

use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::checkpoint::key_id;

const DOMAIN: &[u8] = b"MNL-ANCHOR-STATEMENT-v1";

/// A signed statement of the anchored checkpoint, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorStatement {
    /// Number of the checkpoint the key backend anchored.
    pub checkpoint: u64,
    /// That checkpoint's hash (hex).
    pub checkpoint_hash: String,
    /// The anchor's counter (raised at every anchoring, never lowered).
    pub counter: u64,
    /// When the statement was made, ms since the Unix epoch.
    pub time_ms: i64,
    /// Version of the audit key that signed it.
    pub key_version: u32,
    /// SHA-256 of that key's SubjectPublicKeyInfo (hex).
    pub key_id: String,
    /// r ‖ s (hex).
    pub signature: String,
}

/// The bytes an anchor statement signs.
pub fn signed_payload(checkpoint: u64, hash: &[u8; 32], counter: u64, time_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 56);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&checkpoint.to_be_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(&time_ms.to_be_bytes());
    out
}

impl AnchorStatement {
    /// The anchored checkpoint's hash, if the hex is well formed.
    pub fn hash(&self) -> Option<[u8; 32]> {
        hex::decode(&self.checkpoint_hash)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
    }

    /// Whether the signature verifies with the public point `point` and the key id is its.
    pub fn verify_signature(&self, point: &[u8]) -> bool {
        let (Some(hash), Ok(signature)) = (self.hash(), hex::decode(&self.signature)) else {
            return false;
        };
        if hex::encode(key_id(point)) != self.key_id {
            return false;
        }
        let payload = signed_payload(self.checkpoint, &hash, self.counter, self.time_ms);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(&payload, &signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    #[test]
    fn a_statement_verifies_only_as_signed() {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pair");
        let point = pair.public_key().as_ref().to_vec();
        let hash = [7u8; 32];
        let signature = pair
            .sign(&rng, &signed_payload(4, &hash, 9, 1_700_000_000_000))
            .expect("sign");
        let statement = AnchorStatement {
            checkpoint: 4,
            checkpoint_hash: hex::encode(hash),
            counter: 9,
            time_ms: 1_700_000_000_000,
            key_version: 1,
            key_id: hex::encode(key_id(&point)),
            signature: hex::encode(signature.as_ref()),
        };
        assert!(statement.verify_signature(&point));
        let earlier = AnchorStatement {
            checkpoint: 3,
            ..statement.clone()
        };
        assert!(!earlier.verify_signature(&point), "another checkpoint");
    }
}
