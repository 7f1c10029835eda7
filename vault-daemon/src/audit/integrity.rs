//! The store checked against what it cannot forge: the hash chain of its audit entries, the
//! signed and linked checkpoints, the endorsed audit keys, and the freshness anchor in the key
//! backend. Run at start (a store that fails does not serve), by the checkpointer before it
//! signs (it never signs over a break), and by the audit writer whenever the head moved
//! under it (it never chains onto an entry it has not verified).
//!
//! Every entry of the authenticated format must carry a MAC under the log key; an entry of the
//! older, unauthenticated format is accepted only before the first authenticated one (history
//! written before the upgrade, which checkpoints anchor).

use vault_audit::checkpoint::{Checkpoint, key_id, verify_endorsement};

use vault_audit::entry::{EntryFormat, EntryRef, LogKey, RowRef};
use vault_audit::state::StateField;

use crate::audit::entry::GENESIS_HASH;
use crate::domain::audit_key::AuditKeyRecord;
use crate::error::{Error, Result};
use crate::keys::anchor::Anchor;
use crate::store::{CheckpointState, Store, StoreError, StoreRead};

const PAGE: usize = 4096;

/// A verified point of the chain: the entry `seq` (0: before the first) and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPosition {
    /// Sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: [u8; 32],
}

impl ChainPosition {
    /// Before the first entry.
    pub const GENESIS: ChainPosition = ChainPosition {
        seq: 0,
        hash: GENESIS_HASH,
    };
}

/// What the entries of a stretch of the log name as current state: the newest of each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Named {
    /// The newest entry that names an authority digest.
    pub authority: Option<u64>,
    /// The newest entry that names a records digest, with that digest.
    pub records: Option<(u64, [u8; 32])>,
}

impl Named {
    /// What this stretch and the `later` one that follows it name together.
    pub fn then(self, later: Named) -> Named {
        Named {
            authority: later.authority.or(self.authority),
            records: later.records.or(self.records),
        }
    }

    fn see(&mut self, seq: u64, entry: &EntryRef<'_>) {
        if entry.state.is_empty() {
            return;
        }
        let (authority, records) = StateField::digests(entry.state);
        if authority.is_some() {
            self.authority = Some(seq);
        }
        if let Some(digest) = records {
            self.records = Some((seq, digest));
        }
    }
}

/// What a checkpoint signs as state: the authority digest, and once records are named, the
/// records state the log vouches for at the checkpoint's entry with it. A checkpoint signed
/// before records were named signs the authority digest alone, and still verifies.
pub fn checkpoint_state(authority: [u8; 32], records: Option<(u64, [u8; 32])>) -> [u8; 32] {
    let Some((seq, digest)) = records else {
        return authority;
    };
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"MNL-CHECKPOINT-STATE-v2");
    context.update(&authority);
    context.update(&seq.to_be_bytes());
    context.update(&digest);
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// What start-up verification established.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The newest checkpoint (linked and signed), if any.
    pub last_checkpoint: Option<Checkpoint>,
    /// The chain head, verified from the newest checkpoint on.
    pub head: ChainPosition,
    /// The anchor as the backend holds it.
    pub anchor: Option<Anchor>,
    /// The store's checkpoints run past the anchor (a crash between storing a checkpoint and
    /// anchoring it): the anchor to write.
    pub advance: Option<Anchor>,
    /// What the entries after the newest checkpoint name.
    pub named: Named,
    /// The records state the log vouches for at the head (entry and digest; `None`: no record
    /// was ever named): the store's records must hash to it.
    pub records: Option<(u64, [u8; 32])>,
}

fn broken(message: String) -> Error {
    Error::Integrity(message)
}

/// Verifies the entries after `from` up to the head of the snapshot `reader`: each follows the
/// one before, hashes to what it states and carries a MAC under `key`. Returns the head.
pub fn verify_chain_from(
    reader: &dyn StoreRead,
    from: ChainPosition,
    key: &LogKey,
) -> Result<ChainPosition> {
    verify_chain_named(reader, from, key).map(|(head, _)| head)
}

