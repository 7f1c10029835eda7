//! Deletion certificates (削除証明書, 規程第32・36条): which record was disposed of, when, how
//! and by whom, signed with the key backend's ECDSA P-256 audit key, so an auditor or the
//! authority can check a certificate with the audit public key alone. Never a number.
//!
//! Signed payload: `MNL-DELETION-CERT-v1`, then handle, tenant, subject reference, disposal
//! time (ms, 8 bytes big-endian), method, responsible, key version (4 bytes big-endian) and key
//! id (32 bytes); every text field is preceded by its length (4 bytes big-endian), so no two
//! certificates share a payload.

use serde::{Deserialize, Serialize};

use crate::checkpoint::verify_named_signature;

const TAG: &[u8] = b"MNL-DELETION-CERT-v1";

/// A signed deletion certificate, as stored and exported (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionCertificate {
    /// The disposed record's handle.
    pub handle: String,
    /// Its tenant.
    pub tenant: String,
    /// The caller's reference for the person (employee or payee id).
    pub subject_ref: String,
    /// When, ms since the Unix epoch.
    pub disposed_at_ms: i64,
    /// What was deleted and why.
    pub method: String,
    /// The operator, or `scheduler`.
    pub responsible: String,
    /// Version of the audit key that signed it.
    pub key_version: u32,
    /// SHA-256 of the signing key's SubjectPublicKeyInfo (hex).
    pub key_id: String,
    /// r ‖ s (hex).
    pub signature: String,
}

fn push_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

impl DeletionCertificate {
    /// The bytes the signature covers (everything but the signature).
    pub fn signed_payload(&self, key_id: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(TAG);
        push_text(&mut out, &self.handle);
        push_text(&mut out, &self.tenant);
        push_text(&mut out, &self.subject_ref);
        out.extend_from_slice(&self.disposed_at_ms.to_be_bytes());
        push_text(&mut out, &self.method);
        push_text(&mut out, &self.responsible);
        out.extend_from_slice(&self.key_version.to_be_bytes());
        out.extend_from_slice(key_id);
        out
    }

    /// Whether the signature verifies with `point` (an uncompressed P-256 public key) and the
    /// key id names that key.
    pub fn verify_signature(&self, point: &[u8]) -> bool {
        verify_named_signature(point, &self.key_id, &self.signature, |id| {
            self.signed_payload(id)
        })
    }

    /// Whether any of `points` verifies the certificate.
    pub fn verify_with_any(&self, points: &[Vec<u8>]) -> bool {
        points.iter().any(|point| self.verify_signature(point))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::key_id;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn signed() -> (DeletionCertificate, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pair");
        let point = pair.public_key().as_ref().to_vec();
        let id = key_id(&point);
        let mut cert = DeletionCertificate {
            handle: "mnh_00112233445566778899aabbccddeeff".into(),
            tenant: "dev".into(),
            subject_ref: "E0001".into(),
            disposed_at_ms: 1_900_000_000_000,
            method: "ciphertext, wrapped key and index deleted".into(),
            responsible: "scheduler".into(),
            key_version: 1,
            key_id: hex::encode(id),
            signature: String::new(),
        };
        let signature = pair.sign(&rng, &cert.signed_payload(&id)).expect("sign");
        cert.signature = hex::encode(signature.as_ref());
        (cert, point)
    }

    #[test]
    fn a_signed_certificate_verifies_and_any_edit_breaks_it() {
        let (cert, point) = signed();
        assert!(cert.verify_signature(&point));
        type Edit = fn(&mut DeletionCertificate);
        let edits: [Edit; 7] = [
            |c| c.handle.replace_range(4..5, "f"),
            |c| c.tenant = "other".into(),
            |c| c.subject_ref = "E0002".into(),
            |c| c.disposed_at_ms += 1,
            |c| c.method.push('!'),
            |c| c.responsible = "someone".into(),
            |c| c.key_version = 2,
        ];
        for edit in edits {
            let mut edited = cert.clone();
            edit(&mut edited);
            assert!(!edited.verify_signature(&point), "{edited:?}");
        }
        let (_, other_key) = signed();
        assert!(!cert.verify_signature(&other_key));
    }
}
