//! Audit entries and their canonical, hash-chained encoding.
//!
//! Canonical bytes (documented so an auditor can verify with any tool): the tag `MNL-AUDIT-2`,
//! then `seq` and `time_ms` as 8-byte big-endian integers, then each text field as a 4-byte
//! big-endian length and its UTF-8 bytes, in the order of [`AuditEntry`]'s fields. An entry's
//! hash is SHA-256(previous hash ‖ canonical bytes); the first entry's previous hash is 32 zero
//! bytes. A stored row is `previous hash ‖ hash ‖ canonical bytes`.

use ring::digest;

const TAG: &[u8] = b"MNL-AUDIT-2";
/// The previous hash of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// One audited call. Never a number, never a token: only ids, codes and reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain, from 1; assigned by the writer.
    pub seq: u64,
    /// Commit time in milliseconds since the Unix epoch; assigned by the writer.
    pub time_ms: i64,
    /// Operator id, or empty when the caller could not be identified.
    pub operator: String,
    /// The operator's role, or empty.
    pub role: String,
    /// Tenant concerned, or empty.
    pub tenant: String,
    /// Action name (`UNSEAL`, `TOKEN_ISSUE`, ...).
    pub action: String,
    /// Record handle concerned, or empty.
    pub handle: String,
    /// Purpose code asked for, or empty.
    pub purpose: String,
    /// `ALLOWED`, `DENIED` or `FAILED`.
    pub outcome: String,
    /// gRPC status code name of the answer.
    pub code: String,
    /// Why: the denial or failure message, or what was done.
    pub reason: String,
    /// Request id (from `x-request-id`, or generated).
    pub request_id: String,
    /// Peer address and, with mutual TLS, client certificate fingerprint.
    pub peer: String,
    /// Public id of the token that authenticated the call (empty when none was presented or
    /// it did not parse); never the token's secret.
    pub token_id: String,
}

impl AuditEntry {
    fn text_fields(&self) -> [&String; 12] {
        [
            &self.operator,
            &self.role,
            &self.tenant,
            &self.action,
            &self.handle,
            &self.purpose,
            &self.outcome,
            &self.code,
            &self.reason,
            &self.request_id,
            &self.peer,
            &self.token_id,
        ]
    }

    /// The canonical bytes the hash covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(TAG);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        for field in self.text_fields() {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }

    /// Decodes canonical bytes.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<AuditEntry, String> {
        let mut rest = bytes
            .strip_prefix(TAG)
            .ok_or_else(|| "entry does not start with the audit tag".to_owned())?;
        let mut take = |n: usize| -> Result<&[u8], String> {
            if rest.len() < n {
                return Err("entry is truncated".into());
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let seq = u64::from_be_bytes(take(8)?.try_into().map_err(|_| "bad seq")?);
        let time_ms = i64::from_be_bytes(take(8)?.try_into().map_err(|_| "bad time")?);
        let mut texts: Vec<String> = Vec::with_capacity(12);
        for _ in 0..12 {
            let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| "bad length")?) as usize;
            let text = std::str::from_utf8(take(len)?)
                .map_err(|_| "entry field is not UTF-8".to_owned())?;
            texts.push(text.to_owned());
        }
        if !rest.is_empty() {
            return Err("entry has trailing bytes".into());
        }
        let mut texts = texts.into_iter();
        let mut next = || texts.next().unwrap_or_default();
        Ok(AuditEntry {
            seq,
            time_ms,
            operator: next(),
            role: next(),
            tenant: next(),
            action: next(),
            handle: next(),
            purpose: next(),
            outcome: next(),
            code: next(),
            reason: next(),
            request_id: next(),
            peer: next(),
            token_id: next(),
        })
    }
}

/// SHA-256(previous hash ‖ canonical bytes).
pub fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    ctx.update(canonical);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// An entry with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedEntry {
    /// The entry.
    pub entry: AuditEntry,
    /// Hash of the previous entry.
    pub prev_hash: [u8; 32],
    /// This entry's hash.
    pub hash: [u8; 32],
}

impl ChainedEntry {
    /// Chains `entry` after `prev_hash`.
    pub fn new(entry: AuditEntry, prev_hash: [u8; 32]) -> ChainedEntry {
        let hash = chain_hash(&prev_hash, &entry.canonical_bytes());
        ChainedEntry {
            entry,
            prev_hash,
            hash,
        }
    }

    /// The stored row: previous hash ‖ hash ‖ canonical bytes.
    pub fn to_row(&self) -> Vec<u8> {
        let canonical = self.entry.canonical_bytes();
        let mut row = Vec::with_capacity(64 + canonical.len());
        row.extend_from_slice(&self.prev_hash);
        row.extend_from_slice(&self.hash);
        row.extend_from_slice(&canonical);
        row
    }

    /// Parses a stored row without checking the hash (see `audit::verify` for that).
    pub fn from_row(row: &[u8]) -> Result<ChainedEntry, String> {
        if row.len() < 64 {
            return Err("row is shorter than its two hashes".into());
        }
        let mut prev_hash = [0u8; 32];
        let mut hash = [0u8; 32];
        prev_hash.copy_from_slice(&row[..32]);
        hash.copy_from_slice(&row[32..64]);
        Ok(ChainedEntry {
            entry: AuditEntry::from_canonical_bytes(&row[64..])?,
            prev_hash,
            hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditEntry {
        AuditEntry {
            seq: 7,
            time_ms: 1_700_000_000_000,
            operator: "alice".into(),
            role: "handler".into(),
            tenant: "dev".into(),
            action: "UNSEAL".into(),
            handle: "mnh_00".into(),
            purpose: "STAFF_WITHHOLDING".into(),
            outcome: "ALLOWED".into(),
            code: "OK".into(),
            reason: "released".into(),
            request_id: "r1".into(),
            peer: "127.0.0.1:1".into(),
            token_id: "0123abcd".into(),
        }
    }

    #[test]
    fn canonical_round_trip() {
        let entry = sample();
        let bytes = entry.canonical_bytes();
        assert_eq!(AuditEntry::from_canonical_bytes(&bytes), Ok(entry));
        assert!(AuditEntry::from_canonical_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn row_round_trip_and_hash_depends_on_previous() {
        let a = ChainedEntry::new(sample(), GENESIS_HASH);
        let b = ChainedEntry::new(sample(), a.hash);
        assert_ne!(a.hash, b.hash);
        assert_eq!(ChainedEntry::from_row(&b.to_row()), Ok(b));
    }
}
