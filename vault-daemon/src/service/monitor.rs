//! ログ監視: per-role thresholds on what an operator does with numbers — unseals per hour,
//! distinct records per hour, unseals outside working hours. Crossing one raises one alert
//! (an audit entry, a WARN line, and optionally the operator's suspension) and then stays
//! quiet for that rule and operator for an hour, so a burst yields exactly one alert.
//!
//! The windows live in memory: a restart starts them afresh (the audit log keeps every unseal,
//! so `report incident` still sees a burst that spans a restart).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::domain::operator::Role;

const HOUR_MS: i64 = 3_600_000;
const JST_OFFSET_MS: i64 = 9 * HOUR_MS;

/// Thresholds for one role; 0 (or no hours) turns a rule off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// Unseals per operator in any hour.
    pub unseals_per_hour: u32,
    /// Distinct records per operator in any hour.
    pub distinct_subjects_per_hour: u32,
    /// Working hours in JST, as minutes since midnight `[start, end)`; unseals outside raise an
    /// alert.
    pub hours: Option<(u32, u32)>,
    /// Lookups that found nothing (numbers probed, not held) per operator in any hour.
    pub lookup_misses_per_hour: u32,
    /// Disable the operator when one of their alerts fires (their next call is refused).
    pub auto_suspend: bool,
}

/// The monitoring policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorPolicy {
    /// Thresholds for handlers.
    pub handler: Thresholds,
    /// Thresholds for services.
    pub service: Thresholds,
    /// Disable the operator of any role when an alert fires (each role's own setting adds to
    /// it).
    pub auto_suspend: bool,
}

impl std::fmt::Display for Thresholds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unseals_per_hour {}, distinct_subjects_per_hour {}, lookup_misses_per_hour {}, hours ",
            self.unseals_per_hour, self.distinct_subjects_per_hour, self.lookup_misses_per_hour
        )?;
        match self.hours {
            Some((start, end)) => write!(
                f,
                "{:02}:{:02}-{:02}:{:02} JST",
                start / 60,
                start % 60,
                end / 60,
                end % 60
            )?,
            None => f.write_str("any")?,
        }
        write!(f, ", auto_suspend {}", self.auto_suspend)
    }
}

/// As a log line says it: `handler (...); service (...); auto_suspend false`.
impl std::fmt::Display for MonitorPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "handler ({}); service ({}); auto_suspend {}",
            self.handler, self.service, self.auto_suspend
        )
    }
}

/// Parses `HH:MM-HH:MM` (JST) into minutes since midnight.
pub fn parse_hours(text: &str) -> Result<(u32, u32), String> {
    let minutes = |part: &str| -> Option<u32> {
        let (h, m) = part.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
    };
    let bad = || format!("hours must be HH:MM-HH:MM, got {text:?}");
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let (start, end) = (
        minutes(start).ok_or_else(bad)?,
        minutes(end).ok_or_else(bad)?,
    );
    if start >= end {
        return Err(bad());
    }
    Ok((start, end))
}

#[derive(Default)]
struct Window {
    unseals: VecDeque<i64>,
    lookup_misses: VecDeque<i64>,
    subjects: HashMap<String, i64>,
    quiet_until: HashMap<&'static str, i64>,
}

/// Watches unseals and says when a threshold is crossed.
#[derive(Default)]
pub struct Monitor {
    /// Replaced whole on reload (SIGHUP); each observation works on one version.
    policy: std::sync::RwLock<std::sync::Arc<MonitorPolicy>>,
    windows: Mutex<HashMap<String, Window>>,
}

