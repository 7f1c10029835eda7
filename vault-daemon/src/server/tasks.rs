//! The daemon's background tasks: the health watch over the key backend, the audit writer and
//! the chain; the watch over the log that other daemons or a DBA may have changed; the audit
//! witness; the refusal summaries; and the store's figures for the metrics.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use vault_proto::v1::locker_server::LockerServer;

use crate::audit::checkpointer::Checkpointer;
use crate::audit::witness::Witness;
use crate::audit::writer::AuditWriter;
use crate::grpc::locker::LockerApi;
use crate::keys::KeyService;
use crate::service::Locker;
use crate::store::Store;

use super::DaemonError;

/// Periodically self-tests the key backend and reports Locker health accordingly; an audit
/// store that cannot commit, or a broken audit chain (found by the checkpointer), is
/// NOT_SERVING too. While the writer is unhealthy it is probed, so it recovers without a call.
pub(super) async fn watch_health(
    keys: KeyService,
    checkpointer: Checkpointer,
    writer: AuditWriter,
    reporter: tonic_health::server::HealthReporter,
) {
    let mut serving = None;
    let mut backend_ok = true;
    for tick in 0u64.. {
        if !writer.healthy() {
            writer.probe().await;
        }
        // The backend's self-test every 2 s; the writer's state (a store whose log was found
        // rewritten or cut, by a call or by the log check) every 500 ms.
        if tick % 4 == 0 {
            backend_ok = keys.self_test().await.is_ok();
        }
        let healthy = checkpointer.intact() && writer.healthy() && backend_ok;
        if serving != Some(healthy) {
            if healthy {
                reporter.set_serving::<LockerServer<LockerApi>>().await;
                reporter
                    .set_service_status("", tonic_health::ServingStatus::Serving)
                    .await;
                tracing::info!(
                    backend = keys.backend_name(),
                    "key backend healthy: SERVING"
                );
            } else {
                reporter.set_not_serving::<LockerServer<LockerApi>>().await;
                reporter
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
                tracing::error!(
                    backend = keys.backend_name(),
                    audit_chain_intact = checkpointer.intact(),
                    audit_store_commits = writer.healthy(),
                    "key backend unavailable, audit store failing or audit chain broken: NOT_SERVING"
                );
            }
            serving = Some(healthy);
            crate::metrics::metrics().serving.set(i64::from(healthy));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How often an idle daemon checks the store's audit log against what it verified.
pub(super) const LOG_CHECK_EVERY: Duration = Duration::from_millis(500);

/// A line on standard output for whoever started the daemon (scripts wait for "listening
/// on"): the text as it is, or with `[log] format = "json"` one JSON object whose `message` is
/// that text, with `fields` beside it, so that standard output holds JSON only.
pub(super) fn announce(
    stdout: &mut std::io::Stdout,
    format: crate::config::LogFormat,
    text: &str,
    fields: serde_json::Value,
) {
    let line = match (format, fields) {
        (crate::config::LogFormat::Json, serde_json::Value::Object(mut object)) => {
            object.insert("message".into(), text.into());
            serde_json::Value::Object(object).to_string()
        }
        _ => text.to_owned(),
    };
    let _ = writeln!(stdout, "{line}");
}

/// Checks the store's log every [`LOG_CHECK_EVERY`] (a daemon that has no call to make still
/// finds a log cut back, rolled back or rewritten by someone else), and keeps the witness at
/// the newest verified position, until aborted. With `anchored` (a store shared by a
/// cluster), also checks the store against the key backend's anchor: a database that lost
/// commits the daemon never saw (it was paused through them) is refused all the same.
pub(super) async fn watch_log(
    writer: AuditWriter,
    witness: Witness,
    anchored: Option<(KeyService, Arc<dyn Store>)>,
) {
    let mut written = writer.verified_position();
    loop {
        tokio::time::sleep(LOG_CHECK_EVERY).await;
        if let Some((keys, store)) = &anchored {
            match behind_the_anchor(keys, store).await {
                Ok(breach) => writer.set_anchor_breach(breach),
                Err(error) => tracing::debug!(%error, "the anchor could not be compared"),
            }
        }
        if let Err(error) = writer.check().await {
            tracing::debug!(%error, "audit log check failed");
            continue;
        }
        let position = writer.verified_position();
        if position != written {
            let witness = witness.clone();
            match tokio::task::spawn_blocking(move || witness.write(position)).await {
                Ok(Ok(())) => written = position,
                Ok(Err(error)) => tracing::warn!(%error, "cannot update the audit witness"),
                Err(error) => tracing::warn!(%error, "audit witness task failed"),
            }
        }
    }
}

/// Whether `store` is behind the key backend's anchor ([`integrity::holds_anchor`]). The
/// anchor is read first: a checkpoint is stored before it is anchored, so a store read after
/// the anchor holds it. Bounded, so a hung backend or database never stops the log check.
pub(super) async fn behind_the_anchor(
    keys: &KeyService,
    store: &Arc<dyn Store>,
) -> Result<Option<crate::store::StoreError>, crate::error::Error> {
    let compared = async {
        let Some(anchor) = keys.read_anchor().await? else {
            return Ok(None);
        };
        let reading = Arc::clone(store);
        let holds = tokio::task::spawn_blocking(move || {
            let key = reading.sealer().log_key()?;
            crate::audit::integrity::holds_anchor(reading.reader()?.as_ref(), &anchor, &key)
        })
        .await
        .map_err(|e| crate::error::Error::Internal(format!("anchor check failed: {e}")))??;
        Ok((!holds).then(|| {
            crate::store::StoreError::Rewritten(format!(
                "the store does not hold the checkpoint the key backend anchored (checkpoint {}, counter {}), nor a signed one after it: a database that lost commits (a lossy failover, a restore)",
                anchor.checkpoint, anchor.counter
            ))
        }))
    };
    tokio::time::timeout(LOG_CHECK_EVERY * 4, compared)
        .await
        .unwrap_or_else(|_| {
            Err(crate::error::Error::Unavailable(
                "the anchor check did not finish in time".into(),
            ))
        })
}

/// Refuses a store that does not hold the newest entry this data directory's daemon verified,
/// with the hash it verified: cut back, rolled back or rewritten behind the daemons' backs.
pub(super) fn check_witness(witness: &Witness, store: &dyn Store) -> Result<(), DaemonError> {
    let Some(known) = witness.read()? else {
        return Ok(());
    };
    let key = store.sealer().log_key()?;
    let reader = store.reader()?;
    let found = crate::audit::integrity::entry_hash(reader.as_ref(), known.seq, &key);
    let head = reader.audit_last()?.map_or(0, |(seq, _)| seq);
    let problem = match found {
        Ok(Some(hash)) if hash == known.hash => return Ok(()),
        Ok(Some(_)) => format!(
            "the store's audit entry {} is not the one this daemon verified (hash {}): the log was rewritten",
            known.seq,
            hex::encode(known.hash)
        ),
        Ok(None) => format!(
            "the store's audit log ends at entry {head}, but this daemon verified entry {} (hash {}): the log was cut back or the store rolled back",
            known.seq,
            hex::encode(known.hash)
        ),
        // A store that cannot be read says nothing about its history: fail the start as
        // unavailable (and retry), not as tampering.
        Err(error @ crate::error::Error::Unavailable(_)) => {
            return Err(DaemonError::Service(error));
        }
        Err(error) => format!(
            "the store's audit entry {} fails its check ({error}); this daemon verified it with hash {}",
            known.seq,
            hex::encode(known.hash)
        ),
    };
    crate::metrics::metrics().audit_log_breaks.inc();
    Err(DaemonError::Trust(crate::trust::TrustError::Refused(
        format!(
            "{problem}. A backup restored on purpose is accepted with `vault-daemon --reanchor` (witness {})",
            witness.describe()
        ),
    )))
}

/// Records the writer's newest verified position in the witness (at a stop).
pub(super) fn write_witness(witness: &Witness, writer: &AuditWriter) {
    if let Err(error) = witness.write(writer.verified_position()) {
        tracing::warn!(%error, "cannot update the audit witness");
    }
}

/// Commits the summaries of closed refusal windows every few seconds, until aborted.
pub(super) async fn run_refusal_flush(locker: Arc<Locker>) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let Err(error) = locker.flush_refusals(false).await {
            tracing::warn!(%error, "could not record refusal counts; will retry");
        }
    }
}

/// Keeps the store's figures in the metrics: rewrap progress every tick, records per state
/// (a scan of the records table) every `records_every_secs`; until aborted.
pub(super) async fn refresh_store_figures(locker: Arc<Locker>, records_every_secs: u64) {
    let tick_secs = records_every_secs.min(5);
    let mut last_count: Option<tokio::time::Instant> = None;
    loop {
        let count =
            last_count.is_none_or(|at| at.elapsed() >= Duration::from_secs(records_every_secs));
        if count {
            last_count = Some(tokio::time::Instant::now());
        }
        let reader = Arc::clone(&locker);
        let figures = tokio::task::spawn_blocking(move || {
            let jobs = reader.rewrap_jobs()?;
            let records = if count {
                Some(reader.count_records()?)
            } else {
                None
            };
            Ok::<_, crate::error::Error>((jobs, records))
        })
        .await;
        match figures {
            Ok(Ok((jobs, records))) => {
                let metrics = crate::metrics::metrics();
                metrics.set_rewraps(&jobs);
                if let Some(records) = records {
                    metrics.set_records(&records);
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "could not read the store's figures"),
            Err(error) => tracing::warn!(%error, "store figures task failed"),
        }
        tokio::time::sleep(Duration::from_secs(tick_secs)).await;
    }
}
