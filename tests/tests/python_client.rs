//! A Python grpcio client (stubs generated from `proto/` here, with grpc_tools) runs a
//! year-end batch: 100,000 UnsealBatch items against a backend that takes 20 ms per operation,
//! every result read on one channel, in order. Before the daemon read batch items ahead of
//! their results, h2 closed such a connection (GOAWAY too_many_data_frames) after a few
//! thousand results. The interpreter comes from `scripts/python-env.sh` (the test command
//! sets VAULT_TEST_PYTHON); without it the test fails, it never skips.

use std::path::Path;
use std::process::Command;

use vault_client::pb;
use vault_tests::DaemonOptions;
use vault_tests::python::{generate_stubs, interpreter};
use vault_tests::rpc::{start_from_config, tenant_with_operator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcio_client_streams_100k_batch_items_on_one_channel() {
    let python = interpreter();
    let dir = tempfile::tempdir().expect("tempdir");
    let stub_dir = dir.path().join("stubs");
    std::fs::create_dir_all(&stub_dir).expect("stubs dir");
    generate_stubs(&python, &stub_dir);

    let data = dir.path().join("data");
    let (daemon, mut admin, mut approver) = start_from_config(
        &data,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nkind = \"sim\"\nallow_insecure = true\nsim_fault_control_file = true\nmax_in_flight = 128\n",
            data.display()
        ),
        DaemonOptions::default(),
    )
    .await;
    let token = tenant_with_operator(
        &mut admin,
        &mut approver,
        "t1",
        "payroll",
        pb::Role::Service,
    )
    .await;
    let token_file = dir.path().join("payroll.token");
    {
        use secrecy::ExposeSecret;
        std::fs::write(&token_file, format!("{}\n", token.expose_secret())).expect("token");
    }
    // Every key operation now takes 20 ms.
    std::fs::write(
        data.join("hsm-sim").join(hsm_sim::FAULT_FILE_NAME),
        "delay 20",
    )
    .expect("fault");

    let output = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/batch_client.py"))
        .arg(&stub_dir)
        .arg(daemon.addr.to_string())
        .arg(&token_file)
        .args(["t1", "100000"])
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("batch ok: 100000 results"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Malformed and oversized requests (sent as raw bytes by grpcio, which any client can do)
/// never reach the locker: they are refused by the codec, and audited per address and window
/// with their count, not one commit each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_calls_are_audited_aggregated() {
    let python = interpreter();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut daemon, mut admin, mut approver) = start_from_config(
        &data,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nallow_insecure = true\n",
            data.display()
        ),
        DaemonOptions::default(),
    )
    .await;
    let token = tenant_with_operator(&mut admin, &mut approver, "t1", "h", pb::Role::Handler).await;
    let before = vault_tests::rpc::export_audit(&mut admin).await.len();
    drop((admin, approver));
    let script = r#"
import sys, grpc
addr, token = sys.argv[1], sys.argv[2]
channel = grpc.insecure_channel(addr)
seal = channel.unary_unary("/mynumber.locker.v1.Locker/Seal")
metadata = [("authorization", "Bearer " + token)]
codes = {}
for payload in [b"\xff\xff\xff\xff"] * 200 + [b"\x0a" + b"\x80\x80\x05" + b"x" * 70000] * 200:
    try:
        seal(payload, metadata=metadata, timeout=10)
        codes["OK"] = codes.get("OK", 0) + 1
    except grpc.RpcError as e:
        codes[e.code().name] = codes.get(e.code().name, 0) + 1
print(sorted(codes.items()))
"#;
    let output = Command::new(&python)
        .args(["-c", script])
        .arg(daemon.addr.to_string())
        .arg(secrecy::ExposeSecret::expose_secret(&token))
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "[('INTERNAL', 200), ('RESOURCE_EXHAUSTED', 200)]",
        "decode failures and oversized messages"
    );
    // Stopping writes the counts still in their window.
    assert!(daemon.stop().success());
    daemon.start_in_place();
    let mut admin = daemon
        .client(Some(
            vault_client::read_token_file(&data.join("initial-admin.token")).expect("token"),
        ))
        .await;
    let entries = vault_tests::rpc::export_audit(&mut admin).await;
    let junk: Vec<&pb::AuditEntry> = entries[before..]
        .iter()
        .filter(|e| e.reason.contains("does not decode") || e.reason.contains("larger than"))
        .collect();
    assert!(junk.len() <= 4, "{junk:?}");
    let count = |what: &str| -> u64 {
        junk.iter()
            .filter(|e| e.reason.contains(what))
            .map(|e| match e.action.as_str() {
                "REFUSAL_SUMMARY" => e
                    .reason
                    .split_once(' ')
                    .and_then(|(n, _)| n.parse().ok())
                    .expect("count"),
                _ => 1,
            })
            .sum()
    };
    assert_eq!(count("does not decode"), 200);
    assert_eq!(count("larger than"), 200);
    assert!(
        junk.iter()
            .all(|e| e.action == "SEAL" || e.action == "REFUSAL_SUMMARY")
    );
}

/// A grpcio client whose deadline passes while the daemon works hears DEADLINE_EXCEEDED,
/// never CANCELLED (tonic's own answer to an expired `grpc-timeout`), and nothing is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_client_deadline_is_answered_deadline_exceeded() {
    let python = interpreter();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (daemon, mut admin, mut approver) = start_from_config(
        &data,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nkind = \"sim\"\nallow_insecure = true\nsim_fault_control_file = true\n",
            data.display()
        ),
        DaemonOptions::default(),
    )
    .await;
    let token = tenant_with_operator(&mut admin, &mut approver, "t1", "h", pb::Role::Handler).await;
    let mut handler = daemon.client(Some(token.clone())).await;
    let handle = handler
        .locker
        .seal(vault_tests::rpc::seal_request(
            "t1",
            "E-1",
            &vault_tests::numbers::valid_number(31),
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    // Every key operation now takes 5 ms: longer than the client waits.
    std::fs::write(
        data.join("hsm-sim").join(hsm_sim::FAULT_FILE_NAME),
        "delay 5",
    )
    .expect("fault");
    let script = r#"
import sys, grpc
addr, token, handle = sys.argv[1], sys.argv[2], sys.argv[3]
channel = grpc.insecure_channel(addr)
grpc.channel_ready_future(channel).result(timeout=10)
unseal = channel.unary_unary("/mynumber.locker.v1.Locker/Unseal")
metadata = [("authorization", "Bearer " + token)]
def field(number, text):
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data
request = field(1, handle) + field(2, "STAFF_WITHHOLDING")
codes = {}
for _ in range(200):
    try:
        unseal(request, metadata=metadata, timeout=0.001)
        codes["OK"] = codes.get("OK", 0) + 1
    except grpc.RpcError as e:
        codes[e.code().name] = codes.get(e.code().name, 0) + 1
print(sorted(codes.items()))
"#;
    let output = Command::new(&python)
        .args(["-c", script])
        .arg(daemon.addr.to_string())
        .arg(secrecy::ExposeSecret::expose_secret(&token))
        .arg(&handle)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "[('DEADLINE_EXCEEDED', 200)]",
        "a 1 ms deadline, 200 times"
    );
}
