//! One-off commands run on a stopped daemon's data: restore from a backup, break-glass admin
//! recovery, and re-anchoring after the key backend's anchor was lost.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::checkpointer::{CheckpointPolicy, Checkpointer};
use crate::audit::witness::Witness;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keys::KeyService;

use super::backend::open_backend;
use super::tasks::write_witness;
use super::{DaemonError, io_context, open_locker, prepare_data_dir, start_writer};

/// Restores a snapshot taken by an online backup (`--restore-from FILE`) into the data
/// directory, which must hold no store: the snapshot's framing is checked, its rows are
/// written into a staging directory, the staged store is verified (its rows authenticate with
/// this backend, its history checks out), and only then moved into place and re-anchored
/// (`ANCHOR_RESET` in the log). A snapshot that fails leaves nothing behind. With the
/// PostgreSQL store the verified rows are loaded into its database, which must be empty.
pub async fn restore(config: Config, dev: bool, from: &Path) -> Result<(), DaemonError> {
    config.validate(dev)?;
    let data_dir = config.store.data_dir.clone();
    let refuse = |message: String| DaemonError::Trust(crate::trust::TrustError::Refused(message));
    if crate::store::redb::store_exists(&data_dir) {
        return Err(refuse(format!(
            "{} holds a store: restore into a data directory without a store",
            data_dir.display()
        )));
    }
    prepare_data_dir(&data_dir)?;
    let bytes = std::fs::read(from).map_err(io_context(format!("read {}", from.display())))?;
    let (header, rows) = crate::store::snapshot::read(&bytes)?;
    let keys = KeyService::new(
        open_backend(&config)?,
        config.backend.max_in_flight,
        config.backend_timeout(),
    );
    keys.self_test().await?;
    let cache = config.store.cache_mb.saturating_mul(1 << 20);
    let staging = data_dir.join(".restore");
    let _ = std::fs::remove_dir_all(&staging);
    prepare_data_dir(&staging)?;
    let staged = async {
        let written = {
            let staging = staging.clone();
            tokio::task::spawn_blocking(move || {
                crate::store::redb::RedbDatabase::create_from_rows(&staging, cache, &rows).map(drop)
            })
            .await
            .map_err(|e| refuse(format!("writing the snapshot failed: {e}")))?
        };
        written?;
        crate::trust::verify_history(&staging, cache, &keys).await?;
        Ok::<(), DaemonError>(())
    }
    .await;
    if let Err(error) = staged {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(error);
    }
    match config.store_location()? {
        crate::trust::StoreLocation::Redb { .. } => {
            crate::store::redb::move_store(&staging, &data_dir)?;
        }
        // The verified rows go into the (empty) database, in one transaction.
        crate::trust::StoreLocation::Postgres(options) => {
            let _ = std::fs::remove_dir_all(&staging);
            let (_, rows) = crate::store::snapshot::read(&bytes)?;
            let database = crate::store::postgres::PgDatabase::open(options).await?;
            database.load_rows(&rows).await?;
        }
    }
    let _ = std::fs::remove_dir_all(&staging);
    let checkpoint = header.checkpoint.map_or_else(
        || "none".to_owned(),
        |(number, entry)| format!("{number} (at entry {entry})"),
    );
    tracing::info!(
        from = %from.display(),
        head = header.head_seq,
        checkpoint = %checkpoint,
        "snapshot verified and restored; re-anchoring"
    );
    drop(keys);
    reanchor(config, dev).await
}

/// Break-glass (`--recover-admin`): opens the verified store with the key backend, mints a
/// token for an admin (see [`Locker::recover_admin`]), anchors it with a checkpoint, and exits.
pub async fn recover_admin(
    config: Config,
    dev: bool,
    operator: &str,
    out: Option<std::path::PathBuf>,
) -> Result<(), DaemonError> {
    config.validate(dev)?;
    let data_dir = config.store.data_dir.clone();
    let opened = open_locker(&config).await?;
    let checkpointer = opened.locker.checkpointer().clone();
    checkpointer.resume(&opened.verified).await;
    checkpointer.ensure_key().await?;
    let path = out.unwrap_or_else(|| data_dir.join(format!("recovered-{operator}.token")));
    let token_id = opened.locker.recover_admin(operator, &path).await?;
    // Anchor the recovery at once: it is the last entry before the daemon starts again.
    checkpointer.checkpoint_now().await?;
    drop(opened.locker);
    opened.writer.shutdown().await;
    opened.writer_thread.join();
    write_witness(&opened.witness, &opened.writer);
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "token {token_id} for admin {operator} written to {} (0600); ADMIN_RECOVER recorded",
        path.display()
    );
    Ok(())
}

/// Accepts the store in the data directory as current after a restore (`--reanchor`):
/// verifies its whole history, moves the backend's anchor to its newest checkpoint with a
/// raised counter, records `ANCHOR_RESET` in the audit log, signs a checkpoint over that
/// record, and exits. Never done automatically.
pub async fn reanchor(config: Config, dev: bool) -> Result<(), DaemonError> {
    config.validate(dev)?;
    let keys = KeyService::new(
        open_backend(&config)?,
        config.backend.max_in_flight,
        config.backend_timeout(),
    );
    keys.self_test().await?;
    let (store, mut verified, done) =
        crate::trust::reanchor(&config.store_location()?, &keys).await?;
    // Without a checkpoint in the store, the first one signed below moves the anchor on
    // from the previous one (its counter rises as always).
    verified.anchor = done.anchor.or(done.previous);
    verified.advance = None;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (writer, writer_thread) = start_writer(&config, &store, &clock, &verified)?;
    writer
        .submit(
            crate::store::mutation::Mutation::None,
            crate::trust::reanchor_entry(&done),
        )
        .await?;
    let checkpointer = Checkpointer::new(
        store,
        writer.clone(),
        keys,
        clock,
        CheckpointPolicy {
            every: 1,
            interval: Duration::from_secs(1),
        },
    );
    checkpointer.resume(&verified).await;
    let signed = checkpointer.checkpoint_now().await?;
    writer.shutdown().await;
    writer_thread.join();
    // This data directory's witness now vouches for the accepted store.
    write_witness(&Witness::in_dir(&config.store.data_dir), &writer);
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "re-anchored: {}; ANCHOR_RESET recorded{}",
        done.describe(),
        signed.map_or(String::new(), |c| format!(
            " and anchored by checkpoint {}",
            c.number
        ))
    );
    Ok(())
}
