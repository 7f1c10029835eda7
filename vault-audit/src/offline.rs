//! Offline verification of an audit export (JSON lines of entries, checkpoints and audit key
//! versions) with the audit public keys only: recomputes the chain, checks every checkpoint's
//! signature, that it matches the entry it names and that checkpoints follow each other without
//! a gap, and reports what is anchored and what is not.
//!
//! Keys come either from the auditor's own PEM file ([`verify`]) or from the export's key lines
//! authenticated link by link from a pinned first-key fingerprint ([`verify_pinned`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, key_id, verify_endorsement};
use crate::entry::{AuditEntry, EntryFormat, GENESIS_HASH, chain_hash};
use crate::statement::AnchorStatement;

/// An exported entry: the entry's fields and its chain hashes (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedEntry {
    /// Sequence number.
    pub seq: u64,
    /// Commit time, ms since the Unix epoch.
    pub time_ms: i64,
    /// Operator id.
    pub operator: String,
    /// Role.
    pub role: String,
    /// Tenant.
    pub tenant: String,
    /// Action.
    pub action: String,
    /// Record handle.
    pub handle: String,
    /// Purpose code.
    pub purpose: String,
    /// ALLOWED, DENIED or FAILED.
    pub outcome: String,
    /// Status code name.
    pub code: String,
    /// Reason.
    pub reason: String,
    /// Request id.
    pub request_id: String,
    /// Peer.
    pub peer: String,
    /// Previous entry's hash (hex).
    pub prev_hash: String,
    /// This entry's hash (hex).
    pub hash: String,
    /// Public id of the token that authenticated the call.
    #[serde(default)]
    pub token_id: String,
    /// The entry's format tag (`MNL-AUDIT-2` when absent: exports made before formats were
    /// named).
    #[serde(default = "format_2")]
    pub format: String,
    /// The canonical bytes the hash covers (hex), for formats that carry fields an older
    /// verifier may not know; empty for `MNL-AUDIT-2`, whose bytes follow from the fields.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canonical: String,
    /// The state the entry's commit left (`authority <hex>`), or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
}

fn format_2() -> String {
    EntryFormat::V2.tag().to_owned()
}

impl ExportedEntry {
    /// The bytes the entry's hash covers, after checking that they say what the line's fields
    /// say: by the line's format, from its fields (`MNL-AUDIT-2`) or as exported (later ones).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, String> {
        match EntryFormat::from_tag(&self.format) {
            Some(EntryFormat::V2) => Ok(self.entry().canonical_bytes_as(EntryFormat::V2)),
            Some(format) => {
                let bytes = hex::decode(&self.canonical)
                    .map_err(|_| format!("entry {}'s canonical bytes are not hex", self.seq))?;
                if EntryFormat::of_canonical(&bytes) != Some(format) {
                    return Err(format!(
                        "entry {}'s canonical bytes are not in its stated format {}",
                        self.seq, self.format
                    ));
                }
                if AuditEntry::from_canonical_bytes(&bytes).as_ref() != Ok(&self.entry()) {
                    return Err(format!(
                        "entry {}'s fields differ from the canonical bytes its hash covers (altered)",
                        self.seq
                    ));
                }
                Ok(bytes)
            }
            None => Err(format!(
                "entry {} is in format {:?}, which this verifier does not know: verify with a newer vault-client",
                self.seq, self.format
            )),
        }
    }

    /// The entry whose canonical bytes the hash covers.
    pub fn entry(&self) -> AuditEntry {
        AuditEntry {
            seq: self.seq,
            time_ms: self.time_ms,
            operator: self.operator.clone(),
            role: self.role.clone(),
            tenant: self.tenant.clone(),
            action: self.action.clone(),
            handle: self.handle.clone(),
            purpose: self.purpose.clone(),
            outcome: self.outcome.clone(),
            code: self.code.clone(),
            reason: self.reason.clone(),
            request_id: self.request_id.clone(),
            peer: self.peer.clone(),
            token_id: self.token_id.clone(),
            state: self.state.clone(),
        }
    }
}

