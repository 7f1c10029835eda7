//! Checkpoints: the chain head (sequence number and hash) at a moment, signed with the key
//! backend's ECDSA P-256 audit key. A checkpoint anchors every entry up to its sequence number:
//! whoever rewrites history must also forge a signature only the token can make.
//!
//! Checkpoints are numbered contiguously from 1 and each signs the hash of the one before it,
//! so a checkpoint removed, reordered or replaced breaks the sequence and is found offline.
//!
//! Signed payload: `MNL-CHECKPOINT-v2` ‖ number (8) ‖ seq (8) ‖ chain hash (32) ‖ time in ms (8)
//! ‖ key version (4) ‖ key id (32) ‖ previous checkpoint's hash (32; zeros for number 1) ‖
//! authority-state digest (32: the locker's digest of its authority rows at entry `seq`, so a
//! row later restored from an older copy shows), all integers big-endian. The signature is r ‖ s (64 bytes). A checkpoint's hash is SHA-256 of its
//! signed payload. The key id is SHA-256 of the public key's SubjectPublicKeyInfo (DER), so an
//! auditor matches checkpoints to keys without trusting any label.
//!
//! Audit key versions are chained the same way: every version after the first carries an
//! endorsement, the previous version's signature over `MNL-AUDIT-KEY-v1` ‖ version (4) ‖ key
//! id (32). An auditor who pins the first key's id (its fingerprint) accepts no other key
//! unless it is endorsed, link by link, from the pinned one.

use base64::Engine;
use ring::digest;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

const TAG: &[u8] = b"MNL-CHECKPOINT-v2";
const KEY_TAG: &[u8] = b"MNL-AUDIT-KEY-v1";
/// The `prev` of checkpoint number 1.
pub const FIRST_PREV: [u8; 32] = [0; 32];
/// DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte uncompressed point follows.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A signed checkpoint, as stored and exported (hex strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Position among checkpoints, from 1, without gaps.
    pub number: u64,
    /// Sequence number of the last entry it covers.
    pub seq: u64,
    /// Hash of that entry (hex).
    pub chain_hash: String,
    /// When it was signed, ms since the Unix epoch.
    pub time_ms: i64,
    /// Version of the audit key that signed it.
    pub key_version: u32,
    /// SHA-256 of the signing key's SubjectPublicKeyInfo (hex).
    pub key_id: String,
    /// Hash of the previous checkpoint (hex; zeros for number 1).
    pub prev: String,
    /// Digest of the locker's authority rows at entry `seq` (hex).
    pub state: String,
    /// r ‖ s (hex).
    pub signature: String,
}

/// What a checkpoint signs, in binary form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointBody {
    /// Position among checkpoints, from 1.
    pub number: u64,
    /// Sequence number of the last entry covered.
    pub seq: u64,
    /// Hash of that entry.
    pub chain_hash: [u8; 32],
    /// Signing time, ms since the Unix epoch.
    pub time_ms: i64,
    /// Audit key version.
    pub key_version: u32,
    /// Audit key id.
    pub key_id: [u8; 32],
    /// Hash of the previous checkpoint ([`FIRST_PREV`] for number 1).
    pub prev: [u8; 32],
    /// Digest of the authority rows at entry `seq`.
    pub state: [u8; 32],
}

impl CheckpointBody {
    /// The bytes the signature covers.
    pub fn signed_payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TAG.len() + 156);
        out.extend_from_slice(TAG);
        out.extend_from_slice(&self.number.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.chain_hash);
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        out.extend_from_slice(&self.key_version.to_be_bytes());
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.prev);
        out.extend_from_slice(&self.state);
        out
    }

    /// The checkpoint's hash, which the next checkpoint signs.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&self.signed_payload())
    }

    /// The stored and exported form with its signature (r ‖ s).
    pub fn into_checkpoint(self, signature: &[u8]) -> Checkpoint {
        Checkpoint {
            number: self.number,
            seq: self.seq,
            chain_hash: hex::encode(self.chain_hash),
            time_ms: self.time_ms,
            key_version: self.key_version,
            key_id: hex::encode(self.key_id),
            prev: hex::encode(self.prev),
            state: hex::encode(self.state),
            signature: hex::encode(signature),
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// The bytes an audit key version's endorsement (by the previous version) covers.
pub fn endorsement_payload(version: u32, key_id: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(KEY_TAG.len() + 36);
    out.extend_from_slice(KEY_TAG);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(key_id);
    out
}

/// Whether `signature` (r ‖ s) by `signer_point` endorses key `key_id` as `version`.
pub fn verify_endorsement(
    signer_point: &[u8],
    version: u32,
    key_id: &[u8; 32],
    signature: &[u8],
) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, signer_point)
        .verify(&endorsement_payload(version, key_id), signature)
        .is_ok()
}

/// SubjectPublicKeyInfo (DER) of a P-256 public point (65 bytes, uncompressed).
pub fn spki_der(point: &[u8]) -> Vec<u8> {
    let mut out = SPKI_P256_PREFIX.to_vec();
    out.extend_from_slice(point);
    out
}

/// Key id: SHA-256 of the SubjectPublicKeyInfo. The first version's id is the fingerprint an
/// auditor pins.
pub fn key_id(point: &[u8]) -> [u8; 32] {
    sha256(&spki_der(point))
}

