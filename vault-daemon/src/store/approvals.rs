//! Applying dual-control requests inside the writer's transaction. Every rule is checked
//! against the transaction's own state — who is an admin and since when, the quorum in force,
//! the request's approvals — so two approvals racing, or an admin created meanwhile, cannot
//! slip past it; the change itself is applied in the same transaction as the approval that
//! completes the quorum, and its audit entry.

use crate::domain::approval::{
    Approval, ChangeRequest, ChangeState, GatedChange, approver_refusal, quorum_in_force,
};
use crate::domain::operator::{Operator, Role};
use crate::error::{Error, Reason};
use crate::store::mutation::{Mutation, MutationOutcome, OperatorChange};
use crate::store::{StoreError, StoreWrite};

type Applied = Result<Result<MutationOutcome, Error>, StoreError>;

/// A step of a change request.
#[derive(Debug, Clone)]
pub enum ApprovalStep {
    /// Store a new request; the quorum in force is fixed into it here.
    Submit(Box<ChangeRequest>),
    /// An admin approves; the change is applied when the quorum is reached.
    Approve {
        /// Request id.
        id: String,
        /// The approving admin.
        by: String,
        /// Now.
        now_ms: i64,
        /// For a split token: the hash of share 2, drawn for this approver, used if this
        /// approval applies the request (the approver then receives the share).
        second_share_hash: Option<[u8; 32]>,
    },
    /// An admin refuses (or the requester withdraws) a request still pending.
    Deny {
        /// Request id.
        id: String,
        /// Who.
        by: String,
        /// Why.
        reason: String,
        /// Now.
        now_ms: i64,
    },
}

/// The quorum in force in this transaction.
pub fn quorum(txn: &dyn StoreWrite) -> Result<u32, StoreError> {
    Ok(quorum_in_force(&txn.change_requests()?))
}

/// Refuses when fewer than `required` admins could approve a request made now by `requester`:
/// such a request could never be applied, so the requester should hear it at once.
pub fn check_approvers_exist(
    operators: &[Operator],
    requester: &str,
    now_ms: i64,
    required: u32,
) -> Result<(), Error> {
    let able = operators
        .iter()
        .filter(|op| approver_refusal(op, requester, now_ms, &[]).is_none())
        .count();
    if (able as u64) < u64::from(required) {
        return Err(Error::FailedPrecondition(format!(
            "this change needs {required} approvals by other admins but only {able} could give them; \
             the first admins are made at the store's creation (see docs/SECURITY.md, dual control)"
        )));
    }
    Ok(())
}

/// Why admin `id` may not be disabled (`None`: it may): the enabled admins left must still be
/// able to approve a request — the requester plus the quorum in force. Otherwise one admin
/// could disable the others and leave changes that only break-glass can make.
pub fn admins_left_refusal(txn: &dyn StoreWrite, id: &str) -> Result<Option<Error>, StoreError> {
    let quorum = quorum(txn)?;
    let left = txn
        .operators()?
        .iter()
        .filter(|op| op.role == Role::Admin && !op.disabled && op.id != id)
        .count() as u64;
    let needed = u64::from(quorum) + 1;
    Ok((left < needed).then(|| {
        Error::FailedPrecondition(format!(
            "disabling admin {id} would leave {left} enabled admin(s), but dual control needs \
             {needed} (a requester and {quorum} approver(s)); enable or create another admin \
             first, or use break-glass (--recover-admin)"
        ))
        .because(Reason::TooFewAdmins)
    }))
}

/// Applies one step.
pub fn apply(txn: &mut dyn StoreWrite, step: ApprovalStep) -> Applied {
    match step {
        ApprovalStep::Submit(request) => submit(txn, *request),
        ApprovalStep::Approve {
            id,
            by,
            now_ms,
            second_share_hash,
        } => approve(txn, &id, &by, now_ms, second_share_hash),
        ApprovalStep::Deny {
            id,
            by,
            reason,
            now_ms,
        } => deny(txn, &id, by, reason, now_ms),
    }
}

fn submit(txn: &mut dyn StoreWrite, mut request: ChangeRequest) -> Applied {
    if txn.change_request(&request.id)?.is_some() {
        return Ok(Err(Error::Internal("change request id collision".into())));
    }
    request.required = quorum(txn)?;
    if let Err(error) = check_approvers_exist(
        &txn.operators()?,
        &request.requested_by,
        request.requested_at_ms,
        request.required,
    ) {
        return Ok(Err(error));
    }
    txn.put_change_request(&request)?;
    Ok(Ok(MutationOutcome::ChangeRequest(Box::new(request))))
}

