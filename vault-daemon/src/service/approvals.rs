//! Dual control: changes that could give someone the power to unseal are held as change
//! requests until other admins approve them (the rules are in `domain::approval`, their
//! transactional application in `store::approvals`). Listing, approving, denying, and asking
//! for a different quorum.

use ring::rand::SecureRandom;
use secrecy::SecretString;

use super::invalid;
use crate::audit::entry::{AuditEntry, EntryOutcome};
use crate::domain::approval::{ChangeRequest, ChangeState, GatedChange, MAX_QUORUM};
use crate::domain::policy::Action;
use crate::domain::text;
use crate::domain::token;
use crate::error::{Error, Reason, Result};
use crate::service::{Caller, Locker, RequestContext};
use crate::store::approvals::{ApprovalStep, check_approvers_exist};
use crate::store::mutation::{Mutation, MutationOutcome};

/// Default time a change request stays approvable: three days.
pub const DEFAULT_REQUEST_TTL_MS: i64 = 3 * 24 * 3600 * 1000;

/// The result of a call that may be held for approval.
#[derive(Debug)]
pub struct Gated<T> {
    /// What the call returns: the object as it will be once approved (or as it is).
    pub value: T,
    /// The request holding the change, when it awaits approval.
    pub request: Option<ChangeRequest>,
}

/// The change requests and the quorum in force.
pub struct ChangeRequestList {
    /// Requests, by id.
    pub requests: Vec<ChangeRequest>,
    /// Approvals a new request needs.
    pub quorum: u32,
}

/// An approval's result.
#[derive(Debug)]
pub struct Approved {
    /// The request as it is now.
    pub request: ChangeRequest,
    /// When this approval applied a token for another operator: the token's second share, for
    /// the approver to hand to the operator's holder (shown once; never stored).
    pub token_share: Option<SecretString>,
}

/// The request a change outcome carries.
pub(super) fn outcome_request(outcome: MutationOutcome) -> Result<ChangeRequest> {
    match outcome {
        MutationOutcome::ChangeRequest(request) => Ok(*request),
        other => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
    }
}

impl Locker {
    /// The open change request whose change `wanted` picks, if any: for messages that name
    /// what waits for approval (it decides nothing; a store that cannot be read gives `None`).
    pub(super) async fn open_request_for(
        &self,
        wanted: impl Fn(&GatedChange) -> bool,
    ) -> Option<ChangeRequest> {
        let now = self.now_ms();
        let requests = self
            .store
            .view()
            .ok()?
            .change_requests()
            .list()
            .await
            .ok()?;
        requests
            .into_iter()
            .find(|request| request.open_at(now) && wanted(&request.change))
    }

    /// Why operator `id` cannot be found: its creation waits for approval (naming the request),
    /// or there is no such operator.
    pub(super) async fn missing_operator(&self, id: &str) -> Error {
        let pending = self
            .open_request_for(
                |change| matches!(change, GatedChange::CreateOperator(operator) if operator.id == id),
            )
            .await;
        match pending {
            Some(request) => Error::FailedPrecondition(format!(
                "operator {id} is not created yet: its creation waits for approval (request {}); grant or issue a token once it is approved",
                request.id
            ))
            .because(Reason::PendingApproval),
            None => Error::NotFound(format!("no operator {id}")),
        }
    }

    /// The quorum in force (read outside a transaction: for messages and early refusals;
    /// the writer fixes the real value into the request).
    async fn current_quorum(&self) -> Result<u32> {
        Ok(crate::domain::approval::quorum_in_force(
            &self.store.view()?.change_requests().list().await?,
        ))
    }

    /// Builds the mutation that holds `change` for approval, and says so in `entry`.
    pub(super) async fn hold_for_approval(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        change: GatedChange,
    ) -> Result<Mutation> {
        let now_ms = self.now_ms();
        let quorum = self.current_quorum().await?;
        check_approvers_exist(
            &self.store.view()?.operators().list().await?,
            &caller.operator.id,
            now_ms,
            quorum,
        )?;
        let mut id = [0u8; 8];
        self.rng
            .fill(&mut id)
            .map_err(|_| Error::Internal("random generator failed".into()))?;
        let request = ChangeRequest {
            id: hex::encode(id),
            requested_by: caller.operator.id.clone(),
            requested_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(self.request_ttl_ms),
            approvals: Vec::new(),
            required: quorum,
            state: ChangeState::Pending,
            change,
        };
        entry.allow(format!(
            "change request {} ({}) awaits {} approval(s) by other admins",
            request.id,
            request.change.summary(&request.requested_by),
            quorum
        ));
        Ok(Mutation::Approval(ApprovalStep::Submit(Box::new(request))))
    }

