//! A stored individual-number record: metadata in the clear, the number sealed.

use serde::{Deserialize, Serialize};

use crate::domain::handle::Handle;
use crate::domain::identity::IdentityVerification;
use crate::domain::lifecycle::{Retirement, Suspension};
use crate::error::Error;

/// Whose number a record holds (規程 第4条 1-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubjectKind {
    /// 職員.
    Staff,
    /// 職員以外の個人 receiving fees or rent.
    NonStaffPayee,
    /// A dependent (扶養親族, 国民年金第3号被保険者).
    Dependent,
    /// An employee of an entrusting employer.
    EntrustedEmployee,
}

/// The number under envelope encryption: an AES-256-GCM ciphertext under a per-record DEK, the
/// DEK wrapped by the tenant's key of `key_version` inside the key backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedNumber {
    /// Layout of the associated data and ciphertext (see `keys::envelope`).
    pub format: u8,
    /// Version of the tenant KEK that wrapped the DEK.
    pub key_version: u32,
    /// The DEK as wrapped by the backend.
    pub wrapped_dek: Vec<u8>,
    /// AES-GCM nonce.
    pub nonce: [u8; 12],
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

/// What remains of a disposed record (廃棄): who, when, why. Never the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// Milliseconds since the Unix epoch.
    pub disposed_at_ms: i64,
    /// Operator who disposed of it.
    pub disposed_by: String,
    /// Stated reason.
    pub reason: String,
}

/// Lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordStatus {
    /// Usable within its purposes.
    Active,
    /// Ciphertext and wrapped key deleted.
    Disposed(Tombstone),
    /// Use stopped at the person's request (規程 第49条); the number stays sealed.
    Suspended(Suspension),
    /// The person left: usable for the purposes whose retention still runs, disposed of on
    /// the disposal date. (Last, so records stored before it existed still decode.)
    Retired(Retirement),
}

impl Record {
    /// Whether a call that decided on this version may stand on `later`, a later version of
    /// the same record: the same tenant, state and purposes, and the same sealed number or one
    /// moved to another key version (a rotation's rewrap, which seals the same number again).
    /// A disposal, suspension, retirement, purpose change or correction does not pass.
    pub fn decides_alike(&self, later: &Record) -> bool {
        let same_number = match (&self.sealed, &later.sealed) {
            (Some(read), Some(now)) => read == now || read.key_version != now.key_version,
            (None, None) => true,
            _ => false,
        };
        self.handle == later.handle
            && self.tenant == later.tenant
            && self.status == later.status
            && self.purposes == later.purposes
            && same_number
    }
}

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Opaque handle.
    pub handle: Handle,
    /// Tenant (事業所) the record belongs to.
    pub tenant: String,
    /// The caller's reference for the person (employee or payee ID).
    pub subject_ref: String,
    /// Whose number it is.
    pub subject_kind: SubjectKind,
    /// Purposes the number may be used for, sorted (bound into the associated data).
    pub purposes: Vec<String>,
    /// How number and person were verified.
    pub verification: IdentityVerification,
    /// Milliseconds since the Unix epoch.
    pub acquired_at_ms: i64,
    /// Operator who sealed it.
    pub acquired_by: String,
    /// Lifecycle state.
    pub status: RecordStatus,
    /// The sealed number; `None` once disposed.
    pub sealed: Option<SealedNumber>,
    /// The blind index entry pointing at this record (kept so disposal can remove it without
    /// unsealing); `None` once disposed.
    pub blind_index: Option<[u8; 32]>,
}

/// The status after suspending (`Some`) or resuming (`None`) a record in `status`, or why the
/// change is refused (規程第49条).
pub fn status_after_suspension(
    handle: &Handle,
    status: &RecordStatus,
    suspension: Option<Suspension>,
) -> Result<RecordStatus, Error> {
    Ok(match (status, suspension) {
        (RecordStatus::Active, Some(suspension)) => RecordStatus::Suspended(suspension),
        (RecordStatus::Suspended(_), None) => RecordStatus::Active,
        (RecordStatus::Disposed(_), _) => {
            return Err(Error::FailedPrecondition(format!(
                "record {handle} has been disposed"
            )));
        }
        (RecordStatus::Suspended(_), Some(_)) => {
            return Err(Error::FailedPrecondition(format!(
                "record {handle} is already suspended"
            )));
        }
        (RecordStatus::Retired(retirement), suspension) => {
            if retirement.suspension.is_some() == suspension.is_some() {
                let state = if suspension.is_some() {
                    "already suspended"
                } else {
                    "not suspended"
                };
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} is {state}"
                )));
            }
            let mut retirement = retirement.clone();
            retirement.suspension = suspension;
            RecordStatus::Retired(retirement)
        }
        (RecordStatus::Active, None) => {
            return Err(Error::FailedPrecondition(format!(
                "record {handle} is not suspended"
            )));
        }
    })
}

/// Records per state (the store's figures and the metrics that show them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// In use.
    pub active: u64,
    /// Use stopped (第49条).
    pub suspended: u64,
    /// The person left; awaiting disposal.
    pub retired: u64,
    /// Disposed of (tombstones).
    pub disposed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            handle: Handle::parse("mnh_00112233445566778899aabbccddeeff").expect("handle"),
            tenant: "dev".into(),
            subject_ref: "E1".into(),
            subject_kind: SubjectKind::Staff,
            purposes: vec!["STAFF_WITHHOLDING".into()],
            verification: IdentityVerification::default(),
            acquired_at_ms: 0,
            acquired_by: "dev-handler".into(),
            status: RecordStatus::Active,
            sealed: Some(SealedNumber {
                format: 1,
                key_version: 1,
                wrapped_dek: vec![1; 40],
                nonce: [1; 12],
                ciphertext: vec![2; 28],
            }),
            blind_index: Some([3; 32]),
        }
    }

    #[test]
    fn only_a_rewrap_lets_a_decision_on_the_older_version_stand() {
        let read = record();
        let mut rewrapped = read.clone();
        if let Some(sealed) = rewrapped.sealed.as_mut() {
            sealed.key_version = 2;
            sealed.wrapped_dek = vec![4; 40];
            sealed.ciphertext = vec![5; 28];
        }
        rewrapped.blind_index = Some([6; 32]);
        assert!(read.decides_alike(&rewrapped));

        let mut corrected = read.clone();
        if let Some(sealed) = corrected.sealed.as_mut() {
            sealed.ciphertext = vec![7; 28];
        }
        assert!(!read.decides_alike(&corrected), "another number, same key");

        let mut disposed = read.clone();
        disposed.sealed = None;
        disposed.status = RecordStatus::Disposed(Tombstone {
            disposed_at_ms: 1,
            disposed_by: "dev-manager".into(),
            reason: "保存期間経過".into(),
        });
        assert!(!read.decides_alike(&disposed));

        let mut suspended = rewrapped.clone();
        suspended.status = RecordStatus::Suspended(Suspension {
            reason: "本人の請求".into(),
            by: "dev-manager".into(),
            at_ms: 1,
        });
        assert!(!read.decides_alike(&suspended));

        let mut narrowed = read.clone();
        narrowed.purposes = vec!["STAFF_HEALTH_PENSION".into()];
        assert!(!read.decides_alike(&narrowed));
    }
}
