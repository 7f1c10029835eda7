//! A deletion certificate's exported form: the signed fields as JSON, which
//! `vault-client certificate verify` checks offline against the audit public keys.

use serde_json::{Value, json};

use crate::pb;

/// A deletion certificate as JSON (the `certificate export` format, which `certificate verify`
/// reads back).
pub fn certificate_json(c: &pb::DeletionCertificate) -> Value {
    json!({
        "handle": c.handle,
        "tenant": c.tenant,
        "subject_ref": c.subject_ref,
        "disposed_at_ms": c.disposed_at_ms,
        "method": c.method,
        "responsible": c.responsible,
        "key_version": c.key_version,
        "key_id": c.key_id,
        "signature": c.signature,
    })
}
