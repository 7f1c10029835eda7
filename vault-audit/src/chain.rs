//! Verification of a hash chain of audit rows: recomputes every hash and checks that each entry
//! follows the one before it, so an edited, deleted, inserted or reordered entry is named.

use crate::entry::{EntryFormat, GENESIS_HASH, LogKey, RowRef};

/// The result of verifying a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Whether every entry checked out.
    pub ok: bool,
    /// How many entries were checked (up to and including the first bad one).
    pub entries_checked: u64,
    /// Sequence number (storage key) of the first entry that fails.
    pub first_bad_seq: Option<u64>,
    /// What failed, or a summary.
    pub message: String,
    /// Hash of the last good entry.
    pub head_hash: [u8; 32],
}

/// Incremental verifier: feed rows in key order. With the log key it also checks every
/// authenticated entry's MAC, and that no unauthenticated (older-format) entry follows one.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: u64,
    prev_hash: [u8; 32],
    checked: u64,
    failure: Option<(u64, String)>,
    log_key: Option<LogKey>,
    authenticated_seen: bool,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            expected_seq: 1,
            prev_hash: GENESIS_HASH,
            checked: 0,
            failure: None,
            log_key: None,
            authenticated_seen: false,
        }
    }
}

impl ChainVerifier {
    /// A verifier that also checks MACs under `key`.
    pub fn with_log_key(key: LogKey) -> ChainVerifier {
        ChainVerifier {
            log_key: Some(key),
            ..ChainVerifier::default()
        }
    }

    /// Checks the row stored under `key`. Returns false once a failure has been found.
    pub fn feed(&mut self, key: u64, row: &[u8]) -> bool {
        if self.failure.is_some() {
            return false;
        }
        self.checked += 1;
        match self.check(key, row) {
            Ok(hash) => {
                self.prev_hash = hash;
                self.expected_seq = key + 1;
                true
            }
            Err(message) => {
                self.failure = Some((key, message));
                false
            }
        }
    }

    fn check(&mut self, key: u64, row: &[u8]) -> Result<[u8; 32], String> {
        if key != self.expected_seq {
            return Err(format!(
                "entry {} is missing (next stored entry is {key})",
                self.expected_seq
            ));
        }
        let chained = RowRef::parse(row).map_err(|e| format!("entry {key} is unreadable: {e}"))?;
        if chained.entry.seq != key {
            return Err(format!(
                "entry {key} carries sequence {} (moved or swapped)",
                chained.entry.seq
            ));
        }
        if chained.prev_hash != self.prev_hash {
            return Err(format!("entry {key} does not follow entry {}", key - 1));
        }
        if !chained.hash_holds() {
            return Err(format!("entry {key} was altered (hash mismatch)"));
        }
        if let Some(log_key) = &self.log_key {
            match chained.mac_verifies(log_key) {
                Some(true) => self.authenticated_seen = true,
                Some(false) => {
                    return Err(format!(
                        "entry {key} is not authenticated by the log key (forged or re-chained without the key backend)"
                    ));
                }
                None if self.authenticated_seen => {
                    return Err(format!(
                        "entry {key} is in the unauthenticated format {} after authenticated entries (forged)",
                        EntryFormat::V2.tag()
                    ));
                }
                None => {}
            }
        }
        Ok(chained.hash)
    }

    /// The report so far.
    pub fn finish(self) -> VerifyReport {
        match self.failure {
            Some((seq, message)) => VerifyReport {
                ok: false,
                entries_checked: self.checked,
                first_bad_seq: Some(seq),
                message,
                head_hash: self.prev_hash,
            },
            None => VerifyReport {
                ok: true,
                entries_checked: self.checked,
                first_bad_seq: None,
                message: format!("{} entries verified", self.checked),
                head_hash: self.prev_hash,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{AuditEntry, ChainedEntry};

    fn chain(n: u64) -> Vec<(u64, Vec<u8>)> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let entry = AuditEntry {
                    seq,
                    action: "UNSEAL".into(),
                    ..AuditEntry::default()
                };
                let chained = ChainedEntry::new(entry, prev);
                prev = chained.hash;
                (seq, chained.to_row())
            })
            .collect()
    }

    fn verify(rows: &[(u64, Vec<u8>)]) -> VerifyReport {
        let mut verifier = ChainVerifier::default();
        for (key, row) in rows {
            verifier.feed(*key, row);
        }
        verifier.finish()
    }

    #[test]
    fn clean_chain_verifies() {
        let report = verify(&chain(5));
        assert!(report.ok);
        assert_eq!(report.entries_checked, 5);
    }

    #[test]
    fn names_edited_deleted_and_swapped_entries() {
        let mut edited = chain(5);
        let last = edited[2].1.len() - 1;
        edited[2].1[last] ^= 1;
        assert_eq!(verify(&edited).first_bad_seq, Some(3));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify(&deleted).first_bad_seq, Some(3));

        let mut swapped = chain(5);
        let (a, b) = (swapped[1].1.clone(), swapped[2].1.clone());
        swapped[1].1 = b;
        swapped[2].1 = a;
        assert_eq!(verify(&swapped).first_bad_seq, Some(2));
    }
}