/// [`verify_chain_from`], also returning what the entries verified name as current state.
pub fn verify_chain_named(
    reader: &dyn StoreRead,
    from: ChainPosition,
    key: &LogKey,
) -> Result<(ChainPosition, Named)> {
    // Older-format entries may follow `from` only if it is one itself (or the genesis).
    let older_allowed = match from.seq {
        0 => true,
        seq => match reader.audit_after(seq - 1, 1)?.into_iter().next() {
            Some((found, row)) if found == seq => check_entry(seq, &row, key, true)?.mac.is_none(),
            _ => {
                return Err(broken(format!(
                    "audit entry {seq}, verified before, is gone (the log was cut back)"
                )));
            }
        },
    };
    let mut named = Named::default();
    let head = walk_chain(reader, from, key, older_allowed, &mut |position, entry| {
        named.see(position.seq, entry)
    })?;
    Ok((head, named))
}

fn rewritten(message: String) -> StoreError {
    StoreError::Rewritten(message)
}

/// Checks one stored entry on its own: it decodes, sits under its key, hashes to what it
/// states, and is authenticated under `key` (or is of the older format while `older_allowed`).
pub fn check_entry<'a>(
    seq: u64,
    row: &'a [u8],
    key: &LogKey,
    older_allowed: bool,
) -> std::result::Result<RowRef<'a>, StoreError> {
    let chained = RowRef::parse(row)
        .map_err(|e| rewritten(format!("audit entry {seq} is unreadable: {e}")))?;
    if chained.entry.seq != seq {
        return Err(rewritten(format!(
            "audit entry {seq} carries sequence number {} (moved)",
            chained.entry.seq
        )));
    }
    if !chained.hash_holds() {
        return Err(rewritten(format!(
            "audit entry {seq} fails its hash check (altered)"
        )));
    }
    match chained.mac_verifies(key) {
        Some(true) => Ok(chained),
        Some(false) => Err(rewritten(format!(
            "audit entry {seq} is not authenticated by the log key: written or re-chained without the key backend"
        ))),
        None if older_allowed => Ok(chained),
        None => Err(rewritten(format!(
            "audit entry {seq} is in the unauthenticated format {} after authenticated entries: forged",
            EntryFormat::V2.tag()
        ))),
    }
}