    /// Commits a held change and returns `value` with its request.
    pub(super) async fn finish_held<T>(
        &self,
        entry: super::CallEntry,
        body: Result<(T, Mutation)>,
    ) -> Result<Gated<T>> {
        let (value, outcome) = self.finish(entry, body).await?;
        Ok(Gated {
            value,
            request: Some(outcome_request(outcome)?),
        })
    }

    /// Every change request (or only those still pending), with the quorum in force.
    pub async fn list_change_requests(
        &self,
        ctx: &RequestContext,
        pending_only: bool,
    ) -> Result<ChangeRequestList> {
        let (_caller, entry) = self.begin(ctx, Action::ChangeList).await?;
        let now_ms = self.now_ms();
        let body = async {
            let requests = self.store.view()?.change_requests().list().await?;
            let quorum = crate::domain::approval::quorum_in_force(&requests);
            let requests = requests
                .into_iter()
                .filter(|r| !pending_only || r.open_at(now_ms))
                .collect();
            Ok((ChangeRequestList { requests, quorum }, Mutation::None))
        }
        .await;
        self.finish(entry, body).await.map(|(list, _)| list)
    }

    /// Approves a change request; the change is applied when this approval completes the
    /// quorum. Refused for the requester, an admin made after the request, a second approval.
    /// When it applies a token for another operator, the approver receives that token's
    /// second share (the requester holds the first).
    pub async fn approve_change(&self, ctx: &RequestContext, id: &str) -> Result<Approved> {
        let (caller, mut entry) = self.begin(ctx, Action::ChangeApprove).await?;
        let mut second_share = None;
        let body = async {
            text::hex_id("request id", id).map_err(Error::InvalidArgument)?;
            let request = self
                .store
                .view()?
                .change_requests()
                .get(id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no change request {id}")))?;
            let count = request.approvals.len() + 1;
            let applies = count as u64 >= u64::from(request.required);
            if let GatedChange::IssueSplitToken(split) = &request.change {
                let share = token::draw_share(&self.rng, &split.token.id, 2)
                    .map_err(|_| Error::Internal("random generator failed".into()))?;
                second_share = Some(share);
            }
            entry.allow(format!(
                "change request {id} ({}) by {} approved: approval {count} of {}{}",
                request.change.summary(&request.requested_by),
                request.requested_by,
                request.required,
                if applies { "; applied" } else { "" }
            ));
            Ok((
                (),
                Mutation::Approval(ApprovalStep::Approve {
                    id: id.to_owned(),
                    by: caller.operator.id.clone(),
                    now_ms: self.now_ms(),
                    second_share_hash: second_share.as_ref().map(|share| share.hash),
                }),
            ))
        }
        .await;
        let request = self
            .finish(entry, body)
            .await
            .and_then(|(_, o)| outcome_request(o))?;
        // The share is handed out only by the approval that applied the token.
        let applied = matches!(request.state, ChangeState::Applied { .. });
        Ok(Approved {
            token_share: second_share.filter(|_| applied).map(|share| share.text),
            request,
        })
    }

    /// Denies a pending change request (any admin; the requester withdraws it this way).
    pub async fn deny_change(
        &self,
        ctx: &RequestContext,
        id: &str,
        reason: &str,
    ) -> Result<ChangeRequest> {
        let (caller, mut entry) = self.begin(ctx, Action::ChangeDeny).await?;
        let body = async {
            text::hex_id("request id", id).map_err(Error::InvalidArgument)?;
            text::free_text("reason", reason, 500, true).map_err(invalid)?;
            entry.allow(format!("change request {id} denied: {reason}"));
            Ok((
                (),
                Mutation::Approval(ApprovalStep::Deny {
                    id: id.to_owned(),
                    by: caller.operator.id.clone(),
                    reason: reason.to_owned(),
                    now_ms: self.now_ms(),
                }),
            ))
        }
        .await;
        self.finish(entry, body)
            .await
            .and_then(|(_, o)| outcome_request(o))
    }

    /// Asks for a new quorum (itself a change request, approved under the current quorum).
    pub async fn request_quorum(&self, ctx: &RequestContext, quorum: u32) -> Result<ChangeRequest> {
        let (caller, mut entry) = self.begin(ctx, Action::QuorumChange).await?;
        let body = async {
            if !(1..=MAX_QUORUM).contains(&quorum) {
                return Err(invalid(format!(
                    "approvals must be between 1 and {MAX_QUORUM}: dual control needs at least one approver besides the requester"
                )));
            }
            let mutation =
                self.hold_for_approval(&caller, &mut entry, GatedChange::SetQuorum(quorum)).await?;
            Ok(((), mutation))
        }
        .await;
        self.finish_held(entry, body).await.and_then(|gated| {
            gated
                .request
                .ok_or_else(|| Error::Internal("no request".into()))
        })
    }
}
