//! `vault-client bench` works against a real daemon: its JSON report has the fields the
//! performance table is built from, consistent with each other. (A functional test of the
//! tool: it asserts no speed.)

use std::process::Command;

use serde_json::Value;
use vault_tests::{Daemon, binary_path};

#[test]
fn bench_reports_rates_latencies_and_baseline_ratios() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let tokens = daemon.data_dir.join("tokens");
    for op in ["mixed", "lookup"] {
        let output = Command::new(binary_path("vault-client"))
            .arg("--endpoint")
            .arg(daemon.endpoint())
            .arg("--token-file")
            .arg(tokens.join("dev-handler.token"))
            .args([
                "--output",
                "json",
                "bench",
                "--op",
                op,
                "--duration",
                "1",
                "--records",
                "40",
                "--concurrency",
                "8",
                "--baseline",
            ])
            .arg("--admin-token-file")
            .arg(tokens.join("dev-admin.token"))
            .output()
            .expect("run bench");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
        assert_eq!(report["op"], op);
        assert_eq!(report["errors"], 0, "{report}");
        let number = |field: &str| {
            report[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} missing: {report}"))
        };
        let (rps, echo, backend) = (
            number("rps"),
            number("echo_rps"),
            number("backend_unwrap_rps"),
        );
        assert!(rps > 0.0 && echo > 0.0 && backend > 0.0, "{report}");
        assert!(
            number("p50_ms") <= number("p99_ms") && number("p99_ms") <= number("max_ms"),
            "{report}"
        );
        assert!((number("ratio_echo") - rps / echo).abs() < 1e-9);
        assert!((number("ratio_model") - rps * (1.0 / echo + 1.0 / backend)).abs() < 1e-9);
    }
    // The benchmark left its traces in the audit log like any other caller (the whole log: a
    // fast machine makes more than the 10,000 entries a tail shows in the second run alone).
    let output = Command::new(binary_path("vault-client"))
        .arg("--endpoint")
        .arg(daemon.endpoint())
        .arg("--token-file")
        .arg(tokens.join("dev-auditor.token"))
        .args(["audit", "export"])
        .output()
        .expect("audit export");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("BENCH_BACKEND"),
        "the backend measurement is audited"
    );
}
