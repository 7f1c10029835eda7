//! The locker's operations on domain types, with no transport types: authentication,
//! authorisation, the operations themselves, and the one rule that every call — allowed,
//! denied or failed — is in the audit log before it answers: its own entry, or, for a refusal
//! that releases nothing and identifies nobody (failed authentication, a lockout, a rate limit),
//! the first of its source, reason and window on its own and the others as one counted entry
//! (`refusals`), so that junk traffic cannot cost an fsync per call.
//!
//! Each operation runs as `begin` (authenticate and check the role; on refusal, audit and
//! return) → the operation's body (which fills in the audit entry and returns a value and a
//! mutation) → `finish` (commit the mutation with the entry; only then return the value).

mod admin;
mod alerts;
mod approvals;
mod audit_log;
mod auth;
mod bench;
pub mod bootstrap;
mod carry_out;
mod corrections;
mod destruction;
mod disclosure;
mod disposal;
mod input;
mod lifecycle;
pub mod log_watch;
pub mod monitor;
pub mod rate_limit;
mod record_purposes;
mod records;
pub mod refusals;
mod reports;
pub mod rotation;
mod scan;
mod store_figures;
pub mod token_expiry;

use std::sync::Arc;

use ring::rand::SystemRandom;
use secrecy::SecretString;

use crate::audit::checkpointer::{CheckpointPolicy, Checkpointer};
use crate::audit::entry::AuditEntry;
use crate::audit::entry::EntryOutcome;
use crate::audit::writer::AuditWriter;
use crate::clock::Clock;
use crate::domain::operator::Operator;
use crate::domain::policy::Action;
use crate::domain::purpose::PurposeCatalogue;
use crate::domain::token;
use crate::error::{Error, Result};
use crate::keys::KeyService;
use crate::store::Store;
use crate::store::mutation::{Mutation, MutationOutcome};

pub use crate::domain::record::RecordCounts;
pub use admin::{NewOperator, NewTenant, TokenRequest};
pub use approvals::{ChangeRequestList, DEFAULT_REQUEST_TTL_MS, Gated};
pub use audit_log::{AuditPages, BackupChunks, ExportFilter, StoreVerification, verify_store};
pub use carry_out::{CarryOut, CarryOutFormat, MAX_CARRY_OUT_COUNT};
pub use disclosure::{DisclosureRequest, HandlersShown, Subject};
pub use disposal::{DisposalReport, run_disposal_schedule};
pub use record_purposes::SealDifferences;
pub use records::{SealRequest, SealResult, Unsealed};
pub use reports::{IncidentReport, LedgerAccess, LedgerEntry, UsageRow};

/// Who is calling, as the transport saw it.
pub struct RequestContext {
    /// The bearer token, if one was sent.
    pub token: Option<SecretString>,
    /// Peer socket address, if known.
    pub peer_addr: Option<String>,
    /// Lowercase hex SHA-256 of the client certificate (DER), with mutual TLS.
    pub cert_fingerprint: Option<String>,
    /// Request id for correlating logs and audit entries.
    pub request_id: String,
    /// For the items of one batch stream: the authentication they share.
    pub session: Option<Arc<SessionAuth>>,
}

/// How long a batch stream reuses its authentication (the token and the operator with its
/// grants) before reading them again: a token revoked or expired, an operator disabled or a
/// grant revoked mid-batch takes effect within this time. Every item is still authorised on
/// its own (role, tenant, grant, the record's purposes and state) against that operator.
pub const SESSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The caller of a batch stream, authenticated once and re-checked every [`SESSION_RECHECK`].
/// Looking the token and operator up for each of 100,000 items was a fifth of the work.
#[derive(Default)]
pub struct SessionAuth {
    checked: std::sync::Mutex<Option<(Arc<Caller>, std::time::Instant)>>,
}

impl SessionAuth {
    fn fresh(&self) -> Option<Arc<Caller>> {
        let checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        checked
            .as_ref()
            .filter(|(_, at)| at.elapsed() < SESSION_RECHECK)
            .map(|(caller, _)| Arc::clone(caller))
    }