/// One line of an export file.
// Entries outnumber checkpoints a thousand to one; boxing them would cost an allocation per
// line to save memory on the rare checkpoint.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ExportLine {
    /// An audit entry.
    Entry(ExportedEntry),
    /// A signed checkpoint.
    Checkpoint(Checkpoint),
    /// An audit signing key version with its endorsement by the previous version.
    Key(ExportedKey),
    /// The key backend's anchored checkpoint when the export was made, signed.
    Anchor(AnchorStatement),
}

/// An audit signing key version as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedKey {
    /// Version, from 1.
    pub version: u32,
    /// The public point (uncompressed P-256, hex).
    pub public_key: String,
    /// The previous version's signature over this key (hex; empty for version 1).
    pub endorsement: String,
}

/// What offline verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfflineReport {
    /// No problem was found in the entries and checkpoints present.
    pub ok: bool,
    /// Entries read.
    pub entries: u64,
    /// Checkpoints whose signature and hash verified.
    pub checkpoints_verified: u64,
    /// Highest entry anchored by a verified checkpoint (0 if none).
    pub anchored_through: u64,
    /// Entries after the last verified checkpoint: consistent, but not anchored by a signature.
    pub unanchored_tail: u64,
    /// Sequence number of the first bad entry, when one can be named.
    pub first_bad_seq: Option<u64>,
    /// The checkpoint the export's signed anchor statement names, when the export reaches it:
    /// the export is complete up to what the key backend had anchored.
    pub complete_through_checkpoint: Option<u64>,
    /// Every problem, in order.
    pub problems: Vec<String>,
}

fn decode32(hex_text: &str) -> Option<[u8; 32]> {
    hex::decode(hex_text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
}

#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    first_bad: Option<u64>,
}

impl Findings {
    /// A failure located at entry `seq`.
    fn bad(&mut self, seq: u64, problem: String) {
        self.first_bad = Some(self.first_bad.map_or(seq, |f| f.min(seq)));
        self.problems.push(problem);
    }

    /// Information that is not a failure.
    fn note(&mut self, note: String) {
        self.problems.push(note);
    }
}

/// Verifies `lines` (an export, in order) with the audit public keys `keys` (65-byte points).
pub fn verify(lines: &[ExportLine], keys: &[Vec<u8>]) -> OfflineReport {
    verify_with(lines, keys, Findings::default(), false)
}

/// Verifies `lines` trusting only the audit keys chained from the key whose id is `pin`: the
/// export's version 1 must have that id, and every later version must be endorsed by the one
/// before it. An export whose entries no checkpoint anchors fails.
pub fn verify_pinned(lines: &[ExportLine], pin: &[u8; 32]) -> OfflineReport {
    let mut findings = Findings::default();
    let keys = chained_keys(lines, pin, &mut findings);
    verify_with(lines, &keys, findings, true)
}

/// The export's key versions that chain from `pin`, in version order; a break is a problem.
fn chained_keys(lines: &[ExportLine], pin: &[u8; 32], findings: &mut Findings) -> Vec<Vec<u8>> {
    let mut exported: Vec<&ExportedKey> = lines
        .iter()
        .filter_map(|l| match l {
            ExportLine::Key(k) => Some(k),
            _ => None,
        })
        .collect();
    exported.sort_by_key(|k| k.version);
    let mut chained: Vec<Vec<u8>> = Vec::new();
    for (expected, key) in (1u32..).zip(exported) {
        let Ok(point) = hex::decode(&key.public_key) else {
            findings.bad(0, format!("audit key version {} is malformed", key.version));
            break;
        };
        let id = key_id(&point);
        let trusted = if key.version != expected {
            false
        } else if let Some(previous) = chained.last() {
            hex::decode(&key.endorsement)
                .is_ok_and(|sig| verify_endorsement(previous, key.version, &id, &sig))
        } else {
            id == *pin
        };
        if !trusted {
            findings.bad(
                0,
                format!(
                    "audit key version {} (id {}) is not chained from the pinned key {}: not trusted",
                    key.version,
                    hex::encode(id),
                    hex::encode(pin)
                ),
            );
            break;
        }
        chained.push(point);
    }
    if chained.is_empty() {
        findings.bad(
            0,
            format!(
                "the export holds no audit key with the pinned id {}",
                hex::encode(pin)
            ),
        );
    }
    chained
}