/// Whether `signature_hex` (r ‖ s) verifies `payload(key id)` with `point`, and `key_id_hex`
/// names that key: how a signed record (certificate, notice) is checked.
pub fn verify_named_signature(
    point: &[u8],
    key_id_hex: &str,
    signature_hex: &str,
    payload: impl FnOnce(&[u8; 32]) -> Vec<u8>,
) -> bool {
    let (Ok(id), Ok(signature)) = (hex::decode(key_id_hex), hex::decode(signature_hex)) else {
        return false;
    };
    let Ok(id) = <[u8; 32]>::try_from(id) else {
        return false;
    };
    id == key_id(point)
        && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(&payload(&id), &signature)
            .is_ok()
}

/// The public key as a PEM `PUBLIC KEY` block (what `openssl pkey -pubin` reads).
pub fn public_key_pem(point: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki_der(point));
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// Every P-256 public point in a PEM text (other blocks and text around them are ignored).
pub fn parse_public_keys_pem(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut keys = Vec::new();
    let mut inside: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN PUBLIC KEY-----" {
            inside = Some(String::new());
        } else if line == "-----END PUBLIC KEY-----" {
            let b64 = inside.take().ok_or("END without BEGIN in PEM")?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| format!("PEM block is not base64: {e}"))?;
            match der.strip_prefix(&SPKI_P256_PREFIX[..]) {
                Some(point) if point.len() == 65 && point[0] == 0x04 => keys.push(point.to_vec()),
                _ => return Err("a PUBLIC KEY block is not an uncompressed P-256 key".into()),
            }
        } else if let Some(b64) = inside.as_mut() {
            b64.push_str(line);
        }
    }
    if keys.is_empty() {
        return Err("no PUBLIC KEY block found".into());
    }
    Ok(keys)
}

fn decode32(text: &str) -> Option<[u8; 32]> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
}

impl Checkpoint {
    /// The signed fields in binary form; `None` if a hex field does not decode.
    pub fn body(&self) -> Option<CheckpointBody> {
        Some(CheckpointBody {
            number: self.number,
            seq: self.seq,
            chain_hash: decode32(&self.chain_hash)?,
            time_ms: self.time_ms,
            key_version: self.key_version,
            key_id: decode32(&self.key_id)?,
            prev: decode32(&self.prev)?,
            state: decode32(&self.state)?,
        })
    }

    /// The checkpoint's hash (what the next one names as `prev`); `None` if malformed.
    pub fn hash(&self) -> Option<[u8; 32]> {
        self.body().map(|b| b.hash())
    }

    /// Whether the signature verifies with `point` and the key id matches it.
    pub fn verify_signature(&self, point: &[u8]) -> bool {
        let (Some(body), Ok(signature)) = (self.body(), hex::decode(&self.signature)) else {
            return false;
        };
        if body.key_id != key_id(point) {
            return false;
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(&body.signed_payload(), &signature)
            .is_ok()
    }

    /// Whether this checkpoint directly follows `previous` (`None`: it must be number 1).
    pub fn follows(&self, previous: Option<&Checkpoint>) -> bool {
        let Some(body) = self.body() else {
            return false;
        };
        match previous {
            None => body.number == 1 && body.prev == FIRST_PREV,
            Some(previous) => {
                body.number == previous.number + 1
                    && previous.hash() == Some(body.prev)
                    && body.seq >= previous.seq
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    #[test]
    fn pem_round_trip_and_signature() {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pair");
        let point = pair.public_key().as_ref().to_vec();
        let pem = public_key_pem(&point);
        assert_eq!(
            parse_public_keys_pem(&format!("# comment\n{pem}{pem}")).expect("parse"),
            vec![point.clone(), point.clone()]
        );
        let id = key_id(&point);
        let body = CheckpointBody {
            number: 1,
            seq: 7,
            chain_hash: [3u8; 32],
            time_ms: 99,
            key_version: 1,
            key_id: id,
            prev: FIRST_PREV,
            state: [4u8; 32],
        };
        let signature = pair.sign(&rng, &body.signed_payload()).expect("sign");
        let checkpoint = body.into_checkpoint(signature.as_ref());
        assert!(checkpoint.verify_signature(&point));
        assert!(checkpoint.follows(None));
        let forged = Checkpoint {
            seq: 8,
            ..checkpoint.clone()
        };
        assert!(!forged.verify_signature(&point));
        let next_body = CheckpointBody {
            number: 2,
            seq: 9,
            prev: body.hash(),
            ..body
        };
        let next = next_body.into_checkpoint(
            pair.sign(&rng, &next_body.signed_payload())
                .expect("sign")
                .as_ref(),
        );
        assert!(next.follows(Some(&checkpoint)));
        assert!(!next.follows(None));
        assert!(!next.follows(Some(&next)));

        let endorsement = pair
            .sign(&rng, &endorsement_payload(2, &[9u8; 32]))
            .expect("sign");
        assert!(verify_endorsement(
            &point,
            2,
            &[9u8; 32],
            endorsement.as_ref()
        ));
        assert!(!verify_endorsement(
            &point,
            3,
            &[9u8; 32],
            endorsement.as_ref()
        ));
    }
}
