//! The authority rows a call decides on — tokens, operators and tenants — as the
//! authenticated log says they are now, held in memory by every daemon.
//!
//! The last entry of every commit that changes an authority row names the digest of all of them
//! after it (`state = authority <hex>`, see `vault_audit::state`). A daemon loads the rows at
//! start from the verified store, and whenever the entries it verifies name a new digest it
//! reads them again and requires that they hash to it. Calls authenticate on this view, never
//! on rows read from the store: a row put back from an older copy (a revoked token, a disabled
//! operator) decides nothing, and the tables are hashed again against the view every few
//! hundred milliseconds, so it is found and refused as tampering on every daemon within a
//! second. A call's snapshot is checked again by the audit writer where the call's entry lands
//! in the log, after the view took in the entries before it: a token revoked on another daemon
//! is refused on the very next call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::audit::integrity::{ChainPosition, walk_chain};
use crate::domain::operator::{Operator, Tenant};
use crate::domain::token::TokenRecord;
use crate::store::{StoreError, StoreRead};
use vault_audit::entry::{LogKey, authority_digest_of};

/// Tokens and operators as of one verified position of the log.
#[derive(Debug)]
pub struct AuthoritySnapshot {
    /// The newest log position this snapshot is current at.
    pub verified: ChainPosition,
    /// The entry of the newest authority change this snapshot knows of (0: none since load).
    pub changed_at: u64,
    /// The digest of every authority row at `verified`.
    pub digest: [u8; 32],
    rows: Arc<AuthorityRows>,
}

/// The rows themselves, shared by the snapshots between two authority changes.
#[derive(Debug)]
struct AuthorityRows {
    tokens: HashMap<String, TokenRecord>,
    /// Shared with the calls that authenticate as them (a call holds its operator without
    /// copying the grants).
    operators: HashMap<String, Arc<Operator>>,
    tenants: HashMap<String, Arc<Tenant>>,
}

impl AuthoritySnapshot {
    fn read(
        reader: &dyn StoreRead,
        verified: ChainPosition,
        changed_at: u64,
        digest: [u8; 32],
    ) -> Result<AuthoritySnapshot, StoreError> {
        Ok(AuthoritySnapshot {
            verified,
            changed_at,
            digest,
            rows: Arc::new(AuthorityRows {
                tokens: reader
                    .tokens()?
                    .into_iter()
                    .map(|t| (t.id.clone(), t))
                    .collect(),
                operators: reader
                    .operators()?
                    .into_iter()
                    .map(|o| (o.id.clone(), Arc::new(o)))
                    .collect(),
                tenants: reader
                    .tenants()?
                    .into_iter()
                    .map(|t| (t.id.clone(), Arc::new(t)))
                    .collect(),
            }),
        })
    }

    /// The token with this id, as current.
    pub fn token(&self, id: &str) -> Option<&TokenRecord> {
        self.rows.tokens.get(id)
    }

    /// The operator with this id, as current.
    pub fn operator(&self, id: &str) -> Option<&Operator> {
        self.rows.operators.get(id).map(Arc::as_ref)
    }

    /// [`AuthoritySnapshot::operator`], shared rather than borrowed.
    pub fn shared_operator(&self, id: &str) -> Option<Arc<Operator>> {
        self.rows.operators.get(id).cloned()
    }

    /// The tenant with this id (its key versions and their states), as current.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.rows.tenants.get(id).map(Arc::as_ref)
    }

    /// [`AuthoritySnapshot::tenant`], shared rather than borrowed.
    pub fn shared_tenant(&self, id: &str) -> Option<Arc<Tenant>> {
        self.rows.tenants.get(id).cloned()
    }

    /// Every token, as current (revoked and expired ones too).
    pub fn tokens(&self) -> impl Iterator<Item = &TokenRecord> {
        self.rows.tokens.values()
    }

    /// Every operator, as current, in id order.
    pub fn operators(&self) -> Vec<&Operator> {
        let mut operators: Vec<&Operator> = self.rows.operators.values().map(Arc::as_ref).collect();
        operators.sort_by(|a, b| a.id.cmp(&b.id));
        operators
    }

    /// The same rows, current at `verified`.
    fn at(&self, verified: ChainPosition) -> AuthoritySnapshot {
        AuthoritySnapshot {
            verified,
            changed_at: self.changed_at,
            digest: self.digest,
            rows: Arc::clone(&self.rows),
        }
    }

    /// Whether the token `token_id` and the operator `operator_id` are the same rows here as
    /// in `other` (at once when both share their rows).
    pub fn same_caller(
        &self,
        other: &AuthoritySnapshot,
        token_id: &str,
        operator_id: &str,
    ) -> bool {
        Arc::ptr_eq(&self.rows, &other.rows)
            || (self.token(token_id) == other.token(token_id)
                && self.operator(operator_id) == other.operator(operator_id))
    }
}

/// An authority digest the log names, with the entry that names it.
pub type NamedDigest = (u64, [u8; 32]);

