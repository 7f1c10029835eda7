//! The Python of the Python client tests: the interpreter `scripts/python-env.sh` prepared
//! (the test command sets VAULT_TEST_PYTHON), and stubs generated from `proto/` with it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The interpreter with grpcio, grpcio-tools, grpcio-status and grpcio-reflection. Without
/// it a test fails: it never skips.
pub fn interpreter() -> PathBuf {
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

/// Generates the Python stubs of `proto/` into `out` with `python`.
pub fn generate_stubs(python: &Path, out: &Path) {
    std::fs::create_dir_all(out).expect("stubs dir");
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
