//! Audit entries and their canonical, hash-chained, versioned encoding.
//!
//! Every entry states its format in its first bytes, and a verifier decodes by that tag, so
//! evidence written by one release verifies with every later one. An entry's hash is always
//! SHA-256(previous hash ‖ canonical bytes as stored); the first entry's previous hash is 32
//! zero bytes. Formats (documented so an auditor can verify with any tool):
//!
//! - **`MNL-AUDIT-2`** (written before entries were authenticated): the tag, then `seq` and
//!   `time_ms` as 8-byte big-endian integers, then the twelve text fields of [`AuditEntry`] in
//!   order, each as a 4-byte big-endian length and its UTF-8 bytes. Stored row: previous hash ‖
//!   hash ‖ canonical bytes.
//! - **`MNL-AUDIT-3`** (written now): the tag, `seq` (8), `time_ms` (8), then fields as
//!   field id (2) ‖ length (4) ‖ UTF-8 bytes, ids strictly ascending, empty fields left out.
//!   Ids 1–12 are the fields of format 2 in order; id 13 (`state`) was added later: what the
//!   commit left as current state (authority digest, records digest, the record versions and
//!   blind-index entries the call changed; see [`crate::state`]), so a daemon that follows the
//!   log knows the current state from authenticated entries, not from the store.
//!   A decoder skips ids it does not know, so a later format that adds fields stays readable
//!   (additive); the hash covers the bytes as stored, unknown fields included. Stored row:
//!   previous hash ‖ hash ‖ MAC (32) ‖ canonical bytes, where MAC = HMAC-SHA256(log key,
//!   `MNL-AUDIT-MAC-v1` ‖ seq (8) ‖ hash): only a holder of the key backend's log key can
//!   append or re-chain an entry that verifies. The MAC is not part of the chain: offline
//!   verification works from the signed checkpoints alone.

use ring::{digest, hmac};

const TAG_V2: &[u8] = b"MNL-AUDIT-2";
const TAG_V3: &[u8] = b"MNL-AUDIT-3";
const MAC_DOMAIN: &[u8] = b"MNL-AUDIT-MAC-v1";
/// The previous hash of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];
/// Field ids of format 3, in the order of [`AuditEntry`]'s text fields.
const FIELD_COUNT: u16 = 13;
/// The fields of format 2: the first twelve.
const V2_FIELD_COUNT: usize = 12;

/// The encodings an entry can be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryFormat {
    /// Fixed fields, no MAC (before entries were authenticated).
    V2,
    /// Tagged fields (additive), with a MAC under the log key.
    V3,
}

impl EntryFormat {
    /// The format written now.
    pub const CURRENT: EntryFormat = EntryFormat::V3;

    /// The tag that starts the canonical bytes (also the name exports give the format).
    pub fn tag(self) -> &'static str {
        match self {
            EntryFormat::V2 => "MNL-AUDIT-2",
            EntryFormat::V3 => "MNL-AUDIT-3",
        }
    }

    /// The format named `tag`, if this build knows it.
    pub fn from_tag(tag: &str) -> Option<EntryFormat> {
        match tag {
            "MNL-AUDIT-2" => Some(EntryFormat::V2),
            "MNL-AUDIT-3" => Some(EntryFormat::V3),
            _ => None,
        }
    }

    /// The format of canonical bytes, by their tag.
    pub fn of_canonical(bytes: &[u8]) -> Option<EntryFormat> {
        if bytes.starts_with(TAG_V3) {
            Some(EntryFormat::V3)
        } else if bytes.starts_with(TAG_V2) {
            Some(EntryFormat::V2)
        } else {
            None
        }
    }
}

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
    /// What the commit that wrote this entry left as current state (format 3 field 13): the
    /// items of [`crate::state::StateField`], or empty. Set by the writer.
    pub state: String,
}

/// The `state` field of a commit that changed authority rows and nothing else it names.
pub fn authority_state_field(digest: &[u8; 32]) -> String {
    crate::state::StateField {
        authority: Some(*digest),
        ..Default::default()
    }
    .to_field()
}

