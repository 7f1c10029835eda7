//! Junk traffic without an fsync per call. Calls refused before anyone is identified (failed
//! authentication, an address locked out for it) and calls refused by a rate limit are audited
//! per source and reason and window: the first of a window is committed on its own, the rest
//! are counted and committed as one summary entry (with the count) when the window closes. So
//! 20,000 calls with a junk token cost a few entries, not 20,000 commits, and every refused
//! call is still accounted for in the log.
//!
//! Each address, and each presented token id, also has a bucket of failed authentications:
//! once it is empty, calls from it that fail to authenticate are refused RESOURCE_EXHAUSTED
//! until it refills (guessing tokens gets slow, and so does a flood). A valid token is checked
//! first and always passes, so junk from a shared address (NAT, a balancer) never locks out
//! the valid clients behind it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::audit::entry::AuditEntry;
use crate::error::Error;

/// Distinct (source, reason) windows kept at once; beyond this, further sources share one
/// window (`*`), so a flood from many addresses cannot grow memory without bound.
const MAX_WINDOWS: usize = 10_000;
/// Addresses whose failed-authentication bucket is tracked at once; beyond this the fullest
/// buckets (those that matter least) are forgotten first.
const MAX_PEERS: usize = 10_000;

/// What failed to authenticate: an address, or a presented token id (well formed, but with a
/// wrong secret or unknown).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FailureSource {
    /// The peer's address.
    Address(IpAddr),
    /// The public id of the presented token.
    TokenId(String),
}

/// How refusals are aggregated and failed authentications limited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefusalPolicy {
    /// Length of an aggregation window.
    pub window: Duration,
    /// Failed authentications an address may make per second, sustained (0: no limit).
    pub failed_auth_per_second: f64,
    /// Failed authentications an address may make at once.
    pub failed_auth_burst: f64,
}

impl Default for RefusalPolicy {
    fn default() -> Self {
        RefusalPolicy {
            window: Duration::from_secs(60),
            failed_auth_per_second: 1.0,
            failed_auth_burst: 60.0,
        }
    }
}

/// What to do with one refused call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first of its window: commit its own entry.
    AuditNow,
    /// Counted into the window's summary.
    Counted,
}

/// The refusals of one closed window beyond its first, to commit as one entry.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The source: an address, an operator, or `*` when too many sources were seen.
    pub source: String,
    /// The error the calls were refused with.
    pub error: Error,
    /// How many calls were counted.
    pub count: u64,
    /// The last counted call's entry (its action, operator, token id; never a secret).
    pub last: AuditEntry,
    /// How long the window ran.
    pub span: Duration,
}

struct Window {
    opened: Instant,
    count: u64,
    error: Error,
    last: AuditEntry,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The windows and the per-address buckets.
#[derive(Default)]
pub struct RefusalLedger {
    policy: RwLock<Arc<RefusalPolicy>>,
    windows: Mutex<HashMap<(String, String), Window>>,
    closed: Mutex<Vec<Summary>>,
    peers: Mutex<HashMap<FailureSource, Bucket>>,
    /// Addresses with a bucket: while none has failed, a call costs no lock here.
    tracked: std::sync::atomic::AtomicUsize,
}

fn summary(key: (String, String), window: Window, now: Instant) -> Summary {
    Summary {
        source: key.0,
        error: window.error,
        count: window.count,
        last: window.last,
        span: now.saturating_duration_since(window.opened),
    }
}

impl RefusalLedger {
    /// A ledger enforcing `policy`.
    pub fn new(policy: RefusalPolicy) -> RefusalLedger {
        RefusalLedger {
            policy: RwLock::new(Arc::new(policy)),
            ..RefusalLedger::default()
        }
    }

    fn policy(&self) -> Arc<RefusalPolicy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Notes a call from `source` refused with `error` (its entry already filled in).
    pub fn note(&self, source: &str, error: &Error, entry: &AuditEntry, now: Instant) -> Verdict {
        let window_length = self.policy().window;
        let reason = error.to_string();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = (source.to_owned(), reason);
        if !windows.contains_key(&key) && windows.len() >= MAX_WINDOWS {
            key.0 = "*".into();
        }
        if let Some(window) = windows.get_mut(&key) {
            if now.saturating_duration_since(window.opened) < window_length {
                window.count += 1;
                window.last = entry.clone();
                return Verdict::Counted;
            }
            if let Some(old) = windows.remove(&key)
                && old.count > 0
            {
                self.closed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(summary(key.clone(), old, now));
            }
        }
        windows.insert(
            key,
            Window {
                opened: now,
                count: 0,
                error: error.clone(),
                last: entry.clone(),
            },
        );
        Verdict::AuditNow
    }

    /// The summaries due at `now`: windows that are over (all of them with `all`, at
    /// shutdown), each with at least one counted call. They are forgotten here: the caller
    /// commits them.
    pub fn take_due(&self, now: Instant, all: bool) -> Vec<Summary> {
        let window_length = self.policy().window;
        let mut due = std::mem::take(&mut *self.closed.lock().unwrap_or_else(|e| e.into_inner()));
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let over: Vec<(String, String)> = windows
            .iter()
            .filter(|(_, w)| all || now.saturating_duration_since(w.opened) >= window_length)
            .map(|(k, _)| k.clone())
            .collect();
        for key in over {
            if let Some(window) = windows.remove(&key)
                && window.count > 0
            {
                due.push(summary(key, window, now));
            }
        }
        due
    }