fn approve(
    txn: &mut dyn StoreWrite,
    id: &str,
    by: &str,
    now_ms: i64,
    second_share_hash: Option<[u8; 32]>,
) -> Applied {
    let Some(mut request) = txn.change_request(id)? else {
        return Ok(Err(Error::NotFound(format!("no change request {id}"))));
    };
    if request.state != ChangeState::Pending {
        return Ok(Err(Error::FailedPrecondition(format!(
            "change request {id} is {} already",
            request.state_name(now_ms)
        ))));
    }
    if !request.open_at(now_ms) {
        return Ok(Err(Error::FailedPrecondition(format!(
            "change request {id} expired; ask again"
        ))));
    }
    let Some(approver) = txn.operator(by)? else {
        return Ok(Err(Error::PermissionDenied(format!("no operator {by}"))));
    };
    if let Some(refusal) = approver_refusal(
        &approver,
        &request.requested_by,
        request.requested_at_ms,
        &request.approvals,
    ) {
        return Ok(Err(Error::PermissionDenied(refusal)));
    }
    request.approvals.push(Approval {
        by: by.to_owned(),
        at_ms: now_ms,
    });
    if request.approvals.len() as u64 >= u64::from(request.required) {
        if let Err(error) = apply_change(txn, &request.change, now_ms, second_share_hash)? {
            return Ok(Err(error));
        }
        request.state = ChangeState::Applied { at_ms: now_ms };
    }
    txn.put_change_request(&request)?;
    Ok(Ok(MutationOutcome::ChangeRequest(Box::new(request))))
}

/// Applies an approved change; a refusal (the operator exists already, the tenant is gone)
/// has written nothing, and the request stays pending so that it can be denied.
fn apply_change(
    txn: &mut dyn StoreWrite,
    change: &GatedChange,
    now_ms: i64,
    second_share_hash: Option<[u8; 32]>,
) -> Applied {
    let mutation = match change.clone() {
        GatedChange::CreateOperator(mut operator) => {
            // "Admin since" starts now, not at the request: an admin created by a request
            // cannot approve the requests made while it was waiting.
            operator.created_at_ms = now_ms;
            Mutation::CreateOperator(operator)
        }
        GatedChange::EnableOperator(id) => Mutation::ChangeOperator {
            id,
            change: OperatorChange::Enable,
        },
        GatedChange::Grant {
            operator_id,
            grants,
        } => Mutation::ChangeOperator {
            id: operator_id,
            change: OperatorChange::Grant(grants),
        },
        GatedChange::IssueToken(_) => {
            // Asked for before split knowledge: its requester holds the whole secret.
            return Ok(Err(Error::FailedPrecondition(
                "this token request was made before tokens for other operators were split in two shares, so its requester holds the whole secret; deny it and ask again".into(),
            )));
        }
        GatedChange::IssueSplitToken(split) => {
            let Some(second) = second_share_hash else {
                return Ok(Err(Error::Internal(
                    "an approval that applies a split token carried no second share".into(),
                )));
            };
            let mut token = split.token;
            token.hash = crate::domain::token::split_token_hash(&split.first_share_hash, &second);
            Mutation::IssueToken(token)
        }
        GatedChange::SetQuorum(quorum) => {
            let admins = txn
                .operators()?
                .iter()
                .filter(|op| op.role == Role::Admin && !op.disabled)
                .count() as u64;
            if u64::from(quorum) >= admins {
                return Ok(Err(Error::FailedPrecondition(format!(
                    "a quorum of {quorum} needs at least {} enabled admins; there are {admins}",
                    u64::from(quorum) + 1
                ))));
            }
            Mutation::None
        }
    };
    mutation.apply(txn)
}

fn deny(txn: &mut dyn StoreWrite, id: &str, by: String, reason: String, now_ms: i64) -> Applied {
    let Some(mut request) = txn.change_request(id)? else {
        return Ok(Err(Error::NotFound(format!("no change request {id}"))));
    };
    if request.state != ChangeState::Pending {
        return Ok(Err(Error::FailedPrecondition(format!(
            "change request {id} is {} already",
            request.state_name(now_ms)
        ))));
    }
    request.state = ChangeState::Denied {
        by,
        reason,
        at_ms: now_ms,
    };
    txn.put_change_request(&request)?;
    Ok(Ok(MutationOutcome::ChangeRequest(Box::new(request))))
}
