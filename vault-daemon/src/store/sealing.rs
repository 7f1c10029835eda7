//! Authenticated rows: the store is untrusted storage, so every row that grants authority or
//! decides a release carries a MAC computed in the key backend under the deployment's state
//! MAC key, over a canonical encoding that names the table and the row's key. A row edited,
//! forged, or moved to another key or table fails its check.
//!
//! Stored form: `0x02` ‖ tag (32) ‖ body, where body is the postcard encoding of the value and
//! tag = HMAC-SHA256(state MAC key, `MNL-ROW-v2` ‖ len(table) (2) ‖ table ‖ len(key) (4) ‖ key ‖
//! body), lengths big-endian. Nothing here is specific to redb: a server database stores the
//! same bytes in a `bytea` column beside the same key.
//!
//! Checking a tag costs a backend call, so rows already verified are remembered by the digest
//! of everything the tag covers together with the tag: the hot path (token, operator, tenant on
//! every call) reads the same bytes again and again and pays a hash, not a backend call. A row
//! whose bytes change is checked afresh.
//!
//! The same key authenticates the audit log: the log key is HMAC-SHA256(state MAC key,
//! `MNL-AUDIT-LOG-KEY-v1`), computed in the backend once per process and kept in memory, so
//! every entry is authenticated at memory speed and every daemon of a cluster (one backend,
//! one state key) checks the entries the others append. Nobody without the backend can compute
//! it; row messages start with another domain (`MNL-ROW-v2`), so no row tag is ever the log key.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use ring::digest;

use vault_audit::entry::LogKey;
use zeroize::Zeroizing;

use crate::store::StoreError;

const ROW_V2: u8 = 2;
const DOMAIN: &[u8] = b"MNL-ROW-v2";
/// What the state MAC key tags to make the log key.
const LOG_KEY_DOMAIN: &[u8] = b"MNL-AUDIT-LOG-KEY-v1";
const TAG_LEN: usize = 32;
/// Verified rows remembered at most; past it the memory is cleared and rows are checked again.
const VERIFIED_CAPACITY: usize = 100_000;

/// Computes tags under the state MAC key (in the key backend). Implemented by `keys`.
pub trait RowAuthenticator: Send + Sync {
    /// HMAC-SHA256 of `message` under the state MAC key.
    fn tag(&self, message: &[u8]) -> Result<[u8; 32], StoreError>;
}

/// Seals rows for storage and opens them again, remembering what it has verified.
pub struct RowSealer {
    authenticator: Arc<dyn RowAuthenticator>,
    verified: Mutex<HashSet<[u8; 32]>>,
    log_key: OnceLock<LogKey>,
}

impl std::fmt::Debug for RowSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowSealer").finish_non_exhaustive()
    }
}

fn message(table: &str, key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 6 + table.len() + key.len() + body.len());
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&(table.len() as u16).to_be_bytes());
    out.extend_from_slice(table.as_bytes());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(body);
    out
}

fn remembered(message: &[u8], tag: &[u8]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(message);
    context.update(tag);
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// How a row key appears in errors and logs: ids are text; binary keys as hex.
pub fn describe_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => text.to_owned(),
        _ => hex::encode(key),
    }
}

impl RowSealer {
    /// A sealer tagging with `authenticator`.
    pub fn new(authenticator: Arc<dyn RowAuthenticator>) -> RowSealer {
        RowSealer {
            authenticator,
            verified: Mutex::new(HashSet::new()),
            log_key: OnceLock::new(),
        }
    }

    /// The key that authenticates audit entries, derived in the backend on first use (a
    /// backend that is down fails this, closed, and the next call tries again).
    pub fn log_key(&self) -> Result<LogKey, StoreError> {
        if let Some(key) = self.log_key.get() {
            return Ok(key.clone());
        }
        let secret = Zeroizing::new(self.authenticator.tag(LOG_KEY_DOMAIN)?);
        Ok(self.log_key.get_or_init(|| LogKey::new(&secret)).clone())
    }

