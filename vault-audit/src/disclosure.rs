//! 開示通知書 (規程第45・46条): what the locker holds about one person and every audited use
//! of it, as the office answers a disclosure request — signed with the key backend's ECDSA
//! P-256 audit key, so the person, the office or an auditor can check it with the audit public
//! key alone. Never a number: the person's number appears masked to its last four digits.
//!
//! A notice is exchanged as JSON. Signed payload: `MNL-DISCLOSURE-v1`, the audit key version
//! (4 bytes big-endian), the key id (32 bytes), then the body as the compact JSON this module
//! writes (fields in their declared order, no whitespace). Every struct refuses unknown fields,
//! so a verifier reads back exactly the fields that were signed, and any edit of a value, a
//! name or the structure fails the signature or the parse.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{key_id, verify_named_signature};
use crate::offline::ExportLine;

/// The format a notice names (and its signature's domain tag).
pub const FORMAT: &str = "MNL-DISCLOSURE-v1";

/// A signed disclosure notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosureNotice {
    /// [`FORMAT`].
    pub format: String,
    /// What the notice says.
    pub body: NoticeBody,
    /// Version of the audit key that signed it.
    pub key_version: u32,
    /// SHA-256 of the signing key's SubjectPublicKeyInfo (hex).
    pub key_id: String,
    /// r ‖ s (hex).
    pub signature: String,
}

/// Everything the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeBody {
    /// The office's reference for the request (受付番号).
    pub reference: String,
    /// The tenant (事業所) answering.
    pub tenant: String,
    /// Its name, as the locker holds it.
    pub office: String,
    /// Its 責任者 and 取扱部署 as the 管理台帳 holds them (empty when not set).
    pub office_responsible: String,
    /// The department that handles the numbers (取扱部署).
    pub office_department: String,
    /// When the notice was made, ms since the Unix epoch.
    pub issued_at_ms: i64,
    /// The manager who made it (operator id).
    pub issued_by: String,
    /// The period of uses asked for: `[from, to)`, ms since the Unix epoch.
    pub period_from_ms: i64,
    /// End of the period (exclusive).
    pub period_to_ms: i64,
    /// Whether the locker holds a record of the person in the tenant.
    pub held: bool,
    /// The person's number masked but its last four digits (`********1234`); empty when
    /// nothing is held.
    pub number_masked: String,
    /// The record, unless nothing is held or it is withheld.
    pub record: Option<DisclosedRecord>,
    /// Every audited use of the record in the period, in log order (unless withheld).
    pub uses: Vec<DisclosedUse>,
    /// The 第4条 item of every purpose the record or a use names.
    pub purposes: Vec<DisclosedPurpose>,
    /// How a use names who handled it: `name` (display name, else operator id) or `role`.
    pub handlers_shown_as: String,
    /// Items not disclosed (第45条2), each with its ground and reason.
    pub withheld: Vec<Withholding>,
    /// The stretch of the audit log the uses were read from, and what anchors it.
    pub coverage: Coverage,
}

/// The facts of the person's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosedRecord {
    /// Opaque handle.
    pub handle: String,
    /// The office's reference for the person (employee or payee id).
    pub subject_ref: String,
    /// Whose number: `staff`, `non_staff_payee`, `dependent`, `entrusted_employee`.
    pub subject_kind: String,
    /// Purposes the number may be used for, with their 第4条 labels.
    pub purposes: Vec<DisclosedPurpose>,
    /// When the number was acquired (取得), ms since the Unix epoch.
    pub acquired_at_ms: i64,
    /// Who acquired it, as `handlers_shown_as` says.
    pub acquired_by: String,
    /// 番号確認 kind (empty when not recorded).
    pub number_check: String,
    /// 身元確認 kind (empty when not recorded).
    pub identity_check: String,
    /// An agent's proof of authority, when an agent provided the number.
    pub agent_authority: String,
    /// `active`, `suspended`, `retired` or `disposed`.
    pub status: String,
    /// The day the person left (退職日), when retired.
    pub left_on: String,
    /// The day the record is disposed of, when retired.
    pub dispose_on: String,
    /// Why use is stopped (規程第49条), when suspended.
    pub suspension: String,
    /// Corrections of the number (訂正, 第47・48条) recorded in the log for this record.
    pub corrections: u64,
}

/// One purpose of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosedPurpose {
    /// Purpose code.
    pub code: String,
    /// Its item of 第4条 (`1-①`).
    pub article: String,
    /// Its label in the rules.
    pub label_ja: String,
    /// Retention after the person leaves, in years.
    pub retention_years: u32,
}

