//! The current version of every record and every blind-index entry, as the authenticated log
//! says, held in memory by every daemon.
//!
//! Each record version has a tag: the first 8 bytes of a MAC under the log key over the
//! record's handle and its stored form. The entry of every call that changes a record names
//! the record's new tag (`record <handle> <tag>`), and the blind-index entries it adds or
//! removes by fingerprint (`index± <fp>`); the last entry of the commit names the digest of
//! the whole set (`records <digest>`, the XOR of a MAC over each handle and tag). A daemon
//! builds the view at start from the verified store — the rows must hash to the digest the log
//! vouches for, so a row rolled back, restored, inserted or deleted while it was stopped is
//! refused — and keeps it current from the entries it commits and verifies. Every record the
//! writer reads inside its transaction, and every record a call decided on (checked again when
//! the call's entry is committed), must carry the tag the view holds; a blind-index entry the
//! view holds must be in the store. A record put back live — a disposed one restored, a
//! single row rolled back — or an index entry deleted is tampering, refused on every daemon
//! that reads it.
//!
//! Memory: a handle (16 bytes) and a tag (8) per record in a B-tree, and 8 bytes per index
//! entry in another: 57 bytes per record resident at a million records inserted in random
//! order (`cargo bench -p vault-daemon --bench record_view`; docs/PERFORMANCE.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, RwLock};

use vault_audit::entry::LogKey;
use vault_audit::state::{RowChange, StateField};

use crate::domain::handle::{HANDLE_PREFIX, Handle};
use crate::domain::record::Record;
use crate::store::{StoreError, StoreRead};

const ROW_DOMAIN: &[u8] = b"MNL-RECORD-ROW-v1";
const SET_DOMAIN: &[u8] = b"MNL-RECORD-SET-v1";
const INDEX_DOMAIN: &[u8] = b"MNL-INDEX-ENTRY-v1";
/// Records read per page while the view is built.
const LOAD_PAGE: usize = 2048;

/// A handle as the view keys it (its 16 random bytes).
type HandleKey = [u8; 16];

fn handle_key(handle: &str) -> Option<HandleKey> {
    let hex = handle.strip_prefix(HANDLE_PREFIX)?;
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

fn handle_key_of(record: &Record) -> Result<HandleKey, StoreError> {
    handle_key(record.handle.as_str()).ok_or_else(|| {
        StoreError::Corrupt(format!("record {} has a malformed handle", record.handle))
    })
}

/// Every record of `reader`, in handle order, read a page at a time.
fn every_record(reader: &dyn StoreRead) -> impl Iterator<Item = Result<Record, StoreError>> + '_ {
    let mut after: Option<Handle> = None;
    let mut page: std::vec::IntoIter<Record> = Vec::new().into_iter();
    let mut done = false;
    std::iter::from_fn(move || {
        loop {
            if let Some(record) = page.next() {
                after = Some(record.handle.clone());
                return Some(Ok(record));
            }
            if done {
                return None;
            }
            match reader.records_after(after.as_ref(), LOAD_PAGE) {
                Ok(next) => {
                    done = next.len() < LOAD_PAGE;
                    page = next.into_iter();
                }
                Err(error) => {
                    done = true;
                    return Some(Err(error));
                }
            }
        }
    })
}

/// The tags and digests of record versions, under the log key.
#[derive(Debug, Clone)]
pub struct RecordTagger {
    key: LogKey,
}

impl RecordTagger {
    /// Tags under `key`.
    pub fn new(key: LogKey) -> RecordTagger {
        RecordTagger { key }
    }

    /// The tag of `record` as it is now.
    pub fn tag(&self, record: &Record) -> Result<u64, StoreError> {
        // Every seal, unseal and describe tags a record: the encoding goes to a buffer the
        // thread keeps, not to a vector grown (and reallocated) anew each time.
        thread_local! {
            static BODY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut body = BODY.take();
        body.clear();
        let body =
            postcard::to_extend(record, body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mac = self
            .key
            .digest(ROW_DOMAIN, &[record.handle.as_str().as_bytes(), &body]);
        BODY.set(body);
        Ok(u64::from_be_bytes(mac[..8].try_into().unwrap_or_default()))
    }

    /// The fingerprint of the blind-index entry `index` of `tenant`.
    pub fn index_fingerprint(&self, tenant: &str, index: &[u8; 32]) -> u64 {
        let mac = self.key.digest(INDEX_DOMAIN, &[tenant.as_bytes(), index]);
        u64::from_be_bytes(mac[..8].try_into().unwrap_or_default())
    }

    fn element(&self, handle: &HandleKey, tag: u64) -> [u8; 32] {
        self.key.digest(SET_DOMAIN, &[handle, &tag.to_be_bytes()])
    }
}

fn xor_into(digest: &mut [u8; 32], element: &[u8; 32]) {
    for (a, b) in digest.iter_mut().zip(element) {
        *a ^= b;
    }
}

/// The records digest of an empty store.
pub const EMPTY_RECORDS: [u8; 32] = [0; 32];

/// The rows as of one entry.
#[derive(Debug)]
struct Rows {
    /// The entry the rows are current at.
    at: u64,
    tags: BTreeMap<HandleKey, u64>,
    indexed: BTreeSet<u64>,
    digest: [u8; 32],
}

/// A row found not to be what the log names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Suspect {
    /// A record row.
    Record(Handle),
    /// A blind-index entry, missing or there though the log never wrote it.
    Index {
        /// The tenant.
        tenant: String,
        /// The blind index.
        index: [u8; 32],
    },
}

/// The daemon's view of the records and the blind index.
#[derive(Debug)]
pub struct RecordView {
    tagger: RecordTagger,
    rows: RwLock<Rows>,
    /// Rows found not to be what the log names: checked again before the daemon serves.
    suspects: Mutex<BTreeSet<Suspect>>,
}

impl RecordView {
    /// The view of `reader`, a store verified at start whose head is entry `at`; its rows must
    /// hash to `expected`, the records digest the log vouches for (`None`: no record was ever
    /// written).
    pub fn load(
        reader: &dyn StoreRead,
        tagger: RecordTagger,
        at: u64,
        expected: Option<[u8; 32]>,
    ) -> Result<RecordView, StoreError> {
        RecordView::from_records(tagger, at, every_record(reader), expected)
    }