/// The authority digest a `state` field names, if it names one (see [`crate::state`]).
pub fn authority_digest_of(state: &str) -> Option<[u8; 32]> {
    crate::state::StateField::digests(state).0
}

/// Reads `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if rest.len() < n {
        return Err("entry is truncated".into());
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(bytes);
    u64::from_be_bytes(out)
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut out = [0u8; 4];
    out.copy_from_slice(bytes);
    u32::from_be_bytes(out)
}

fn text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "entry field is not UTF-8".to_owned())
}

/// An entry read in place from its canonical bytes: every text field borrowed, nothing copied.
/// What a verifier that walks the whole log reads (it needs a field or two of each entry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// See [`AuditEntry::seq`].
    pub seq: u64,
    /// See [`AuditEntry::time_ms`].
    pub time_ms: i64,
    /// See [`AuditEntry::operator`].
    pub operator: &'a str,
    /// See [`AuditEntry::role`].
    pub role: &'a str,
    /// See [`AuditEntry::tenant`].
    pub tenant: &'a str,
    /// See [`AuditEntry::action`].
    pub action: &'a str,
    /// See [`AuditEntry::handle`].
    pub handle: &'a str,
    /// See [`AuditEntry::purpose`].
    pub purpose: &'a str,
    /// See [`AuditEntry::outcome`].
    pub outcome: &'a str,
    /// See [`AuditEntry::code`].
    pub code: &'a str,
    /// See [`AuditEntry::reason`].
    pub reason: &'a str,
    /// See [`AuditEntry::request_id`].
    pub request_id: &'a str,
    /// See [`AuditEntry::peer`].
    pub peer: &'a str,
    /// See [`AuditEntry::token_id`].
    pub token_id: &'a str,
    /// See [`AuditEntry::state`].
    pub state: &'a str,
}

impl<'a> EntryRef<'a> {
    fn text_fields_mut(&mut self) -> [&mut &'a str; FIELD_COUNT as usize] {
        [
            &mut self.operator,
            &mut self.role,
            &mut self.tenant,
            &mut self.action,
            &mut self.handle,
            &mut self.purpose,
            &mut self.outcome,
            &mut self.code,
            &mut self.reason,
            &mut self.request_id,
            &mut self.peer,
            &mut self.token_id,
            &mut self.state,
        ]
    }

    /// Decodes canonical bytes of any known format, in place.
    pub fn parse(bytes: &'a [u8]) -> Result<EntryRef<'a>, String> {
        let format = EntryFormat::of_canonical(bytes)
            .ok_or_else(|| "entry does not start with a known audit format tag".to_owned())?;
        let mut rest = &bytes[format.tag().len()..];
        let mut entry = EntryRef {
            seq: be_u64(take(&mut rest, 8)?),
            time_ms: be_u64(take(&mut rest, 8)?) as i64,
            ..EntryRef::default()
        };
        match format {
            EntryFormat::V2 => {
                for field in entry.text_fields_mut().into_iter().take(V2_FIELD_COUNT) {
                    let len = be_u32(take(&mut rest, 4)?) as usize;
                    *field = text(take(&mut rest, len)?)?;
                }
            }
            EntryFormat::V3 => {
                let mut last_id = 0u16;
                while !rest.is_empty() {
                    let id_bytes = take(&mut rest, 2)?;
                    let id = u16::from_be_bytes([id_bytes[0], id_bytes[1]]);
                    if id <= last_id {
                        return Err("entry fields are out of order or repeated".into());
                    }
                    last_id = id;
                    let len = be_u32(take(&mut rest, 4)?) as usize;
                    let value = take(&mut rest, len)?;
                    // Fields of a later format are covered by the hash and skipped here.
                    if let Some(field) =
                        entry.text_fields_mut().into_iter().nth(usize::from(id) - 1)
                    {
                        *field = text(value)?;
                    }
                }
            }
        }
        if !rest.is_empty() {
            return Err("entry has trailing bytes".into());
        }
        Ok(entry)
    }

    /// The entry with its fields copied out.
    pub fn to_entry(&self) -> AuditEntry {
        AuditEntry {
            seq: self.seq,
            time_ms: self.time_ms,
            operator: self.operator.to_owned(),
            role: self.role.to_owned(),
            tenant: self.tenant.to_owned(),
            action: self.action.to_owned(),
            handle: self.handle.to_owned(),
            purpose: self.purpose.to_owned(),
            outcome: self.outcome.to_owned(),
            code: self.code.to_owned(),
            reason: self.reason.to_owned(),
            request_id: self.request_id.to_owned(),
            peer: self.peer.to_owned(),
            token_id: self.token_id.to_owned(),
            state: self.state.to_owned(),
        }
    }
}

impl AuditEntry {
    fn text_fields(&self) -> [&String; FIELD_COUNT as usize] {
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
            &self.state,
        ]
    }

