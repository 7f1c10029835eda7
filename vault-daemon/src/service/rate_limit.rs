//! Per-operator token buckets on the calls that touch numbers — seal, unseal and lookup (each
//! item of a batch counts as one call) — with rates per role. Lookup is the one that matters
//! most: without a limit, a handler could ask "does this office hold this number?" for every
//! possible number. A call over the limit is refused RESOURCE_EXHAUSTED with the time after
//! which a retry will pass.
//!
//! The buckets live in memory: a restart refills them (at most one burst more).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::domain::operator::Role;

/// A call that draws from a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metered {
    /// A seal (or one item of a seal batch).
    Seal,
    /// An unseal (or one item of an unseal batch).
    Unseal,
    /// A lookup by number.
    Lookup,
}

impl Metered {
    fn index(self) -> usize {
        match self {
            Metered::Seal => 0,
            Metered::Unseal => 1,
            Metered::Lookup => 2,
        }
    }

    /// Name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Metered::Seal => "seal",
            Metered::Unseal => "unseal",
            Metered::Lookup => "lookup",
        }
    }
}

/// A sustained rate and the burst a bucket holds; a rate of 0 means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Calls per second, sustained.
    pub per_second: f64,
    /// Calls a full bucket allows at once.
    pub burst: f64,
}

/// One role's rates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RoleRates {
    /// Seals (and seal batch items).
    pub seal: Rate,
    /// Unseals (and unseal batch items).
    pub unseal: Rate,
    /// Lookups.
    pub lookup: Rate,
}

impl RoleRates {
    fn rate(&self, kind: Metered) -> Rate {
        match kind {
            Metered::Seal => self.seal,
            Metered::Unseal => self.unseal,
            Metered::Lookup => self.lookup,
        }
    }
}

/// The rates for the roles that touch numbers or ask whether one is held (the others never
/// call these).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RatePolicy {
    /// Handlers (people).
    pub handler: RoleRates,
    /// Services (payroll systems).
    pub service: RoleRates,
    /// Managers (a disclosure by number draws on their lookup rate).
    pub manager: RoleRates,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/s burst {}", self.per_second, self.burst)
    }
}

impl std::fmt::Display for RoleRates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seal {}, unseal {}, lookup {}",
            self.seal, self.unseal, self.lookup
        )
    }
}

/// As a log line says it: `handler (seal 5/s burst 50, ...); service (...)`.
impl std::fmt::Display for RatePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "handler ({}); service ({}); manager ({})",
            self.handler, self.service, self.manager
        )
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every operator.
#[derive(Default)]
pub struct RateLimiter {
    policy: RwLock<Arc<RatePolicy>>,
    buckets: Mutex<HashMap<String, [Option<Bucket>; 3]>>,
}