impl Monitor {
    /// A monitor enforcing `policy`.
    pub fn new(policy: MonitorPolicy) -> Monitor {
        Monitor {
            policy: std::sync::RwLock::new(std::sync::Arc::new(policy)),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> std::sync::Arc<MonitorPolicy> {
        std::sync::Arc::clone(&self.policy.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts `policy` in force (the windows observed so far are kept). Returns the policy it
    /// replaced.
    pub fn set_policy(&self, policy: MonitorPolicy) -> std::sync::Arc<MonitorPolicy> {
        std::mem::replace(
            &mut *self.policy.write().unwrap_or_else(|e| e.into_inner()),
            std::sync::Arc::new(policy),
        )
    }

    /// Whether alerts disable an operator of `role`.
    pub fn auto_suspend(&self, role: Role) -> bool {
        let policy = self.policy();
        policy.auto_suspend
            || match role {
                Role::Handler => policy.handler.auto_suspend,
                Role::Service => policy.service.auto_suspend,
                _ => false,
            }
    }

    /// Records a lookup by `operator` that found nothing; returns the alert it raises when the
    /// hour's count passes the threshold (once an hour).
    pub fn observe_lookup_miss(&self, operator: &str, role: Role, now_ms: i64) -> Vec<String> {
        self.lookup_miss_at(operator, role, now_ms, true)
    }

    fn lookup_miss_at(&self, operator: &str, role: Role, now_ms: i64, live: bool) -> Vec<String> {
        let policy = self.policy();
        let limit = match role {
            Role::Handler => policy.handler.lookup_misses_per_hour,
            Role::Service => policy.service.lookup_misses_per_hour,
            _ => 0,
        } as usize;
        if limit == 0 {
            return Vec::new();
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(operator.to_owned()).or_default();
        let since = now_ms - HOUR_MS;
        while window
            .lookup_misses
            .front()
            .is_some_and(|&t| t <= since || window.lookup_misses.len() > limit)
        {
            window.lookup_misses.pop_front();
        }
        window.lookup_misses.push_back(now_ms);
        if window.lookup_misses.len() <= limit {
            return Vec::new();
        }
        quiet_once(
            window,
            live,
            "lookup_misses_per_hour",
            format!(
                "operator {operator} looked up more than {limit} numbers the tenant does not hold within an hour"
            ),
            now_ms,
        )
        .into_iter()
        .collect()
    }

    /// Records that a rate limit refused `operator`; returns an alert the first time in an
    /// hour (whatever the policy: being limited is always worth a look).
    pub fn observe_rate_limited(
        &self,
        operator: &str,
        kind: crate::service::rate_limit::Metered,
        now_ms: i64,
    ) -> Option<String> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(operator.to_owned()).or_default();
        quiet_once(
            window,
            true,
            "rate_limited",
            format!("operator {operator} hit its {} rate limit", kind.as_str()),
            now_ms,
        )
    }

    /// Records an unseal of `handle` by `operator` at `now_ms`; returns the alerts it raises
    /// (each a reason without any number).
    pub fn observe(&self, operator: &str, role: Role, handle: &str, now_ms: i64) -> Vec<String> {
        self.unseal_at(operator, role, handle, now_ms, true)
    }

    /// Replays a past unseal or lookup miss into the windows (a daemon taking over the
    /// cluster's monitoring rebuilds them from the log): counted, but no alert is raised or
    /// silenced by it; the log's own `ALERT` entries say what was raised
    /// ([`Monitor::note_alert`]).
    pub fn replay(&self, operator: &str, role: Role, unseal_of: Option<&str>, at_ms: i64) {
        match unseal_of {
            Some(handle) => drop(self.unseal_at(operator, role, handle, at_ms, false)),
            None => drop(self.lookup_miss_at(operator, role, at_ms, false)),
        }
    }

    /// Forgets every window (before they are rebuilt from the log).
    pub fn clear(&self) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Takes in an alert found in the log (`reason` starts with its rule): that rule stays
    /// quiet for the operator for an hour from `at_ms`, as if raised here.
    pub fn note_alert(&self, operator: &str, reason: &str, at_ms: i64) {
        let Some(rule) = RULES.iter().find(|rule| {
            reason
                .strip_prefix(**rule)
                .is_some_and(|rest| rest.starts_with(':'))
        }) else {
            return;
        };
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(operator.to_owned()).or_default();
        let until = at_ms + HOUR_MS;
        let quiet = window.quiet_until.entry(rule).or_insert(until);
        *quiet = (*quiet).max(until);
    }

    fn unseal_at(
        &self,
        operator: &str,
        role: Role,
        handle: &str,
        now_ms: i64,
        live: bool,
    ) -> Vec<String> {
        let policy = self.policy();
        let thresholds = match role {
            Role::Handler => &policy.handler,
            Role::Service => &policy.service,
            _ => return Vec::new(),
        };
        if thresholds.unseals_per_hour == 0
            && thresholds.distinct_subjects_per_hour == 0
            && thresholds.hours.is_none()
        {
            return Vec::new();
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by reference first: the operator's id is copied once, not on every unseal.
        if !windows.contains_key(operator) {
            windows.insert(operator.to_owned(), Window::default());
        }
        let Some(window) = windows.get_mut(operator) else {
            return Vec::new();
        };
        let since = now_ms - HOUR_MS;
        // Only as much is kept as the thresholds need (limit + 1 entries): a payroll run of
        // 10,000 unseals a second must not grow these windows without bound.
        let limit = thresholds.unseals_per_hour as usize;
        if limit > 0 {
            while window
                .unseals
                .front()
                .is_some_and(|&t| t <= since || window.unseals.len() > limit)
            {
                window.unseals.pop_front();
            }
            window.unseals.push_back(now_ms);
        }
        let subject_limit = thresholds.distinct_subjects_per_hour as usize;
        if subject_limit > 0 {
            window.subjects.insert(handle.to_owned(), now_ms);
            if window.subjects.len() > subject_limit {
                window.subjects.retain(|_, &mut t| t > since);
            }
            while window.subjects.len() > subject_limit + 1 {
                let oldest = window
                    .subjects
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(h, _)| h.clone());
                match oldest {
                    Some(h) => window.subjects.remove(&h),
                    None => break,
                };
            }
        }

        let mut crossed = Vec::new();
        if limit > 0 && window.unseals.len() > limit {
            crossed.push((
                "unseals_per_hour",
                format!("operator {operator} unsealed more than {limit} numbers within an hour"),
            ));
        }
        if subject_limit > 0 && window.subjects.len() > subject_limit {
            crossed.push((
                "distinct_subjects_per_hour",
                format!(
                    "operator {operator} unsealed more than {subject_limit} distinct records within an hour"
                ),
            ));
        }
        if let Some((start, end)) = thresholds.hours {
            let minute = ((now_ms + JST_OFFSET_MS).rem_euclid(24 * HOUR_MS) / 60_000) as u32;
            if minute < start || minute >= end {
                crossed.push((
                    "outside_hours",
                    format!(
                        "operator {operator} unsealed outside the working hours {:02}:{:02}-{:02}:{:02} JST",
                        start / 60,
                        start % 60,
                        end / 60,
                        end % 60
                    ),
                ));
            }
        }
        crossed
            .into_iter()
            .filter_map(|(rule, reason)| quiet_once(window, live, rule, reason, now_ms))
            .collect()
    }
}

/// The rules an alert can name (its reason starts with `rule:`).
pub const RULES: [&str; 5] = [
    "unseals_per_hour",
    "distinct_subjects_per_hour",
    "outside_hours",
    "lookup_misses_per_hour",
    "rate_limited",
];

/// The alert for `rule` unless it is quiet; a `live` alert quiets the rule for an hour.
fn quiet_once(
    window: &mut Window,
    live: bool,
    rule: &'static str,
    reason: String,
    now_ms: i64,
) -> Option<String> {
    if !live || window.quiet_until.get(rule).is_some_and(|&t| now_ms < t) {
        return None;
    }
    window.quiet_until.insert(rule, now_ms + HOUR_MS);
    Some(format!("{rule}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(unseals: u32, subjects: u32, hours: Option<(u32, u32)>) -> Monitor {
        Monitor::new(MonitorPolicy {
            handler: Thresholds {
                unseals_per_hour: unseals,
                distinct_subjects_per_hour: subjects,
                hours,
                lookup_misses_per_hour: 3,
                auto_suspend: false,
            },
            ..MonitorPolicy::default()
        })
    }

    #[test]
    fn a_replayed_burst_alerts_once_unless_the_log_says_it_did() {
        let t0 = 1_800_000_000_000;
        // The previous holder died before raising the alert: the next unseal raises it.
        let m = monitor(5, 0, None);
        for i in 0..6 {
            m.replay("op", Role::Handler, Some("h"), t0 + i);
        }
        let raised = m.observe("op", Role::Handler, "h", t0 + 10);
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert!(m.observe("op", Role::Handler, "h", t0 + 11).is_empty());
        // It raised it: the log's ALERT entry keeps the burst to that one alert.
        let m = monitor(5, 0, None);
        for i in 0..6 {
            m.replay("op", Role::Handler, Some("h"), t0 + i);
        }
        m.note_alert("op", &raised[0], t0 + 6);
        assert!(m.observe("op", Role::Handler, "h", t0 + 10).is_empty());
        // After a clear the windows start empty.
        m.clear();
        assert!(m.observe("op", Role::Handler, "h", t0 + 20).is_empty());
    }

    #[test]
    fn probing_for_numbers_raises_one_alert_an_hour() {
        let m = monitor(0, 0, None);
        let t0 = 1_800_000_000_000;
        let alerts: Vec<String> = (0..50)
            .flat_map(|i| m.observe_lookup_miss("op", Role::Handler, t0 + i))
            .collect();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert!(
            alerts[0].starts_with("lookup_misses_per_hour"),
            "{alerts:?}"
        );
        assert!(m.observe_lookup_miss("op", Role::Manager, t0).is_empty());
        // Unseal rules off, lookup rule on: unseals alert nothing.
        assert!(m.observe("op", Role::Handler, "h", t0).is_empty());
        let limited = crate::service::rate_limit::Metered::Lookup;
        assert!(m.observe_rate_limited("op", limited, t0).is_some());
        assert!(m.observe_rate_limited("op", limited, t0 + 1000).is_none());
    }

    #[test]
    fn a_burst_raises_one_alert_per_rule_per_hour() {
        let m = monitor(5, 0, None);
        let t0 = 1_800_000_000_000;
        let alerts: Vec<_> = (0..20)
            .flat_map(|i| m.observe("op", Role::Handler, "h", t0 + i))
            .collect();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert!(alerts[0].starts_with("unseals_per_hour"));
        // An hour later the window has emptied; a new burst alerts again.
        let later: Vec<_> = (0..6)
            .flat_map(|i| m.observe("op", Role::Handler, "h", t0 + HOUR_MS + 100 + i))
            .collect();
        assert_eq!(later.len(), 1);
        assert!(m.observe("admin", Role::Admin, "h", t0).is_empty());
    }

    #[test]
    fn distinct_records_and_hours() {
        let m = monitor(0, 3, Some((9 * 60, 18 * 60)));
        // 2026-11-23 01:00 UTC = 10:00 JST: within hours.
        let t0 = 1_795_395_600_000;
        for i in 0..3 {
            assert!(
                m.observe("op", Role::Handler, &format!("h{i}"), t0 + i)
                    .is_empty()
            );
        }
        let alerts = m.observe("op", Role::Handler, "h3", t0 + 10);
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].starts_with("distinct_subjects_per_hour"));
        // 12:00 UTC = 21:00 JST: outside.
        let night = t0 + 11 * HOUR_MS;
        let alerts = m.observe("op", Role::Handler, "h0", night);
        assert!(
            alerts.iter().any(|a| a.starts_with("outside_hours")),
            "{alerts:?}"
        );
    }

    #[test]
    fn windows_stay_bounded_under_a_long_run() {
        let m = monitor(100, 50, None);
        let t0 = 1_800_000_000_000;
        for i in 0..100_000 {
            m.observe("payroll", Role::Handler, &format!("h{i}"), t0 + i);
        }
        let windows = m.windows.lock().expect("lock");
        let window = &windows["payroll"];
        assert!(window.unseals.len() <= 101, "{}", window.unseals.len());
        assert!(window.subjects.len() <= 51, "{}", window.subjects.len());
    }

    #[test]
    fn hours_parse_strictly() {
        assert_eq!(parse_hours("08:30-19:00"), Ok((510, 1140)));
        for bad in ["8-19", "19:00-08:00", "25:00-26:00", "08:60-09:00", ""] {
            assert!(parse_hours(bad).is_err(), "{bad}");
        }
    }
}
