//! Key-backend micro-benchmarks: wrap, unwrap and HMAC on the simulated token, SoftHSM and an
//! swtpm, one thread, next to a baseline measured in the same run (ring AES-256-GCM seal+open
//! and HMAC-SHA256 in process), so results read as ratios on a shared, noisy machine.
//!
//! `cargo bench -p vault-tests --bench backends` provisions its own SoftHSM token and swtpm.
//! SoftHSM reads `SOFTHSM2_CONF` when the library initialises, so the bench re-executes itself
//! once with the variable pointing at a fresh token.

#![forbid(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::hint::black_box;

use criterion::Criterion;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use secrecy::SecretString;
use vault_daemon::devkit::swtpm::Swtpm;
use vault_daemon::keys::pkcs11::{Pkcs11Backend, Pkcs11Settings};
use vault_daemon::keys::sim::SimBackend;
use vault_daemon::keys::tpm::{TpmBackend, TpmSettings};
use vault_daemon::keys::{KeyBackend, KeyUse};
use vault_tests::softhsm::SoftHsmToken;

const LABEL_VAR: &str = "MNL_BENCH_P11_LABEL";
const PIN_VAR: &str = "MNL_BENCH_P11_PIN_FILE";
const DIR_VAR: &str = "MNL_BENCH_DIR";

fn backend_group(c: &mut Criterion, name: &str, backend: &dyn KeyBackend) {
    let kek = backend.create_key(KeyUse::Wrap, "bench/kek").expect("kek");
    let mac = backend.create_key(KeyUse::Mac, "bench/mac").expect("mac");
    let dek = [5u8; 32];
    let aad = [7u8; 96];
    let wrapped = backend.wrap(&kek, &dek, &aad).expect("wrap");
    let mut group = c.benchmark_group(name);
    group.bench_function("wrap", |b| {
        b.iter(|| backend.wrap(&kek, black_box(&dek), &aad).expect("wrap"))
    });
    group.bench_function("unwrap", |b| {
        b.iter(|| {
            backend
                .unwrap(&kek, black_box(&wrapped), &aad)
                .expect("unwrap")
        })
    });
    group.bench_function("hmac", |b| {
        b.iter(|| backend.mac(&mac, black_box(b"123456789018")).expect("mac"))
    });
    group.finish();
}

fn baseline(c: &mut Criterion) {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[1u8; 32]).expect("key"));
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[2u8; 32]);
    let mut group = c.benchmark_group("baseline");
    group.bench_function("ring_aes_gcm_seal_open_32B", |b| {
        b.iter(|| {
            let mut buffer = black_box([5u8; 32]).to_vec();
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(&[7u8; 96]),
                &mut buffer,
            )
            .expect("seal");
            key.open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(&[7u8; 96]),
                &mut buffer,
            )
            .expect("open")
            .len()
        })
    });
    group.bench_function("ring_hmac_sha256_12B", |b| {
        b.iter(|| ring::hmac::sign(&hmac, black_box(b"123456789018")))
    });
    group.finish();
}

fn main() {
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        let dir: PathBuf = tempfile::tempdir().expect("tempdir").keep();
        let token = SoftHsmToken::create(&dir, "bench");
        let error = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(std::env::args_os().skip(1))
            .env("SOFTHSM2_CONF", &token.conf)
            .env(LABEL_VAR, &token.label)
            .env(PIN_VAR, &token.pin_file)
            .env(DIR_VAR, &dir)
            .env("TSS2_LOG", "all+NONE")
            .exec();
        panic!("cannot re-execute the bench with SOFTHSM2_CONF: {error}");
    }
    let dir = PathBuf::from(std::env::var_os(DIR_VAR).expect("bench dir"));
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();

    baseline(&mut c);

    let sim = SimBackend::open(&dir.join("sim"), false).expect("sim");
    backend_group(&mut c, "sim", &sim);

    let pin = std::fs::read_to_string(std::env::var(PIN_VAR).expect("pin file var")).expect("pin");
    let softhsm = Pkcs11Backend::open(Pkcs11Settings {
        module: vault_daemon::devkit::softhsm::module_path().expect("SoftHSM module"),
        token_label: std::env::var(LABEL_VAR).expect("label var"),
        pin: SecretString::from(pin.trim().to_owned()),
        max_sessions: 4,
    })
    .expect("SoftHSM backend");
    backend_group(&mut c, "softhsm", &softhsm);

    let swtpm = Swtpm::start(&dir.join("tpm"), None).expect("swtpm");
    for (name, parameter_encryption, base) in [
        ("tpm", false, 0x8101_8000),
        ("tpm_encrypted", true, 0x8101_8010),
    ] {
        let tpm = Arc::new(
            TpmBackend::open(TpmSettings {
                tcti: swtpm.tcti(),
                persistent_base: base,
                persistent_count: 8,
                parameter_encryption,
                auth: Some(vault_daemon::keys::tpm::TpmAuth::from_secret(b"bench")),
            })
            .expect("TPM backend"),
        );
        backend_group(&mut c, name, tpm.as_ref());
    }
    drop(swtpm);
    c.final_summary();
    let _ = std::fs::remove_dir_all(&dir);
}
