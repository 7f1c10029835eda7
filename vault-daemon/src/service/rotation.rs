//! Key rotation: a new tenant key version for new seals at once, and the background job that
//! rewraps existing records — in batches, throttled, resumable after a restart — recomputing the
//! blind index under the new MAC key in the same step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::entry::{AuditEntry, EntryOutcome};
use crate::domain::number::IndividualNumber;
use crate::domain::operator::{KeyState, Tenant, TenantKeys};
use crate::domain::policy::Action;
use crate::domain::record::{Record, RecordStatus};
use crate::domain::rotation::RewrapJob;
use crate::domain::text;
use crate::error::{Error, Result};
use crate::keys::KeyUse;
use crate::keys::envelope;
use crate::service::{Locker, RequestContext};
use crate::store::lease::{self, DutyLease, LeaseState};
use crate::store::mutation::Mutation;

/// A key version of a tenant, with how many records it protects.
#[derive(Debug, Clone)]
pub struct KeyVersionStatus {
    /// Version.
    pub version: u32,
    /// State.
    pub state: KeyState,
    /// Active records sealed under it.
    pub records: u64,
    /// When an approved destruction will happen (ms since the Unix epoch).
    pub destroy_not_before_ms: Option<i64>,
}

/// A tenant's keys and rotation.
#[derive(Debug, Clone)]
pub struct TenantKeyStatus {
    /// Tenant id.
    pub tenant: String,
    /// Every version.
    pub versions: Vec<KeyVersionStatus>,
    /// The latest rewrap job.
    pub job: Option<RewrapJob>,
}

/// Tuning of the rewrap job.
#[derive(Debug, Clone, Copy)]
pub struct RewrapPolicy {
    /// Records rewrapped per transaction.
    pub batch: usize,
    /// Pause between batches, so rotation never starves the calls being served.
    pub pause: Duration,
}

impl Locker {
    /// How many of `tenant`'s records each key version wraps (every row checked against the
    /// record view: a key version is destroyed on this count, so rows hidden by the store's
    /// administrator must not make it zero).
    pub(super) async fn count_by_version(&self, tenant: &str) -> Result<BTreeMap<u32, u64>> {
        let mut counts = BTreeMap::new();
        let mut scan = super::scan::RecordScan::default();
        scan.read_all(self, |record| {
            // Epoch-wrapped (retired) records are under their month's key, not a version.
            if record.tenant == tenant
                && let Some(sealed) = &record.sealed
                && sealed.format != envelope::FORMAT_EPOCH
            {
                *counts.entry(sealed.key_version).or_insert(0) += 1;
            }
        })?;
        scan.settle(self).await?;
        Ok(counts)
    }

    /// Creates a new key version for `tenant` in the backend; new seals use it at once and a
    /// background job rewraps the existing records.
    pub async fn rotate_tenant_keys(
        &self,
        ctx: &RequestContext,
        tenant: &str,
    ) -> Result<RewrapJob> {
        let (caller, mut entry) = self.begin(ctx, Action::KeyRotate).await?;
        let body = async {
            text::identifier("tenant", tenant).map_err(Error::InvalidArgument)?;
            entry.tenant = tenant.to_owned();
            let view = self.store.view()?;
            let current = view
                .tenants()
                .get(tenant)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no tenant {tenant}")))?;
            if view.jobs().get(tenant).await?.is_some_and(|j| j.running()) {
                return Err(Error::FailedPrecondition(format!(
                    "tenant {tenant} is still being rewrapped; rotate again when the running job has finished"
                )));
            }
            let version = current.keys.last().map_or(1, |k| k.version + 1);
            let kek = self.keys.create_key(KeyUse::Wrap, format!("kek/{tenant}/{version}")).await?;
            let mac = self.keys.create_key(KeyUse::Mac, format!("mac/{tenant}/{version}")).await?;
            let total = self
                .count_by_version(tenant)
                .await?
                .into_iter()
                .filter(|(v, _)| *v < version)
                .map(|(_, n)| n)
                .sum();
            let job = RewrapJob {
                tenant: tenant.to_owned(),
                target_version: version,
                cursor: None,
                total,
                done: 0,
                started_at_ms: self.now_ms(),
                finished_at_ms: None,
                requested_by: caller.operator.id.clone(),
                counted: false,
            };
            entry.allow(format!("key version {version} active; {total} records to rewrap"));
            let keys = TenantKeys {
                version,
                kek: kek.0,
                mac: mac.0,
                state: KeyState::Active,
            };
            Ok((
                job.clone(),
                Mutation::RotateTenantKeys {
                    tenant: tenant.to_owned(),
                    keys,
                    job,
                },
            ))
        }
        .await;
        self.finish(entry, body).await.map(|(job, _)| job)
    }