    /// The canonical bytes of this entry in the current format.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        self.canonical_bytes_as(EntryFormat::CURRENT)
    }

    /// The canonical bytes of this entry in `format`.
    pub fn canonical_bytes_as(&self, format: EntryFormat) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(format.tag().as_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        let fields = match format {
            EntryFormat::V2 => &self.text_fields()[..V2_FIELD_COUNT],
            EntryFormat::V3 => &self.text_fields()[..],
        };
        for (id, field) in (1u16..).zip(fields.iter().copied()) {
            match format {
                EntryFormat::V2 => {}
                EntryFormat::V3 if field.is_empty() => continue,
                EntryFormat::V3 => out.extend_from_slice(&id.to_be_bytes()),
            }
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }

    /// Decodes canonical bytes of any known format.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<AuditEntry, String> {
        EntryRef::parse(bytes).map(|entry| entry.to_entry())
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

/// The log key: the HMAC key under which every entry of format 3 is authenticated. Derived in
/// the key backend by whoever holds it (see the daemon's `store::sealing`); never stored.
#[derive(Clone)]
pub struct LogKey(hmac::Key);

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogKey(..)")
    }
}

impl LogKey {
    /// The key from its 32 secret bytes.
    pub fn new(secret: &[u8; 32]) -> LogKey {
        LogKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn message(seq: u64, hash: &[u8; 32]) -> [u8; 56] {
        let mut message = [0u8; 56];
        message[..16].copy_from_slice(MAC_DOMAIN);
        message[16..24].copy_from_slice(&seq.to_be_bytes());
        message[24..].copy_from_slice(hash);
        message
    }

    /// The MAC of entry `seq` whose hash is `hash`.
    pub fn tag(&self, seq: u64, hash: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.0, &Self::message(seq, hash)).as_ref());
        out
    }

    /// A keyed digest of `parts` under `domain` (each part length-prefixed): for values the
    /// log names that must mean nothing to whoever lacks the key (row tags, set digests).
    pub fn digest(&self, domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(domain);
        for part in parts {
            context.update(&(part.len() as u32).to_be_bytes());
            context.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        out
    }

    /// Whether `mac` authenticates entry `seq` with hash `hash` (in constant time).
    pub fn verifies(&self, seq: u64, hash: &[u8; 32], mac: &[u8; 32]) -> bool {
        hmac::verify(&self.0, &Self::message(seq, hash), mac).is_ok()
    }
}

/// An entry with its place in the chain, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedEntry {
    /// The entry.
    pub entry: AuditEntry,
    /// The format it is stored in.
    pub format: EntryFormat,
    /// Its canonical bytes as stored: what the hash covers.
    pub canonical: Vec<u8>,
    /// Hash of the previous entry.
    pub prev_hash: [u8; 32],
    /// This entry's hash.
    pub hash: [u8; 32],
    /// Its MAC under the log key (format 3; zeros until [`ChainedEntry::authenticate`]).
    pub mac: Option<[u8; 32]>,
}

