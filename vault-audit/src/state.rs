//! The `state` field of an audit entry (format 3, field 13): what the commit that wrote the
//! entry left as current state, so that a daemon following the log knows the current version
//! of every row it decides on from authenticated entries rather than from the store.
//!
//! The field is a list of items, one per line; a reader skips items it does not know, so later
//! releases can add items without breaking older verifiers (the hash covers the bytes as
//! stored in any case):
//!
//! - `authority <64 hex>` — the digest of every authority row after the commit (on the last
//!   entry of a commit that changed one);
//! - `records <64 hex>` — the digest of the set of every record's current version after the
//!   commit (on the last entry of a commit that changed a record);
//! - `record <handle> <16 hex>` — the record `handle` now has the version with this tag (on
//!   the entry of the call that changed it);
//! - `index+ <16 hex>` / `index- <16 hex>` — a blind-index entry with this fingerprint was
//!   added or removed (same entry).
//!
//! Tags and fingerprints are keyed under the log key (see the daemon's `audit::records`): they
//! say nothing about a number or a record's contents to anyone without the key backend.

use std::fmt::Write as _;

/// One row change a `state` field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    /// The record with this handle now has the version with this tag.
    Record {
        /// The record's handle.
        handle: String,
        /// The tag of its new version.
        tag: u64,
    },
    /// A blind-index entry with this fingerprint was added.
    IndexAdded(u64),
    /// A blind-index entry with this fingerprint was removed.
    IndexRemoved(u64),
}

/// A decoded `state` field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateField {
    /// The authority digest after the commit, if the commit changed an authority row.
    pub authority: Option<[u8; 32]>,
    /// The records digest after the commit, if the commit changed a record.
    pub records: Option<[u8; 32]>,
    /// The rows the entry's call changed, in the order it changed them.
    pub changes: Vec<RowChange>,
}

impl StateField {
    /// Decodes a field; unknown and malformed items are skipped (an entry's own hash and MAC
    /// vouch for its bytes; what an older release cannot read it leaves alone).
    pub fn parse(field: &str) -> StateField {
        let mut state = StateField::default();
        for line in field.lines() {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("authority"), Some(hex), None, None) => {
                    if let Some(digest) = digest_from_hex(hex) {
                        state.authority = Some(digest);
                    }
                }
                (Some("records"), Some(hex), None, None) => {
                    if let Some(digest) = digest_from_hex(hex) {
                        state.records = Some(digest);
                    }
                }
                (Some("record"), Some(handle), Some(hex), None) => {
                    if let Some(tag) = tag_from_hex(hex) {
                        state.changes.push(RowChange::Record {
                            handle: handle.to_owned(),
                            tag,
                        });
                    }
                }
                (Some("index+"), Some(hex), None, None) => {
                    if let Some(fingerprint) = tag_from_hex(hex) {
                        state.changes.push(RowChange::IndexAdded(fingerprint));
                    }
                }
                (Some("index-"), Some(hex), None, None) => {
                    if let Some(fingerprint) = tag_from_hex(hex) {
                        state.changes.push(RowChange::IndexRemoved(fingerprint));
                    }
                }
                _ => {}
            }
        }
        state
    }

    /// The authority and records digests `field` names, without decoding its row changes
    /// (what a verifier walking the log needs from every entry, cheaply).
    pub fn digests(field: &str) -> (Option<[u8; 32]>, Option<[u8; 32]>) {
        let mut authority = None;
        let mut records = None;
        for line in field.lines() {
            if let Some(hex) = line.strip_prefix("authority ") {
                authority = digest_from_hex(hex).or(authority);
            } else if let Some(hex) = line.strip_prefix("records ") {
                records = digest_from_hex(hex).or(records);
            }
        }
        (authority, records)
    }

    /// Whether the field names nothing.
    pub fn is_empty(&self) -> bool {
        self.authority.is_none() && self.records.is_none() && self.changes.is_empty()
    }

    /// The field as stored (empty when it names nothing).
    pub fn to_field(&self) -> String {
        StateField::field_of(
            &self.changes,
            self.records.as_ref(),
            self.authority.as_ref(),
        )
    }

    /// The field naming `changes`, then the records and authority digests if given: what
    /// [`StateField::to_field`] writes, from borrowed parts (the writer names each call's slice
    /// of its commit's changes without copying them).
    pub fn field_of(
        changes: &[RowChange],
        records: Option<&[u8; 32]>,
        authority: Option<&[u8; 32]>,
    ) -> String {
        let mut out = String::new();
        let mut line = |text: std::fmt::Arguments| {
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = out.write_fmt(text);
        };
        for change in changes {
            match change {
                RowChange::Record { handle, tag } => {
                    line(format_args!("record {handle} {tag:016x}"))
                }
                RowChange::IndexAdded(fingerprint) => {
                    line(format_args!("index+ {fingerprint:016x}"))
                }
                RowChange::IndexRemoved(fingerprint) => {
                    line(format_args!("index- {fingerprint:016x}"))
                }
            }
        }
        if let Some(digest) = records {
            line(format_args!("records {}", Hex(digest)));
        }
        if let Some(digest) = authority {
            line(format_args!("authority {}", Hex(digest)));
        }
        out
    }
}

/// Bytes shown as lowercase hex, written straight into the field.
struct Hex<'a>(&'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

fn digest_from_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn tag_from_hex(hex: &str) -> Option<u64> {
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_round_trips_and_unknown_items_are_skipped() {
        let state = StateField {
            authority: Some([7; 32]),
            records: Some([9; 32]),
            changes: vec![
                RowChange::Record {
                    handle: "h_00112233445566778899aabbccddeeff".into(),
                    tag: 0x0123_4567_89ab_cdef,
                },
                RowChange::IndexAdded(1),
                RowChange::IndexRemoved(u64::MAX),
            ],
        };
        let field = state.to_field();
        assert_eq!(StateField::parse(&field), state);
        let later = format!("{field}\nsomething-new 42\nrecord too many words here");
        assert_eq!(StateField::parse(&later), state);
        assert_eq!(StateField::digests(&later), (Some([7; 32]), Some([9; 32])));
    }

    #[test]
    fn an_authority_only_field_reads_as_it_was_written_before_records_were_named() {
        let field = format!("authority {}", "ab".repeat(32));
        let state = StateField::parse(&field);
        assert_eq!(state.authority, Some([0xab; 32]));
        assert_eq!(state.to_field(), field);
        assert!(StateField::parse("").is_empty());
        assert!(StateField::parse("authority 12").is_empty());
        assert!(StateField::parse("index+ 0x00000000000001").is_empty());
    }
}