/// [`verify_chain_from`], calling `visit` with every verified position; a break is
/// [`StoreError::Rewritten`]. `older_allowed`: whether entries of the older, unauthenticated
/// format may follow `from` (only until the first authenticated one).
pub fn walk_chain(
    reader: &dyn StoreRead,
    from: ChainPosition,
    key: &LogKey,
    mut older_allowed: bool,
    visit: &mut dyn FnMut(ChainPosition, &EntryRef<'_>),
) -> std::result::Result<ChainPosition, StoreError> {
    let mut position = from;
    loop {
        let rows = reader.audit_after(position.seq, PAGE)?;
        let done = rows.len() < PAGE;
        for (seq, row) in rows {
            let expected = position.seq + 1;
            if seq != expected {
                return Err(rewritten(format!(
                    "audit entry {expected} is missing (found entry {seq} after entry {})",
                    position.seq
                )));
            }
            let chained = check_entry(seq, &row, key, older_allowed)?;
            if chained.prev_hash != position.hash {
                return Err(rewritten(format!(
                    "audit entry {seq} does not follow entry {} as verified",
                    position.seq
                )));
            }
            older_allowed &= chained.mac.is_none();
            position = ChainPosition {
                seq,
                hash: chained.hash,
            };
            visit(position, &chained.entry);
        }
        if done {
            return Ok(position);
        }
    }
}

/// Checks that every audit key version after the first is endorsed by the one before it.
pub fn verify_key_chain(keys: &[AuditKeyRecord]) -> Result<()> {
    for (index, key) in keys.iter().enumerate() {
        if key.version as usize != index + 1 || key.key_id != key_id(&key.public_point) {
            return Err(broken(format!(
                "audit key version {} is out of sequence or its id does not match its key",
                key.version
            )));
        }
        if index > 0 {
            let previous = &keys[index - 1];
            if !verify_endorsement(
                &previous.public_point,
                key.version,
                &key.key_id,
                &key.endorsement,
            ) {
                return Err(broken(format!(
                    "audit key version {} is not endorsed by version {}",
                    key.version, previous.version
                )));
            }
        }
    }
    Ok(())
}

/// Verifies that `checkpoint` is signed by the audit key it names.
pub fn verify_checkpoint_signature(checkpoint: &Checkpoint, keys: &[AuditKeyRecord]) -> Result<()> {
    let key = keys.iter().find(|k| {
        k.version == checkpoint.key_version && hex::encode(k.key_id) == checkpoint.key_id
    });
    if key.is_some_and(|k| checkpoint.verify_signature(&k.public_point)) {
        Ok(())
    } else {
        Err(broken(format!(
            "checkpoint {} (entry {}) is not signed by a known audit key",
            checkpoint.number, checkpoint.seq
        )))
    }
}

/// Whether `reader` holds the key backend's anchored checkpoint, or a later one: its newest
/// checkpoint must be signed by an audit key of the store, cover an entry the store holds with
/// the hash it signed, and be the anchored one (same hash) or come after it. A row forged or
/// copied in with a higher number does not pass; a store that lost the anchored checkpoint
/// (a lossy failover, a restore) does not either.
pub fn holds_anchor(reader: &dyn StoreRead, anchor: &Anchor, key: &LogKey) -> Result<bool> {
    let Some(newest) = reader.last_checkpoint()? else {
        return Ok(false);
    };
    let Some(body) = newest.body() else {
        return Ok(false);
    };
    if verify_checkpoint_signature(&newest, &reader.audit_keys()?).is_err()
        || entry_hash(reader, body.seq, key)? != Some(body.chain_hash)
    {
        return Ok(false);
    }
    Ok(body.number > anchor.checkpoint
        || (body.number == anchor.checkpoint && newest.hash() == Some(anchor.hash)))
}

/// The entry `seq`'s hash, after checking that its contents hash to it (and its MAC, if it
/// is of the authenticated format).
pub fn entry_hash(reader: &dyn StoreRead, seq: u64, key: &LogKey) -> Result<Option<[u8; 32]>> {
    let rows = reader.audit_after(seq.saturating_sub(1), 1)?;
    match rows.into_iter().next() {
        Some((found, row)) if found == seq => Ok(Some(check_entry(seq, &row, key, true)?.hash)),
        _ => Ok(None),
    }
}

/// Whether entry `seq` is of the older, unauthenticated format (written before the upgrade).
fn unauthenticated_entry(reader: &dyn StoreRead, seq: u64, key: &LogKey) -> Result<bool> {
    let rows = reader.audit_after(seq.saturating_sub(1), 1)?;
    match rows.into_iter().next() {
        Some((found, row)) if found == seq => Ok(check_entry(seq, &row, key, true)?.mac.is_none()),
        _ => Ok(false),
    }
}

/// Checks the store at start against the backend's `anchor`: checkpoints linked from the first
/// to the last, signed by endorsed keys from the anchored one on, reaching the anchored one;
/// the chain from the last checkpoint to the head. Any failure names what and where.
pub fn verify_store_at_start(store: &dyn Store, anchor: Option<Anchor>) -> Result<Verified> {
    verify_store(store, anchor, true)
}

/// Like [`verify_store_at_start`] but without freshness and in full: every entry from the
/// first, every checkpoint's link, signature and match with its entry, whatever the anchor
/// says (for a restore, and an explicit re-anchoring).
pub fn verify_store_history(store: &dyn Store) -> Result<Verified> {
    let verified = verify_store(store, None, false)?;
    let key = store.sealer().log_key()?;
    let snapshot = store.reader()?;
    let reader = snapshot.as_ref();
    let mut checkpoints = std::collections::BTreeMap::new();
    let mut after = 0u64;
    loop {
        let page = reader.checkpoints_after(after, PAGE)?;
        let done = page.len() < PAGE;
        for checkpoint in page {
            after = checkpoint.seq;
            checkpoints.insert(checkpoint.seq, checkpoint);
        }
        if done {
            break;
        }
    }
    let mut mismatch = None;
    walk_chain(
        reader,
        ChainPosition::GENESIS,
        &key,
        true,
        &mut |position, _| {
            if let Some(checkpoint) = checkpoints.get(&position.seq)
                && checkpoint.body().map(|b| b.chain_hash) != Some(position.hash)
                && mismatch.is_none()
            {
                mismatch = Some((checkpoint.number, position.seq));
            }
        },
    )?;
    if let Some((number, seq)) = mismatch {
        return Err(broken(format!(
            "checkpoint {number} does not match audit entry {seq}: history was rewritten"
        )));
    }
    Ok(verified)
}

fn verify_store(store: &dyn Store, anchor: Option<Anchor>, fresh: bool) -> Result<Verified> {
    // One snapshot for everything: nothing else writes while the store is being checked.
    let log_key = store.sealer().log_key()?;
    let snapshot = store.reader()?;
    let reader = snapshot.as_ref();
    let keys = reader.audit_keys()?;
    verify_key_chain(&keys)?;

    let mut previous: Option<Checkpoint> = None;
    let mut anchored_found = anchor.is_none();
    let mut after = 0u64;
    loop {
        let page = reader.checkpoints_after(after, PAGE)?;
        let done = page.len() < PAGE;
        for checkpoint in page {
            after = checkpoint.seq;
            if !checkpoint.follows(previous.as_ref()) {
                let expected = previous.as_ref().map_or(1, |p| p.number + 1);
                return Err(broken(format!(
                    "checkpoint {expected} is missing, reordered or replaced (found checkpoint {} at entry {})",
                    checkpoint.number, checkpoint.seq
                )));
            }
            if let Some(anchor) = anchor
                .as_ref()
                .filter(|a| a.checkpoint == checkpoint.number)
            {
                if checkpoint.hash() != Some(anchor.hash) {
                    return Err(broken(format!(
                        "the store's checkpoint {} is not the one the key backend anchored: a replaced store",
                        checkpoint.number
                    )));
                }
                anchored_found = true;
            }
            // Signatures from the anchored checkpoint on: older ones were checked before the
            // anchor moved past them, and their links tie them to it.
            if anchored_found {
                verify_checkpoint_signature(&checkpoint, &keys)?;
            }
            previous = Some(checkpoint);
        }
        if done {
            break;
        }
    }
    let store_position = previous.as_ref().map_or("no checkpoint".to_owned(), |c| {
        format!("checkpoint {} (entry {})", c.number, c.seq)
    });
    match (&anchor, anchored_found) {
        _ if !fresh => {}
        // Only checkpoint 1 without an anchor: the first start stopped between storing its
        // first checkpoint and anchoring it.
        (None, _) if previous.as_ref().is_some_and(|c| c.number > 1) => {
            return Err(broken(format!(
                "the key backend holds no anchor but the store reaches {store_position}: a store from another deployment, or a reset backend; if this store is a backup restored on purpose, accept it with `vault-daemon --reanchor`"
            )));
        }
        (Some(anchor), false) => {
            return Err(broken(format!(
                "the store reaches {store_position} but the key backend anchored checkpoint {} (counter {}): the store is older, replaced, emptied or deleted; a backup restored on purpose is accepted with `vault-daemon --reanchor`",
                anchor.checkpoint, anchor.counter
            )));
        }
        _ => {}
    }

    let from = match &previous {
        None => ChainPosition::GENESIS,
        Some(checkpoint) => {
            let hash = entry_hash(reader, checkpoint.seq, &log_key)?;
            let stated = checkpoint.body().map(|b| b.chain_hash);
            if hash.is_none() || hash != stated {
                return Err(broken(format!(
                    "checkpoint {} does not match audit entry {}: history was rewritten",
                    checkpoint.number, checkpoint.seq
                )));
            }
            ChainPosition {
                seq: checkpoint.seq,
                hash: stated.unwrap_or(GENESIS_HASH),
            }
        }
    };
    let (head, named) = verify_chain_named(reader, from, &log_key)?;
    let signed = verify_checkpoint_state(reader, previous.as_ref())?;
    verify_authority(
        reader,
        previous.as_ref(),
        head,
        &log_key,
        named.authority,
        signed.as_ref(),
    )?;
    let records = records_vouched(named, signed.as_ref());
    let advance = match (&previous, &anchor) {
        (Some(last), anchor) if anchor.is_none_or(|a| a.checkpoint < last.number) => last
            .hash()
            .map(|hash| Anchor::next(anchor.as_ref(), last.number, hash)),
        _ => None,
    };
    Ok(Verified {
        last_checkpoint: previous,
        head,
        anchor,
        advance,
        named,
        records,
    })
}

/// The state the newest checkpoint signs, as stored with it, checked against the signature.
/// `None` without a checkpoint, or when the newest was signed before the state was stored
/// with checkpoints (it signs the authority digest alone; [`verify_authority`] checks that).
pub fn verify_checkpoint_state(
    reader: &dyn StoreRead,
    last_checkpoint: Option<&Checkpoint>,
) -> Result<Option<CheckpointState>> {
    let Some(checkpoint) = last_checkpoint else {
        return Ok(None);
    };
    match reader.checkpoint_state()? {
        None => Ok(None),
        Some(state)
            if state.seq == checkpoint.seq
                && state.records.is_none_or(|(seq, _)| seq <= checkpoint.seq)
                && checkpoint.body().map(|b| b.state)
                    == Some(checkpoint_state(state.authority, state.records)) =>
        {
            Ok(Some(state))
        }
        Some(_) => Err(broken(format!(
            "the state stored with checkpoint {} (entry {}) is not the state it signs: rolled back or edited",
            checkpoint.number, checkpoint.seq
        ))),
    }
}

/// The records state the log vouches for at the head: the newest entry after the newest
/// checkpoint that names a records digest (`named`), else the records state the checkpoint
/// signs. `None`: no record was ever named, so the store must hold none.
pub fn records_vouched(
    named: Named,
    checkpoint: Option<&CheckpointState>,
) -> Option<(u64, [u8; 32])> {
    named
        .records
        .or_else(|| checkpoint.and_then(|state| state.records))
}

/// Checks that the authority rows are the ones the log vouches for: the authenticated state of
/// the newest commit that changed them, when that commit came after the newest checkpoint (it
/// must be the newest entry there that names one, `named_authority`), or else the authority
/// digest the newest checkpoint signed (`signed`: the state stored with it, checked by
/// [`verify_checkpoint_state`]; without it, the checkpoint's state itself). A row restored
/// from an older copy, deleted or inserted changes the digest; the state record of an older
/// commit names an older entry. Returns the digest.
pub fn verify_authority(
    reader: &dyn StoreRead,
    last_checkpoint: Option<&Checkpoint>,
    head: ChainPosition,
    key: &LogKey,
    named_authority: Option<u64>,
    signed: Option<&CheckpointState>,
) -> Result<[u8; 32]> {
    let digest = reader.authority_digest()?;
    let rolled_back = |at: String| {
        broken(format!(
            "the authority rows (operators, grants, tokens, tenants, keys) do not match {at}: a row was restored from an older copy, edited, deleted or inserted"
        ))
    };
    match reader.authority_state()? {
        Some(state) if last_checkpoint.is_none_or(|c| state.seq > c.seq) => {
            if state.seq > head.seq || entry_hash(reader, state.seq, key)? != Some(state.hash) {
                return Err(broken(format!(
                    "the authority state names audit entry {}, which the log does not hold as recorded (truncated or replaced)",
                    state.seq
                )));
            }
            // A state recorded before entries named it (an older release, whose entries are
            // of the unauthenticated format) is checked by its digest alone.
            if named_authority != Some(state.seq)
                && !(named_authority.is_none() && unauthenticated_entry(reader, state.seq, key)?)
            {
                return Err(broken(format!(
                    "the authority state names audit entry {}, but the newest entry to name the authority rows is {}: rolled back",
                    state.seq,
                    named_authority.map_or("none after the newest checkpoint".into(), |seq| seq
                        .to_string())
                )));
            }
            if digest != state.digest {
                return Err(rolled_back(format!(
                    "the state recorded with audit entry {}",
                    state.seq
                )));
            }
        }
        _ if let Some(seq) = named_authority => {
            return Err(rolled_back(format!(
                "the state named by audit entry {seq} (the authority state record is older)"
            )));
        }
        _ => match last_checkpoint {
            Some(checkpoint) => {
                let matches = match signed {
                    Some(state) => state.authority == digest,
                    None => checkpoint.body().map(|b| b.state) == Some(digest),
                };
                if !matches {
                    return Err(rolled_back(format!(
                        "the state signed by checkpoint {} (entry {})",
                        checkpoint.number, checkpoint.seq
                    )));
                }
            }
            None => {
                let empty = ring::digest::digest(&ring::digest::SHA256, b"");
                if digest.as_slice() != empty.as_ref() {
                    return Err(rolled_back(
                        "an empty store (no state was ever recorded)".into(),
                    ));
                }
            }
        },
    }
    Ok(digest)
}