/// The newest authority digest named by the entries after `from` in `reader`, with the
/// position reached: `walk_chain` verifies each entry (link, hash, MAC) on the way.
pub fn digests_after(
    reader: &dyn StoreRead,
    from: ChainPosition,
    key: &LogKey,
) -> Result<(ChainPosition, Option<NamedDigest>), StoreError> {
    let mut newest = None;
    let reached = walk_chain(reader, from, key, false, &mut |position, entry| {
        if let Some(digest) = authority_digest_of(entry.state) {
            newest = Some((position.seq, digest));
        }
    })?;
    Ok((reached, newest))
}

/// How often at most the rows are hashed again when the log names no change (a scan of the
/// authority tables): often enough that a row put back is found within a second even when no
/// call reads it, rarely enough to cost nothing on the hot path.
const ROWS_CHECK_EVERY: Duration = Duration::from_millis(400);

/// How often at most a call that does not find its token has the log verified up to the
/// store's head (a token just issued on another daemon).
const CATCH_UP_EVERY: Duration = Duration::from_millis(20);

/// The daemon's current view of the authority rows.
#[derive(Debug)]
pub struct AuthorityView {
    current: RwLock<Arc<AuthoritySnapshot>>,
    rows_checked: Mutex<Option<Instant>>,
    caught_up: Mutex<Option<Instant>>,
}

impl AuthorityView {
    /// The view of `reader`, a store verified at start, at its head `position`.
    pub fn load(
        reader: &dyn StoreRead,
        position: ChainPosition,
    ) -> Result<AuthorityView, StoreError> {
        let changed_at = reader.authority_state()?.map_or(0, |state| state.seq);
        let digest = reader.authority_digest()?;
        Ok(AuthorityView {
            current: RwLock::new(Arc::new(AuthoritySnapshot::read(
                reader, position, changed_at, digest,
            )?)),
            rows_checked: Mutex::new(None),
            caught_up: Mutex::new(None),
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<AuthoritySnapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn replace(&self, snapshot: AuthoritySnapshot) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }

    /// Whether a call may have the log verified now to find a token the view does not hold
    /// (at most every [`CATCH_UP_EVERY`]); counts as done when it says yes.
    pub fn catch_up_due(&self) -> bool {
        let mut last = self.caught_up.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < CATCH_UP_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// The log was verified from `from` to `to` and names no authority change in between:
    /// the rows are still current at `to`. `false` when this view is not at `from` (it must
    /// be refreshed from the store instead).
    pub fn advance(&self, from: ChainPosition, to: ChainPosition) -> bool {
        {
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            if current.verified != from {
                return current.verified == to;
            }
            if from == to {
                return true;
            }
            *current = Arc::new(current.at(to));
        }
        true
    }

    /// Brings the view up to `reader`'s head: verifies the entries after the view's position,
    /// and when they name a new authority digest (or `known`, a digest this daemon just
    /// committed or verified in `reader`'s state, at its entry) reads the rows again and
    /// requires that they hash to it. A store whose rows differ from the digest the log names
    /// is [`StoreError::Tampered`]. When the log names no change the rows are hashed again at
    /// most every [`ROWS_CHECK_EVERY`], or now with `force_rows_check`.
    pub fn refresh(
        &self,
        reader: &dyn StoreRead,
        key: &LogKey,
        known: Option<NamedDigest>,
        force_rows_check: bool,
    ) -> Result<Arc<AuthoritySnapshot>, StoreError> {
        let current = self.snapshot();
        let (reached, named) = digests_after(reader, current.verified, key)?;
        let newest = match (known, named) {
            (Some(a), Some(b)) => Some(if b.0 >= a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        let snapshot = match newest {
            Some((changed_at, digest)) => {
                let stored = reader.authority_digest()?;
                if stored != digest {
                    return Err(tampered(changed_at));
                }
                AuthoritySnapshot::read(reader, reached, changed_at, digest)?
            }
            None => {
                let mut checked = self.rows_checked.lock().unwrap_or_else(|e| e.into_inner());
                if force_rows_check || checked.is_none_or(|at| at.elapsed() >= ROWS_CHECK_EVERY) {
                    self.check_rows(reader)?;
                    *checked = Some(Instant::now());
                }
                drop(checked);
                current.at(reached)
            }
        };
        self.replace(snapshot);
        Ok(self.snapshot())
    }

    /// Requires that `reader`'s authority rows hash to this view's digest (its head must be
    /// one this view covers): what an idle daemon checks every few hundred milliseconds, so a
    /// row put back is found even when no call reads it.
    pub fn check_rows(&self, reader: &dyn StoreRead) -> Result<(), StoreError> {
        let current = self.snapshot();
        if reader.authority_digest()? != current.digest {
            return Err(tampered(current.changed_at));
        }
        Ok(())
    }
}

/// The error for authority rows that are not the ones the log names as current.
pub fn tampered(changed_at: u64) -> StoreError {
    StoreError::Tampered {
        table: "authority rows".into(),
        key: format!(
            "the state named by audit entry {changed_at} (a row was put back from an older copy, or edited)"
        ),
    }
}
