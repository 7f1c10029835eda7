//! Checkpoints: the chain head (sequence number and hash) at a moment, signed with the key
//! backend's ECDSA P-256 audit key. A checkpoint anchors every entry up to its sequence number:
//! whoever rewrites history must also forge a signature only the token can make.
//!
//! Signed payload: `MNL-CHECKPOINT-v1` ‖ seq (8, big-endian) ‖ chain hash (32) ‖ time in ms
//! (8, big-endian) ‖ key version (4, big-endian) ‖ key id (32). The signature is r ‖ s (64
//! bytes). The key id is SHA-256 of the public key's SubjectPublicKeyInfo (DER), so an auditor
//! matches checkpoints to keys without trusting any label.

use base64::Engine;
use ring::digest;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

const TAG: &[u8] = b"MNL-CHECKPOINT-v1";
/// DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte uncompressed point follows.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A signed checkpoint, as stored and exported (hex strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
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
    /// r ‖ s (hex).
    pub signature: String,
}

/// The bytes a checkpoint's signature covers.
pub fn signed_payload(
    seq: u64,
    chain_hash: &[u8; 32],
    time_ms: i64,
    key_version: u32,
    key_id: &[u8; 32],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(TAG.len() + 84);
    out.extend_from_slice(TAG);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(chain_hash);
    out.extend_from_slice(&time_ms.to_be_bytes());
    out.extend_from_slice(&key_version.to_be_bytes());
    out.extend_from_slice(key_id);
    out
}

/// SubjectPublicKeyInfo (DER) of a P-256 public point (65 bytes, uncompressed).
pub fn spki_der(point: &[u8]) -> Vec<u8> {
    let mut out = SPKI_P256_PREFIX.to_vec();
    out.extend_from_slice(point);
    out
}

/// Key id: SHA-256 of the SubjectPublicKeyInfo.
pub fn key_id(point: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, &spki_der(point)).as_ref());
    out
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

impl Checkpoint {
    /// Whether the signature verifies with `point` and the key id matches it.
    pub fn verify_signature(&self, point: &[u8]) -> bool {
        let (Ok(hash), Ok(signature), Ok(id)) = (
            hex::decode(&self.chain_hash),
            hex::decode(&self.signature),
            hex::decode(&self.key_id),
        ) else {
            return false;
        };
        let (Ok(hash), Ok(id)) = (<[u8; 32]>::try_from(hash), <[u8; 32]>::try_from(id)) else {
            return false;
        };
        if id != key_id(point) {
            return false;
        }
        let payload = signed_payload(self.seq, &hash, self.time_ms, self.key_version, &id);
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
        let hash = [3u8; 32];
        let signature = pair
            .sign(&rng, &signed_payload(7, &hash, 99, 1, &id))
            .expect("sign");
        let checkpoint = Checkpoint {
            seq: 7,
            chain_hash: hex::encode(hash),
            time_ms: 99,
            key_version: 1,
            key_id: hex::encode(id),
            signature: hex::encode(signature.as_ref()),
        };
        assert!(checkpoint.verify_signature(&point));
        let forged = Checkpoint {
            seq: 8,
            ..checkpoint
        };
        assert!(!forged.verify_signature(&point));
    }
}
