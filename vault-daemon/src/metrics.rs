//! Prometheus metrics (prometheus-client), served on their own listener (`[metrics] listen`,
//! `--metrics-listen`): calls per RPC and status code with their latency, the audit writer's
//! commits (latency, batch size, queue depth), key-backend operations (latency, errors),
//! health, alerts and refused calls, records per state and rewrap progress. Labels are RPC
//! names, status codes, operation, rule and state names and tenant ids only: never a number, a
//! token, a subject or an operator id.

use std::sync::OnceLock;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// An RPC and the status code it answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The method, e.g. `Unseal`.
    pub rpc: String,
    /// The gRPC status code name, e.g. `OK`, `PERMISSION_DENIED`.
    pub code: String,
}

/// An RPC.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// The method.
    pub rpc: String,
}

/// A key-backend operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// `wrap`, `unwrap`, `mac`, `sign`, ...
    pub op: &'static str,
}

/// A monitoring rule.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// `unseals_per_hour`, `rate_limited`, ...
    pub rule: String,
}

/// Why a call was refused without its own audit entry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The stable reason (`RATE_LIMITED`, `TOKEN_UNKNOWN`, ...).
    pub reason: String,
}

/// A record lifecycle state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `active`, `suspended`, `retired`, `disposed`.
    pub state: &'static str,
}

/// An operator role (never an operator id: those may name people).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    /// `admin`, `manager`, `handler`, `service`, `auditor`.
    pub role: &'static str,
}

/// The build that runs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The release (`CARGO_PKG_VERSION`).
    pub version: &'static str,
}

