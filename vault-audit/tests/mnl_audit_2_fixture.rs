//! Evidence written before entries named their format (`MNL-AUDIT-2`, exported by the release
//! before the authenticated log) must verify with every later verifier: an auditor checks years
//! of exports across upgrades. The fixture is a real export of a `--dev` daemon of that release
//! (20 entries: seals, an unseal, a refused unseal, a lookup, three starts and stops, two
//! checkpoints) with its audit public key.

use vault_audit::checkpoint::parse_public_keys_pem;
use vault_audit::offline::{ExportLine, parse_export, verify, verify_pinned};

const EXPORT: &str = include_str!("fixtures/mnl-audit-2-export.jsonl");
const KEYS: &str = include_str!("fixtures/mnl-audit-2-keys.pem");
/// The first audit key's fingerprint, as `audit public-key` printed it then.
const PIN: &str = "9e4ae48fcb18f77951bd0451eedd9879accc2e8bdd434d78374d0aac1a094421";

fn pin() -> [u8; 32] {
    hex::decode(PIN).expect("hex").try_into().expect("32 bytes")
}

#[test]
fn the_mnl_audit_2_export_verifies_with_this_verifier() {
    let lines = parse_export(EXPORT).expect("the old export parses");
    let entries: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            ExportLine::Entry(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(entries.len(), 20);
    assert!(entries.iter().all(|e| e.format == "MNL-AUDIT-2"));

    let report = verify_pinned(&lines, &pin());
    assert!(report.ok, "{report:?}");
    assert_eq!(
        (report.checkpoints_verified, report.anchored_through),
        (2, 19)
    );
    let keys = parse_public_keys_pem(KEYS).expect("pem");
    assert!(verify(&lines, &keys).ok);
}

#[test]
fn an_edit_to_the_old_export_is_still_found() {
    let edited = EXPORT.replacen("\"action\":\"UNSEAL\"", "\"action\":\"DESCRIBE\"", 1);
    assert_ne!(edited, EXPORT, "the fixture holds an UNSEAL");
    let lines = parse_export(&edited).expect("parses");
    let report = verify_pinned(&lines, &pin());
    assert!(!report.ok, "{report:?}");
}