fn verify_with(
    lines: &[ExportLine],
    keys: &[Vec<u8>],
    mut findings: Findings,
    require_anchor: bool,
) -> OfflineReport {
    // The chain, in file order.
    let mut hashes: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    let mut expected_seq: Option<u64> = None;
    let mut prev = GENESIS_HASH;
    let mut entries = 0u64;
    let mut chain_intact = true;
    for line in lines {
        let ExportLine::Entry(exported) = line else {
            continue;
        };
        entries += 1;
        if !chain_intact {
            continue;
        }
        let expected = expected_seq.unwrap_or(exported.seq);
        if expected_seq.is_none() && exported.seq != 1 {
            findings.note(format!(
                "export starts at entry {}; earlier entries are not checked",
                exported.seq
            ));
            prev = decode32(&exported.prev_hash).unwrap_or(GENESIS_HASH);
        }
        if exported.seq != expected {
            findings.bad(
                expected,
                format!(
                    "entry {expected} is missing or out of order (found entry {} in its place)",
                    exported.seq
                ),
            );
            chain_intact = false;
            continue;
        }
        let stated_prev = decode32(&exported.prev_hash);
        let stated_hash = decode32(&exported.hash);
        let canonical = match exported.canonical_bytes() {
            Ok(canonical) => canonical,
            Err(problem) => {
                findings.bad(exported.seq, problem);
                chain_intact = false;
                continue;
            }
        };
        let recomputed = chain_hash(&prev, &canonical);
        if stated_prev != Some(prev) {
            findings.bad(
                exported.seq,
                format!(
                    "entry {} does not follow entry {}",
                    exported.seq,
                    exported.seq.saturating_sub(1)
                ),
            );
            chain_intact = false;
            continue;
        }
        if stated_hash != Some(recomputed) {
            findings.bad(
                exported.seq,
                format!("entry {} was altered (hash mismatch)", exported.seq),
            );
            chain_intact = false;
            continue;
        }
        hashes.insert(exported.seq, recomputed);
        prev = recomputed;
        expected_seq = Some(exported.seq + 1);
    }
    let last_seq = hashes.keys().next_back().copied().unwrap_or(0);

    // Checkpoints: signature by a known key, and agreement with the entry they name.
    let keys_by_id: BTreeMap<[u8; 32], &Vec<u8>> = keys.iter().map(|k| (key_id(k), k)).collect();
    let mut anchored_through = 0u64;
    let mut checkpoints_verified = 0u64;
    let mut previous: Option<&Checkpoint> = None;
    let partial = lines.iter().find_map(|l| match l {
        ExportLine::Entry(e) => Some(e.seq > 1),
        _ => None,
    });
    for line in lines {
        let ExportLine::Checkpoint(checkpoint) = line else {
            continue;
        };
        // Numbered and linked: a checkpoint removed, reordered or replaced breaks the sequence.
        // Only an export that starts after entry 1 may start after checkpoint 1.
        let follows = match previous {
            None if checkpoint.number > 1 && partial == Some(true) => {
                findings.note(format!(
                    "export starts at checkpoint {}; earlier checkpoints are not checked",
                    checkpoint.number
                ));
                true
            }
            previous => checkpoint.follows(previous),
        };
        if !follows {
            let expected = previous.map_or(1, |p| p.number + 1);
            findings.bad(
                checkpoint.seq,
                format!(
                    "checkpoint {expected} is missing, reordered or replaced (found checkpoint {} covering entry {})",
                    checkpoint.number, checkpoint.seq
                ),
            );
        }
        previous = Some(checkpoint);
        let Some(point) = decode32(&checkpoint.key_id).and_then(|id| keys_by_id.get(&id)) else {
            findings.bad(
                checkpoint.seq,
                format!(
                    "checkpoint {} is signed by key {} which is not among the given public keys",
                    checkpoint.seq, checkpoint.key_id
                ),
            );
            continue;
        };
        if !checkpoint.verify_signature(point) {
            findings.bad(
                checkpoint.seq,
                format!(
                    "checkpoint {}: signature does not verify (forged or altered)",
                    checkpoint.seq
                ),
            );
            continue;
        }
        match hashes.get(&checkpoint.seq) {
            Some(hash) if Some(*hash) == decode32(&checkpoint.chain_hash) => {
                checkpoints_verified += 1;
                anchored_through = anchored_through.max(checkpoint.seq);
            }
            Some(_) => findings.bad(
                checkpoint.seq,
                format!("checkpoint {} does not match entry {}: history up to it was rewritten", checkpoint.seq, checkpoint.seq),
            ),
            None if checkpoint.seq > last_seq && chain_intact => findings.bad(
                last_seq + 1,
                format!("checkpoint {} names entries after {last_seq} that the export lacks (truncated)", checkpoint.seq),
            ),
            None => {}
        }
    }
    if require_anchor && entries > 0 && checkpoints_verified == 0 {
        findings.bad(
            1,
            "no checkpoint signed by a trusted key anchors these entries".into(),
        );
    }
    let complete_through_checkpoint =
        check_statement(lines, &keys_by_id, &hashes, last_seq, &mut findings);
    OfflineReport {
        ok: findings.first_bad.is_none(),
        entries,
        checkpoints_verified,
        anchored_through,
        unanchored_tail: last_seq.saturating_sub(anchored_through),
        first_bad_seq: findings.first_bad,
        problems: findings.problems,
        complete_through_checkpoint,
    }
}

