//! Warning before a token runs out: a payroll system whose only token expires stops on that
//! day. Each minute, per role, the seconds until the first enabled operator is left without a
//! usable token go to a gauge (`locker_token_expiry_seconds{role}`: labels never name an
//! operator), and an operator whose last token ends within [`WARN_WITHIN`] is named in a WARN
//! line, once a day.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::lifecycle::jst_time;
use crate::service::Locker;

/// How long before the end of an operator's last token the log warns.
pub const WARN_WITHIN: Duration = Duration::from_secs(14 * 24 * 3600);
/// How often the tokens are looked at.
const EVERY: Duration = Duration::from_secs(60);
/// How often one operator is warned about.
const WARN_AGAIN: Duration = Duration::from_secs(24 * 3600);

/// When each enabled operator's last usable token ends (ms since the epoch), with its role,
/// from the authority view; operators with no usable token are left out.
pub fn last_token_ends(locker: &Locker, now_ms: i64) -> BTreeMap<String, (&'static str, i64)> {
    let authority = locker.writer.authority().snapshot();
    let mut ends: BTreeMap<String, (&'static str, i64)> = BTreeMap::new();
    for token in authority.tokens() {
        let Some(operator) = authority
            .operator(&token.operator_id)
            .filter(|operator| !operator.disabled)
        else {
            continue;
        };
        if token.revoked || token.expires_at_ms <= now_ms {
            continue;
        }
        let end = ends
            .entry(token.operator_id.clone())
            .or_insert((operator.role.as_str(), 0));
        end.1 = end.1.max(token.expires_at_ms);
    }
    ends
}

/// Looks at the tokens every minute until the task is aborted.
pub async fn watch_token_expiry(locker: Arc<Locker>) {
    let mut warned: HashMap<String, Instant> = HashMap::new();
    let mut shown: BTreeSet<&'static str> = BTreeSet::new();
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let now_ms = locker.now_ms();
        let metrics = crate::metrics::metrics();
        let ends = last_token_ends(&locker, now_ms);
        let mut first_by_role: BTreeMap<&'static str, i64> = BTreeMap::new();
        for (role, end_ms) in ends.values() {
            let first = first_by_role.entry(role).or_insert(*end_ms);
            *first = (*first).min(*end_ms);
        }
        // A role left without a usable token anywhere leaves the gauge rather than showing a
        // stale figure.
        for gone in shown
            .iter()
            .filter(|role| !first_by_role.contains_key(*role))
        {
            metrics
                .token_expiry
                .remove(&crate::metrics::RoleLabels { role: gone });
        }
        shown = first_by_role.keys().copied().collect();
        for (role, end_ms) in &first_by_role {
            metrics
                .token_expiry
                .get_or_create(&crate::metrics::RoleLabels { role })
                .set((end_ms - now_ms) / 1000);
        }
        for (operator, (_, end_ms)) in ends {
            let left_ms = end_ms - now_ms;
            let soon =
                u64::try_from(left_ms).is_ok_and(|left| Duration::from_millis(left) < WARN_WITHIN);
            let due = warned
                .get(&operator)
                .is_none_or(|at| at.elapsed() >= WARN_AGAIN);
            if soon && due {
                tracing::warn!(
                    %operator,
                    expires = %jst_time(end_ms),
                    "the operator's last usable token expires soon: issue a new one (vault-client token issue) before it does"
                );
                warned.insert(operator, Instant::now());
            }
        }
    }
}