    /// Key versions (with record counts) and rotation progress, of one tenant or all.
    pub async fn key_status(
        &self,
        ctx: &RequestContext,
        tenant: &str,
    ) -> Result<Vec<TenantKeyStatus>> {
        let (_caller, entry) = self.begin(ctx, Action::KeyStatus).await?;
        let body = async {
            let view = self.store.view()?;
            let tenants: Vec<Tenant> = if tenant.is_empty() {
                view.tenants().list().await?
            } else {
                vec![
                    view.tenants()
                        .get(tenant)
                        .await?
                        .ok_or_else(|| Error::NotFound(format!("no tenant {tenant}")))?,
                ]
            };
            let destructions = view.destructions().list().await?;
            let mut out = Vec::new();
            for t in tenants {
                let counts = self.count_by_version(&t.id).await?;
                let scheduled = |version: u32| {
                    destructions.iter().find_map(|r| match r.state {
                        crate::domain::rotation::DestructionState::Approved {
                            not_before_ms,
                            ..
                        } if r.tenant == t.id && r.version == version => Some(not_before_ms),
                        _ => None,
                    })
                };
                out.push(TenantKeyStatus {
                    versions: t
                        .keys
                        .iter()
                        .map(|k| KeyVersionStatus {
                            version: k.version,
                            state: k.state,
                            records: counts.get(&k.version).copied().unwrap_or(0),
                            destroy_not_before_ms: scheduled(k.version),
                        })
                        .collect(),
                    job: view.jobs().get(&t.id).await?,
                    tenant: t.id,
                });
            }
            Ok((out, Mutation::None))
        }
        .await;
        self.finish(entry, body).await.map(|(s, _)| s)
    }

    /// Rewraps one batch of one running job. Returns whether a job made progress.
    pub async fn rewrap_step(&self, batch: usize) -> Result<bool> {
        let Some(job) = self
            .store
            .view()?
            .jobs()
            .list()
            .await?
            .into_iter()
            .find(RewrapJob::running)
        else {
            return Ok(false);
        };
        // The tenant as the log names it (a row put back from before the rotation decides
        // nothing: refused as tampering, like a call's).
        let tenant = self
            .load_tenant(&job.tenant)
            .await
            .map_err(|error| match error {
                Error::NotFound(_) => {
                    Error::Internal(format!("rewrap job for unknown tenant {}", job.tenant))
                }
                other => other,
            })?;
        let target = tenant.keys_of(job.target_version).ok_or_else(|| {
            Error::Internal(format!(
                "tenant {} has no key version {}",
                tenant.id, job.target_version
            ))
        })?;
        // The rotation's estimate missed seals that ran between its count and its commit; now
        // that the new version is active, the records under older versions only decrease.
        let total = if job.counted {
            None
        } else {
            Some(
                self.count_by_version(&tenant.id)
                    .await?
                    .into_iter()
                    .filter(|(v, _)| *v < job.target_version)
                    .map(|(_, n)| n)
                    .sum::<u64>(),
            )
        };
        let mut cursor = job.cursor.clone();
        let mut rewrapped = Vec::new();
        let mut finished = false;
        while rewrapped.len() < batch {
            let page = self.store.reader()?.records_after(cursor.as_ref(), batch)?;
            for record in &page {
                cursor = Some(record.handle.clone());
                if let Some(pair) = self.rewrapped(&tenant, target, record).await? {
                    rewrapped.push(pair);
                    if rewrapped.len() == batch {
                        break;
                    }
                }
            }
            if page.len() < batch && rewrapped.len() < batch {
                finished = true;
                break;
            }
        }
        let count = rewrapped.len();
        let mut entry = AuditEntry {
            operator: "system".into(),
            role: "system".into(),
            action: Action::KeyRewrap.as_str().into(),
            tenant: tenant.id.clone(),
            ..AuditEntry::default()
        };
        entry.allow(format!(
            "{count} records rewrapped to key version {}{}",
            job.target_version,
            if finished { "; rotation complete" } else { "" }
        ));
        self.writer
            .submit(
                Mutation::RewrapBatch {
                    tenant: tenant.id.clone(),
                    records: rewrapped,
                    from: job.cursor.clone(),
                    cursor,
                    finished,
                    now_ms: self.now_ms(),
                    total,
                },
                entry,
            )
            .await?;
        Ok(true)
    }

