//! Key destruction: an admin asks, a second admin approves, a waiting period gives time to
//! cancel, then the key is destroyed in the backend — so every record still sealed under it,
//! in the store or in any backup of it, can no longer be opened (crypto-shredding). A version
//! that still protects a record, or the active version, is never destroyed.

use ring::rand::SecureRandom;

use crate::audit::entry::{AuditEntry, EntryOutcome};
use crate::domain::operator::KeyState;
use crate::domain::policy::Action;
use crate::domain::rotation::{DestructionRequest, DestructionState};
use crate::domain::text;
use crate::error::{Error, Result};
use crate::keys::{KeyError, KeyRef};
use crate::service::{Locker, RequestContext};
use crate::store::mutation::{DestructionChange, Expected, Mutation, MutationOutcome};

fn outcome_request(outcome: MutationOutcome) -> Result<DestructionRequest> {
    match outcome {
        MutationOutcome::Destruction(request) => Ok(*request),
        other => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
    }
}

impl Locker {
    /// Asks for a key version's destruction; refused while it is active or protects a record.
    pub async fn request_key_destruction(
        &self,
        ctx: &RequestContext,
        tenant: &str,
        version: u32,
    ) -> Result<DestructionRequest> {
        let (caller, mut entry) = self.begin(ctx, Action::KeyDestroyRequest).await?;
        let body = async {
            text::identifier("tenant", tenant).map_err(Error::InvalidArgument)?;
            entry.tenant = tenant.to_owned();
            let found = self
                .store
                .view()?
                .tenants()
                .get(tenant)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no tenant {tenant}")))?;
            let keys = found.keys_of(version).ok_or_else(|| {
                Error::NotFound(format!("tenant {tenant} has no key version {version}"))
            })?;
            match keys.state {
                KeyState::Active => {
                    return Err(Error::FailedPrecondition(format!(
                        "key version {version} is active: rotate first"
                    )));
                }
                KeyState::Destroyed => {
                    return Err(Error::FailedPrecondition(format!(
                        "key version {version} is already destroyed"
                    )));
                }
                KeyState::DecryptOnly => {}
            }
            let referenced = self
                .count_by_version(tenant)
                .await?
                .get(&version)
                .copied()
                .unwrap_or(0);
            if referenced > 0 {
                return Err(Error::FailedPrecondition(format!(
                    "key version {version} still protects {referenced} records; wait for the rewrap to finish"
                )));
            }
            let pending = self.pending_corrections_under(tenant, version).await?;
            if pending > 0 {
                return Err(Error::FailedPrecondition(format!(
                    "key version {version} protects {pending} pending corrections; decide them first"
                )));
            }
            let mut id = [0u8; 8];
            self.rng
                .fill(&mut id)
                .map_err(|_| Error::Internal("random generator failed".into()))?;
            let request = DestructionRequest {
                id: hex::encode(id),
                tenant: tenant.to_owned(),
                version,
                requested_by: caller.operator.id.clone(),
                requested_at_ms: self.now_ms(),
                state: DestructionState::Pending,
            };
            entry.allow(format!(
                "destruction of key version {version} requested ({})",
                request.id
            ));
            Ok((
                (),
                Mutation::ChangeDestruction(DestructionChange::Create(request)),
            ))
        }
        .await;
        self.finish(entry, body)
            .await
            .and_then(|(_, o)| outcome_request(o))
    }

