//! The key-backend conformance suite on every backend this machine runs: the simulated token
//! in-process, SoftHSM in a process of its own. Plus proof that keys cannot leave SoftHSM.

use std::process::Command;
use std::sync::Arc;

use vault_daemon::keys::KeyBackend;
use vault_daemon::keys::sim::SimBackend;
use vault_tests::binary_path;
use vault_tests::softhsm::SoftHsmToken;

#[test]
fn sim_backend_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    let open = move || -> Arc<dyn KeyBackend> {
        Arc::new(SimBackend::open(&path, false).expect("open sim"))
    };
    vault_tests::conformance::run(&open).expect("sim conformance");
}

fn run_conformance_binary(token: &SoftHsmToken, mode: &str) -> String {
    let output = Command::new(binary_path("backend-conformance"))
        .env("SOFTHSM2_CONF", &token.conf)
        .arg(mode)
        .arg(&token.module)
        .arg(&token.label)
        .arg(&token.pin_file)
        .output()
        .expect("run backend-conformance");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{mode} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn softhsm_backend_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = SoftHsmToken::create(dir.path(), "conformance");
    let stdout = run_conformance_binary(&token, "pkcs11");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[test]
fn softhsm_keys_are_sensitive_and_never_extractable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = SoftHsmToken::create(dir.path(), "extraction");
    let stdout = run_conformance_binary(&token, "pkcs11-extract");
    assert!(stdout.contains("none readable or wrappable"), "{stdout}");

    // What an administrator sees with the standard tool.
    let listing = token.pkcs11_tool(&["--list-objects"]);
    // Blocks start at an unindented header line ("Secret Key Object; AES length 32", ...).
    let mut blocks: Vec<String> = Vec::new();
    for line in listing.lines() {
        if !line.starts_with(' ') || blocks.is_empty() {
            blocks.push(String::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    let keys: Vec<&String> = blocks
        .iter()
        .filter(|b| b.starts_with("Secret Key Object") || b.starts_with("Private Key Object"))
        .filter(|b| b.contains("label:      probe/"))
        .collect();
    assert_eq!(keys.len(), 3, "{listing}"); // KEK, MAC key, private signing key
    for key in keys {
        assert!(key.contains("never extractable"), "{key}");
        assert!(key.contains("sensitive"), "{key}");
    }
    assert!(
        listing.contains("label:      probe/kek")
            && listing.contains("Usage:      encrypt, decrypt"),
        "{listing}"
    );
}
