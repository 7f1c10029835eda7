//! Applying corrections inside the writer's transaction: a request is stored only if the
//! record still holds what it was read with and the new number is nowhere else in the tenant;
//! an approval swaps the ciphertext and the blind-index entry in the same transaction as its
//! audit entry, so a reader sees the old number or the new one, never neither.

use crate::domain::correction::{Correction, CorrectionState};
use crate::domain::handle::Handle;
use crate::domain::operator::KeyState;
use crate::domain::record::RecordStatus;
use crate::error::Error;
use crate::store::mutation::MutationOutcome;
use crate::store::{StoreError, StoreWrite};

type Applied = Result<Result<MutationOutcome, Error>, StoreError>;

/// A manager's decision on a pending correction.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Correction id.
    pub id: String,
    /// Approve (apply) or reject.
    pub approve: bool,
    /// The manager.
    pub by: String,
    /// When (lifecycle clock).
    pub at_ms: i64,
    /// The manager's note.
    pub note: String,
}

fn handle_of(correction: &Correction) -> Result<Handle, Error> {
    Handle::parse(&correction.handle)
        .map_err(|_| Error::Integrity("correction names a malformed handle".into()))
}

/// Stores a new correction request.
pub fn request(txn: &mut dyn StoreWrite, correction: Correction) -> Applied {
    let handle = match handle_of(&correction) {
        Ok(handle) => handle,
        Err(error) => return Ok(Err(error)),
    };
    let Some(pending) = &correction.pending else {
        return Ok(Err(Error::Internal(
            "correction request without a number".into(),
        )));
    };
    let Some(record) = txn.record(&handle)? else {
        return Ok(Err(Error::NotFound(format!("no record {handle}"))));
    };
    if record.sealed.as_ref() != Some(&pending.replaces) {
        return Ok(Err(Error::Aborted(format!(
            "record {handle} changed while this request ran; try again"
        ))));
    }
    if txn
        .corrections()?
        .iter()
        .any(|c| c.handle == correction.handle && c.state == CorrectionState::Pending)
    {
        return Ok(Err(Error::FailedPrecondition(format!(
            "record {handle} already has a pending correction"
        ))));
    }
    if txn
        .index_lookup(&record.tenant, &pending.blind_index)?
        .is_some()
    {
        return Ok(Err(Error::AlreadyExists(
            "the tenant already holds the corrected number".into(),
        )));
    }
    txn.put_correction(&correction)?;
    Ok(Ok(MutationOutcome::Correction(Box::new(correction))))
}

/// Approves (applying the new number) or rejects a pending correction.
pub fn decide(txn: &mut dyn StoreWrite, decision: Decision) -> Applied {
    let Some(mut correction) = txn.correction(&decision.id)? else {
        return Ok(Err(Error::NotFound(format!(
            "no correction {}",
            decision.id
        ))));
    };
    if correction.state != CorrectionState::Pending {
        return Ok(Err(Error::FailedPrecondition(format!(
            "correction {} is already {}",
            correction.id,
            correction.state.as_str()
        ))));
    }
    if correction.requested_by == decision.by {
        return Ok(Err(Error::PermissionDenied(
            "a correction is decided by someone other than its requester".into(),
        )));
    }
    let Some(pending) = correction.pending.take() else {
        return Ok(Err(Error::Integrity(
            "pending correction without its number".into(),
        )));
    };
    if decision.approve {
        let handle = match handle_of(&correction) {
            Ok(handle) => handle,
            Err(error) => return Ok(Err(error)),
        };
        let Some(mut record) = txn.record(&handle)? else {
            return Ok(Err(Error::NotFound(format!("no record {handle}"))));
        };
        if matches!(record.status, RecordStatus::Disposed(_)) {
            return Ok(Err(Error::FailedPrecondition(format!(
                "record {handle} has been disposed"
            ))));
        }
        if record.sealed.as_ref() != Some(&pending.replaces) {
            return Ok(Err(Error::FailedPrecondition(format!(
                "record {handle} changed since the correction was requested (retired or rewrapped); request it again"
            ))));
        }
        let usable = txn
            .tenant(&record.tenant)?
            .and_then(|t| t.keys_of(pending.sealed.key_version).map(|k| k.state))
            .is_some_and(|state| state != KeyState::Destroyed);
        if !usable {
            return Ok(Err(Error::FailedPrecondition(format!(
                "the key the corrected number was sealed under is gone; request correction {} again",
                correction.id
            ))));
        }
        if txn
            .index_lookup(&record.tenant, &pending.blind_index)?
            .is_some()
        {
            return Ok(Err(Error::AlreadyExists(
                "the tenant already holds the corrected number".into(),
            )));
        }
        if let Some(old) = record.blind_index {
            txn.remove_index(&record.tenant, &old)?;
        }
        txn.put_index(&record.tenant, &pending.blind_index, &handle)?;
        record.sealed = Some(pending.sealed);
        record.blind_index = Some(pending.blind_index);
        txn.put_record(&record)?;
        correction.state = CorrectionState::Approved;
        correction.change =
            "number replaced (check digit verified); the old number's ciphertext, wrapped key and index entry deleted".into();
    } else {
        correction.state = CorrectionState::Rejected;
        correction.change = "none: the new number was deleted".into();
    }
    correction.decided_by = Some(decision.by);
    correction.decided_at_ms = Some(decision.at_ms);
    correction.decision_note = decision.note;
    txn.put_correction(&correction)?;
    Ok(Ok(MutationOutcome::Correction(Box::new(correction))))
}

/// Deletes correction records kept long enough.
pub fn purge(txn: &mut dyn StoreWrite, ids: &[String]) -> Applied {
    for id in ids {
        txn.remove_correction(id)?;
    }
    Ok(Ok(MutationOutcome::Done))
}