    fn remember(&self, caller: &Arc<Caller>) {
        *self.checked.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Arc::clone(caller), std::time::Instant::now()));
    }

    fn forget(&self) {
        *self.checked.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl RequestContext {
    /// The caller's IP address (the port changes with every connection).
    fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.peer_addr
            .as_deref()
            .and_then(|addr| addr.parse::<std::net::SocketAddr>().ok())
            .map(|addr| addr.ip())
    }

    fn peer_description(&self) -> String {
        match (&self.peer_addr, &self.cert_fingerprint) {
            (Some(addr), Some(fp)) => format!("{addr} cert:{}", &fp[..fp.len().min(16)]),
            (Some(addr), None) => addr.clone(),
            (None, Some(fp)) => format!("cert:{}", &fp[..fp.len().min(16)]),
            (None, None) => String::new(),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The operator the token belongs to (shared with the authority view it was read from).
    pub operator: Arc<Operator>,
    /// The token's public id.
    pub token_id: String,
    /// The authority it was authenticated on, checked again when its entry is committed.
    pub decided: crate::audit::writer::Decided,
}

/// A call's audit entry, with the authority its caller was authenticated on: committed by
/// [`Locker::finish`], which has the writer check that authority again where the entry lands
/// in the log. Reads and writes as the entry itself.
#[derive(Debug, Clone)]
pub struct CallEntry {
    entry: AuditEntry,
    decided: Option<crate::audit::writer::Decided>,
}

impl std::ops::Deref for CallEntry {
    type Target = AuditEntry;

    fn deref(&self) -> &AuditEntry {
        &self.entry
    }
}

impl std::ops::DerefMut for CallEntry {
    fn deref_mut(&mut self) -> &mut AuditEntry {
        &mut self.entry
    }
}

impl From<CallEntry> for AuditEntry {
    fn from(call: CallEntry) -> AuditEntry {
        call.entry
    }
}

/// Bad input: INVALID_ARGUMENT with a message saying what is wrong.
fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

/// Runs `work`, a long synchronous read of the store (a scan of the whole audit log), without
/// holding up the other calls this runtime worker serves: on a multi-threaded runtime the
/// worker hands its tasks on first; elsewhere it runs inline.
fn off_the_worker<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Refuses unless `caller` is granted every one of `purposes` on `tenant`.
fn require_grants<'a>(
    caller: &Caller,
    tenant: &str,
    purposes: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    match purposes
        .into_iter()
        .find(|p| !caller.operator.has_grant(tenant, p))
    {
        None => Ok(()),
        Some(missing) => Err(Error::PermissionDenied(format!(
            "operator {} is not granted purpose {missing} on tenant {tenant}",
            caller.operator.id
        ))
        .because(crate::error::Reason::PurposeNotGranted)),
    }
}

/// Refuses a caller outside `tenant`: handlers, services and managers reach the tenants they
/// hold grants on; admins and auditors (who never unseal) see every tenant.
fn require_scope(caller: &Caller, tenant: &str) -> Result<()> {
    use crate::domain::operator::Role;
    if matches!(caller.operator.role, Role::Admin | Role::Auditor)
        || caller.operator.has_tenant(tenant)
    {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "operator {} has no grant on tenant {tenant}",
            caller.operator.id
        )))
    }
}

/// Token lifetime policy, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy {
    /// Lifetime when the issuer does not say.
    pub default_ttl_ms: i64,
    /// Longest lifetime.
    pub max_ttl_ms: i64,
}

/// Everything the operations need.
pub struct Locker {
    checkpointer: Checkpointer,
    store: Arc<dyn Store>,
    writer: AuditWriter,
    keys: KeyService,
    purposes: PurposeCatalogue,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    token_policy: TokenPolicy,
    destroy_wait_ms: i64,
    /// How long a dual-control change request stays approvable.
    request_ttl_ms: i64,
    /// How far back a handler or service may date a departure.
    retire_backdate_days: u32,
    /// Time for retirement, disposal and correction dates (a test clock under `--dev`).
    lifecycle_clock: Arc<dyn Clock>,
    /// Held from reading to committing an epoch key, so a month never gets two.
    epoch_lock: tokio::sync::Mutex<()>,
    /// One disposal run at a time: the schedule and an admin's `dispose-due` would otherwise
    /// race for the same records.
    disposal_lock: tokio::sync::Mutex<()>,
    /// ログ監視 of unseals.
    monitor: monitor::Monitor,
    /// The store is shared by several daemons: the cluster's log monitor
    /// ([`log_watch`]) feeds the monitor from the log instead of each call.
    cluster_log_watch: bool,
    /// Per-operator buckets on seal, unseal and lookup.
    rate_limiter: rate_limit::RateLimiter,
    /// Aggregated audit of refused junk traffic, and per-address failed-auth buckets.
    refusals: refusals::RefusalLedger,
    /// Months per disposal epoch (one key per tenant and epoch).
    epoch_months: u32,
}

