//! The key-backend conformance suite on every backend this machine runs: the simulated token
//! in-process, SoftHSM in a process of its own. Plus proof that keys cannot leave SoftHSM.

use std::process::Command;

use vault_daemon::keys::OpenedKeys;
use vault_daemon::keys::sim::SimBackend;
use vault_tests::binary_path;
use vault_tests::softhsm::SoftHsmToken;

#[test]
fn sim_backend_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    let open = move || OpenedKeys::self_anchored(SimBackend::open(&path, false).expect("open sim"));
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

mod tpm {
    use vault_daemon::keys::OpenedKeys;

    use vault_daemon::devkit::swtpm::Swtpm;
    use vault_daemon::keys::anchor::Anchor;
    use vault_daemon::keys::anchor::AnchorStore;
    use vault_daemon::keys::tpm::{TpmAuth, TpmBackend, TpmSettings};
    use vault_daemon::keys::{KeyBackend, KeyUse};

    fn settings(tpm: &Swtpm) -> TpmSettings {
        TpmSettings {
            tcti: tpm.tcti(),
            persistent_base: 0x8101_8000,
            persistent_count: 32,
            parameter_encryption: false,
            auth: Some(TpmAuth::from_secret(b"conformance secret")),
        }
    }

    #[test]
    fn tpm_keys_and_the_anchor_need_the_auth_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tpm = Swtpm::start(&dir.path().join("tpm"), None).expect("swtpm");
        let backend = TpmBackend::open(settings(&tpm)).expect("open");
        let mac = backend.create_key(KeyUse::Mac, "mac").expect("mac");
        let kek = backend.create_key(KeyUse::Wrap, "kek").expect("kek");
        let wrapped = backend.wrap(&kek, &[9u8; 32], b"aad").expect("wrap");
        backend.mac(&mac, b"data").expect("mac with the secret");
        backend
            .write_anchor(&Anchor::next(None, 1, [1; 32]))
            .expect("anchor");
        drop(backend);
        let out = std::process::Command::new("tpm2_nvreadpublic")
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .output()
            .expect("x");
        eprintln!("DEBUG {}", String::from_utf8_lossy(&out.stdout));

        // The same TPM and the same key blobs, without the secret or with another one.
        for (guess, auth) in [
            (false, None),
            (true, Some(TpmAuth::from_secret(b"a guess"))),
        ] {
            let intruder = TpmBackend::open(TpmSettings {
                auth,
                ..settings(&tpm)
            })
            .expect("open");
            assert!(
                intruder.mac(&mac, b"data").is_err(),
                "MAC key used without its authValue"
            );
            assert!(
                intruder.unwrap(&kek, &wrapped, b"aad").is_err(),
                "KEK used without its authValue"
            );
            let read = intruder.read_anchor();
            assert!(
                read.is_err(),
                "anchor read without its authValue ({}): {read:?}",
                if guess {
                    "a guessed secret"
                } else {
                    "no secret"
                }
            );
            assert!(
                intruder
                    .write_anchor(&Anchor::next(None, 9, [9; 32]))
                    .is_err(),
                "anchor moved without its authValue"
            );
        }
        let backend = TpmBackend::open(settings(&tpm)).expect("open");
        assert_eq!(
            backend.read_anchor().expect("read").map(|a| a.checkpoint),
            Some(1)
        );
    }

    #[test]
    fn swtpm_backend_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tpm = Swtpm::start(&dir.path().join("tpm"), None)
            .expect("swtpm is required (Debian package swtpm)");
        let settings = settings(&tpm);
        let open = move || {
            OpenedKeys::self_anchored(TpmBackend::open(settings.clone()).expect("open TPM backend"))
        };
        vault_tests::conformance::run(&open).expect("swtpm conformance");
    }

    #[test]
    fn tpm_keys_survive_a_tpm_restart_and_do_not_load_in_another_tpm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tpm = Swtpm::start(&dir.path().join("tpm-a"), None).expect("swtpm");
        let backend = TpmBackend::open(settings(&tpm)).expect("open");
        let kek = backend.create_key(KeyUse::Wrap, "kek").expect("kek");
        let mac = backend.create_key(KeyUse::Mac, "mac").expect("mac");
        let wrapped = backend.wrap(&kek, &[9u8; 32], b"aad").expect("wrap");
        let tag = backend.mac(&mac, b"123456789018").expect("mac");

        // Restart the TPM on the same state and ports: the same backend reconnects by itself.
        let port = tpm.port;
        tpm.kill();
        assert!(
            backend.unwrap(&kek, &wrapped, b"aad").is_err(),
            "no TPM, no DEK"
        );
        let tpm = Swtpm::start(&dir.path().join("tpm-a"), Some(port)).expect("restart swtpm");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(
            backend
                .unwrap(&kek, &wrapped, b"aad")
                .expect("unwrap after restart")
                .as_slice(),
            &[9u8; 32]
        );
        assert_eq!(
            backend
                .mac(&mac, b"123456789018")
                .expect("mac after restart"),
            tag
        );

        // Another TPM (another primary seed) cannot load the blobs.
        let other = Swtpm::start(&dir.path().join("tpm-b"), None).expect("second swtpm");
        let foreign = TpmBackend::open(settings(&other)).expect("open other");
        assert!(
            foreign.unwrap(&kek, &wrapped, b"aad").is_err(),
            "KEK blob loaded in another TPM"
        );
        assert!(
            foreign.mac(&mac, b"123456789018").is_err(),
            "MAC blob loaded in another TPM"
        );
        drop(tpm);
    }
}
