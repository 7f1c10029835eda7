//! The memory the record view costs, per record, at a million records (resident set size
//! before and after building it, so allocator overhead counts), and what a call pays to
//! consult it: the tag of a record as read and a look-up of the current tag, each next to a
//! baseline measured in the same run (a SHA-256 of 64 bytes).
//!
//! Run with `cargo bench -p vault-daemon --bench record_view` (`RECORDS=N` to change the count).

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use vault_audit::entry::LogKey;
use vault_daemon::audit::records::{RecordTagger, RecordView};
use vault_daemon::domain::handle::Handle;
use vault_daemon::domain::identity::IdentityVerification;
use vault_daemon::domain::record::{Record, RecordStatus, SealedNumber, SubjectKind};

/// The resident set size of this process, in bytes (Linux).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// 32 bytes that look random, the same for the same serial and salt.
fn pseudo_random(serial: u64, salt: &[u8]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(salt);
    context.update(&serial.to_be_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// A record as a seal stores it, its handle, blind index and ciphertext random-looking (and
/// the same for the same serial, so the set can be digested before the view is built).
fn record(serial: u64) -> Record {
    let index = pseudo_random(serial, b"index");
    let ciphertext = pseudo_random(serial, b"ciphertext")[..28].to_vec();
    let handle = pseudo_random(serial, b"handle");
    Record {
        handle: Handle::parse(&format!("mnh_{}", hex::encode(&handle[..16]))).expect("handle"),
        tenant: format!("tenant-{:02}", serial % 7),
        subject_ref: format!("E{serial:07}"),
        subject_kind: SubjectKind::Staff,
        purposes: vec!["STAFF_WITHHOLDING".into(), "STAFF_HEALTH_PENSION".into()],
        verification: IdentityVerification::default(),
        acquired_at_ms: 1_767_000_000_000,
        acquired_by: "dev-handler".into(),
        status: RecordStatus::Active,
        sealed: Some(SealedNumber {
            format: 1,
            key_version: 1,
            wrapped_dek: vec![7; 40],
            nonce: [1; 12],
            ciphertext,
        }),
        blind_index: Some(index),
    }
}

fn main() {
    let count: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let tagger = RecordTagger::new(LogKey::new(&[9; 32]));
    let sample = record(0);
    let expected =
        RecordView::digest_of_records(&tagger, (0..count).map(|serial| Ok(record(serial))))
            .expect("digest");
    let before = resident_bytes();
    let started = Instant::now();
    let view = RecordView::from_records(
        tagger.clone(),
        0,
        (0..count).map(|serial| Ok(record(serial))),
        Some(expected),
    )
    .expect("view");
    let built = started.elapsed();
    let after = resident_bytes();
    println!(
        "record view: {} records, {:.1} bytes per record resident ({} MiB), built in {:.2} s",
        view.len(),
        (after.saturating_sub(before)) as f64 / count as f64,
        (after.saturating_sub(before)) >> 20,
        built.as_secs_f64()
    );

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    c.bench_function("baseline/sha256_64B", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&[7u8; 64])))
    });
    c.bench_function("record_view/tag_of_a_read_record", |b| {
        b.iter(|| tagger.tag(black_box(&sample)))
    });
    let present = record(count / 2).handle;
    c.bench_function("record_view/current_tag_of_a_handle", |b| {
        b.iter(|| view.tag(black_box(&present)))
    });
}