impl Locker {
    /// Assembles the service.
    pub fn new(
        store: Arc<dyn Store>,
        writer: AuditWriter,
        keys: KeyService,
        purposes: PurposeCatalogue,
        clock: Arc<dyn Clock>,
        token_policy: TokenPolicy,
        checkpoint_policy: CheckpointPolicy,
    ) -> Locker {
        Locker::with_destroy_wait(
            store,
            writer,
            keys,
            purposes,
            clock,
            token_policy,
            checkpoint_policy,
            7 * 24 * 3600 * 1000,
        )
    }

    /// Like [`Locker::new`], with the waiting period between approval and destruction of a key.
    #[allow(clippy::too_many_arguments)]
    pub fn with_destroy_wait(
        store: Arc<dyn Store>,
        writer: AuditWriter,
        keys: KeyService,
        purposes: PurposeCatalogue,
        clock: Arc<dyn Clock>,
        token_policy: TokenPolicy,
        checkpoint_policy: CheckpointPolicy,
        destroy_wait_ms: i64,
    ) -> Locker {
        Locker {
            checkpointer: Checkpointer::new(
                Arc::clone(&store),
                writer.clone(),
                keys.clone(),
                Arc::clone(&clock),
                checkpoint_policy,
            ),
            store,
            writer,
            keys,
            purposes,
            lifecycle_clock: Arc::clone(&clock),
            clock,
            rng: SystemRandom::new(),
            token_policy,
            destroy_wait_ms,
            request_ttl_ms: approvals::DEFAULT_REQUEST_TTL_MS,
            retire_backdate_days: 31,
            epoch_lock: tokio::sync::Mutex::new(()),
            disposal_lock: tokio::sync::Mutex::new(()),
            monitor: monitor::Monitor::default(),
            cluster_log_watch: false,
            rate_limiter: rate_limit::RateLimiter::default(),
            refusals: refusals::RefusalLedger::new(refusals::RefusalPolicy::default()),
            epoch_months: 1,
        }
    }

    /// Makes each disposal-epoch key cover `months` months (1, 2, 3, 4, 6 or 12; others are
    /// treated as 1). Longer epochs mean fewer live keys (a TPM holds few) but a key destroyed
    /// later after its first disposals.
    pub fn with_epoch_months(mut self, months: u32) -> Locker {
        self.epoch_months = if crate::domain::lifecycle::valid_epoch_months(months) {
            months
        } else {
            1
        };
        self
    }

    /// Keeps dual-control change requests (and key destruction requests) approvable for
    /// `ttl_ms` after they are made.
    pub fn with_request_ttl(mut self, ttl_ms: i64) -> Locker {
        self.request_ttl_ms = ttl_ms.max(1);
        self
    }

    /// Lets handlers and services date a departure at most `days` in the past (managers may
    /// go further).
    pub fn with_retire_backdate_days(mut self, days: u32) -> Locker {
        self.retire_backdate_days = days;
        self
    }

    /// Limits seal, unseal and lookup rates per operator as `policy` says.
    pub fn with_rate_limits(mut self, policy: rate_limit::RatePolicy) -> Locker {
        self.rate_limiter = rate_limit::RateLimiter::new(policy);
        self
    }

    /// Puts new rate limits in force (a reload); returns the ones they replaced.
    pub fn set_rate_limits(
        &self,
        policy: rate_limit::RatePolicy,
    ) -> std::sync::Arc<rate_limit::RatePolicy> {
        self.rate_limiter.set_policy(policy)
    }

    /// Aggregates refused junk traffic and limits failed authentications as `policy` says.
    pub fn with_refusal_policy(mut self, policy: refusals::RefusalPolicy) -> Locker {
        self.refusals = refusals::RefusalLedger::new(policy);
        self
    }