impl RateLimiter {
    /// A limiter enforcing `policy`.
    pub fn new(policy: RatePolicy) -> RateLimiter {
        RateLimiter {
            policy: RwLock::new(Arc::new(policy)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Puts `policy` in force (a reload); buckets keep their level.
    pub fn set_policy(&self, policy: RatePolicy) -> Arc<RatePolicy> {
        std::mem::replace(
            &mut *self.policy.write().unwrap_or_else(|e| e.into_inner()),
            Arc::new(policy),
        )
    }

    /// Takes one call of `kind` from `operator`'s bucket at `now`; when it is empty, returns
    /// how long until one call will pass.
    pub fn take(
        &self,
        operator: &str,
        role: Role,
        kind: Metered,
        now: Instant,
    ) -> Result<(), Duration> {
        self.draw(operator, role, kind, now, Draw::Take)
    }

    /// Whether one call of `kind` would pass now, taking nothing: for calls that learn only
    /// later whether they cost one (a seal that finds its number held), so that the refusal
    /// depends on earlier answers only and never on the number asked about.
    pub fn check(
        &self,
        operator: &str,
        role: Role,
        kind: Metered,
        now: Instant,
    ) -> Result<(), Duration> {
        self.draw(operator, role, kind, now, Draw::Check)
    }

    /// Takes one call of `kind` even when the bucket is empty (it goes into debt, at most one
    /// burst): the answer was already given, so it must be paid for by later calls.
    pub fn charge(&self, operator: &str, role: Role, kind: Metered, now: Instant) {
        let _ = self.draw(operator, role, kind, now, Draw::Charge);
    }

    fn draw(
        &self,
        operator: &str,
        role: Role,
        kind: Metered,
        now: Instant,
        draw: Draw,
    ) -> Result<(), Duration> {
        let rate = {
            let policy = self.policy.read().unwrap_or_else(|e| e.into_inner());
            match role {
                Role::Handler => policy.handler.rate(kind),
                Role::Service => policy.service.rate(kind),
                Role::Manager => policy.manager.rate(kind),
                _ => return Ok(()),
            }
        };
        if rate.per_second <= 0.0 {
            return Ok(());
        }
        let burst = rate.burst.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by reference first: the operator's id is copied once, not on every call.
        if !buckets.contains_key(operator) {
            buckets.insert(operator.to_owned(), [None; 3]);
        }
        let Some(slots) = buckets.get_mut(operator) else {
            return Ok(());
        };
        let bucket = slots[kind.index()].get_or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(burst);
        bucket.at = now;
        if draw == Draw::Charge {
            bucket.tokens = (bucket.tokens - 1.0).max(-burst);
            return Ok(());
        }
        if bucket.tokens >= 1.0 {
            if draw == Draw::Take {
                bucket.tokens -= 1.0;
            }
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / rate.per_second;
        Err(Duration::from_secs_f64(wait).max(Duration::from_millis(1)))
    }
}

/// What [`RateLimiter::draw`] does with the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Draw {
    /// Take one call, or refuse.
    Take,
    /// Refuse when one call would not pass; take nothing.
    Check,
    /// Take one call, into debt if need be.
    Charge,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: f64) -> RateLimiter {
        let rate = Rate { per_second, burst };
        RateLimiter::new(RatePolicy {
            handler: RoleRates {
                lookup: rate,
                ..RoleRates::default()
            },
            ..RatePolicy::default()
        })
    }

    #[test]
    fn a_charge_goes_into_debt_and_check_takes_nothing() {
        let l = limiter(1.0, 2.0);
        let t0 = Instant::now();
        assert!(l.check("h", Role::Handler, Metered::Lookup, t0).is_ok());
        assert!(l.check("h", Role::Handler, Metered::Lookup, t0).is_ok());
        for _ in 0..3 {
            l.charge("h", Role::Handler, Metered::Lookup, t0);
        }
        // Two taken from the burst, one owed: two seconds before a call passes again.
        assert!(l.check("h", Role::Handler, Metered::Lookup, t0).is_err());
        let later = t0 + Duration::from_millis(1500);
        assert!(l.take("h", Role::Handler, Metered::Lookup, later).is_err());
        let later = t0 + Duration::from_millis(2100);
        assert!(l.take("h", Role::Handler, Metered::Lookup, later).is_ok());
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let l = limiter(10.0, 5.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.take("h", Role::Handler, Metered::Lookup, t0).is_ok());
        }
        let wait = l
            .take("h", Role::Handler, Metered::Lookup, t0)
            .expect_err("empty");
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // A tenth of a second later one more passes, then none.
        let later = t0 + Duration::from_millis(100);
        assert!(l.take("h", Role::Handler, Metered::Lookup, later).is_ok());
        assert!(l.take("h", Role::Handler, Metered::Lookup, later).is_err());
        // Operators and kinds have their own buckets; other roles and unset rates are free.
        assert!(
            l.take("other", Role::Handler, Metered::Lookup, later)
                .is_ok()
        );
        assert!(l.take("h", Role::Handler, Metered::Unseal, later).is_ok());
        assert!(l.take("h", Role::Service, Metered::Lookup, later).is_ok());
        assert!(l.take("h", Role::Manager, Metered::Lookup, later).is_ok());
    }

    #[test]
    fn a_full_bucket_holds_no_more_than_its_burst() {
        let l = limiter(1000.0, 3.0);
        let t0 = Instant::now();
        assert!(l.take("h", Role::Handler, Metered::Lookup, t0).is_ok());
        let much_later = t0 + Duration::from_secs(3600);
        let passed = (0..10)
            .filter(|_| {
                l.take("h", Role::Handler, Metered::Lookup, much_later)
                    .is_ok()
            })
            .count();
        assert_eq!(passed, 3);
    }
}