/// Checks the export's anchor statement: signed by a trusted key, naming a checkpoint the
/// export holds, verified, over entries it holds. An export of authenticated entries
/// (`MNL-AUDIT-3` and later) must carry one: without it, a cut export would look whole.
/// Returns the checkpoint the export is complete up to.
fn check_statement(
    lines: &[ExportLine],
    keys_by_id: &BTreeMap<[u8; 32], &Vec<u8>>,
    hashes: &BTreeMap<u64, [u8; 32]>,
    last_seq: u64,
    findings: &mut Findings,
) -> Option<u64> {
    let statement = lines.iter().rev().find_map(|line| match line {
        ExportLine::Anchor(statement) => Some(statement),
        _ => None,
    });
    let authenticated = lines.iter().any(|line| {
        matches!(line, ExportLine::Entry(e) if EntryFormat::from_tag(&e.format) != Some(EntryFormat::V2))
    });
    let Some(statement) = statement else {
        if authenticated {
            findings.bad(
                last_seq + 1,
                "the export carries no anchor statement, so it cannot be shown complete (a cut export fails here): export it again with `vault-client audit export`".into(),
            );
        } else {
            findings.note(
                "no anchor statement (the export predates them): completeness is not proven".into(),
            );
        }
        return None;
    };
    let Some(point) = decode32(&statement.key_id).and_then(|id| keys_by_id.get(&id)) else {
        findings.bad(
            last_seq + 1,
            format!(
                "the anchor statement is signed by key {} which is not among the given public keys",
                statement.key_id
            ),
        );
        return None;
    };
    if !statement.verify_signature(point) {
        findings.bad(
            last_seq + 1,
            "the anchor statement's signature does not verify (forged or altered)".into(),
        );
        return None;
    }
    if statement.checkpoint == 0 {
        findings.note(
            "nothing had been anchored when the export was made (anchor statement of checkpoint 0)"
                .into(),
        );
        return None;
    }
    let anchored = lines.iter().find_map(|line| match line {
        ExportLine::Checkpoint(c) if c.number == statement.checkpoint => Some(c),
        _ => None,
    });
    match anchored {
        None => {
            findings.bad(
                last_seq + 1,
                format!(
                    "the key backend anchored checkpoint {}, which this export lacks: the log it was taken from lost commits, or the export was cut",
                    statement.checkpoint
                ),
            );
            None
        }
        Some(checkpoint) if checkpoint.hash() != statement.hash() => {
            findings.bad(
                checkpoint.seq,
                format!(
                    "checkpoint {} is not the one the key backend anchored: history was replaced",
                    checkpoint.number
                ),
            );
            None
        }
        Some(checkpoint)
            if hashes.get(&checkpoint.seq).copied() == decode32(&checkpoint.chain_hash) =>
        {
            Some(checkpoint.number)
        }
        Some(checkpoint) => {
            findings.bad(
                checkpoint.seq,
                format!(
                    "the anchored checkpoint {} covers entry {}, which the export does not hold as it was signed",
                    checkpoint.number, checkpoint.seq
                ),
            );
            None
        }
    }
}