    /// Marks the store as shared by several daemons: monitoring runs from the log
    /// ([`log_watch::run_log_watch`], which the daemon then runs).
    pub fn with_shared_store(mut self, shared: bool) -> Locker {
        self.cluster_log_watch = shared;
        self
    }

    /// The store the locker runs on.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether the store is shared by several daemons.
    pub fn shares_store(&self) -> bool {
        self.cluster_log_watch
    }

    /// Enforces `policy` on unseals (ログ監視).
    pub fn with_monitoring(mut self, policy: monitor::MonitorPolicy) -> Locker {
        self.monitor = monitor::Monitor::new(policy);
        self
    }

    /// Puts a new monitoring policy in force (a reload); returns the one it replaced.
    pub fn set_monitoring(
        &self,
        policy: monitor::MonitorPolicy,
    ) -> std::sync::Arc<monitor::MonitorPolicy> {
        self.monitor.set_policy(policy)
    }

    /// Uses `clock` for lifecycle dates (retirement, disposal, correction) instead of the
    /// clock that stamps tokens and audit entries.
    pub fn with_lifecycle_clock(mut self, clock: Arc<dyn Clock>) -> Locker {
        self.lifecycle_clock = clock;
        self
    }

    /// The purpose catalogue in force.
    pub fn purposes(&self) -> &PurposeCatalogue {
        &self.purposes
    }

    /// The audit checkpointer (for its background task and the final checkpoint at shutdown).
    pub fn checkpointer(&self) -> &Checkpointer {
        &self.checkpointer
    }

    /// The key service (for health checks).
    pub fn keys(&self) -> &KeyService {
        &self.keys
    }

    /// Authenticates the caller and checks its role may call `action`. A refusal is audited
    /// here, and the error returned is the one to answer with.
    async fn begin(
        &self,
        ctx: &RequestContext,
        action: Action,
    ) -> Result<(Arc<Caller>, CallEntry)> {
        let mut entry = AuditEntry {
            action: action.as_str().into(),
            request_id: ctx.request_id.clone(),
            peer: ctx.peer_description(),
            ..AuditEntry::default()
        };
        // A valid token is checked first and always passes: only failures are limited, so a
        // flood of junk from a shared address never locks out the valid clients behind it.
        let checked = self
            .authenticate_session(ctx, &mut entry)
            .await
            .and_then(|caller| {
                entry.operator = caller.operator.id.clone();
                entry.token_id = caller.token_id.clone();
                entry.role = caller.operator.role.as_str().into();
                if action.permits(caller.operator.role) {
                    Ok(caller)
                } else {
                    Err(Error::PermissionDenied(format!(
                        "role {} may not call {}",
                        caller.operator.role.as_str(),
                        action.as_str()
                    )))
                }
            });
        match checked {
            Ok(caller) => {
                let decided = Some(caller.decided.clone());
                Ok((caller, CallEntry { entry, decided }))
            }
            Err(error) if matches!(error.kind(), Error::Unauthenticated(_)) => {
                Err(self.refuse_authentication(ctx, entry, error).await)
            }
            Err(error) => Err(self.refuse(entry, error).await),
        }
    }

    /// How long the failures of `sources` still lock them out, if they do.
    fn locked_for(
        &self,
        sources: &[refusals::FailureSource],
        now: std::time::Instant,
    ) -> Option<std::time::Duration> {
        sources
            .iter()
            .filter_map(|s| self.refusals.peer_locked(s, now))
            .max()
    }

    /// Whether the caller's address or presented token id is locked out by its failures now.
    pub(super) fn failures_locked(&self, ctx: &RequestContext) -> bool {
        self.locked_for(&failure_sources(ctx), std::time::Instant::now())
            .is_some()
    }

    /// Refuses a call that failed to authenticate: RESOURCE_EXHAUSTED while its address or
    /// its presented token id has used up its failures, else UNAUTHENTICATED, counting one
    /// failure against each. Audited aggregated per address.
    async fn refuse_authentication(
        &self,
        ctx: &RequestContext,
        entry: AuditEntry,
        error: Error,
    ) -> Error {
        let now = std::time::Instant::now();
        let peer_ip = ctx.peer_ip();
        let sources = failure_sources(ctx);
        let source = peer_ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        if let Some(wait) = self.locked_for(&sources, now) {
            // The message stays the same for every refusal of this kind (they are aggregated
            // by it); the delay goes in the RetryInfo details.
            let error = Error::RateLimited {
                message: "too many failed authentications from this address or with this token id; retry later (see RetryInfo)"
                    .into(),
                retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            }
            .because(crate::error::Reason::TooManyFailedAuthentications);
            return self.refuse_aggregated(&source, entry, error).await;
        }
        for failed in &sources {
            self.refusals.failed_authentication(failed, now);
        }
        self.refuse_aggregated(&source, entry, error).await
    }

