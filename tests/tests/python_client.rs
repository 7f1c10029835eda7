//! A Python grpcio client (stubs generated from `proto/` here, with grpc_tools) runs a
//! year-end batch: 100,000 UnsealBatch items against a backend that takes 20 ms per operation,
//! every result read on one channel, in order. Before the daemon read batch items ahead of
//! their results, h2 closed such a connection (GOAWAY too_many_data_frames) after a few
//! thousand results. The interpreter comes from `scripts/python-env.sh` (the test command
//! sets VAULT_TEST_PYTHON); without it the test fails, it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use vault_client::pb;
use vault_tests::DaemonOptions;
use vault_tests::rpc::{start_from_config, tenant_with_operator};

fn python() -> PathBuf {
    let python = std::env::var_os("VAULT_TEST_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-venv/bin/python")
        });
    assert!(
        python.exists(),
        "no Python with grpcio at {}: run scripts/python-env.sh (the test command does)",
        python.display()
    );
    python
}

/// Generates the Python stubs of `proto/` into `out`.
fn stubs(python: &Path, out: &Path) {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
    let status = Command::new(python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args([
            "mynumber/locker/v1/locker.proto",
            "mynumber/locker/v1/admin.proto",
        ])
        .status()
        .expect("run grpc_tools.protoc");
    assert!(status.success(), "stub generation failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcio_client_streams_100k_batch_items_on_one_channel() {
    let python = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let stub_dir = dir.path().join("stubs");
    std::fs::create_dir_all(&stub_dir).expect("stubs dir");
    stubs(&python, &stub_dir);

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