    /// A second admin approves; the key is destroyed after the waiting period.
    pub async fn approve_key_destruction(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<DestructionRequest> {
        let (caller, mut entry) = self.begin(ctx, Action::KeyDestroyApprove).await?;
        let body = text::hex_id("request id", id)
            .map_err(Error::InvalidArgument)
            .map(|()| {
                let now_ms = self.now_ms();
                let not_before_ms = now_ms.saturating_add(self.destroy_wait_ms);
                entry.allow(format!(
                    "destruction request {id} approved; not before {not_before_ms} ms"
                ));
                (
                    (),
                    Mutation::ChangeDestruction(DestructionChange::Approve {
                        id: id.to_owned(),
                        by: caller.operator.id.clone(),
                        now_ms,
                        not_before_ms,
                        request_ttl_ms: self.request_ttl_ms,
                    }),
                )
            });
        self.finish(entry, body)
            .await
            .and_then(|(_, o)| outcome_request(o))
    }

    /// Cancels a pending or approved request.
    pub async fn cancel_key_destruction(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<DestructionRequest> {
        let (caller, mut entry) = self.begin(ctx, Action::KeyDestroyCancel).await?;
        let body = text::hex_id("request id", id)
            .map_err(Error::InvalidArgument)
            .map(|()| {
                entry.allow(format!("destruction request {id} cancelled"));
                (
                    (),
                    Mutation::ChangeDestruction(DestructionChange::Cancel {
                        id: id.to_owned(),
                        by: caller.operator.id.clone(),
                        now_ms: self.now_ms(),
                    }),
                )
            });
        self.finish(entry, body)
            .await
            .and_then(|(_, o)| outcome_request(o))
    }

    /// Every destruction request.
    pub async fn list_key_destructions(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<DestructionRequest>> {
        let (_caller, entry) = self.begin(ctx, Action::KeyDestroyList).await?;
        let body: Result<_> = async { Ok(self.store.view()?.destructions().list().await?) }.await;
        self.finish(entry, body.map(|d| (d, Mutation::None)))
            .await
            .map(|(d, _)| d)
    }

    /// Destroys the keys of approved requests whose waiting period is over.
    pub async fn destroy_due_keys(&self) -> Result<()> {
        let now = self.now_ms();
        let due: Vec<DestructionRequest> = self
            .store
            .view()?
            .destructions()
            .list()
            .await?
            .into_iter()
            .filter(|r| matches!(r.state, DestructionState::Approved { not_before_ms, .. } if not_before_ms <= now))
            .collect();
        for request in due {
            let mut entry = AuditEntry {
                operator: "system".into(),
                role: "system".into(),
                action: Action::KeyDestroy.as_str().into(),
                tenant: request.tenant.clone(),
                ..AuditEntry::default()
            };
            let referenced = self
                .count_by_version(&request.tenant)
                .await?
                .get(&request.version)
                .copied()
                .unwrap_or(0)
                + self
                    .pending_corrections_under(&request.tenant, request.version)
                    .await?;
            if referenced > 0 {
                // Cannot happen through the API (the version is decrypt-only); refuse anyway.
                entry.fail(&Error::FailedPrecondition(format!(
                    "key version {} protects {referenced} records again; destruction request {} cancelled",
                    request.version, request.id
                )));
                self.writer
                    .submit(
                        Mutation::ChangeDestruction(DestructionChange::Cancel {
                            id: request.id.clone(),
                            by: "system".into(),
                            now_ms: now,
                        }),
                        entry,
                    )
                    .await?;
                continue;
            }
            let Some(keys) = self
                .store
                .view()?
                .tenants()
                .get(&request.tenant)
                .await?
                .and_then(|t| t.keys_of(request.version).cloned())
            else {
                continue;
            };
            // Nothing undoes a destroyed key: the request must be the one the log names as
            // approved (a DBA who put back an approval since cancelled is refused DATA_LOSS
            // here, before the backend is asked).
            let confirmed = self
                .writer
                .submit_unaudited(Mutation::Expect(vec![Expected::Destruction(Box::new(
                    request.clone(),
                ))]))
                .await;
            match confirmed {
                Ok(_) => {}
                Err(Error::Aborted(message)) => {
                    tracing::info!(request = %request.id, %message, "key destruction deferred");
                    continue;
                }
                Err(error) => return Err(error),
            }
            match self.keys.destroy_key(KeyRef(keys.kek.clone())).await {
                Ok(()) | Err(KeyError::Destroyed) => {}
                Err(error) => {
                    tracing::warn!(%error, request = %request.id, "key destruction failed; will retry");
                    continue;
                }
            }
            // The MAC key only computes index entries, none of which remain for this version;
            // a backend that cannot destroy it (the TPM keeps MAC keys under the primary) says so.
            let mac_note = match self.keys.destroy_key(KeyRef(keys.mac.clone())).await {
                Ok(()) | Err(KeyError::Destroyed) => String::new(),
                Err(error) => format!("; MAC key not destroyed: {error}"),
            };
            entry.allow(format!(
                "key version {} destroyed (request {}){mac_note}",
                request.version, request.id
            ));
            self.writer
                .submit(
                    Mutation::FinishDestruction {
                        id: request.id.clone(),
                        now_ms: self.now_ms(),
                    },
                    entry,
                )
                .await?;
        }
        Ok(())
    }
}