    /// The records digest of every record in `reader`, whatever the log says (for a store
    /// opened without start-up verification, and for tools).
    pub fn digest_of(
        reader: &dyn StoreRead,
        tagger: &RecordTagger,
    ) -> Result<[u8; 32], StoreError> {
        RecordView::digest_of_records(tagger, every_record(reader))
    }

    /// The records digest of `records`.
    pub fn digest_of_records(
        tagger: &RecordTagger,
        records: impl Iterator<Item = Result<Record, StoreError>>,
    ) -> Result<[u8; 32], StoreError> {
        let mut digest = EMPTY_RECORDS;
        for record in records {
            let record = record?;
            let key = handle_key_of(&record)?;
            xor_into(&mut digest, &tagger.element(&key, tagger.tag(&record)?));
        }
        Ok(digest)
    }

    /// The view of `records` (every record of a store at entry `at`), which must hash to
    /// `expected` (`None`: the empty set).
    pub fn from_records(
        tagger: RecordTagger,
        at: u64,
        records: impl Iterator<Item = Result<Record, StoreError>>,
        expected: Option<[u8; 32]>,
    ) -> Result<RecordView, StoreError> {
        let mut tags = BTreeMap::new();
        let mut indexed = BTreeSet::new();
        let mut digest = EMPTY_RECORDS;
        for record in records {
            let record = record?;
            let key = handle_key_of(&record)?;
            let tag = tagger.tag(&record)?;
            xor_into(&mut digest, &tagger.element(&key, tag));
            tags.insert(key, tag);
            if let Some(index) = &record.blind_index {
                indexed.insert(tagger.index_fingerprint(&record.tenant, index));
            }
        }
        if digest != expected.unwrap_or(EMPTY_RECORDS) {
            return Err(StoreError::Tampered {
                table: "records".into(),
                key: "the record digest the audit log vouches for (a record row was restored from an older copy, rolled back, edited, deleted or inserted)".into(),
            });
        }
        Ok(RecordView {
            tagger,
            rows: RwLock::new(Rows {
                at,
                tags,
                indexed,
                digest,
            }),
            suspects: Mutex::new(BTreeSet::new()),
        })
    }

    /// What tags records.
    pub fn tagger(&self) -> &RecordTagger {
        &self.tagger
    }

    fn rows(&self) -> std::sync::RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry the view is current at.
    pub fn at(&self) -> u64 {
        self.rows().at
    }

    /// The digest of every record's current version.
    pub fn digest(&self) -> [u8; 32] {
        self.rows().digest
    }

    /// How many records the view holds.
    pub fn len(&self) -> usize {
        self.rows().tags.len()
    }

    /// Whether the view holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tag of the current version of record `handle` (`None`: no such record).
    pub fn tag(&self, handle: &Handle) -> Option<u64> {
        let key = handle_key(handle.as_str())?;
        self.rows().tags.get(&key).copied()
    }

    /// Whether the blind-index entry with this fingerprint exists.
    pub fn indexed(&self, fingerprint: u64) -> bool {
        self.rows().indexed.contains(&fingerprint)
    }

    /// The digest after `changes` (this daemon's commit), without applying them.
    pub fn digest_after(&self, changes: &[RowChange]) -> [u8; 32] {
        let rows = self.rows();
        let mut digest = rows.digest;
        let mut changed: BTreeMap<HandleKey, u64> = BTreeMap::new();
        for change in changes {
            if let RowChange::Record { handle, tag } = change
                && let Some(key) = handle_key(handle)
            {
                let old = changed.get(&key).or_else(|| rows.tags.get(&key)).copied();
                if let Some(old) = old {
                    xor_into(&mut digest, &self.tagger.element(&key, old));
                }
                xor_into(&mut digest, &self.tagger.element(&key, *tag));
                changed.insert(key, *tag);
            }
        }
        digest
    }

