//! Audit signing keys: ECDSA P-256 keys held in the key backend, one active at a time. Old
//! versions are kept (never destroyed by rotation) so checkpoints they signed stay verifiable.

use serde::{Deserialize, Serialize};

/// One version of the audit signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditKeyRecord {
    /// Version, from 1.
    pub version: u32,
    /// The backend's reference to the private key.
    pub key_ref: Vec<u8>,
    /// The public point (uncompressed, 65 bytes).
    pub public_point: Vec<u8>,
    /// SHA-256 of the SubjectPublicKeyInfo.
    pub key_id: [u8; 32],
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The previous version's signature over this key (`vault_audit::checkpoint::
    /// endorsement_payload`); empty for version 1, whose id auditors pin.
    pub endorsement: Vec<u8>,
}