    /// Takes one call of `kind` from the caller's bucket; a refusal is audited aggregated
    /// (per operator, kind and window) and raises an alert once an hour.
    async fn meter(
        &self,
        caller: &Caller,
        kind: rate_limit::Metered,
        entry: CallEntry,
    ) -> Result<CallEntry> {
        let operator = &caller.operator;
        let drawn =
            self.rate_limiter
                .take(&operator.id, operator.role, kind, std::time::Instant::now());
        self.metered(caller, kind, entry, drawn).await
    }

    /// Refuses the call when the caller's lookup budget is spent, taking nothing: a seal pays
    /// for a lookup only when it finds its number held ([`Locker::charge_lookup`]), but is
    /// refused on an empty budget whatever its number, so the refusal answers nothing.
    async fn meter_existence(&self, caller: &Caller, entry: CallEntry) -> Result<CallEntry> {
        let operator = &caller.operator;
        let kind = rate_limit::Metered::Lookup;
        let drawn =
            self.rate_limiter
                .check(&operator.id, operator.role, kind, std::time::Instant::now());
        self.metered(caller, kind, entry, drawn).await
    }

    /// Charges the caller one lookup for an answer that said a number is held.
    fn charge_lookup(&self, caller: &Caller) {
        let operator = &caller.operator;
        self.rate_limiter.charge(
            &operator.id,
            operator.role,
            rate_limit::Metered::Lookup,
            std::time::Instant::now(),
        );
    }

