//! The auditor's offline workflow with the CLI: export entries and signed checkpoints, fetch the
//! audit public keys, stop the daemon, verify with neither daemon nor token — across an audit
//! key rotation. Tampered copies of the export (an edited, deleted or swapped entry, a
//! truncated tail, a forged checkpoint) are each refused, naming the first bad entry.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use vault_client::pb;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::seal_request;
use vault_tests::{Daemon, binary_path};

const W: &str = "STAFF_WITHHOLDING";

fn cli(endpoint: Option<&str>, token: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(binary_path("vault-client"));
    command
        .env_remove("LOCKER_TOKEN")
        .env_remove("LOCKER_TOKEN_FILE");
    if let Some(endpoint) = endpoint {
        command.arg("--endpoint").arg(endpoint);
    } else {
        // Offline: point at a port where nothing listens, to prove no daemon is needed.
        command.arg("--endpoint").arg("http://127.0.0.1:9");
    }
    if let Some(token) = token {
        command.arg("--token-file").arg(token);
    }
    let output = command.args(args).output().expect("run vault-client");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("export")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn write_lines(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).expect("write");
}

/// `audit verify --offline EXPORT` with the keys `trust` names (`--public-key PEM` or `--pin
/// FINGERPRINT`).
fn verify_with(export: &Path, trust: [&str; 2]) -> (bool, String) {
    let export = export.to_str().expect("utf8");
    let (ok, stdout, stderr) = cli(
        None,
        None,
        &["audit", "verify", "--offline", export, trust[0], trust[1]],
    );
    (ok, format!("{stdout}{stderr}"))
}

fn verify_pinned(export: &Path, pin: &str) -> (bool, String) {
    verify_with(export, ["--pin", pin])
}