    fn remember(&self, digest: [u8; 32]) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(digest);
    }

    fn known(&self, digest: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(digest)
    }

    /// The stored form of `body` under `key` in `table`.
    pub fn seal(&self, table: &str, key: &[u8], body: &[u8]) -> Result<Vec<u8>, StoreError> {
        let message = message(table, key, body);
        let tag = self.authenticator.tag(&message)?;
        self.remember(remembered(&message, &tag));
        let mut out = Vec::with_capacity(1 + TAG_LEN + body.len());
        out.push(ROW_V2);
        out.extend_from_slice(&tag);
        out.extend_from_slice(body);
        Ok(out)
    }

    /// The body of a stored row, once its tag checks out for `key` in `table`. A failure is
    /// [`StoreError::Tampered`] and logged once, naming table and key (never the contents).
    pub fn open<'a>(
        &self,
        table: &str,
        key: &[u8],
        stored: &'a [u8],
    ) -> Result<&'a [u8], StoreError> {
        let tampered = || {
            let key = describe_key(key);
            tracing::error!(table, key = %key, "stored row fails its integrity check");
            StoreError::Tampered {
                table: table.to_owned(),
                key,
            }
        };
        let Some((&ROW_V2, rest)) = stored.split_first() else {
            return Err(tampered());
        };
        if rest.len() < TAG_LEN {
            return Err(tampered());
        }
        let (tag, body) = rest.split_at(TAG_LEN);
        let message = message(table, key, body);
        let digest = remembered(&message, tag);
        if self.known(&digest) {
            return Ok(body);
        }
        let expected = self.authenticator.tag(&message)?;
        // Constant time: how many leading bytes matched must not show in the timing.
        let difference = expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference != 0 {
            return Err(tampered());
        }
        self.remember(digest);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// HMAC in software, counting calls: stands in for the backend key in unit tests only.
    struct Counting {
        key: ring::hmac::Key,
        calls: AtomicUsize,
    }

    impl RowAuthenticator for Counting {
        fn tag(&self, message: &[u8]) -> Result<[u8; 32], StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut out = [0u8; 32];
            out.copy_from_slice(ring::hmac::sign(&self.key, message).as_ref());
            Ok(out)
        }
    }

    fn sealer() -> (RowSealer, Arc<Counting>) {
        let auth = Arc::new(Counting {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"test key"),
            calls: AtomicUsize::new(0),
        });
        (RowSealer::new(auth.clone()), auth)
    }

    #[test]
    fn refuses_edits_moves_and_foreign_rows() {
        let (sealer, _) = sealer();
        let row = sealer
            .seal("operators", b"alice", b"role=handler")
            .expect("seal");
        assert_eq!(
            sealer.open("operators", b"alice", &row).expect("open"),
            b"role=handler"
        );
        let mut edited = row.clone();
        *edited.last_mut().expect("byte") ^= 1;
        assert!(matches!(
            sealer.open("operators", b"alice", &edited),
            Err(StoreError::Tampered { .. })
        ));
        // The same bytes under another key or in another table.
        assert!(sealer.open("operators", b"mallory", &row).is_err());
        assert!(sealer.open("tokens", b"alice", &row).is_err());
        // A row tagged under another key (a forged row).
        let (other, _) = {
            let auth = Arc::new(Counting {
                key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"attacker"),
                calls: AtomicUsize::new(0),
            });
            (RowSealer::new(auth.clone()), auth)
        };
        let forged = other
            .seal("operators", b"alice", b"role=admin")
            .expect("seal");
        assert!(sealer.open("operators", b"alice", &forged).is_err());
        // Unauthenticated layouts.
        assert!(sealer.open("operators", b"alice", b"\x01plain").is_err());
        assert!(sealer.open("operators", b"alice", b"").is_err());
    }

    #[test]
    fn verified_rows_cost_no_backend_call() {
        let (writer, _) = sealer();
        let row = writer.seal("tenants", b"acme", b"body").expect("seal");
        let (reader, calls) = sealer();
        for _ in 0..100 {
            reader.open("tenants", b"acme", &row).expect("open");
        }
        assert_eq!(calls.calls.load(Ordering::SeqCst), 1);
    }
}