    /// The refusal of a call its bucket did not let pass (`drawn`), audited and alerted.
    async fn metered(
        &self,
        caller: &Caller,
        kind: rate_limit::Metered,
        entry: CallEntry,
        drawn: std::result::Result<(), std::time::Duration>,
    ) -> Result<CallEntry> {
        let operator = &caller.operator;
        let Err(wait) = drawn else {
            return Ok(entry);
        };
        let error = Error::RateLimited {
            message: format!(
                "operator {} is over its {} rate limit; retry later (see RetryInfo)",
                operator.id,
                kind.as_str(),
            ),
            retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        if let Some(reason) = self
            .monitor
            .observe_rate_limited(&operator.id, kind, self.now_ms())
        {
            self.commit_alerts(caller, vec![reason]).await?;
        }
        let source = format!("{}/{}", operator.id, kind.as_str());
        Err(self.refuse_aggregated(&source, entry.into(), error).await)
    }

    /// Refuses a call whose audit is aggregated: the first of its window commits its own entry,
    /// the rest are counted into the window's summary ([`Locker::flush_refusals`]).
    async fn refuse_aggregated(&self, source: &str, mut entry: AuditEntry, error: Error) -> Error {
        crate::metrics::metrics().refused(error.reason());
        entry.fail(&error);
        match self
            .refusals
            .note(source, &error, &entry, std::time::Instant::now())
        {
            refusals::Verdict::Counted => error,
            refusals::Verdict::AuditNow => match self.writer.submit(Mutation::None, entry).await {
                Ok(_) => error,
                Err(audit_error) => audit_error,
            },
        }
    }

    /// Commits the summaries of the refusal windows that are over (all of them with `all`, at
    /// shutdown). A summary that cannot be committed is kept for the next flush.
    pub async fn flush_refusals(&self, all: bool) -> Result<()> {
        let mut due = self
            .refusals
            .take_due(std::time::Instant::now(), all)
            .into_iter();
        while let Some(summary) = due.next() {
            let mut entry = AuditEntry {
                operator: summary.last.operator.clone(),
                role: summary.last.role.clone(),
                token_id: summary.last.token_id.clone(),
                tenant: summary.last.tenant.clone(),
                action: Action::RefusalSummary.as_str().into(),
                peer: summary.source.clone(),
                ..AuditEntry::default()
            };
            entry.fail(&summary.error);
            entry.reason = format!(
                "{} further calls refused within {} s (last: {}): {}",
                summary.count,
                summary.span.as_secs().max(1),
                summary.last.action,
                summary.error.audit_reason()
            );
            if let Err(error) = self.writer.submit(Mutation::None, entry).await {
                self.refusals
                    .restore(std::iter::once(summary).chain(due).collect());
                return Err(error);
            }
        }
        Ok(())
    }

    /// Records a call that the transport cut short (the server's deadline, a panic) and so
    /// never wrote its own entry; returns the error to answer with (UNAVAILABLE if even this
    /// entry cannot be committed).
    pub async fn record_interrupted(
        &self,
        action: String,
        request_id: String,
        peer: String,
        error: Error,
    ) -> Error {
        let entry = AuditEntry {
            action,
            request_id,
            peer,
            ..AuditEntry::default()
        };
        self.refuse(entry, error).await
    }

    /// Records a call the codec refused (oversized, or not decodable) before it reached the
    /// locker: audited aggregated per address and window, like other junk traffic.
    pub async fn record_malformed(
        &self,
        action: String,
        request_id: String,
        peer: String,
        error: Error,
    ) {
        let entry = AuditEntry {
            action,
            request_id,
            peer: peer.clone(),
            ..AuditEntry::default()
        };
        let source = peer
            .parse::<std::net::SocketAddr>()
            .map_or(peer, |addr| addr.ip().to_string());
        let _ = self.refuse_aggregated(&source, entry, error).await;
    }

    /// Commits the entry of a call that ends in `error`; returns the error to answer with
    /// (the audit failure itself if the entry could not be committed).
    async fn refuse(&self, entry: impl Into<AuditEntry>, error: Error) -> Error {
        let mut entry = entry.into();
        entry.fail(&error);
        match self.writer.submit(Mutation::None, entry).await {
            Ok(_) => error,
            Err(audit_error) => audit_error,
        }
    }

    /// Ends a call: commits its mutation and audit entry, then hands back the value. A value
    /// whose entry cannot be committed, or whose caller's authority no longer holds where the
    /// entry lands in the log, is dropped (and zeroised, for numbers), never returned.
    async fn finish<T>(
        &self,
        entry: CallEntry,
        body: Result<(T, Mutation)>,
    ) -> Result<(T, MutationOutcome)> {
        let CallEntry { mut entry, decided } = entry;
        match body {
            Ok((value, mutation)) => {
                if entry.outcome.is_empty() {
                    entry.allow("");
                }
                let outcome = match decided {
                    Some(decided) => self.writer.submit_decided(mutation, entry, decided).await?,
                    None => self.writer.submit(mutation, entry).await?,
                };
                Ok((value, outcome))
            }
            Err(error) => Err(self.refuse(entry, error).await),
        }
    }

    /// [`Locker::authenticate`], reusing a batch stream's recent result; a refusal is never
    /// reused, so every refused item is checked (and audited) on its own.
    async fn authenticate_session(
        &self,
        ctx: &RequestContext,
        entry: &mut AuditEntry,
    ) -> Result<Arc<Caller>> {
        if let Some(caller) = ctx.session.as_ref().and_then(|s| s.fresh()) {
            return Ok(caller);
        }
        match self.authenticate(ctx, entry).await {
            Ok(caller) => {
                let caller = Arc::new(caller);
                if let Some(session) = &ctx.session {
                    session.remember(&caller);
                }
                Ok(caller)
            }
            Err(error) => {
                if let Some(session) = &ctx.session {
                    session.forget();
                }
                Err(error)
            }
        }
    }

    /// Milliseconds since the Unix epoch, by the clock that stamps tokens and audit entries.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// What a failed authentication counts against: the caller's address and the token id it
/// presented.
fn failure_sources(ctx: &RequestContext) -> Vec<refusals::FailureSource> {
    let mut sources = Vec::with_capacity(2);
    if let Some(ip) = ctx.peer_ip() {
        sources.push(refusals::FailureSource::Address(ip));
    }
    if let Some(id) = ctx.token.as_ref().and_then(|t| token::token_id(t).ok()) {
        sources.push(refusals::FailureSource::TokenId(id));
    }
    sources
}