fn verify_offline(export: &Path, keys: &Path) -> (bool, String) {
    verify_with(export, ["--public-key", keys.to_str().expect("utf8")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_verification_across_a_key_rotation_and_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let tokens = daemon.data_dir.join("tokens");
    let (admin, auditor) = (
        tokens.join("dev-admin.token"),
        tokens.join("dev-auditor.token"),
    );
    let endpoint = daemon.endpoint();

    let mut handler = daemon.dev_client("dev-handler").await;
    for i in 0..5 {
        handler
            .locker
            .seal(seal_request(
                "dev",
                &format!("A{i}"),
                &valid_number(800 + i),
                &[W],
            ))
            .await
            .expect("seal");
    }
    // Rotation signs a checkpoint with key 1, then key 2 takes over.
    let (ok, stdout, stderr) = cli(
        Some(&endpoint),
        Some(&admin),
        &["--output", "json", "audit", "rotate-key"],
    );
    assert!(ok, "{stderr}");
    let rotated: Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(rotated["version"], 2);
    for i in 5..10 {
        handler
            .locker
            .seal(seal_request(
                "dev",
                &format!("A{i}"),
                &valid_number(800 + i),
                &[W],
            ))
            .await
            .expect("seal");
    }
    drop(handler);
    // A clean stop signs a final checkpoint with key 2.
    let daemon = daemon.restart();
    let endpoint = daemon.endpoint();

    let online = {
        let mut client = daemon.dev_client("dev-auditor").await;
        client
            .admin
            .audit_verify(pb::AuditVerifyRequest {})
            .await
            .expect("verify")
            .into_inner()
    };
    assert!(online.ok, "{}", online.message);
    assert!(online.checkpoints_verified >= 2, "{}", online.message);

    let keys = dir.path().join("audit-keys.pem");
    let export = dir.path().join("audit.jsonl");
    let (ok, _, stderr) = cli(
        Some(&endpoint),
        Some(&auditor),
        &["audit", "public-key", "--out", keys.to_str().expect("utf8")],
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&keys)
            .expect("pem")
            .matches("BEGIN PUBLIC KEY")
            .count(),
        2
    );
    // An older export left world-readable is replaced, and tightened.
    std::fs::write(&export, "old\n").expect("old export");
    std::fs::set_permissions(&export, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (ok, _, stderr) = cli(
        Some(&endpoint),
        Some(&auditor),
        &["audit", "export", "--out", export.to_str().expect("utf8")],
    );
    assert!(ok, "{stderr}");
    for written in [&keys, &export] {
        let mode = std::fs::metadata(written)
            .expect("written")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{} is readable by others", written.display());
    }
    let mut daemon = daemon;
    assert!(daemon.stop().success());

    // Clean: verifies with neither daemon nor token.
    let (ok, report) = verify_offline(&export, &keys);
    assert!(ok, "{report}");
    assert!(report.starts_with("OK: "), "{report}");
    let all = lines(&export);
    let checkpoints: Vec<&Value> = all.iter().filter(|l| l["type"] == "checkpoint").collect();
    assert!(checkpoints.len() >= 2);
    assert!(
        checkpoints.iter().any(|c| c["key_version"] == 1)
            && checkpoints.iter().any(|c| c["key_version"] == 2)
    );
    let entries: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, l)| l["type"] == "entry")
        .map(|(i, _)| i)
        .collect();
    let anchored = checkpoints
        .iter()
        .map(|c| c["seq"].as_u64().expect("seq"))
        .max()
        .expect("checkpoint");
    assert!(anchored >= 20, "anchored through {anchored}");

    let tampered = dir.path().join("tampered.jsonl");
    let check = |lines: &[Value], expected_first_bad: Option<u64>, what: &str| {
        write_lines(&tampered, lines);
        let (ok, report) = verify_offline(&tampered, &keys);
        assert!(!ok, "{what} was not detected: {report}");
        if let Some(seq) = expected_first_bad {
            assert!(
                report.contains(&format!("BROKEN at entry {seq}")),
                "{what}: {report}"
            );
        }
    };
    // An edited entry.
    let mut edited = all.clone();
    edited[entries[10]]["reason"] = Value::from("nothing to see here");
    check(&edited, Some(11), "an edited entry");
    // A deleted entry.
    let mut deleted = all.clone();
    deleted.remove(entries[12]);
    check(&deleted, Some(13), "a deleted entry");
    // Two swapped entries.
    let mut swapped = all.clone();
    swapped.swap(entries[5], entries[6]);
    check(&swapped, Some(6), "two swapped entries");
    // A truncated tail: the last checkpoint names entries that are gone.
    let cut = (anchored - 3) as usize;
    let truncated: Vec<Value> = all
        .iter()
        .filter(|l| l["type"] != "entry" || l["seq"].as_u64().expect("seq") <= cut as u64)
        .cloned()
        .collect();
    check(&truncated, Some(cut as u64 + 1), "a truncated tail");
    // Cut back cleanly to an earlier checkpoint, as a log that lost its newest commits would be
    // exported: every line left verifies, but the key backend's signed anchor statement names
    // the checkpoint that is gone.
    assert!(
        report.contains("complete: the export reaches checkpoint"),
        "{report}"
    );
    let newest = checkpoints
        .iter()
        .map(|c| c["number"].as_u64().expect("number"))
        .max()
        .expect("checkpoint");
    let kept_seq = checkpoints
        .iter()
        .find(|c| c["number"] == newest - 1)
        .map(|c| c["seq"].as_u64().expect("seq"))
        .expect("an earlier checkpoint");
    let cut_back: Vec<Value> = all
        .iter()
        .filter(|l| match l["type"].as_str() {
            Some("entry") => l["seq"].as_u64().expect("seq") <= kept_seq,
            Some("checkpoint") => l["number"].as_u64().expect("number") < newest,
            _ => true,
        })
        .cloned()
        .collect();
    write_lines(&tampered, &cut_back);
    let (ok, said) = verify_offline(&tampered, &keys);
    assert!(
        !ok && said.contains(&format!("anchored checkpoint {newest}")),
        "an export cut back to a checkpoint: {said}"
    );
    // And without the statement, an export of authenticated entries proves nothing whole.
    let bare: Vec<Value> = all
        .iter()
        .filter(|l| l["type"] != "anchor")
        .cloned()
        .collect();
    write_lines(&tampered, &bare);
    let (ok, said) = verify_offline(&tampered, &keys);
    assert!(!ok && said.contains("no anchor statement"), "{said}");
    // A forged checkpoint: moved to another entry, and one with a made-up signature.
    let mut forged = all.clone();
    let last = forged
        .iter()
        .rposition(|l| l["type"] == "checkpoint")
        .expect("a checkpoint line");
    forged[last]["seq"] = Value::from(anchored - 1);
    check(&forged, None, "a moved checkpoint");
    let mut forged = all.clone();
    forged[last]["signature"] = Value::from("00".repeat(64));
    check(&forged, None, "a forged signature");
    // The wrong public key anchors nothing.
    let other = dir.path().join("other.pem");
    let text = std::fs::read_to_string(&keys).expect("pem");
    let first_block_end =
        text.find("-----END PUBLIC KEY-----").expect("block") + "-----END PUBLIC KEY-----\n".len();
    std::fs::write(&other, &text[..first_block_end]).expect("write");
    let (ok, report) = verify_offline(&export, &other);
    assert!(!ok, "verified with only the old key: {report}");

    // Pinned to the first key's fingerprint (printed by `audit public-key`): the export's own
    // keys are trusted only as far as each endorses the next.
    let pin = text
        .lines()
        .find_map(|l| l.strip_prefix("# fingerprint (pin this): "))
        .expect("fingerprint line")
        .trim()
        .to_owned();
    let (ok, report) = verify_pinned(&export, &pin);
    assert!(ok, "genuine export with --pin: {report}");
    let (ok, _) = verify_pinned(&export, &"ab".repeat(32));
    assert!(!ok, "another pin must trust nothing");
    // One checkpoint removed: the numbering has a gap.
    let first_checkpoint = all
        .iter()
        .position(|l| l["type"] == "checkpoint")
        .expect("checkpoint");
    let mut gap = all.clone();
    gap.remove(first_checkpoint);
    write_lines(&tampered, &gap);
    let (ok, report) = verify_pinned(&tampered, &pin);
    assert!(
        !ok && report.contains("missing"),
        "a removed checkpoint: {report}"
    );
    // Every checkpoint removed and an entry deleted with the chain re-hashed: nothing anchors.
    let bare: Vec<Value> = all
        .iter()
        .filter(|l| l["type"] != "checkpoint")
        .cloned()
        .collect();
    write_lines(&tampered, &bare);
    let (ok, report) = verify_pinned(&tampered, &pin);
    assert!(!ok, "an export without checkpoints: {report}");
    // A key line replaced by one the previous key never endorsed.
    let mut injected = all.clone();
    let key2 = injected
        .iter()
        .position(|l| l["type"] == "key" && l["version"] == 2)
        .expect("key version 2 line");
    injected[key2]["endorsement"] = Value::from("00".repeat(64));
    write_lines(&tampered, &injected);
    let (ok, report) = verify_pinned(&tampered, &pin);
    assert!(
        !ok && report.contains("not chained"),
        "an unendorsed key: {report}"
    );
}