impl ChainedEntry {
    /// Chains `entry` after `prev_hash` in the current format, not yet authenticated.
    pub fn new(entry: AuditEntry, prev_hash: [u8; 32]) -> ChainedEntry {
        Self::new_as(EntryFormat::CURRENT, entry, prev_hash)
    }

    /// Chains `entry` after `prev_hash` in `format` (older formats: for tests and fixtures).
    pub fn new_as(format: EntryFormat, entry: AuditEntry, prev_hash: [u8; 32]) -> ChainedEntry {
        let canonical = entry.canonical_bytes_as(format);
        let hash = chain_hash(&prev_hash, &canonical);
        ChainedEntry {
            entry,
            format,
            canonical,
            prev_hash,
            hash,
            mac: match format {
                EntryFormat::V2 => None,
                EntryFormat::V3 => Some([0u8; 32]),
            },
        }
    }

    /// Sets the MAC under `key` (format 3; a format-2 entry has none).
    pub fn authenticate(mut self, key: &LogKey) -> ChainedEntry {
        if self.format == EntryFormat::V3 {
            self.mac = Some(key.tag(self.entry.seq, &self.hash));
        }
        self
    }

    /// Whether the stored hash is the hash of the stored bytes after the stated previous hash
    /// (the caller checks the sequence number and the link to the entry before).
    pub fn hash_holds(&self) -> bool {
        chain_hash(&self.prev_hash, &self.canonical) == self.hash
    }

    /// Whether the MAC verifies under `key`; `None` for a format without a MAC.
    pub fn mac_verifies(&self, key: &LogKey) -> Option<bool> {
        self.mac
            .map(|mac| key.verifies(self.entry.seq, &self.hash, &mac))
    }

    /// The stored row: previous hash ‖ hash ‖ (MAC, format 3) ‖ canonical bytes.
    pub fn to_row(&self) -> Vec<u8> {
        let mut row = Vec::with_capacity(96 + self.canonical.len());
        row.extend_from_slice(&self.prev_hash);
        row.extend_from_slice(&self.hash);
        if let Some(mac) = &self.mac {
            row.extend_from_slice(mac);
        }
        row.extend_from_slice(&self.canonical);
        row
    }

    /// Parses a stored row without checking hash or MAC (verifiers do that).
    pub fn from_row(row: &[u8]) -> Result<ChainedEntry, String> {
        RowRef::parse(row).map(|row| ChainedEntry {
            entry: row.entry.to_entry(),
            format: row.format,
            canonical: row.canonical.to_vec(),
            prev_hash: row.prev_hash,
            hash: row.hash,
            mac: row.mac,
        })
    }
}

/// A stored row read in place: [`ChainedEntry`] without copying the entry out of the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef<'a> {
    /// The entry.
    pub entry: EntryRef<'a>,
    /// The format it is stored in.
    pub format: EntryFormat,
    /// Its canonical bytes as stored: what the hash covers.
    pub canonical: &'a [u8],
    /// Hash of the previous entry.
    pub prev_hash: [u8; 32],
    /// This entry's hash.
    pub hash: [u8; 32],
    /// Its MAC under the log key (format 3).
    pub mac: Option<[u8; 32]>,
}

impl<'a> RowRef<'a> {
    /// Parses a stored row without checking hash or MAC (verifiers do that).
    pub fn parse(row: &'a [u8]) -> Result<RowRef<'a>, String> {
        if row.len() < 64 {
            return Err("row is shorter than its two hashes".into());
        }
        let mut prev_hash = [0u8; 32];
        let mut hash = [0u8; 32];
        prev_hash.copy_from_slice(&row[..32]);
        hash.copy_from_slice(&row[32..64]);
        let (format, mac, canonical) = if row[64..].starts_with(TAG_V2) {
            (EntryFormat::V2, None, &row[64..])
        } else if row.len() >= 96 && row[96..].starts_with(TAG_V3) {
            let mut mac = [0u8; 32];
            mac.copy_from_slice(&row[64..96]);
            (EntryFormat::V3, Some(mac), &row[96..])
        } else {
            return Err("row is in no audit entry format this build knows".into());
        };
        Ok(RowRef {
            entry: EntryRef::parse(canonical)?,
            format,
            canonical,
            prev_hash,
            hash,
            mac,
        })
    }

    /// Whether the stored hash is the hash of the stored bytes after the stated previous hash.
    pub fn hash_holds(&self) -> bool {
        chain_hash(&self.prev_hash, self.canonical) == self.hash
    }

    /// Whether the MAC verifies under `key`; `None` for a format without a MAC.
    pub fn mac_verifies(&self, key: &LogKey) -> Option<bool> {
        self.mac
            .map(|mac| key.verifies(self.entry.seq, &self.hash, &mac))
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
            token_id: String::new(),
            state: String::new(),
        }
    }

