//! Opening the untrusted store — the embedded redb file (after redb's own consistency check) or
//! the cluster's PostgreSQL database (after its migrations) — with the state MAC key that
//! authenticates its authority rows, and the audit history checked against the freshness anchor
//! in the key backend. A store that fails any of these does not serve.
//!
//! The state MAC key's backend reference is kept in the store's metadata: swapping it for
//! another key's reference only makes every row fail its check (nobody without the backend can
//! tag rows under any key). A store with data but no state key, or a backend anchor that the
//! store does not reach, is refused: a deleted, emptied, replaced or older store.

use std::path::Path;
use std::sync::Arc;

use crate::audit::entry::{AuditEntry, EntryOutcome};
use crate::audit::integrity::{self, Verified};
use crate::error::Error;
use crate::keys::anchor::Anchor;
use crate::keys::state_mac::StateMac;
use crate::keys::{KeyRef, KeyService, KeyUse};
use crate::store::guard::FaultHook;
use crate::store::postgres::{FirstStartLock, PgDatabase, PgOptions};
use crate::store::redb::RedbDatabase;
use crate::store::sealing::RowSealer;
use crate::store::{Store, StoreError};

/// Metadata key of the state MAC key's backend reference.
pub const STATE_KEY_META: &str = "state_mac_key";

/// Why the store was not opened.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The store file itself.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The key backend.
    #[error("key backend: {0}")]
    Keys(#[from] crate::keys::KeyError),
    /// The store does not check out against the backend.
    #[error("store refused: {0}")]
    Refused(String),
}

impl From<Error> for TrustError {
    fn from(error: Error) -> TrustError {
        TrustError::Refused(error.to_string())
    }
}

/// A panic of the storage engine while opening or checking the store: a damaged file.
fn engine_failed(error: tokio::task::JoinError) -> TrustError {
    TrustError::Refused(format!(
        "the storage engine failed while checking the store ({error}): the file is damaged; restore a backup"
    ))
}

/// Opens the database file and checks it page by page.
fn open_checked(data_dir: &Path, cache_bytes: usize) -> Result<RedbDatabase, TrustError> {
    let mut database = RedbDatabase::open_with_cache(data_dir, cache_bytes)?;
    if !database.check_integrity()? {
        return Err(TrustError::Refused(format!(
            "{} failed redb's integrity check (damaged pages); restore a backup",
            database.describe()
        )));
    }
    Ok(database)
}

/// Where the store lives.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The embedded redb file in a data directory.
    Redb {
        /// The data directory.
        data_dir: std::path::PathBuf,
        /// Its page cache.
        cache_bytes: usize,
    },
    /// A PostgreSQL database, shared by the daemons of a cluster.
    Postgres(PgOptions),
}

/// A store opened and schema-checked, before its rows can be authenticated.
enum Unauthenticated {
    Redb(RedbDatabase),
    Postgres(PgDatabase),
}

impl Unauthenticated {
    async fn open(location: &StoreLocation) -> Result<Unauthenticated, TrustError> {
        match location {
            StoreLocation::Redb {
                data_dir,
                cache_bytes,
            } => {
                let (dir, cache) = (data_dir.clone(), *cache_bytes);
                let database = tokio::task::spawn_blocking(move || open_checked(&dir, cache))
                    .await
                    .map_err(engine_failed)??;
                Ok(Unauthenticated::Redb(database))
            }
            StoreLocation::Postgres(options) => Ok(Unauthenticated::Postgres(
                PgDatabase::open(options.clone()).await?,
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Unauthenticated::Redb(database) => database.describe().to_string(),
            Unauthenticated::Postgres(database) => database.describe().to_owned(),
        }
    }

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Unauthenticated::Redb(database) => database.meta(key),
            Unauthenticated::Postgres(database) => database.meta(key).await,
        }
    }

    /// Stores `value` unless a value is there; the value now stored.
    async fn put_meta_once(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        match self {
            Unauthenticated::Redb(database) => {
                database.put_meta(key, value)?;
                Ok(value.to_vec())
            }
            Unauthenticated::Postgres(database) => database.put_meta_once(key, value).await,
        }
    }

    /// The lock on provisioning an empty store; `None` where only one process opens it.
    async fn lock_first_start(&self) -> Result<Option<FirstStartLock>, StoreError> {
        match self {
            Unauthenticated::Redb(_) => Ok(None),
            Unauthenticated::Postgres(database) => database.lock_first_start().await.map(Some),
        }
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        match self {
            Unauthenticated::Redb(database) => database.is_empty(),
            Unauthenticated::Postgres(database) => database.is_empty().await,
        }
    }

    fn authenticated(self, sealer: Arc<RowSealer>, fault: Option<FaultHook>) -> Arc<dyn Store> {
        match self {
            Unauthenticated::Redb(database) => {
                Arc::new(database.authenticated_with_fault(sealer, fault))
            }
            Unauthenticated::Postgres(database) => Arc::new(database.authenticated(sealer)),
        }
    }
}

