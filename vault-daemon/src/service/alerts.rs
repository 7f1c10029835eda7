//! Alerts of the log monitor: committed to the audit log as `ALERT` entries (with the
//! operator's suspension when the policy says so), logged at WARN, and listed for auditors.

use crate::audit::entry::{AuditEntry, ChainedEntry, EntryOutcome};
use crate::domain::operator::Role;
use crate::domain::policy::Action;
use crate::error::Result;
use crate::service::audit_log::{Visibility, parse_rows};
use crate::service::{Caller, Locker, RequestContext};
use crate::store::mutation::{Mutation, OperatorChange};

/// Most alerts one listing returns.
const MAX_ALERTS: usize = 1000;

impl Locker {
    /// Feeds an allowed unseal to the monitor and commits the alerts it raises (on a shared
    /// store the cluster's log monitor does, from the log).
    pub(super) async fn watch_unseal(&self, caller: &Caller, handle: &str) -> Result<()> {
        if self.cluster_log_watch {
            return Ok(());
        }
        let operator = &caller.operator;
        let alerts = self
            .monitor
            .observe(&operator.id, operator.role, handle, self.now_ms());
        self.commit_alerts(caller, alerts).await
    }

    /// Feeds a lookup that found nothing to the monitor and commits the alerts it raises.
    pub(super) async fn watch_lookup_miss(&self, caller: &Caller) -> Result<()> {
        if self.cluster_log_watch {
            return Ok(());
        }
        let operator = &caller.operator;
        let alerts = self
            .monitor
            .observe_lookup_miss(&operator.id, operator.role, self.now_ms());
        self.commit_alerts(caller, alerts).await
    }

    /// Commits each alert about `caller` (suspending it when the policy says so).
    pub(super) async fn commit_alerts(&self, caller: &Caller, alerts: Vec<String>) -> Result<()> {
        let operator = &caller.operator;
        self.commit_alerts_about(&operator.id, operator.role, alerts)
            .await
    }

    /// Commits each alert about operator `id` of `role` (suspending it when the policy says
    /// so).
    pub(super) async fn commit_alerts_about(
        &self,
        id: &str,
        role: Role,
        alerts: Vec<String>,
    ) -> Result<()> {
        for reason in alerts {
            crate::metrics::metrics().alert(&reason);
            tracing::warn!(operator = %id, alert = %reason, "log monitor alert");
            let mut entry = AuditEntry {
                operator: id.to_owned(),
                role: role.as_str().into(),
                action: Action::Alert.as_str().into(),
                ..AuditEntry::default()
            };
            let mutation = if self.monitor.auto_suspend(role) {
                entry.allow(format!("{reason}; operator suspended"));
                Mutation::ChangeOperator {
                    id: id.to_owned(),
                    change: OperatorChange::Disable,
                }
            } else {
                entry.allow(reason);
                Mutation::None
            };
            self.writer.submit(mutation, entry).await?;
        }
        Ok(())
    }

    /// Alerts after sequence number `after_seq`. An alert is about an operator, not a tenant:
    /// managers see the alerts of operators who hold grants on one of their tenants.
    pub async fn list_alerts(
        &self,
        ctx: &RequestContext,
        after_seq: u64,
    ) -> Result<Vec<ChainedEntry>> {
        let (caller, entry) = self.begin(ctx, Action::AlertList).await?;
        let body = (|| {
            let watched: Option<Vec<String>> = match Visibility::of(&caller) {
                Visibility::All => None,
                Visibility::Tenants(tenants) => Some(
                    self.store
                        .reader()?
                        .operators()?
                        .into_iter()
                        .filter(|o| o.grants.iter().any(|g| tenants.contains(&g.tenant)))
                        .map(|o| o.id)
                        .collect(),
                ),
            };
            let mut alerts = Vec::new();
            let mut after = after_seq;
            loop {
                let rows = self.store.reader()?.audit_after(after, 1000)?;
                let Some((last, _)) = rows.last() else {
                    break;
                };
                after = *last;
                alerts.extend(
                    parse_rows(rows, &Visibility::All)?
                        .into_iter()
                        .filter(|e| e.entry.action == Action::Alert.as_str())
                        .filter(|e| {
                            watched
                                .as_ref()
                                .is_none_or(|ids| ids.contains(&e.entry.operator))
                        }),
                );
                if alerts.len() >= MAX_ALERTS {
                    alerts.truncate(MAX_ALERTS);
                    break;
                }
            }
            Ok((alerts, Mutation::None))
        })();
        self.finish(entry, body).await.map(|(alerts, _)| alerts)
    }
}