/// Parses an export file's lines.
pub fn parse_export(text: &str) -> Result<Vec<ExportLine>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CheckpointBody, FIRST_PREV, endorsement_payload};
    use crate::entry::ChainedEntry;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    struct Signer {
        pair: EcdsaKeyPair,
        version: u32,
    }

    fn signer(version: u32) -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        Signer {
            pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .expect("pair"),
            version,
        }
    }

    impl Signer {
        fn point(&self) -> Vec<u8> {
            self.pair.public_key().as_ref().to_vec()
        }
        /// Checkpoint `number` over entry `seq`, following `prev` (`None`: the first).
        fn checkpoint(
            &self,
            number: u64,
            seq: u64,
            hash: &str,
            prev: Option<&ExportLine>,
        ) -> ExportLine {
            let prev = match prev {
                Some(ExportLine::Checkpoint(c)) => c.hash().expect("hash"),
                _ => FIRST_PREV,
            };
            let body = CheckpointBody {
                number,
                seq,
                chain_hash: decode32(hash).expect("hash"),
                time_ms: 1000 + seq as i64,
                key_version: self.version,
                key_id: key_id(&self.point()),
                prev,
                state: [0u8; 32],
            };
            let sig = self
                .pair
                .sign(&SystemRandom::new(), &body.signed_payload())
                .expect("sign");
            ExportLine::Checkpoint(body.into_checkpoint(sig.as_ref()))
        }

        /// The statement that the key backend anchored `checkpoint`, signed with this key.
        fn statement(&self, checkpoint: &ExportLine) -> ExportLine {
            let ExportLine::Checkpoint(checkpoint) = checkpoint else {
                panic!("a checkpoint line");
            };
            let hash = checkpoint.hash().expect("hash");
            let payload = crate::statement::signed_payload(checkpoint.number, &hash, 3, 99_000);
            let sig = self
                .pair
                .sign(&SystemRandom::new(), &payload)
                .expect("sign");
            ExportLine::Anchor(AnchorStatement {
                checkpoint: checkpoint.number,
                checkpoint_hash: hex::encode(hash),
                counter: 3,
                time_ms: 99_000,
                key_version: self.version,
                key_id: hex::encode(key_id(&self.point())),
                signature: hex::encode(sig.as_ref()),
            })
        }

        /// This key as an export line, endorsed by `by` (the previous version).
        fn key_line(&self, by: Option<&Signer>) -> ExportLine {
            let endorsement = by.map_or(String::new(), |by| {
                let sig = by
                    .pair
                    .sign(
                        &SystemRandom::new(),
                        &endorsement_payload(self.version, &key_id(&self.point())),
                    )
                    .expect("sign");
                hex::encode(sig.as_ref())
            });
            ExportLine::Key(ExportedKey {
                version: self.version,
                public_key: hex::encode(self.point()),
                endorsement,
            })
        }
    }

    fn entries(n: u64) -> Vec<ExportedEntry> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let entry = AuditEntry {
                    seq,
                    time_ms: seq as i64,
                    action: "UNSEAL".into(),
                    reason: format!("r{seq}"),
                    ..AuditEntry::default()
                };
                let chained = ChainedEntry::new(entry.clone(), prev);
                let exported = ExportedEntry {
                    seq,
                    time_ms: entry.time_ms,
                    operator: entry.operator,
                    role: entry.role,
                    tenant: entry.tenant,
                    action: entry.action,
                    handle: entry.handle,
                    purpose: entry.purpose,
                    outcome: entry.outcome,
                    code: entry.code,
                    reason: entry.reason,
                    request_id: entry.request_id,
                    peer: entry.peer,
                    token_id: entry.token_id,
                    state: entry.state,
                    format: chained.format.tag().into(),
                    canonical: hex::encode(&chained.canonical),
                    prev_hash: hex::encode(prev),
                    hash: hex::encode(chained.hash),
                };
                prev = chained.hash;
                exported
            })
            .collect()
    }

    /// 10 entries, checkpoints at 5 (key v1) and 10 (key v2: the key was rotated).
    fn export(v1: &Signer, v2: &Signer) -> Vec<ExportLine> {
        let list = entries(10);
        let mut lines: Vec<ExportLine> = list.iter().cloned().map(ExportLine::Entry).collect();
        let first = v1.checkpoint(1, 5, &list[4].hash, None);
        let second = v2.checkpoint(2, 10, &list[9].hash, Some(&first));
        let statement = v2.statement(&second);
        lines.push(first);
        lines.push(second);
        lines.push(v1.key_line(None));
        lines.push(v2.key_line(Some(v1)));
        lines.push(statement);
        lines
    }

    #[test]
    fn pinned_verification_follows_the_key_chain() {
        let (v1, v2) = (signer(1), signer(2));
        let pin = key_id(&v1.point());
        let report = verify_pinned(&export(&v1, &v2), &pin);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checkpoints_verified, 2);

        // Another pin trusts nothing.
        let report = verify_pinned(&export(&v1, &v2), &[7u8; 32]);
        assert!(!report.ok);

        // A key injected as version 2 without the endorsement of version 1.
        let intruder = signer(2);
        let mut injected = export(&v1, &v2);
        injected.retain(|l| !matches!(l, ExportLine::Key(k) if k.version == 2));
        injected.push(intruder.key_line(Some(&intruder)));
        let report = verify_pinned(&injected, &pin);
        assert!(
            !report.ok && report.problems.iter().any(|p| p.contains("not chained")),
            "{report:?}"
        );

        // Entries that no checkpoint anchors fail pinned verification.
        let mut bare = export(&v1, &v2);
        bare.retain(|l| !matches!(l, ExportLine::Checkpoint(_)));
        assert!(!verify_pinned(&bare, &pin).ok);
    }

    #[test]
    fn detects_a_missing_or_replaced_checkpoint() {
        let v1 = signer(1);
        let list = entries(9);
        let mut lines: Vec<ExportLine> = list.iter().cloned().map(ExportLine::Entry).collect();
        let c1 = v1.checkpoint(1, 3, &list[2].hash, None);
        let c2 = v1.checkpoint(2, 6, &list[5].hash, Some(&c1));
        let c3 = v1.checkpoint(3, 9, &list[8].hash, Some(&c2));
        let keys = [v1.point()];
        lines.push(v1.statement(&c3));
        let mut all = lines.clone();
        all.extend([c1.clone(), c2.clone(), c3.clone()]);
        assert!(verify(&all, &keys).ok);

        let mut missing = lines.clone();
        missing.extend([c1.clone(), c3.clone()]);
        let report = verify(&missing, &keys);
        assert!(
            !report.ok
                && report
                    .problems
                    .iter()
                    .any(|p| p.contains("checkpoint 2 is missing")),
            "{report:?}"
        );

        // A validly signed checkpoint that does not link to its predecessor (re-signed history).
        let resigned = v1.checkpoint(2, 6, &list[5].hash, None);
        lines.extend([c1, resigned, c3]);
        assert!(!verify(&lines, &keys).ok);
    }

    #[test]
    fn clean_export_verifies_across_a_key_rotation() {
        let (v1, v2) = (signer(1), signer(2));
        let report = verify(&export(&v1, &v2), &[v1.point(), v2.point()]);
        assert!(report.ok, "{report:?}");
        assert_eq!(
            (
                report.checkpoints_verified,
                report.anchored_through,
                report.unanchored_tail
            ),
            (2, 10, 0)
        );
    }

    #[test]
    fn detects_edits_deletions_swaps_truncation_and_forgery() {
        let (v1, v2) = (signer(1), signer(2));
        let keys = [v1.point(), v2.point()];
        let mut edited = export(&v1, &v2);
        if let ExportLine::Entry(e) = &mut edited[3] {
            e.reason = "nothing happened".into();
        }
        assert_eq!(verify(&edited, &keys).first_bad_seq, Some(4));

        let mut deleted = export(&v1, &v2);
        deleted.remove(6);
        assert_eq!(verify(&deleted, &keys).first_bad_seq, Some(7));

        let mut swapped = export(&v1, &v2);
        swapped.swap(2, 3);
        assert_eq!(verify(&swapped, &keys).first_bad_seq, Some(3));

        let mut truncated = export(&v1, &v2);
        truncated.retain(|l| !matches!(l, ExportLine::Entry(e) if e.seq > 7));
        let report = verify(&truncated, &keys);
        assert!(!report.ok);
        assert_eq!(report.first_bad_seq, Some(8));

        let mut forged = export(&v1, &v2);
        if let Some(ExportLine::Checkpoint(c)) = forged
            .iter_mut()
            .rfind(|l| matches!(l, ExportLine::Checkpoint(_)))
        {
            c.seq = 9; // claims another position with the same signature
        }
        let report = verify(&forged, &keys);
        assert!(
            !report.ok
                && report
                    .problems
                    .iter()
                    .any(|p| p.contains("signature does not verify")),
            "{report:?}"
        );

        // A rewritten history with recomputed hashes is caught by the checkpoint.
        let list = entries(10);
        let mut rewritten: Vec<ExportLine> = Vec::new();
        let mut prev = GENESIS_HASH;
        for mut e in list.clone() {
            if e.seq == 3 {
                e.reason = "rewritten".into();
            }
            let chained = ChainedEntry::new(e.entry(), prev);
            e.canonical = hex::encode(&chained.canonical);
            e.prev_hash = hex::encode(prev);
            e.hash = hex::encode(chained.hash);
            prev = chained.hash;
            rewritten.push(ExportLine::Entry(e));
        }
        rewritten.push(v1.checkpoint(1, 5, &list[4].hash, None));
        let report = verify(&rewritten, &keys);
        assert!(
            !report.ok && report.problems.iter().any(|p| p.contains("rewritten")),
            "{report:?}"
        );

        // Without the right public key nothing is anchored.
        let report = verify(&export(&v1, &v2), &[v1.point()]);
        assert!(!report.ok);
    }

    #[test]
    fn the_anchor_statement_makes_a_cut_export_fail() {
        let (v1, v2) = (signer(1), signer(2));
        let keys = [v1.point(), v2.point()];
        let report = verify(&export(&v1, &v2), &keys);
        assert_eq!(report.complete_through_checkpoint, Some(2), "{report:?}");

        // Cut after checkpoint 1 (as a log that lost its newest commits exports): every line
        // left verifies, but the anchored checkpoint 2 is missing.
        let mut cut = export(&v1, &v2);
        cut.retain(|l| match l {
            ExportLine::Entry(e) => e.seq <= 5,
            ExportLine::Checkpoint(c) => c.number == 1,
            _ => true,
        });
        let report = verify(&cut, &keys);
        assert!(
            !report.ok
                && report
                    .problems
                    .iter()
                    .any(|p| p.contains("anchored checkpoint 2")),
            "{report:?}"
        );

        // Without its statement, an export of authenticated entries proves nothing whole.
        let mut bare = export(&v1, &v2);
        bare.retain(|l| !matches!(l, ExportLine::Anchor(_)));
        let report = verify(&bare, &keys);
        assert!(
            !report.ok
                && report
                    .problems
                    .iter()
                    .any(|p| p.contains("no anchor statement")),
            "{report:?}"
        );

        // A young store: nothing anchored yet, said and signed (checkpoint 0).
        let young: Vec<ExportLine> = entries(3).into_iter().map(ExportLine::Entry).collect();
        let mut with_zero = young.clone();
        let hash = [0u8; 32];
        let payload = crate::statement::signed_payload(0, &hash, 0, 5_000);
        let sig = v1.pair.sign(&SystemRandom::new(), &payload).expect("sign");
        with_zero.push(ExportLine::Anchor(AnchorStatement {
            checkpoint: 0,
            checkpoint_hash: hex::encode(hash),
            counter: 0,
            time_ms: 5_000,
            key_version: 1,
            key_id: hex::encode(key_id(&v1.point())),
            signature: hex::encode(sig.as_ref()),
        }));
        let report = verify(&with_zero, &keys);
        assert!(report.ok, "{report:?}");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("nothing had been anchored")),
            "{report:?}"
        );
        assert!(!verify(&young, &keys).ok, "no statement at all");

        // A statement altered to name an older checkpoint no longer verifies.
        let mut older = export(&v1, &v2);
        if let Some(ExportLine::Anchor(a)) = older.last_mut() {
            a.checkpoint = 1;
        }
        assert!(!verify(&older, &keys).ok);
    }

    #[test]
    fn reports_the_unanchored_tail() {
        let v1 = signer(1);
        let list = entries(8);
        let mut lines: Vec<ExportLine> = list.iter().cloned().map(ExportLine::Entry).collect();
        let checkpoint = v1.checkpoint(1, 5, &list[4].hash, None);
        lines.push(v1.statement(&checkpoint));
        lines.push(checkpoint);
        let report = verify(&lines, &[v1.point()]);
        assert!(report.ok, "{report:?}");
        assert_eq!((report.anchored_through, report.unanchored_tail), (5, 3));
    }

    #[test]
    fn entries_are_read_by_their_format_and_an_unknown_one_is_named() {
        let v1 = signer(1);
        let list = entries(3);
        let mut lines: Vec<ExportLine> = list.iter().cloned().map(ExportLine::Entry).collect();
        let checkpoint = v1.checkpoint(1, 3, &list[2].hash, None);
        lines.push(v1.statement(&checkpoint));
        lines.push(checkpoint);
        assert!(verify(&lines, &[v1.point()]).ok);

        let mut future = lines.clone();
        if let ExportLine::Entry(e) = &mut future[1] {
            e.format = "MNL-AUDIT-9".into();
        }
        let report = verify(&future, &[v1.point()]);
        assert!(
            !report.ok
                && report
                    .problems
                    .iter()
                    .any(|p| p.contains("newer vault-client")),
            "{report:?}"
        );

        // A line whose shown fields are not what its hash covers.
        let mut shown = lines;
        if let ExportLine::Entry(e) = &mut shown[2] {
            e.action = "DESCRIBE".into();
        }
        let report = verify(&shown, &[v1.point()]);
        assert_eq!(report.first_bad_seq, Some(3), "{report:?}");
    }
}