    #[test]
    fn canonical_round_trip_in_every_format() {
        for format in [EntryFormat::V2, EntryFormat::V3] {
            let entry = sample();
            let bytes = entry.canonical_bytes_as(format);
            assert_eq!(EntryFormat::of_canonical(&bytes), Some(format));
            assert_eq!(AuditEntry::from_canonical_bytes(&bytes), Ok(entry));
            assert!(AuditEntry::from_canonical_bytes(&bytes[..bytes.len() - 1]).is_err());
        }
    }

    #[test]
    fn the_state_field_is_format_3_only_and_round_trips() {
        let digest = [0xabu8; 32];
        let entry = AuditEntry {
            state: authority_state_field(&digest),
            ..sample()
        };
        let bytes = entry.canonical_bytes_as(EntryFormat::V3);
        let decoded = AuditEntry::from_canonical_bytes(&bytes).expect("decodes");
        assert_eq!(authority_digest_of(&decoded.state), Some(digest));
        // Format 2 has twelve fields: the state is not part of it.
        assert_eq!(
            entry.canonical_bytes_as(EntryFormat::V2),
            sample().canonical_bytes_as(EntryFormat::V2)
        );
        for other in ["", "authority xyz", "records 00"] {
            assert_eq!(authority_digest_of(other), None, "{other:?}");
        }
    }

    #[test]
    fn format_3_is_additive_and_strict_about_order() {
        let mut bytes = sample().canonical_bytes_as(EntryFormat::V3);
        // A field of a later format (id 40) is skipped by this decoder.
        bytes.extend_from_slice(&40u16.to_be_bytes());
        bytes.extend_from_slice(&3u32.to_be_bytes());
        bytes.extend_from_slice(b"new");
        assert_eq!(AuditEntry::from_canonical_bytes(&bytes), Ok(sample()));
        // A field repeated (id 1 after 40) is refused: one entry has one encoding.
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(b"x");
        assert!(AuditEntry::from_canonical_bytes(&bytes).is_err());
    }

    #[test]
    fn rows_round_trip_and_the_mac_binds_seq_and_hash() {
        let key = LogKey::new(&[5u8; 32]);
        let a = ChainedEntry::new(sample(), GENESIS_HASH).authenticate(&key);
        let b = ChainedEntry::new(sample(), a.hash).authenticate(&key);
        assert_ne!(a.hash, b.hash);
        assert_eq!(ChainedEntry::from_row(&b.to_row()), Ok(b.clone()));
        assert_eq!(b.mac_verifies(&key), Some(true));
        assert_eq!(b.mac_verifies(&LogKey::new(&[6u8; 32])), Some(false));
        let moved = ChainedEntry {
            entry: AuditEntry {
                seq: 8,
                ..b.entry.clone()
            },
            ..b.clone()
        };
        assert_eq!(moved.mac_verifies(&key), Some(false));
        let old = ChainedEntry::new_as(EntryFormat::V2, sample(), a.hash);
        assert_eq!(ChainedEntry::from_row(&old.to_row()), Ok(old.clone()));
        assert_eq!(old.mac_verifies(&key), None);
        assert!(old.hash_holds() && b.hash_holds());
    }
}
