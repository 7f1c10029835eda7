//! Micro-benchmarks of the per-call pieces of the locker, each next to a baseline measured in
//! the same run (a SHA-256 of 64 bytes), so figures read as ratios on a noisy shared machine:
//! number normalisation and check digit, record AEAD seal/open with its associated data,
//! audit entry encoding and chain hashing, the authorisation decision, and reading an
//! authenticated row the sealer has verified before (what every call pays per authority row).

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::SystemRandom;
use vault_audit::entry::{AuditEntry, ChainedEntry, GENESIS_HASH};
use vault_daemon::domain::handle::Handle;
use vault_daemon::domain::number::IndividualNumber;
use vault_daemon::domain::operator::{Grant, Operator, Role};
use vault_daemon::domain::policy::Action;
use vault_daemon::keys::envelope::{FORMAT_V1, record_aad};

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();

    c.bench_function("baseline/sha256_64B", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&[7u8; 64])))
    });

    c.bench_function("number/parse_hyphenated_fullwidth", |b| {
        b.iter(|| {
            IndividualNumber::parse(black_box("１２３４-５６７８-９０１８"))
                .map(|n| n.digits().len())
        })
    });

    let handle = Handle::generate(&SystemRandom::new()).expect("handle");
    let purposes = vec![
        "STAFF_HEALTH_PENSION".to_owned(),
        "STAFF_WITHHOLDING".to_owned(),
    ];
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[3u8; 32]).expect("key"));
    c.bench_function("record/aad_seal_open", |b| {
        b.iter(|| {
            let aad = record_aad(FORMAT_V1, &handle, "tenant-01", 1, black_box(&purposes));
            let mut buffer = b"123456789018".to_vec();
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key([1; 12]),
                Aad::from(&aad),
                &mut buffer,
            )
            .expect("seal");
            key.open_in_place(
                Nonce::assume_unique_for_key([1; 12]),
                Aad::from(&aad),
                &mut buffer,
            )
            .expect("open")
            .len()
        })
    });

    let entry = AuditEntry {
        seq: 42,
        time_ms: 1_700_000_000_000,
        operator: "payroll".into(),
        role: "service".into(),
        tenant: "tenant-01".into(),
        action: "UNSEAL".into(),
        handle: handle.to_string(),
        purpose: "STAFF_WITHHOLDING".into(),
        outcome: "ALLOWED".into(),
        code: "OK".into(),
        reason: "number released".into(),
        request_id: "0123456789abcdef".into(),
        peer: "127.0.0.1:50000".into(),
        token_id: "0123456789abcdef0123456789abcdef".into(),
        state: String::new(),
    };
    c.bench_function("audit/encode_and_chain", |b| {
        b.iter(|| {
            ChainedEntry::new(black_box(entry.clone()), GENESIS_HASH)
                .to_row()
                .len()
        })
    });

    let operator = Operator {
        id: "payroll".into(),
        role: Role::Service,
        display_name: String::new(),
        disabled: false,
        grants: (0..12)
            .map(|i| Grant {
                tenant: format!("tenant-{i:02}"),
                purpose: "STAFF_WITHHOLDING".into(),
            })
            .collect(),
        created_at_ms: 0,
    };
    c.bench_function("authz/role_tenant_purpose", |b| {
        b.iter(|| {
            Action::Unseal.permits(operator.role)
                && operator.has_tenant(black_box("tenant-07"))
                && operator.has_grant("tenant-07", black_box("STAFF_WITHHOLDING"))
        })
    });
    // An operator row sealed under a state MAC key in the simulated token, then opened again
    // and again: the steady state of the hot path (verified rows cost a hash, no backend call).
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = std::sync::Arc::new(
        vault_daemon::keys::sim::SimBackend::open(dir.path(), false).expect("sim"),
    );
    let key = vault_daemon::keys::KeyBackend::create_key(
        backend.as_ref(),
        vault_daemon::keys::KeyUse::Mac,
        "state-mac",
    )
    .expect("key");
    let sealer = vault_daemon::store::sealing::RowSealer::new(std::sync::Arc::new(
        vault_daemon::keys::state_mac::StateMac::new(backend, key, Duration::from_secs(2)),
    ));
    let row =
        vault_daemon::store::codec::encode_sealed(&sealer, "operators", b"payroll", &operator)
            .expect("seal row");
    c.bench_function("store/open_verified_operator_row", |b| {
        b.iter(|| {
            vault_daemon::store::codec::decode_sealed::<Operator>(
                &sealer,
                "operators",
                b"payroll",
                black_box(&row),
            )
            .expect("open")
            .grants
            .len()
        })
    });
    c.final_summary();
}
