//! The Python guide (`examples/python/`) runs as written against a real daemon: stubs
//! generated from `proto/` now, services found through v1alpha reflection (grpcio-reflection),
//! seal at hiring, unseal for 源泉徴収票, a mistyped number told by its ErrorInfo reason, a
//! purpose added, and a year-end UnsealBatch of 2,000 items read in order.

use std::path::Path;
use std::process::Command;

use vault_client::pb;
use vault_tests::DaemonOptions;
use vault_tests::numbers::valid_number;
use vault_tests::python::{generate_stubs, interpreter};
use vault_tests::rpc::{export_audit, grant, start_from_config, tenant_with_operator};

const EMPLOYEES: u64 = 50;
const ROUNDS: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_payroll_example_runs_as_the_guide_says() {
    let python = interpreter();
    let dir = tempfile::tempdir().expect("tempdir");
    let stubs = dir.path().join("stubs");
    generate_stubs(&python, &stubs);

    let data = dir.path().join("data");
    let (daemon, mut admin, mut approver) = start_from_config(
        &data,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nreflection = true\n[store]\ndata_dir = \"{}\"\n[backend]\nkind = \"sim\"\nallow_insecure = true\n",
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
    grant(
        &mut admin,
        &mut approver,
        "payroll",
        "t1",
        &["STAFF_HEALTH_PENSION"],
    )
    .await;
    let token_file = dir.path().join("payroll.token");
    {
        use secrecy::ExposeSecret;
        // As the CLI writes it: with a newline, which the example must strip.
        std::fs::write(&token_file, format!("{}\n", token.expose_secret())).expect("token");
    }
    let numbers: Vec<String> = (0..EMPLOYEES).map(|i| valid_number(61_000 + i)).collect();
    let employees = dir.path().join("employees.csv");
    std::fs::write(
        &employees,
        numbers
            .iter()
            .enumerate()
            .map(|(i, n)| format!("E{i:04},{n}\n"))
            .collect::<String>(),
    )
    .expect("employees");

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/payroll.py");
    let output = Command::new(&python)
        .arg(&example)
        .arg("--stubs")
        .arg(&stubs)
        .args(["--endpoint", &daemon.endpoint().replace("http://", "")])
        .arg("--token-file")
        .arg(&token_file)
        .args(["--tenant", "t1", "--year-end-rounds", &ROUNDS.to_string()])
        .arg("--employees")
        .arg(&employees)
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for number in &numbers {
        assert!(
            !stdout.contains(number.as_str()) && !stderr.contains(number.as_str()),
            "the example printed a number"
        );
    }
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    let services: Vec<&str> = report["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(
        services.contains(&"mynumber.locker.v1.Locker")
            && services.contains(&"mynumber.locker.v1.Admin"),
        "v1alpha reflection lists the services: {services:?}"
    );
    assert_eq!(report["hired"], EMPLOYEES);
    assert_eq!(report["mistyped"], "CHECK_DIGIT_MISMATCH");
    assert!(
        report["form_message"]
            .as_str()
            .is_some_and(|m| m.contains("チェックデジット"))
    );
    assert_eq!(report["withholding_matches"], true);
    assert_eq!(report["health_before_adding"], "PURPOSE_NOT_ON_RECORD");
    assert_eq!(
        report["reseal_lacks"],
        serde_json::json!(["STAFF_HEALTH_PENSION"])
    );
    assert_eq!(
        report["purposes_after_adding"],
        serde_json::json!(["STAFF_HEALTH_PENSION", "STAFF_WITHHOLDING"])
    );
    assert_eq!(
        report["year_end"],
        serde_json::json!({"ok": EMPLOYEES * ROUNDS, "wrong": 0, "failed": {}})
    );

    // The locker saw exactly that: every number released is in the audit log.
    let entries = export_audit(&mut admin).await;
    let released = entries
        .iter()
        .filter(|e| e.action == "UNSEAL" && e.outcome == "ALLOWED" && e.operator_id == "payroll")
        .count() as u64;
    assert_eq!(released, EMPLOYEES * ROUNDS + 1);
    assert!(
        entries
            .iter()
            .any(|e| e.action == "PURPOSES_ADD" && e.outcome == "ALLOWED")
    );
}