/// A tenant (an id an admin chose, such as `acme`; never a person's).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// Tenant id.
    pub tenant: String,
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    /// Calls answered, per RPC and code.
    pub calls: Family<CallLabels, Counter>,
    /// Call latency per RPC, in seconds.
    pub call_seconds: Family<RpcLabels, Histogram>,
    /// Audit commits' latency (one transaction, fsync included), in seconds.
    pub commit_seconds: Histogram,
    /// Units per audit commit.
    pub commit_batch: Histogram,
    /// Units waiting for the audit writer.
    pub writer_queue: Gauge<i64, AtomicI64>,
    /// Key-backend operation latency, per operation.
    pub backend_seconds: Family<BackendLabels, Histogram>,
    /// Key-backend operations that failed, per operation.
    pub backend_errors: Family<BackendLabels, Counter>,
    /// 1 while the locker reports SERVING, else 0.
    pub serving: Gauge<i64, AtomicI64>,
    /// Times this daemon found the store's audit log not the one it verified (cut back,
    /// rewritten, rolled back, or an entry without a valid MAC).
    pub audit_log_breaks: Counter,
    /// Alerts raised, per rule.
    pub alerts: Family<RuleLabels, Counter>,
    /// Calls refused by rate limits, lockouts or as junk, per reason.
    pub refused: Family<RefusalLabels, Counter>,
    /// Records per lifecycle state (refreshed every minute).
    pub records: Family<StateLabels, Gauge<i64, AtomicI64>>,
    /// Records rewrapped so far by each tenant's current or last rewrap job.
    pub rewrap_done: Family<TenantLabels, Gauge<i64, AtomicI64>>,
    /// Records that job has to rewrap.
    pub rewrap_total: Family<TenantLabels, Gauge<i64, AtomicI64>>,
    /// 1 while a tenant's rewrap job runs.
    pub rewrap_running: Family<TenantLabels, Gauge<i64, AtomicI64>>,
    /// Cluster store: how long a group commit waited for the chain-head lock.
    pub head_lock_wait: Histogram,
    /// Cluster store: how long a group commit held the chain-head lock (lock to commit).
    pub head_lock_hold: Histogram,
    /// 1, labelled with the release that runs.
    pub build_info: Family<BuildLabels, Gauge<i64, AtomicI64>>,
    /// Per role, the seconds until the first enabled operator's last usable token expires.
    pub token_expiry: Family<RoleLabels, Gauge<i64, AtomicI64>>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~13 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("locker");
        let calls = Family::<CallLabels, Counter>::default();
        let call_seconds =
            Family::<RpcLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let commit_seconds = latency_histogram();
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        let writer_queue = Gauge::default();
        let audit_log_breaks = Counter::default();
        let backend_seconds = Family::<BackendLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        let backend_errors = Family::<BackendLabels, Counter>::default();
        let serving = Gauge::default();
        let alerts = Family::<RuleLabels, Counter>::default();
        let refused = Family::<RefusalLabels, Counter>::default();
        let records = Family::<StateLabels, Gauge<i64, AtomicI64>>::default();
        let rewrap_done = Family::<TenantLabels, Gauge<i64, AtomicI64>>::default();
        let rewrap_total = Family::<TenantLabels, Gauge<i64, AtomicI64>>::default();
        let rewrap_running = Family::<TenantLabels, Gauge<i64, AtomicI64>>::default();
        let head_lock_wait = latency_histogram();
        let head_lock_hold = latency_histogram();
        let build_info = Family::<BuildLabels, Gauge<i64, AtomicI64>>::default();
        let token_expiry = Family::<RoleLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "token_expiry_seconds",
            "Per role, seconds until the first enabled operator is left without a usable token (refreshed every minute): alert on it before a service stops",
            token_expiry.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "1, labelled with the release of the daemon that runs",
            build_info.clone(),
        );
        registry.register(
            "calls",
            "Calls answered, by RPC and status code",
            calls.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Call latency by RPC",
            call_seconds.clone(),
        );
        registry.register(
            "audit_commit_duration_seconds",
            "Audit commit latency (one transaction, fsync included)",
            commit_seconds.clone(),
        );
        registry.register(
            "audit_commit_batch_size",
            "Units (calls with their audit entries) per audit commit",
            commit_batch.clone(),
        );
        registry.register(
            "audit_writer_queue_depth",
            "Units waiting for the audit writer",
            writer_queue.clone(),
        );
        registry.register(
            "audit_log_breaks",
            "Times the store's audit log was found not to be the one this daemon verified",
            audit_log_breaks.clone(),
        );
        registry.register(
            "key_backend_duration_seconds",
            "Key-backend operation latency by operation",
            backend_seconds.clone(),
        );
        registry.register(
            "key_backend_errors",
            "Key-backend operations that failed, by operation",
            backend_errors.clone(),
        );
        registry.register(
            "serving",
            "1 while the locker reports SERVING (key backend and audit log available)",
            serving.clone(),
        );
        registry.register(
            "alerts",
            "Log-monitor alerts raised, by rule",
            alerts.clone(),
        );
        registry.register(
            "refused_calls",
            "Calls refused by rate limits, lockouts or as junk, by reason",
            refused.clone(),
        );
        registry.register(
            "records",
            "Records by lifecycle state (refreshed every minute)",
            records.clone(),
        );
        registry.register(
            "rewrap_records_done",
            "Records rewrapped by the tenant's current or last key rotation",
            rewrap_done.clone(),
        );
        registry.register(
            "rewrap_records_total",
            "Records the tenant's current or last key rotation has to rewrap",
            rewrap_total.clone(),
        );
        registry.register(
            "rewrap_running",
            "1 while the tenant's key rotation is rewrapping records",
            rewrap_running.clone(),
        );
        registry.register(
            "chain_head_lock_wait_seconds",
            "PostgreSQL store: time a group commit waited for the chain-head lock",
            head_lock_wait.clone(),
        );
        registry.register(
            "chain_head_lock_hold_seconds",
            "PostgreSQL store: time a group commit held the chain-head lock (lock to commit)",
            head_lock_hold.clone(),
        );
        Metrics {
            registry,
            calls,
            call_seconds,
            commit_seconds,
            commit_batch,
            writer_queue,
            audit_log_breaks,
            backend_seconds,
            backend_errors,
            serving,
            alerts,
            refused,
            records,
            rewrap_done,
            rewrap_total,
            rewrap_running,
            head_lock_wait,
            head_lock_hold,
            build_info,
            token_expiry,
        }
    }

    /// Makes the counters of these key-backend operations and alert rules exist at 0 from the
    /// start, so a rate or an alerting rule over them sees a series before the first event.
    pub fn known_from_start(&self, backend_ops: &[&'static str], alert_rules: &[&str]) {
        for &op in backend_ops {
            let _created = self.backend_errors.get_or_create(&BackendLabels { op });
        }
        for rule in alert_rules {
            let _created = self.alerts.get_or_create(&RuleLabels {
                rule: (*rule).to_owned(),
            });
        }
    }

    /// The metrics in the OpenMetrics text format, the process's own `process_*` after the
    /// locker's.
    pub fn render(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        let process = crate::process_metrics::registry(crate::process_metrics::read());
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &process);
        let _ = encode_eof(&mut out);
        out
    }

    /// Counts one answered call.
    pub fn call(&self, rpc: &str, code: &str, took: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                rpc: rpc.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.call_seconds
            .get_or_create(&RpcLabels {
                rpc: rpc.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records one key-backend operation.
    pub fn backend(&self, op: &'static str, took: Duration, failed: bool) {
        let labels = BackendLabels { op };
        self.backend_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.backend_errors.get_or_create(&labels).inc();
        }
    }

    /// Counts an alert of `rule` (the text before the first colon of its reason).
    pub fn alert(&self, reason: &str) {
        let rule = reason
            .split(':')
            .next()
            .unwrap_or("other")
            .trim()
            .to_owned();
        self.alerts.get_or_create(&RuleLabels { rule }).inc();
    }

    /// Counts a call refused for `reason`.
    pub fn refused(&self, reason: &str) {
        self.refused
            .get_or_create(&RefusalLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }
}

impl Metrics {
    /// Sets the records-per-state gauges.
    pub fn set_records(&self, counts: &crate::domain::record::RecordCounts) {
        for (state, count) in [
            ("active", counts.active),
            ("suspended", counts.suspended),
            ("retired", counts.retired),
            ("disposed", counts.disposed),
        ] {
            self.records
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Sets the rewrap gauges of every tenant with a job.
    pub fn set_rewraps(&self, jobs: &[crate::domain::rotation::RewrapJob]) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for job in jobs {
            let labels = TenantLabels {
                tenant: job.tenant.clone(),
            };
            self.rewrap_done.get_or_create(&labels).set(gauge(job.done));
            self.rewrap_total
                .get_or_create(&labels)
                .set(gauge(job.total));
            self.rewrap_running
                .get_or_create(&labels)
                .set(i64::from(job.running()));
        }
    }
}

/// The daemon's metrics (one registry per process: the daemon runs one locker).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Serves `GET /metrics` on `listener` until the task is aborted; with `bearer`, only to
/// requests that present it.
pub async fn serve<L>(listener: L, bearer: Option<zeroize::Zeroizing<String>>)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    use axum::routing::get;
    let mut router = axum::Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                metrics().render(),
            )
        }),
    );
    if let Some(token) = bearer {
        let token = std::sync::Arc::new(token);
        router = router.layer(axum::middleware::from_fn(move |request, next| {
            crate::metrics_listener::require_bearer(std::sync::Arc::clone(&token), request, next)
        }));
    }
    if let Err(error) = axum::serve(listener, router).await {
        tracing::error!(%error, "metrics listener stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_families_with_their_labels() {
        let m = Metrics::new();
        m.call("Unseal", "OK", Duration::from_millis(3));
        m.backend("unwrap", Duration::from_micros(40), true);
        m.alert("unseals_per_hour: operator h unsealed more than 5 numbers within an hour");
        m.refused("RATE_LIMITED");
        let text = m.render();
        assert!(
            text.contains(r#"locker_calls_total{rpc="Unseal",code="OK"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"locker_key_backend_errors_total{op="unwrap"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"locker_alerts_total{rule="unseals_per_hour"} 1"#),
            "{text}"
        );
        assert!(!text.contains("operator h"), "only the rule is a label");
    }

    #[test]
    fn the_build_and_the_known_counters_are_there_before_any_event() {
        let m = Metrics::new();
        m.known_from_start(&["wrap", "unwrap"], &["rate_limited"]);
        let text = m.render();
        for expected in [
            format!(
                r#"locker_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
            r#"locker_key_backend_errors_total{op="unwrap"} 0"#.to_owned(),
            r#"locker_alerts_total{rule="rate_limited"} 0"#.to_owned(),
        ] {
            assert!(text.contains(&expected), "{expected} missing from\n{text}");
        }
    }
}