/// The state MAC key of a store that had none when first asked: another daemon's, stored
/// meanwhile, or a new one if the store is empty and the backend holds no anchor.
async fn provision_state_key(
    database: &Unauthenticated,
    keys: &KeyService,
    anchor: Option<&Anchor>,
) -> Result<KeyRef, TrustError> {
    if let Some(key) = database.meta(STATE_KEY_META).await? {
        tracing::info!("new store: another daemon provisioned the state MAC key; using it");
        return Ok(KeyRef(key));
    }
    if !(database.is_empty().await? && anchor.is_none()) {
        return Err(TrustError::Refused(format!(
            "{} holds no state MAC key{}: not a store of this deployment, or an emptied one",
            database.describe(),
            if anchor.is_some() {
                " while the key backend holds an anchor"
            } else {
                ""
            }
        )));
    }
    let key = keys.create_key(KeyUse::Mac, "state-mac".into()).await?;
    // The lock makes this the only key; storing it only if none is there keeps it so even
    // against a daemon of an older build that takes no lock.
    let stored = database.put_meta_once(STATE_KEY_META, &key.0).await?;
    if stored == key.0 {
        tracing::info!("new store: state MAC key created in the key backend");
    } else {
        tracing::warn!(
            "new store: another daemon stored a state MAC key first; using it (the one created here stays unused in the key backend)"
        );
    }
    Ok(KeyRef(stored))
}

/// The store authenticated with the deployment's state MAC key, created on the first start of
/// an empty store in a backend without an anchor.
async fn authenticated(
    database: Unauthenticated,
    keys: &KeyService,
    anchor: Option<&Anchor>,
    fault: Option<FaultHook>,
) -> Result<Arc<dyn Store>, TrustError> {
    let key = match database.meta(STATE_KEY_META).await? {
        Some(key) => KeyRef(key),
        None => {
            // Daemons of a cluster starting together on an empty database: one provisions it
            // under the lock, the others then find its key.
            let lock = database.lock_first_start().await?;
            let key = provision_state_key(&database, keys, anchor).await;
            if let Some(lock) = lock {
                lock.release().await?;
            }
            key?
        }
    };
    // A daemon joining a shared store with another key backend (on PostgreSQL with --dev,
    // a forgotten --dev-keys) has none of the store's keys: say so, not "key not found".
    match keys
        .mac(
            key.clone(),
            zeroize::Zeroizing::new(b"MNL-STATE-KEY-PROBE".to_vec()),
        )
        .await
    {
        Err(crate::keys::KeyError::NotFound) => {
            return Err(TrustError::Refused(
                "the store's state MAC key is not in this key backend: every daemon of a store needs the key backend that created it (with --dev on a shared store: --dev-keys DIR, the directory the first daemon was given)".into(),
            ));
        }
        Err(other) => return Err(other.into()),
        Ok(_) => {}
    }
    let mac = StateMac::new(keys.backend(), key, keys.timeout());
    Ok(database.authenticated(Arc::new(RowSealer::new(Arc::new(mac))), fault))
}

/// How often start-up verifies again because another daemon moved the anchor meanwhile.
const MAX_ANCHOR_MOVES: u32 = 5;

/// Opens the store and verifies it against the backend's anchor; advances the anchor when
/// the store's checkpoints run one step past it (a crash after storing a checkpoint), and
/// verifies again when another daemon of a shared store anchored a newer one meanwhile.
/// Blocking work runs off the async runtime.
pub async fn open_store(
    location: &StoreLocation,
    keys: &KeyService,
) -> Result<(Arc<dyn Store>, Verified), TrustError> {
    open_store_with_fault(location, keys, None).await
}