/// One audited use of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosedUse {
    /// The audit entry's sequence number.
    pub seq: u64,
    /// When, ms since the Unix epoch.
    pub time_ms: i64,
    /// `acquisition`, `use`, `lookup`, `reading`, `purpose_change`, `correction`,
    /// `suspension`, `retirement`, `acquisition_date`, `disposal`, `disclosure`,
    /// `key_maintenance` or `other`.
    pub category: String,
    /// The audit action (`UNSEAL`, …).
    pub action: String,
    /// Who, as `handlers_shown_as` says (empty when withheld).
    pub handler: String,
    /// Their role (`handler`, `manager`, `service`, `system`, …; empty when withheld).
    pub role: String,
    /// The purpose the call named (uses).
    pub purpose: String,
    /// `ALLOWED`, `DENIED`, `FAILED`, …
    pub outcome: String,
    /// For a use whose number went into a file that left the locker (持出し): the file's
    /// form and SHA-256; empty otherwise.
    pub carried_out: String,
}

/// An item not disclosed (規程第45条2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withholding {
    /// `record`, `uses` or `handlers`.
    pub item: String,
    /// The ground of 第45条2: 1 (harm to the person or others), 2 (the office's work), 3
    /// (another law).
    pub ground: u8,
    /// The reason given to the person (条文 and the facts the decision rests on).
    pub reason: String,
}

/// The audit log the notice was read from: entries `first_seq..=last_seq`, whose hash chain
/// ends in `chain_hash`, signed by checkpoint `checkpoint` — so an auditor holding an export
/// verified up to that checkpoint can confirm that no use was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// First entry read (1: the whole log).
    pub first_seq: u64,
    /// Last entry read.
    pub last_seq: u64,
    /// Hash of entry `last_seq` (hex).
    pub chain_hash: String,
    /// Number of the signed checkpoint over `last_seq`.
    pub checkpoint: u64,
    /// Audit key version that signed that checkpoint.
    pub checkpoint_key_version: u32,
}

/// Why a notice does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoticeError {
    /// Not JSON of a notice.
    #[error("not a disclosure notice: {0}")]
    Malformed(String),
    /// A format this build does not know.
    #[error("unknown notice format {0:?} (this build reads {FORMAT})")]
    Format(String),
    /// None of the given keys is the one that signed.
    #[error(
        "it is signed by audit key v{0}, which the given public keys do not include (export them again: vault-client audit public-key)"
    )]
    UnknownKey(u32),
    /// The signing key is given, and the signature does not verify: the notice was changed.
    #[error("the signature does not verify: the notice was changed after it was signed")]
    Signature,
}