    /// Puts back summaries that could not be committed, for the next flush.
    pub fn restore(&self, summaries: Vec<Summary>) {
        self.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(summaries);
    }

    /// Whether any address has failed to authenticate lately (else none can be locked out).
    pub fn any_failures(&self) -> bool {
        self.tracked.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// How long `peer` must wait when its failed-authentication bucket is empty.
    pub fn peer_locked(&self, peer: &FailureSource, now: Instant) -> Option<Duration> {
        if !self.any_failures() {
            return None;
        }
        let policy = self.policy();
        if policy.failed_auth_per_second <= 0.0 {
            return None;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let level = refill(peers.get(peer)?, &policy, now);
        if level >= policy.failed_auth_burst.max(1.0) {
            // Refilled: forget the source, so that calls stop paying for this lock once
            // failures stop.
            peers.remove(peer);
            self.tracked
                .store(peers.len(), std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        (level < 1.0).then(|| {
            Duration::from_secs_f64((1.0 - level) / policy.failed_auth_per_second)
                .max(Duration::from_millis(1))
        })
    }

    /// Takes one failed authentication from `peer`'s bucket.
    pub fn failed_authentication(&self, peer: &FailureSource, now: Instant) {
        let policy = self.policy();
        if policy.failed_auth_per_second <= 0.0 {
            return;
        }
        let burst = policy.failed_auth_burst.max(1.0);
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if !peers.contains_key(peer) && peers.len() >= MAX_PEERS {
            // Forget the addresses closest to a full bucket: they are the least suspicious.
            peers.retain(|_, b| refill(b, &policy, now) < burst - 1.0);
        }
        let bucket = peers.entry(peer.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens = (refill(bucket, &policy, now) - 1.0).max(0.0);
        bucket.at = now;
        self.tracked
            .store(peers.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

fn refill(bucket: &Bucket, policy: &RefusalPolicy, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * policy.failed_auth_per_second).min(policy.failed_auth_burst.max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(window_secs: u64) -> RefusalLedger {
        RefusalLedger::new(RefusalPolicy {
            window: Duration::from_secs(window_secs),
            failed_auth_per_second: 1.0,
            failed_auth_burst: 3.0,
        })
    }

    fn junk() -> Error {
        Error::Unauthenticated("unknown bearer token".into())
    }

    #[test]
    fn the_first_of_a_window_is_audited_the_rest_counted_once() {
        let l = ledger(60);
        let t0 = Instant::now();
        let entry = AuditEntry::default();
        assert_eq!(l.note("10.0.0.1", &junk(), &entry, t0), Verdict::AuditNow);
        for _ in 0..999 {
            assert_eq!(l.note("10.0.0.1", &junk(), &entry, t0), Verdict::Counted);
        }
        // Another source or another reason has its own window.
        assert_eq!(l.note("10.0.0.2", &junk(), &entry, t0), Verdict::AuditNow);
        let expired = Error::Unauthenticated("token has expired".into());
        assert_eq!(l.note("10.0.0.1", &expired, &entry, t0), Verdict::AuditNow);
        assert!(l.take_due(t0 + Duration::from_secs(10), false).is_empty());
        let due = l.take_due(t0 + Duration::from_secs(61), false);
        assert_eq!(
            due.len(),
            1,
            "windows without counted calls need no summary"
        );
        assert_eq!((due[0].source.as_str(), due[0].count), ("10.0.0.1", 999));
        assert!(l.take_due(t0 + Duration::from_secs(200), true).is_empty());
        // A window reopened by a late call keeps what the old one counted.
        assert_eq!(l.note("10.0.0.3", &junk(), &entry, t0), Verdict::AuditNow);
        assert_eq!(l.note("10.0.0.3", &junk(), &entry, t0), Verdict::Counted);
        let late = t0 + Duration::from_secs(61);
        assert_eq!(l.note("10.0.0.3", &junk(), &entry, late), Verdict::AuditNow);
        let due = l.take_due(late, true);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 1);
    }

    #[test]
    fn an_address_is_locked_after_its_burst_and_unlocked_as_it_refills() {
        let l = ledger(60);
        let peer = FailureSource::Address("192.0.2.7".parse().expect("ip"));
        let t0 = Instant::now();
        assert!(l.peer_locked(&peer, t0).is_none());
        for _ in 0..3 {
            l.failed_authentication(&peer, t0);
        }
        let wait = l.peer_locked(&peer, t0).expect("locked");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(l.peer_locked(&peer, t0 + Duration::from_secs(1)).is_none());
        let other = FailureSource::Address("192.0.2.8".parse().expect("ip"));
        assert!(l.peer_locked(&other, t0).is_none());
        let token = FailureSource::TokenId("0011223344556677".into());
        assert!(l.peer_locked(&token, t0).is_none());
    }

    #[test]
    fn too_many_sources_share_one_window() {
        let l = ledger(60);
        let t0 = Instant::now();
        let entry = AuditEntry::default();
        for i in 0..MAX_WINDOWS {
            l.note(&format!("s{i}"), &junk(), &entry, t0);
        }
        assert_eq!(l.note("one-more", &junk(), &entry, t0), Verdict::AuditNow);
        assert_eq!(l.note("and-another", &junk(), &entry, t0), Verdict::Counted);
        let due = l.take_due(t0, true);
        assert!(due.iter().any(|s| s.source == "*" && s.count == 1));
    }
}