/// Like [`open_store`], the embedded engine calling `fault` before every operation inside its
/// panic guard (tests make it fail exactly where a damaged store would).
pub async fn open_store_with_fault(
    location: &StoreLocation,
    keys: &KeyService,
    fault: Option<FaultHook>,
) -> Result<(Arc<dyn Store>, Verified), TrustError> {
    let database = Unauthenticated::open(location).await?;
    let mut anchor = keys.read_anchor().await?;
    let store = authenticated(database, keys, anchor.as_ref(), fault).await?;
    let mut moves = 0;
    let verified = loop {
        let checked = Arc::clone(&store);
        let mut verified = tokio::task::spawn_blocking(move || {
            integrity::verify_store_at_start(checked.as_ref(), anchor)
        })
        .await
        .map_err(engine_failed)??;
        let Some(advance) = verified.advance.take() else {
            break verified;
        };
        match keys.write_anchor(advance).await {
            Ok(()) => {
                tracing::info!(
                    checkpoint = advance.checkpoint,
                    "anchor advanced to the store's newest checkpoint"
                );
                verified.anchor = Some(advance);
                break verified;
            }
            Err(refused) => {
                // On a shared store another daemon may anchor a newer checkpoint while this one
                // verifies: the anchor only moved forward. Verify the store again against the
                // anchor as it is now (which must itself be in the store), a few times at most.
                let now = keys.read_anchor().await?;
                let moved_on =
                    now.is_some_and(|now| anchor.is_none_or(|a| now.counter > a.counter));
                moves += 1;
                if !moved_on || moves > MAX_ANCHOR_MOVES {
                    return Err(refused.into());
                }
                tracing::info!(
                    checkpoint = now.map_or(0, |a| a.checkpoint),
                    "another daemon anchored a newer checkpoint meanwhile: verifying against it"
                );
                anchor = now;
            }
        }
    };
    tracing::info!(
        checkpoint = verified.last_checkpoint.as_ref().map_or(0, |c| c.number),
        head = verified.head.seq,
        anchor_counter = verified.anchor.map_or(0, |a| a.counter),
        "store verified against the key backend's anchor"
    );
    Ok((store, verified))
}

/// Verifies the store in `data_dir` (a restored snapshot, before it is put in place): its rows
/// authenticate with this backend's state key, and its history — links, signatures, chain,
/// authority digest — checks out, whatever the anchor says.
pub async fn verify_history(
    data_dir: &Path,
    cache_bytes: usize,
    keys: &KeyService,
) -> Result<Verified, TrustError> {
    let database = Unauthenticated::open(&StoreLocation::Redb {
        data_dir: data_dir.to_path_buf(),
        cache_bytes,
    })
    .await?;
    if database.meta(STATE_KEY_META).await?.is_none() {
        return Err(TrustError::Refused(
            "the snapshot holds no state MAC key: not a store of this locker".into(),
        ));
    }
    let store = authenticated(database, keys, None, None).await?;
    let verified =
        tokio::task::spawn_blocking(move || integrity::verify_store_history(store.as_ref()))
            .await
            .map_err(engine_failed)??;
    Ok(verified)
}

/// What `reanchor` did.
#[derive(Debug, Clone)]
pub struct Reanchored {
    /// The anchor before.
    pub previous: Option<Anchor>,
    /// The anchor now; `None` for a store without a checkpoint yet (its first checkpoint,
    /// signed right after the re-anchoring is recorded, moves the anchor).
    pub anchor: Option<Anchor>,
}

fn describe(anchor: Option<Anchor>) -> String {
    anchor.map_or("no anchor".to_owned(), |a| {
        format!("checkpoint {} (counter {})", a.checkpoint, a.counter)
    })
}

impl Reanchored {
    /// "from → to", for logs and the audit entry.
    pub fn describe(&self) -> String {
        format!(
            "{} → {}",
            describe(self.previous),
            match self.anchor {
                Some(anchor) => describe(Some(anchor)),
                None => "the store's first checkpoint".to_owned(),
            }
        )
    }
}

/// Accepts the store — a genuine backup restored after a disaster — as current:
/// verifies its whole history (links, signatures, chain) except freshness, then anchors its
/// newest checkpoint with a raised counter. The caller records the act in the audit log and
/// signs a checkpoint over that record. Never automatic.
pub async fn reanchor(
    location: &StoreLocation,
    keys: &KeyService,
) -> Result<(Arc<dyn Store>, Verified, Reanchored), TrustError> {
    let database = Unauthenticated::open(location).await?;
    let previous = keys.read_anchor().await?;
    let store = authenticated(database, keys, None, None).await?;
    let checked = Arc::clone(&store);
    // Verified as if unanchored: every link and signature from the first checkpoint on.
    let verified =
        tokio::task::spawn_blocking(move || integrity::verify_store_history(checked.as_ref()))
            .await
            .map_err(engine_failed)??;
    let anchor = match verified.last_checkpoint.as_ref() {
        Some(last) => {
            let hash = last
                .hash()
                .ok_or_else(|| TrustError::Refused("newest checkpoint is malformed".into()))?;
            let anchor = Anchor::next(previous.as_ref(), last.number, hash);
            keys.write_anchor(anchor).await?;
            Some(anchor)
        }
        None => None,
    };
    Ok((store, verified, Reanchored { previous, anchor }))
}

/// The audit entry that records a re-anchoring.
pub fn reanchor_entry(done: &Reanchored) -> AuditEntry {
    let mut entry = AuditEntry {
        operator: "system".into(),
        role: "system".into(),
        action: "ANCHOR_RESET".into(),
        ..AuditEntry::default()
    };
    entry.allow(format!(
        "store accepted as current by the key backend's holder: anchor moved {}",
        done.describe()
    ));
    entry
}
