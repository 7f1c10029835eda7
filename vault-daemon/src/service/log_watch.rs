//! The log monitor of a cluster: on a shared store each daemon sees only its own calls, so
//! three daemons would each count a third of a burst (or raise three alerts). There, one daemon
//! at a time — the holder of the `monitor` lease — reads every entry the cluster commits, in
//! chain order, and feeds the monitor's windows from them: one count for the whole cluster,
//! one alert per burst. The alert (and any suspension) follows the crossing entry within a
//! tick rather than inside the crossing call.
//!
//! A daemon taking the duty over (at start, or when the holder dies) rebuilds the windows from
//! the last hour of the log — at most [`REPLAY_MAX`] entries back — counting without alerting,
//! and takes the log's `ALERT` entries as raised: a burst that spans the handover still
//! yields one alert, neither none nor two.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::operator::Role;
use crate::error::Result;
use crate::service::Locker;
use crate::service::audit_log::{Visibility, parse_rows};
use crate::store::lease::{DutyLease, LeaseState};

/// The monitor duty's lease.
pub const MONITOR: &str = "monitor";
/// Entries read per round at most.
const PAGE: usize = 2000;
/// How far back a daemon taking the duty over replays the log at most.
pub const REPLAY_MAX: u64 = 100_000;
const HOUR_MS: i64 = 3_600_000;

impl Locker {
    /// Rebuilds the monitor's windows from the last hour of the log up to entry `head`.
    fn replay_log(&self, head: u64) -> Result<()> {
        self.monitor.clear();
        let since = self.now_ms() - HOUR_MS;
        let mut cursor = head.saturating_sub(REPLAY_MAX);
        while cursor < head {
            let rows = self.store.reader()?.audit_after(cursor, PAGE)?;
            let Some(&(last, _)) = rows.last() else {
                break;
            };
            for chained in parse_rows(rows, &Visibility::All)? {
                let entry = &chained.entry;
                if entry.seq > head || entry.time_ms <= since {
                    continue;
                }
                let Some(role) = Role::from_name(&entry.role) else {
                    continue;
                };
                match (
                    entry.action.as_str(),
                    entry.outcome.as_str(),
                    entry.code.as_str(),
                ) {
                    ("UNSEAL", "ALLOWED", _) => self.monitor.replay(
                        &entry.operator,
                        role,
                        Some(&entry.handle),
                        entry.time_ms,
                    ),
                    ("LOOKUP", _, "NOT_FOUND") => {
                        self.monitor
                            .replay(&entry.operator, role, None, entry.time_ms)
                    }
                    ("ALERT", _, _) => {
                        self.monitor
                            .note_alert(&entry.operator, &entry.reason, entry.time_ms)
                    }
                    _ => {}
                }
            }
            cursor = last;
        }
        Ok(())
    }

    /// Feeds the monitor every entry after `cursor` (up to a page) and commits the alerts
    /// they raise; returns the new cursor.
    async fn watch_log_from(&self, cursor: u64) -> Result<u64> {
        let rows = self.store.reader()?.audit_after(cursor, PAGE)?;
        let Some(&(last, _)) = rows.last() else {
            return Ok(cursor);
        };
        for chained in parse_rows(rows, &Visibility::All)? {
            let entry = &chained.entry;
            let Some(role) = Role::from_name(&entry.role) else {
                continue;
            };
            let alerts = match (
                entry.action.as_str(),
                entry.outcome.as_str(),
                entry.code.as_str(),
            ) {
                ("UNSEAL", "ALLOWED", _) => {
                    self.monitor
                        .observe(&entry.operator, role, &entry.handle, entry.time_ms)
                }
                ("LOOKUP", _, "NOT_FOUND") => {
                    self.monitor
                        .observe_lookup_miss(&entry.operator, role, entry.time_ms)
                }
                _ => continue,
            };
            self.commit_alerts_about(&entry.operator, role, alerts)
                .await?;
        }
        Ok(last)
    }
}

/// Runs the cluster's log monitor until aborted: while this daemon holds the lease, every
/// entry committed by any daemon goes through the monitor once.
pub async fn run_log_watch(locker: Arc<Locker>) {
    let lease = DutyLease::new(Arc::clone(&locker.store), MONITOR);
    let mut cursor = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match lease.check() {
            LeaseState::Elsewhere => {
                cursor = None;
                continue;
            }
            // Taking the duty over: rebuild the windows from the log, then watch on.
            LeaseState::Held { gained: true } => cursor = None,
            LeaseState::Held { gained: false } => {}
        }
        let from = match cursor {
            Some(from) => from,
            None => {
                let head = locker
                    .store
                    .reader()
                    .and_then(|r| r.audit_last())
                    .map(|last| last.map_or(0, |(seq, _)| seq));
                match head.map_err(crate::error::Error::from).and_then(|head| {
                    locker.replay_log(head)?;
                    Ok(head)
                }) {
                    Ok(head) => head,
                    Err(error) => {
                        tracing::warn!(%error, "log monitor cannot replay the last hour; will retry");
                        continue;
                    }
                }
            }
        };
        match locker.watch_log_from(from).await {
            Ok(next) => cursor = Some(next),
            Err(error) => {
                cursor = Some(from);
                tracing::warn!(%error, "log monitor failed; will retry");
            }
        }
    }
}