    /// Follows entry `seq` of the log (verified): applies the changes its `state` names, and
    /// when it names the records digest, requires that the view now has it. Entries the view
    /// has passed already are skipped.
    pub fn follow(&self, seq: u64, state: &StateField) -> Result<(), StoreError> {
        let mut rows = self.rows.write().unwrap_or_else(|e| e.into_inner());
        if seq <= rows.at {
            return Ok(());
        }
        if seq != rows.at + 1 {
            return Err(StoreError::Corrupt(format!(
                "the record view is at entry {} and was shown entry {seq}",
                rows.at
            )));
        }
        self.apply(&mut rows, &state.changes);
        rows.at = seq;
        match state.records {
            Some(named) if named != rows.digest => Err(StoreError::Tampered {
                table: "records".into(),
                key: format!(
                    "the record digest named by audit entry {seq} (this daemon's view differs)"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// This daemon committed `changes` in entries up to `last`, leaving the records digest
    /// `digest` ([`RecordView::digest_after`] of them, computed before the commit: nothing
    /// else changes the view in between).
    pub fn committed(&self, changes: &[RowChange], last: u64, digest: Option<[u8; 32]>) {
        let mut rows = self.rows.write().unwrap_or_else(|e| e.into_inner());
        match digest {
            Some(digest) => {
                for change in changes {
                    match change {
                        RowChange::Record { handle, tag } => {
                            if let Some(key) = handle_key(handle) {
                                rows.tags.insert(key, *tag);
                            }
                        }
                        RowChange::IndexAdded(fingerprint) => {
                            rows.indexed.insert(*fingerprint);
                        }
                        RowChange::IndexRemoved(fingerprint) => {
                            rows.indexed.remove(fingerprint);
                        }
                    }
                }
                rows.digest = digest;
            }
            None => self.apply(&mut rows, changes),
        }
        rows.at = rows.at.max(last);
    }

    fn apply(&self, rows: &mut Rows, changes: &[RowChange]) {
        for change in changes {
            match change {
                RowChange::Record { handle, tag } => {
                    let Some(key) = handle_key(handle) else {
                        continue;
                    };
                    if let Some(old) = rows.tags.insert(key, *tag) {
                        xor_into(&mut rows.digest, &self.tagger.element(&key, old));
                    }
                    xor_into(&mut rows.digest, &self.tagger.element(&key, *tag));
                }
                RowChange::IndexAdded(fingerprint) => {
                    rows.indexed.insert(*fingerprint);
                }
                RowChange::IndexRemoved(fingerprint) => {
                    rows.indexed.remove(fingerprint);
                }
            }
        }
    }

    /// Notes a row found not to be what the log names.
    pub fn suspect(&self, suspect: Suspect) {
        self.suspects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(suspect);
    }

    /// Reads every suspect row again from `reader` (at a head the view is current at): when
    /// all are right again they are cleared; one still wrong is [`StoreError::Tampered`].
    pub fn check_suspects(&self, reader: &dyn StoreRead) -> Result<(), StoreError> {
        let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        for suspect in suspects.iter() {
            match suspect {
                Suspect::Record(handle) => {
                    let read = reader.record(handle)?;
                    let tag = read.as_ref().map(|r| self.tagger.tag(r)).transpose()?;
                    if tag != self.tag(handle) {
                        return Err(record_tampered(handle));
                    }
                }
                Suspect::Index { tenant, index } => {
                    let present = reader.index_lookup(tenant, index)?.is_some();
                    if present != self.indexed(self.tagger.index_fingerprint(tenant, index)) {
                        return Err(index_tampered(tenant));
                    }
                }
            }
        }
        suspects.clear();
        Ok(())
    }
}

/// The error for a record row that is not the version the log names as current.
pub fn record_tampered(handle: &Handle) -> StoreError {
    StoreError::Tampered {
        table: "record rows".into(),
        key: format!(
            "{handle}: not the version the audit log names as current (put back from an older copy, or edited)"
        ),
    }
}

/// The record a [`record_tampered`] error names, to be named in the `ALERT` entry it causes:
/// every other daemon that reads that entry checks the row itself.
pub fn tampered_record(error: &StoreError) -> Option<Handle> {
    match error {
        StoreError::Tampered { table, key } if table == "record rows" => key
            .split(':')
            .next()
            .and_then(|handle| Handle::parse(handle).ok()),
        _ => None,
    }
}

/// The error for a blind-index entry missing from the store, or present though the log never
/// wrote it.
pub fn index_tampered(tenant: &str) -> StoreError {
    StoreError::Tampered {
        table: "record rows".into(),
        key: format!(
            "a blind-index entry of tenant {tenant} is not what the audit log names (deleted or inserted)"
        ),
    }
}