    /// The record resealed under `target` (new DEK, new index), or `None` if it needs no work.
    async fn rewrapped(
        &self,
        tenant: &Tenant,
        target: &TenantKeys,
        record: &Record,
    ) -> Result<Option<(crate::domain::record::SealedNumber, Record)>> {
        let Some(sealed) = &record.sealed else {
            return Ok(None);
        };
        if record.tenant == tenant.id
            && matches!(record.status, RecordStatus::Retired(_))
            && sealed.format == envelope::FORMAT_EPOCH
        {
            // A retired record stays under its disposal-epoch key; only its blind index moves
            // to the new MAC key, so lookups keep working once the old version is destroyed.
            let number = self.reopen(tenant, record, sealed).await?;
            let index = envelope::blind_index(&self.keys, target, &number).await?;
            if record.blind_index == Some(index) {
                return Ok(None);
            }
            let mut updated = record.clone();
            updated.blind_index = Some(index);
            return Ok(Some((sealed.clone(), updated)));
        }
        // Suspended records keep their number, so they move to the new key too: otherwise
        // they would pin the old version and block its destruction forever.
        let usable = matches!(
            record.status,
            RecordStatus::Active | RecordStatus::Suspended(_)
        );
        if record.tenant != tenant.id || !usable || sealed.key_version >= target.version {
            return Ok(None);
        }
        let old = tenant.keys_of(sealed.key_version).ok_or_else(|| {
            Error::Integrity(format!(
                "record {} names an unknown key version",
                record.handle
            ))
        })?;
        let digits = envelope::open(
            &self.keys,
            old,
            &record.handle,
            &record.tenant,
            &record.purposes,
            sealed,
            &record.status,
        )
        .await?;
        let number = IndividualNumber::parse(&digits).map_err(|_| {
            Error::Integrity(format!(
                "record {} does not hold a valid number",
                record.handle
            ))
        })?;
        let resealed = envelope::seal(
            &self.keys,
            &self.rng,
            target,
            &record.handle,
            &record.tenant,
            &record.purposes,
            &number,
            &record.status,
        )
        .await?;
        let index = envelope::blind_index(&self.keys, target, &number).await?;
        let mut updated = record.clone();
        updated.sealed = Some(resealed);
        updated.blind_index = Some(index);
        Ok(Some((sealed.clone(), updated)))
    }
}

/// Runs rewrap jobs until aborted: a batch, a pause, again. Failures (backend down) are logged
/// and retried; the job's progress is in the store, so nothing is lost.
pub async fn run_rewrap(locker: Arc<Locker>, policy: RewrapPolicy) {
    let lease = DutyLease::new(Arc::clone(&locker.store), lease::REWRAP);
    loop {
        // One daemon of a cluster rewraps and destroys due keys; the job's progress is in the
        // store, so whoever holds the lease goes on where the last holder stopped.
        if lease.check() == LeaseState::Elsewhere {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            continue;
        }
        match locker.rewrap_step(policy.batch.max(1)).await {
            Ok(true) => tokio::time::sleep(policy.pause).await,
            Ok(false) => {
                if let Err(error) = locker.destroy_due_keys().await {
                    tracing::warn!(%error, "key destruction check failed; will retry");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => {
                tracing::warn!(%error, "rewrap batch failed; will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