impl NoticeBody {
    /// The body as signed: compact JSON, fields in declared order.
    pub fn canonical_json(&self) -> Vec<u8> {
        // Plain structs of strings, integers, options and vectors always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The bytes the signature covers.
pub fn signed_payload(body: &NoticeBody, key_version: u32, key_id: &[u8; 32]) -> Vec<u8> {
    let json = body.canonical_json();
    let mut out = Vec::with_capacity(FORMAT.len() + 36 + json.len());
    out.extend_from_slice(FORMAT.as_bytes());
    out.extend_from_slice(&key_version.to_be_bytes());
    out.extend_from_slice(key_id);
    out.extend_from_slice(&json);
    out
}

impl DisclosureNotice {
    /// Reads a notice from its JSON.
    pub fn from_json(text: &str) -> Result<DisclosureNotice, NoticeError> {
        let notice: DisclosureNotice =
            serde_json::from_str(text).map_err(|e| NoticeError::Malformed(e.to_string()))?;
        if notice.format != FORMAT {
            return Err(NoticeError::Format(notice.format));
        }
        Ok(notice)
    }

    /// The notice as JSON (compact, as exchanged).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the signature verifies with `point` (an uncompressed P-256 public key) and the
    /// key id names that key.
    pub fn verify_signature(&self, point: &[u8]) -> bool {
        self.format == FORMAT
            && verify_named_signature(point, &self.key_id, &self.signature, |id| {
                signed_payload(&self.body, self.key_version, id)
            })
    }

    /// Checks the notice with any of `points`.
    pub fn verify_with_any(&self, points: &[Vec<u8>]) -> Result<(), NoticeError> {
        if points.iter().any(|point| self.verify_signature(point)) {
            return Ok(());
        }
        if points
            .iter()
            .all(|point| hex::encode(key_id(point)) != self.key_id)
        {
            return Err(NoticeError::UnknownKey(self.key_version));
        }
        Err(NoticeError::Signature)
    }
}

/// What a notice's check against an audit export found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportMatch {
    /// Uses of the record the export holds in the notice's range and period (all listed).
    pub uses: usize,
    /// The checkpoint both cite.
    pub checkpoint: u64,
}

/// Holds a notice against `lines`, an auditor's export of the same log that verified offline
/// (`crate::offline::verify`) at least through the notice's last entry: the checkpoint the
/// notice cites is in the export with the entry and hash it cites, and the entries of the
/// export that name the record, up to that entry and in the notice's period, are exactly the
/// notice's uses — same entries, actions, purposes and results. What differs is the error.
pub fn check_against_export(
    notice: &DisclosureNotice,
    lines: &[ExportLine],
) -> Result<ExportMatch, String> {
    let body = &notice.body;
    let coverage = &body.coverage;
    let cited = lines
        .iter()
        .find_map(|line| match line {
            ExportLine::Checkpoint(c) if c.number == coverage.checkpoint => Some(c),
            _ => None,
        })
        .ok_or_else(|| format!("the export holds no checkpoint {}", coverage.checkpoint))?;
    if cited.seq != coverage.last_seq || cited.chain_hash != coverage.chain_hash {
        return Err(format!(
            "checkpoint {} of the export is over entry {} with hash {}, the notice cites entry {} with hash {}: not the same log",
            cited.number, cited.seq, cited.chain_hash, coverage.last_seq, coverage.chain_hash
        ));
    }
    let Some(record) = &body.record else {
        return Err(if body.held {
            "the notice withholds the record: no handle to look for in the export".into()
        } else {
            "the notice says nothing is held: no record to look for in the export".into()
        });
    };
    if body.withheld.iter().any(|w| w.item == "uses") {
        return Err("the notice withholds its uses: nothing to compare".into());
    }
    let in_export: Vec<(u64, &str, &str, &str)> = lines
        .iter()
        .filter_map(|line| match line {
            ExportLine::Entry(e) => Some(e),
            _ => None,
        })
        .filter(|e| {
            e.seq <= coverage.last_seq
                && e.handle == record.handle
                && e.tenant == body.tenant
                && e.time_ms >= body.period_from_ms
                && e.time_ms < body.period_to_ms
        })
        .map(|e| {
            (
                e.seq,
                e.action.as_str(),
                e.purpose.as_str(),
                e.outcome.as_str(),
            )
        })
        .collect();
    let listed: Vec<(u64, &str, &str, &str)> = body
        .uses
        .iter()
        .map(|u| {
            (
                u.seq,
                u.action.as_str(),
                u.purpose.as_str(),
                u.outcome.as_str(),
            )
        })
        .collect();
    if in_export != listed {
        let left_out: Vec<u64> = in_export
            .iter()
            .filter(|e| !listed.contains(e))
            .map(|e| e.0)
            .collect();
        let not_in_export: Vec<u64> = listed
            .iter()
            .filter(|u| !in_export.contains(u))
            .map(|u| u.0)
            .collect();
        return Err(format!(
            "the notice's uses of record {} differ from the export: entries left out {left_out:?}, listed but not in the export {not_in_export:?}",
            record.handle
        ));
    }
    Ok(ExportMatch {
        uses: listed.len(),
        checkpoint: coverage.checkpoint,
    })
}

/// `********1234`: a number shown only by its last four digits.
pub fn mask_number(digits: &str) -> String {
    let count = digits.chars().count();
    let shown: String = digits.chars().skip(count.saturating_sub(4)).collect();
    format!("{}{shown}", "*".repeat(count.saturating_sub(4)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn body() -> NoticeBody {
        NoticeBody {
            reference: "開示-2026-001".into(),
            tenant: "dev".into(),
            office: "開発事業所".into(),
            office_responsible: "鈴木 一郎".into(),
            office_department: "人事部".into(),
            issued_at_ms: 1_900_000_000_000,
            issued_by: "mgr".into(),
            period_from_ms: 0,
            period_to_ms: 1_900_000_000_000,
            held: true,
            number_masked: mask_number("123456789018"),
            record: None,
            uses: vec![DisclosedUse {
                seq: 7,
                time_ms: 1_800_000_000_000,
                category: "use".into(),
                action: "UNSEAL".into(),
                handler: "山田".into(),
                role: "handler".into(),
                purpose: "STAFF_WITHHOLDING".into(),
                outcome: "ALLOWED".into(),
                carried_out: String::new(),
            }],
            purposes: vec![],
            handlers_shown_as: "name".into(),
            withheld: vec![],
            coverage: Coverage {
                first_seq: 1,
                last_seq: 9,
                chain_hash: "00".repeat(32),
                checkpoint: 2,
                checkpoint_key_version: 1,
            },
        }
    }

    fn signed() -> (DisclosureNotice, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pair");
        let point = pair.public_key().as_ref().to_vec();
        let id = key_id(&point);
        let body = body();
        let signature = pair
            .sign(&rng, &signed_payload(&body, 1, &id))
            .expect("sign");
        let notice = DisclosureNotice {
            format: FORMAT.into(),
            body,
            key_version: 1,
            key_id: hex::encode(id),
            signature: hex::encode(signature.as_ref()),
        };
        (notice, point)
    }

    fn exported(seq: u64, action: &str, handle: &str) -> ExportLine {
        ExportLine::Entry(crate::offline::ExportedEntry {
            seq,
            time_ms: 1_800_000_000_000,
            operator: "h".into(),
            role: "handler".into(),
            tenant: "dev".into(),
            action: action.into(),
            handle: handle.into(),
            purpose: if action == "UNSEAL" {
                "STAFF_WITHHOLDING".into()
            } else {
                String::new()
            },
            outcome: "ALLOWED".into(),
            code: "OK".into(),
            reason: String::new(),
            request_id: String::new(),
            peer: String::new(),
            prev_hash: String::new(),
            hash: String::new(),
            token_id: String::new(),
            format: "MNL-AUDIT-3".into(),
            canonical: String::new(),
            state: String::new(),
        })
    }

    #[test]
    fn a_notice_matches_the_export_it_came_from_and_not_one_with_a_use_more() {
        let (mut notice, _) = signed();
        let handle = "mnh_00112233445566778899aabbccddeeff";
        notice.body.record = Some(DisclosedRecord {
            handle: handle.into(),
            subject_ref: "E-1".into(),
            subject_kind: "staff".into(),
            purposes: vec![],
            acquired_at_ms: 0,
            acquired_by: String::new(),
            number_check: String::new(),
            identity_check: String::new(),
            agent_authority: String::new(),
            status: "active".into(),
            left_on: String::new(),
            dispose_on: String::new(),
            suspension: String::new(),
            corrections: 0,
        });
        let checkpoint = crate::checkpoint::Checkpoint {
            number: 2,
            seq: 9,
            chain_hash: "00".repeat(32),
            time_ms: 0,
            key_version: 1,
            key_id: String::new(),
            prev: String::new(),
            state: String::new(),
            signature: String::new(),
        };
        let mut lines = vec![
            exported(3, "DESCRIBE", "mnh_ffffffffffffffffffffffffffffffff"),
            exported(7, "UNSEAL", handle),
            ExportLine::Checkpoint(checkpoint.clone()),
        ];
        assert_eq!(
            check_against_export(&notice, &lines),
            Ok(ExportMatch {
                uses: 1,
                checkpoint: 2
            })
        );
        // A use of the record the notice leaves out.
        lines.insert(1, exported(5, "UNSEAL", handle));
        let left_out = check_against_export(&notice, &lines).expect_err("left out");
        assert!(left_out.contains("[5]"), "{left_out}");
        // A use after the checkpoint is not the notice's to list.
        lines.remove(1);
        lines.push(exported(11, "UNSEAL", handle));
        assert!(check_against_export(&notice, &lines).is_ok());
        // Another log.
        let mut other = checkpoint;
        other.chain_hash = "11".repeat(32);
        lines[2] = ExportLine::Checkpoint(other);
        assert!(check_against_export(&notice, &lines).is_err());
    }

    #[test]
    fn the_last_four_digits_alone_are_shown() {
        assert_eq!(mask_number("123456789018"), "********9018");
        assert_eq!(mask_number(""), "");
    }

    #[test]
    fn a_notice_verifies_after_a_round_trip_and_fails_on_any_changed_byte() {
        let (notice, point) = signed();
        let json = notice.to_json();
        let read = DisclosureNotice::from_json(&json).expect("read back");
        assert_eq!(read.verify_with_any(std::slice::from_ref(&point)), Ok(()));
        // Every single-byte change of the file either fails to parse or fails the signature.
        let bytes = json.as_bytes();
        for i in 0..bytes.len() {
            let mut edited = bytes.to_vec();
            edited[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
            let Ok(text) = String::from_utf8(edited) else {
                continue;
            };
            let verified = DisclosureNotice::from_json(&text)
                .and_then(|n| n.verify_with_any(std::slice::from_ref(&point)));
            assert!(verified.is_err(), "byte {i} changed and still verified");
        }
        let (_, other_key) = signed();
        assert_eq!(
            notice.verify_with_any(&[other_key]),
            Err(NoticeError::UnknownKey(1))
        );
        let mut changed = notice.clone();
        changed.body.reference.push('!');
        assert_eq!(
            changed.verify_with_any(&[point]),
            Err(NoticeError::Signature)
        );
    }
}
