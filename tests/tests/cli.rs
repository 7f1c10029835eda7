//! The `vault-client` CLI against a real daemon: every command of the admin and operator
//! workflow, text and JSON output, errors on stderr with a non-zero exit.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use vault_tests::numbers::valid_number;
use vault_tests::{Daemon, binary_path};

struct Cli<'a> {
    daemon: &'a Daemon,
}

impl Cli<'_> {
    fn run(&self, token: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
        let (code, stdout, stderr) = self.run_code(token, args, stdin);
        (code == 0, stdout, stderr)
    }

    /// A change held for another admin's approval: exit 9, `"state": "held"` at the top of
    /// the JSON answer.
    fn held(&self, token: &Path, args: &[&str]) -> Vec<Value> {
        let mut full = vec!["--output", "json"];
        full.extend_from_slice(args);
        let (code, stdout, stderr) = self.run_code(token, &full, "");
        assert_eq!(code, 9, "{args:?} is held: {stdout} {stderr}");
        let values: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert_eq!(values[0]["state"], "held", "{values:?}");
        values
    }

    fn run_code(&self, token: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
        let mut child = Command::new(binary_path("vault-client"))
            .env("LOCKER_ADDR", self.daemon.endpoint())
            .env("LOCKER_TOKEN_FILE", token)
            .env_remove("LOCKER_TOKEN")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run vault-client");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("stdin");
        let out = child.wait_with_output().expect("wait");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, token: &Path, args: &[&str], stdin: &str) -> String {
        let (ok, stdout, stderr) = self.run(token, args, stdin);
        assert!(ok, "{args:?} failed: {stderr}");
        stdout
    }

    fn json(&self, token: &Path, args: &[&str]) -> Vec<Value> {
        let mut full = vec!["--output", "json"];
        full.extend_from_slice(args);
        self.ok(token, &full, "")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_operator_workflow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let cli = Cli { daemon: &daemon };
    let tokens = daemon.data_dir.join("tokens");
    let admin = tokens.join("dev-admin.token");
    let auditor = tokens.join("dev-auditor.token");
    let manager = tokens.join("dev-manager.token");
    let admin2 = tokens.join("dev-admin2.token");
    // Dual control: what `admin` asks, `admin2` approves by the id the CLI printed.
    let approve = |held: &Value| {
        let id = held["pending_request"]["id"]
            .as_str()
            .expect("held for approval");
        let decided = cli.json(&admin2, &["approve", id]);
        assert_eq!(decided[0]["state"], "applied", "{decided:?}");
    };
    // A token for another operator: share 1 went to the requester's file; the approval
    // writes share 2 to the approver's; the holder combines them into `token`.
    let approve_token = |held: &Value, share1: &std::path::Path, token: &std::path::Path| {
        let id = held["pending_request"]["id"]
            .as_str()
            .expect("held for approval");
        let share2 = share1.with_extension("share2");
        let decided = cli.json(
            &admin2,
            &["approve", id, "--share-out", share2.to_str().expect("utf8")],
        );
        assert_eq!(decided[0]["state"], "applied", "{decided:?}");
        assert!(
            decided[0]["token_share"].is_null(),
            "the share goes to the file only"
        );
        let combined = cli.json(
            &admin2,
            &[
                "token",
                "combine",
                share1.to_str().expect("utf8"),
                share2.to_str().expect("utf8"),
                "--out",
                token.to_str().expect("utf8"),
            ],
        );
        assert!(combined[0]["token"].is_null(), "{combined:?}");
        for written in [share1, &share2, token] {
            let mode = std::fs::metadata(written)
                .expect("written")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", written.display());
        }
    };

    cli.ok(
        &admin,
        &["tenant", "add", "acme", "--name", "株式会社ACME"],
        "",
    );
    let tenants = cli.json(&auditor, &["tenant", "list"]);
    assert!(
        tenants
            .iter()
            .any(|t| t["tenant_id"] == "acme" && t["name"] == "株式会社ACME")
    );
    let (code, text, _) = cli.run_code(
        &admin,
        &[
            "operator",
            "add",
            "payroll",
            "--role",
            "service",
            "--name",
            "給与システム",
        ],
        "",
    );
    assert_eq!(code, 9, "held, not done: {text}");
    assert!(text.contains("HELD, not in force yet: request "), "{text}");
    assert!(
        text.contains("+09:00"),
        "the request's end in Japan's time: {text}"
    );
    // Nothing can be granted or issued to it yet: the error names the request to approve.
    let creation = text
        .split("request ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("request id")
        .to_owned();
    for early in [
        &[
            "grant",
            "payroll",
            "--tenant",
            "acme",
            "--purpose",
            "STAFF_WITHHOLDING",
        ][..],
        &["token", "issue", "payroll"][..],
    ] {
        let mut full = vec!["--output", "json"];
        full.extend_from_slice(early);
        let (code, _, stderr) = cli.run_code(&admin, &full, "");
        assert_eq!(code, 5, "{early:?}: {stderr}");
        let error: Value = serde_json::from_str(stderr.trim()).expect("json error");
        assert_eq!(error["error"]["reason"], "PENDING_APPROVAL", "{stderr}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("(request {creation})"))),
            "{stderr}"
        );
    }
    let listed = cli.ok(&admin2, &["requests", "list", "--pending"], "");
    assert!(
        listed.contains("open until ") && listed.contains("+09:00"),
        "{listed}"
    );
    let pending = cli.json(&admin2, &["requests", "list", "--pending"]);
    assert_eq!(pending[0]["quorum"], 1);
    let request = &pending[0]["requests"][0];
    assert_eq!(request["summary"], "create operator payroll as service");
    assert_eq!(request["requested_by"], "dev-admin");
    let id = request["id"].as_str().expect("id").to_owned();
    let (ok, _, stderr) = cli.run(&admin, &["approve", &id], "");
    assert!(!ok && stderr.contains("another admin"), "{stderr}");
    let decided = cli.json(&admin2, &["approve", &id]);
    assert_eq!(decided[0]["state"], "applied");
    assert_eq!(decided[0]["approved_by"], serde_json::json!(["dev-admin2"]));
    let held = cli.held(
        &admin,
        &[
            "grant",
            "payroll",
            "--tenant",
            "acme",
            "--purpose",
            "STAFF_WITHHOLDING,STAFF_HEALTH_PENSION",
        ],
    );
    approve(&held[0]);
    // Several held requests approved in one command, in order.
    let first = cli.held(&admin, &["operator", "add", "batch-a", "--role", "auditor"]);
    let second = cli.held(&admin, &["operator", "add", "batch-b", "--role", "auditor"]);
    let ids: Vec<&str> = [&first[0], &second[0]]
        .iter()
        .map(|held| held["pending_request"]["id"].as_str().expect("id"))
        .collect();
    let decided = cli.json(&admin2, &["approve", ids[0], ids[1]]);
    assert_eq!(decided.len(), 2, "{decided:?}");
    assert!(
        decided.iter().all(|d| d["state"] == "applied"),
        "{decided:?}"
    );
    // A request denied with a reason stays denied.
    let held = cli.held(&admin, &["operator", "add", "spare", "--role", "auditor"]);
    let spare = held[0]["pending_request"]["id"].as_str().expect("id");
    let denied = cli.json(&admin2, &["deny", spare, "--reason", "不要"]);
    assert_eq!(
        (denied[0]["state"].as_str(), denied[0]["reason"].as_str()),
        (Some("denied"), Some("不要"))
    );
    cli.ok(
        &admin,
        &[
            "revoke",
            "payroll",
            "--tenant",
            "acme",
            "--purpose",
            "STAFF_HEALTH_PENSION",
        ],
        "",
    );
    let operators = cli.json(&admin, &["operator", "list"]);
    let payroll = operators
        .iter()
        .find(|o| o["operator_id"] == "payroll")
        .expect("listed");
    assert_eq!(payroll["role"], "service");
    assert_eq!(
        payroll["grants"],
        serde_json::json!(["acme:STAFF_WITHHOLDING"])
    );

    let token_file = dir.path().join("payroll.token");
    let share_file = dir.path().join("payroll.share1");
    let issued = cli.held(
        &admin,
        &[
            "token",
            "issue",
            "payroll",
            "--ttl",
            "3600",
            "--out",
            share_file.to_str().expect("utf8"),
        ],
    );
    assert!(
        issued[0]["token_share"].is_null() && issued[0]["token"].is_null(),
        "the share goes to the file only: {issued:?}"
    );
    // One share is no token; while the issue waits, the share is told so.
    let (ok, _, stderr) = cli.run(&share_file, &["whoami"], "");
    let token_request = issued[0]["pending_request"]["id"].as_str().expect("id");
    assert!(
        !ok && stderr.contains("UNAUTHENTICATED")
            && stderr.contains(&format!("pending approval (request {token_request})")),
        "{stderr}"
    );
    approve_token(&issued[0], &share_file, &token_file);
    assert_eq!(
        std::fs::metadata(&token_file)
            .expect("token file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let token_id = issued[0]["token_id"].as_str().expect("id").to_owned();

    let number = valid_number(4242);
    let handle = cli.ok(
        &token_file,
        &[
            "seal",
            "--tenant",
            "acme",
            "--subject",
            "E-77",
            "--kind",
            "staff",
            "--purpose",
            "STAFF_WITHHOLDING",
            "--number-check",
            "NTC",
            "--identity-check",
            "DL",
        ],
        &number,
    );
    assert!(
        handle.starts_with("mnh_") && !handle.contains('\n'),
        "text mode prints only the handle: {handle}"
    );
    assert_eq!(
        cli.ok(
            &token_file,
            &["unseal", &handle, "--purpose", "STAFF_WITHHOLDING"],
            ""
        ),
        number
    );
    assert_eq!(
        cli.ok(&token_file, &["lookup", "--tenant", "acme"], &number),
        handle
    );
    let described = cli.json(&token_file, &["describe", &handle]);
    assert_eq!(described[0]["subject_ref"], "E-77");
    assert_eq!(described[0]["number_check"], "NTC");
    assert_eq!(described[0]["status"], "active");
    assert!(!described[0].to_string().contains(&number));

    // A number given as an argument is not accepted: there is no such option.
    let (ok, _, stderr) = cli.run(
        &token_file,
        &[
            "seal",
            "--tenant",
            "acme",
            "--subject",
            "x",
            "--kind",
            "staff",
            "--purpose",
            "STAFF_WITHHOLDING",
            "--number",
            &number,
        ],
        "",
    );
    assert!(!ok && stderr.contains("--number"), "{stderr}");
    // Without stdin input.
    let (ok, _, stderr) = cli.run(
        &token_file,
        &[
            "seal",
            "--tenant",
            "acme",
            "--subject",
            "x",
            "--kind",
            "staff",
            "--purpose",
            "STAFF_WITHHOLDING",
        ],
        "",
    );
    assert!(!ok && stderr.contains("standard input"), "{stderr}");

    // The manager of dev has no grant on acme: the server's message, non-zero exit.
    let (ok, _, stderr) = cli.run(&manager, &["dispose", &handle, "--reason", "退職"], "");
    assert!(!ok);
    // Another tenant's record is answered like a handle that does not exist.
    assert_eq!(
        stderr.trim(),
        format!("error: NOT_FOUND: no record {handle}")
    );
    approve(
        &cli.held(
            &admin,
            &["operator", "add", "acme-mgr", "--role", "manager"],
        )[0],
    );
    approve(
        &cli.held(
            &admin,
            &[
                "grant",
                "acme-mgr",
                "--tenant",
                "acme",
                "--purpose",
                "STAFF_WITHHOLDING",
            ],
        )[0],
    );
    let mgr_token = dir.path().join("acme-mgr.token");
    let mgr_share = dir.path().join("acme-mgr.share1");
    approve_token(
        &cli.held(
            &admin,
            &[
                "token",
                "issue",
                "acme-mgr",
                "--out",
                mgr_share.to_str().expect("utf8"),
            ],
        )[0],
        &mgr_share,
        &mgr_token,
    );
    let disposed = cli.json(
        &mgr_token,
        &["dispose", &handle, "--reason", "保存期間経過"],
    );
    assert_eq!(disposed[0]["status"], "disposed");
    assert_eq!(disposed[0]["tombstone"]["disposed_by"], "acme-mgr");
    let (ok, _, stderr) = cli.run(
        &token_file,
        &["unseal", &handle, "--purpose", "STAFF_WITHHOLDING"],
        "",
    );
    assert!(!ok && stderr.contains("FAILED_PRECONDITION"), "{stderr}");

    let listed = cli.json(&admin, &["token", "list", "--operator", "payroll"]);
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("token").is_none());
    cli.ok(&admin, &["token", "revoke", &token_id], "");
    let (ok, _, stderr) = cli.run(&token_file, &["describe", &handle], "");
    assert!(
        !ok && stderr.contains("UNAUTHENTICATED: token has been revoked"),
        "{stderr}"
    );
    cli.ok(&admin, &["operator", "disable", "acme-mgr"], "");
    let (ok, _, stderr) = cli.run(&mgr_token, &["audit", "tail"], "");
    assert!(!ok && stderr.contains("operator is disabled"), "{stderr}");

    let purposes = cli.json(&auditor, &["purposes"]);
    assert_eq!(purposes.len(), 12);
    assert!(purposes.iter().any(|p| p["code"] == "STAFF_WITHHOLDING"
        && p["article"] == "1-④"
        && p["retention_years"] == 7));

    let tail = cli.json(&auditor, &["audit", "tail", "--limit", "3"]);
    assert_eq!(tail.len(), 3);
    let export = dir.path().join("audit.jsonl");
    cli.ok(
        &auditor,
        &["audit", "export", "--out", export.to_str().expect("utf8")],
        "",
    );
    let lines: Vec<Value> = std::fs::read_to_string(&export)
        .expect("export file")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .filter(|l| l["type"] == "entry")
        .collect();
    assert!(lines.len() > 20);
    assert!(
        lines.windows(2).all(|w| w[0]["hash"] == w[1]["prev_hash"]),
        "export is a chain"
    );
    assert!(
        cli.ok(&auditor, &["audit", "verify"], "")
            .starts_with("OK: ")
    );
}

/// Runs `vault-client` with `token` (a dev operator) and returns (exit code, stdout, stderr).
fn cli_status(
    daemon: &Daemon,
    endpoint: &str,
    token: &str,
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    let mut child = Command::new(binary_path("vault-client"))
        .env("LOCKER_ADDR", endpoint)
        .env(
            "LOCKER_TOKEN_FILE",
            daemon
                .data_dir
                .join("tokens")
                .join(format!("{token}.token")),
        )
        .env_remove("LOCKER_TOKEN")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vault-client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit codes that tell the classes apart, errors as JSON, durations as people write them,
/// no panic when the reader goes away, and completion scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_behaves_in_scripts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let endpoint = daemon.endpoint();
    let run = |token: &str, args: &[&str], stdin: &str| {
        cli_status(&daemon, &endpoint, token, args, stdin)
    };

    let missing = format!("mnh_{}", "0".repeat(32));
    let number = valid_number(99);
    let bad = format!(
        "{}{}",
        &number[..11],
        (number.as_bytes()[11] - b'0' + 1) % 10
    );
    let seal = [
        "seal",
        "--tenant",
        "dev",
        "--subject",
        "E-1",
        "--kind",
        "staff",
        "--purpose",
        "STAFF_WITHHOLDING",
        "--number-check",
        "NTC",
        "--identity-check",
        "DL",
    ];
    assert_eq!(
        run(
            "dev-handler",
            &["unseal", &missing, "--purpose", "STAFF_WITHHOLDING"],
            ""
        )
        .0,
        4
    );
    assert_eq!(
        run(
            "dev-auditor",
            &["unseal", &missing, "--purpose", "STAFF_WITHHOLDING"],
            ""
        )
        .0,
        3
    );
    assert_eq!(run("dev-handler", &seal, &bad).0, 5);
    assert_eq!(
        run("dev-handler", &["unseal"], "").0,
        2,
        "clap's usage error"
    );
    let (code, _, stderr) = cli_status(
        &daemon,
        "http://127.0.0.1:1",
        "dev-handler",
        &["purposes"],
        "",
    );
    assert_eq!(code, 1, "no daemon there: {stderr}");

    // With JSON chosen, the error is one JSON object with the server's reason.
    let (code, stdout, stderr) = run(
        "dev-handler",
        &[
            "--output",
            "json",
            "seal",
            "--tenant",
            "dev",
            "--subject",
            "E-1",
            "--kind",
            "staff",
            "--purpose",
            "STAFF_WITHHOLDING",
            "--number-check",
            "NTC",
            "--identity-check",
            "DL",
        ],
        &bad,
    );
    assert_eq!((code, stdout.as_str()), (5, ""));
    let error: Value = serde_json::from_str(stderr.trim()).expect("a JSON error");
    assert_eq!(error["error"]["code"], "INVALID_ARGUMENT");
    assert_eq!(error["error"]["reason"], "CHECK_DIGIT_MISMATCH");
    assert!(!stderr.contains(&bad));

    // Durations: seconds or humantime.
    for (ttl, seconds) in [("3600", 3600), ("12h", 12 * 3600), ("30d", 30 * 86400)] {
        let (code, stdout, stderr) = run(
            "dev-admin",
            &[
                "--output",
                "json",
                "token",
                "issue",
                "dev-admin",
                "--ttl",
                ttl,
            ],
            "",
        );
        assert_eq!(code, 0, "{ttl}: {stderr}");
        let issued: Value = serde_json::from_str(stdout.trim()).expect("json");
        let expires = time::OffsetDateTime::parse(
            issued["expires_at"].as_str().expect("expires_at"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("time");
        let left = expires - time::OffsetDateTime::now_utc();
        assert!(
            (left.whole_seconds() - seconds).abs() < 120,
            "{ttl}: {left}"
        );
    }
    assert_eq!(
        run(
            "dev-admin",
            &["token", "issue", "dev-admin", "--ttl", "soon"],
            ""
        )
        .0,
        2
    );

    // A reader that is gone before the first line: no panic, no "Broken pipe", a clean exit.
    for args in [
        &["audit", "tail", "--limit", "50"][..],
        &["audit", "export"][..],
    ] {
        let mut child = Command::new(binary_path("vault-client"))
            .env("LOCKER_ADDR", &endpoint)
            .env(
                "LOCKER_TOKEN_FILE",
                daemon.data_dir.join("tokens").join("dev-auditor.token"),
            )
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert!(out.status.success(), "{args:?}: {stderr}");
    }

    // Help: the command's own options first, the global ones under their own heading; a
    // required option shows no default.
    let (code, help, _) = run("dev-handler", &["seal", "--help"], "");
    assert_eq!(code, 0);
    let global = help
        .find("Global options:")
        .expect("a heading for global options");
    assert!(
        help.find("--tenant").is_some_and(|at| at < global)
            && help.find("--endpoint").is_some_and(|at| at > global),
        "{help}"
    );
    assert!(!help.contains("[default: \"\"]"), "{help}");
    let (code, _, stderr) = run(
        "dev-handler",
        &[
            "seal",
            "--tenant",
            "dev",
            "--kind",
            "staff",
            "--purpose",
            "STAFF_WITHHOLDING",
        ],
        // No number on stdin: the usage error comes first, and a client gone before reading
        // its stdin would make writing it fail.
        "",
    );
    assert_eq!(
        code, 2,
        "a seal without --subject is a usage error: {stderr}"
    );
    assert!(stderr.contains("--subject"), "{stderr}");

    // `correct request` prints only the id, for ID=$(...).
    let (code, handle, stderr) = run("dev-handler", &seal, &number);
    assert_eq!(code, 0, "{stderr}");
    let corrected = valid_number(100);
    let (code, id, stderr) = run(
        "dev-handler",
        &[
            "correct",
            "request",
            handle.trim(),
            "--reason",
            "誤記",
            "--asked-by",
            "本人",
        ],
        &corrected,
    );
    assert_eq!(code, 0, "{stderr}");
    let id = id.trim();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id:?}"
    );

    // whoami: the operator, role, grants and token id; never the token itself.
    let (code, me, _) = run("dev-handler", &["--output", "json", "whoami"], "");
    assert_eq!(code, 0);
    let me: Value = serde_json::from_str(me.trim()).expect("json");
    assert_eq!(
        (me["operator_id"].as_str(), me["role"].as_str()),
        (Some("dev-handler"), Some("handler"))
    );
    assert!(me["grants"].as_array().is_some_and(|g| !g.is_empty()));
    let secret = std::fs::read_to_string(daemon.data_dir.join("tokens").join("dev-handler.token"))
        .expect("token");
    assert!(secret.trim().contains(me["token_id"].as_str().expect("id")));
    assert!(!me.to_string().contains(secret.trim()));

    // --output json reaches the ledger, the reports and tenant info too.
    let (code, ledger, stderr) = run(
        "dev-auditor",
        &["--output", "json", "ledger", "--tenant", "dev"],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    let ledger: Value = serde_json::from_str(ledger.trim()).expect("ledger as JSON");
    assert!(ledger.to_string().contains("\"dev\""), "{ledger}");
    let (code, usage, stderr) = run(
        "dev-auditor",
        &[
            "--output",
            "json",
            "report",
            "usage",
            "--from",
            "2026-01-01",
            "--to",
            "2026-12-31",
        ],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str::<Value>(usage.trim()).expect("usage report as JSON");
    let (code, info, stderr) = run(
        "dev-admin",
        &[
            "--output",
            "json",
            "tenant",
            "info",
            "dev",
            "--file-kind",
            "給与",
        ],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    let info: Value = serde_json::from_str(info.trim()).expect("tenant info as JSON");
    assert_eq!(info["file_kind"], "給与");
    // One field given changes that field only; an empty one clears; none shows them all.
    let (code, info, stderr) = run(
        "dev-admin",
        &[
            "--output",
            "json",
            "tenant",
            "info",
            "dev",
            "--responsible-person",
            "鈴木",
        ],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    let info: Value = serde_json::from_str(info.trim()).expect("tenant info as JSON");
    assert_eq!(
        (
            info["file_kind"].as_str(),
            info["responsible_person"].as_str()
        ),
        (Some("給与"), Some("鈴木")),
        "{info}"
    );
    let (code, _, stderr) = run(
        "dev-admin",
        &["tenant", "info", "dev", "--file-kind", ""],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, shown, stderr) = run(
        "dev-admin",
        &["--output", "json", "tenant", "info", "dev"],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    let shown: Value = serde_json::from_str(shown.trim()).expect("tenant info as JSON");
    assert_eq!(
        (
            shown["file_kind"].as_str(),
            shown["responsible_person"].as_str()
        ),
        (Some(""), Some("鈴木")),
        "{shown}"
    );

    for shell in ["bash", "zsh", "fish"] {
        let (code, script, _) = run("dev-admin", &["completion", shell], "");
        assert_eq!(code, 0);
        assert!(
            script.contains("vault-client") && script.contains("approve"),
            "{shell}"
        );
    }
}

/// `vault-client whoami` with exactly `env` set of the client's and HashiCorp Vault's
/// variables; (exit code, stdout, stderr).
fn whoami_with(endpoint: Option<&str>, env: &[(&str, String)]) -> (i32, String, String) {
    let mut command = Command::new(binary_path("vault-client"));
    for name in [
        "LOCKER_ADDR",
        "LOCKER_TOKEN",
        "LOCKER_TOKEN_FILE",
        "LOCKER_CA",
        "LOCKER_CLIENT_CERT",
        "LOCKER_CLIENT_KEY",
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "VAULT_TOKEN_FILE",
        "VAULT_ENDPOINT",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(name, value)| (*name, value)));
    if let Some(endpoint) = endpoint {
        command.args(["--endpoint", endpoint]);
    }
    let output = command.arg("whoami").output().expect("run vault-client");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashicorp_vault_variables_are_never_read_and_ours_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&dir.path().join("data"), Default::default());
    let endpoint = daemon.endpoint();
    let token_file = daemon
        .data_dir
        .join("tokens")
        .join("dev-auditor.token")
        .display()
        .to_string();
    // An admin's shell with HashiCorp Vault's settings: its token is never sent to the locker.
    let vault_token = "hvs.CAESIJlU9JMYEhOPYv4igdhm9PnZDrabYTobQ4Ymnlq1qY-QGh4KHGh2cy5WdnNNZ0xRYTZJVDl0cWRPUGxpcVg".to_owned();
    let (code, _, stderr) = whoami_with(
        Some(&endpoint),
        &[
            ("VAULT_TOKEN", vault_token.clone()),
            ("VAULT_ADDR", endpoint.clone()),
        ],
    );
    assert_ne!(code, 0, "no token of ours: refused");
    assert!(stderr.contains("missing bearer token"), "{stderr}");
    assert!(
        !stderr.contains("malformed"),
        "the Vault token was sent: {stderr}"
    );
    assert!(
        !stderr.contains(&vault_token),
        "the token's value is never printed"
    );
    assert!(
        stderr.contains("VAULT_TOKEN is set but not read")
            && stderr.contains("LOCKER_TOKEN or LOCKER_TOKEN_FILE")
            && stderr.contains("VAULT_ADDR is set but not read")
            && stderr.contains("LOCKER_ADDR"),
        "{stderr}"
    );
    // Ours are read (the address and the token file), and then nothing is hinted.
    let (code, stdout, stderr) = whoami_with(
        None,
        &[
            ("LOCKER_ADDR", endpoint.clone()),
            ("LOCKER_TOKEN_FILE", token_file.clone()),
            ("VAULT_TOKEN", vault_token.clone()),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("dev-auditor"), "{stdout}");
    assert!(!stderr.contains("hint"), "{stderr}");
    // This client's old names are not read either, and say what replaced them.
    let (code, _, stderr) =
        whoami_with(Some(&endpoint), &[("VAULT_TOKEN_FILE", token_file.clone())]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("VAULT_TOKEN_FILE is set but not read")
            && stderr.contains("this client reads LOCKER_TOKEN_FILE"),
        "{stderr}"
    );
}

/// `health` for scripts and units: SERVING exits 0 without a token; no daemon exits 1 naming
/// the address, also after `--wait` has asked again for its whole time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_tells_a_serving_daemon_from_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let health = |endpoint: &str, args: &[&str]| {
        let out = Command::new(binary_path("vault-client"))
            .env("LOCKER_ADDR", endpoint)
            .env_remove("LOCKER_TOKEN_FILE")
            .env_remove("LOCKER_TOKEN")
            .args(args)
            .output()
            .expect("run vault-client");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = health(&daemon.endpoint(), &["health"]);
    assert_eq!((code, stdout.as_str()), (0, "SERVING"), "{stderr}");
    let (code, stdout, _) = health(&daemon.endpoint(), &["--output", "json", "health"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).expect("json")["status"],
        "SERVING"
    );

    let nobody = format!("http://127.0.0.1:{}", vault_tests::free_port());
    let started = std::time::Instant::now();
    let (code, _, stderr) = health(&nobody, &["health", "--wait", "1s"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&nobody), "names the address: {stderr}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "--wait asked again for its whole time"
    );
}

/// A migration's 取得日 for a whole file (issue 23, item 7): a handler seals the staff of a
/// paper ledger in one batch; a manager sets their acquisition dates from the batch's output,
/// one date for all or each row's own 取得日 in Excel's form; a refused row is reported on its
/// line and decides the exit status while the others are set; a handler may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrations_acquisition_dates_are_set_for_a_whole_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let endpoint = daemon.endpoint();
    let run = |token: &str, args: &[&str]| cli_status(&daemon, &endpoint, token, args, "");
    let staff = dir.path().join("staff.csv");
    std::fs::write(
        &staff,
        format!(
            "社員番号,個人番号\nM001,{}\nM002,{}\nM003,{}\n",
            valid_number(7001),
            valid_number(7002),
            valid_number(7003)
        ),
    )
    .expect("staff");
    let staff_arg = staff.to_str().expect("utf8");
    let (code, sealed, err) = run(
        "dev-handler",
        &[
            "seal",
            "--batch",
            staff_arg,
            "--tenant",
            "dev",
            "--kind",
            "staff",
            "--purpose",
            "STAFF_WITHHOLDING",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let sealed_file = dir.path().join("sealed.csv");
    std::fs::write(&sealed_file, &sealed).expect("sealed");
    let sealed_arg = sealed_file.to_str().expect("utf8");
    let handles: Vec<String> = sealed
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(2).expect("handle column").to_owned())
        .collect();
    assert_eq!(handles.len(), 3, "{sealed}");
    let acquired_at = |handle: &str| {
        let (code, out, err) = run("dev-manager", &["--output", "json", "describe", handle]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).expect("json")["acquired_at"]
            .as_str()
            .expect("acquired_at")
            .to_owned()
    };

    // A handler may not backdate.
    let (code, _, err) = run(
        "dev-handler",
        &[
            "acquired",
            "--batch",
            sealed_arg,
            "--on",
            "2019-04-01",
            "--reason",
            "紙の台帳から移行",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(!acquired_at(&handles[0]).starts_with("2019-04-01"));

    // One date for the whole file, from the seal batch's output as it is.
    let (code, out, err) = run(
        "dev-manager",
        &[
            "acquired",
            "--batch",
            sealed_arg,
            "--on",
            "2019-04-01",
            "--reason",
            "紙の台帳から移行",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("row,handle,acquired_on,error\n"), "{out}");
    for handle in &handles {
        assert!(out.contains(&format!("{handle},2019-04-01,\n")), "{out}");
        assert!(acquired_at(handle).starts_with("2019-04-01"), "{handle}");
    }

    // Each row its own 取得日 as Excel writes it; one refused (a day to come) and one unknown.
    let dated = dir.path().join("dated.csv");
    std::fs::write(
        &dated,
        format!(
            "handle,取得日\n{},2018/4/1\n{},2999/1/1\n{},2017/10/2\nmnh_{}\n",
            handles[0],
            handles[1],
            handles[2],
            "0".repeat(32)
        ),
    )
    .expect("dated");
    let (code, out, err) = run(
        "dev-manager",
        &[
            "--output",
            "json",
            "acquired",
            "--batch",
            dated.to_str().expect("utf8"),
            "--on",
            "2016-01-04",
            "--reason",
            "紙の台帳から移行",
        ],
    );
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert_eq!(rows[0]["acquired_on"], "2018-04-01");
    assert!(rows[0]["error"].is_null(), "{out}");
    assert_eq!(rows[1]["error"]["code"], "INVALID_ARGUMENT", "{out}");
    assert_eq!(rows[2]["acquired_on"], "2017-10-02");
    assert_eq!(
        rows[3]["acquired_on"], "2016-01-04",
        "the --on date for a row without one"
    );
    assert_eq!(rows[3]["error"]["code"], "NOT_FOUND", "{out}");
    // The most serious refusal decides the exit status, as in the other batches: the unknown
    // handle (NOT_FOUND, 4) ranks above the bad date.
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("2 items of the batch failed"), "{err}");
    assert!(acquired_at(&handles[0]).starts_with("2018-04-01"));
    assert!(
        acquired_at(&handles[1]).starts_with("2019-04-01"),
        "a refused row changes nothing"
    );
    assert!(acquired_at(&handles[2]).starts_with("2017-10-02"));

    // The 取得日 given at seal: the handler's file carries it, the seal batch's output keeps
    // it (the locker takes no date from a handler), and the manager applies that output.
    let dated_staff = dir.path().join("dated-staff.csv");
    std::fs::write(
        &dated_staff,
        format!(
            "社員番号,個人番号,取得日\nM101,{},2016/4/1\nM102,{},2016/10/3\n",
            valid_number(7101),
            valid_number(7102)
        ),
    )
    .expect("dated staff");
    let (code, sealed, err) = run(
        "dev-handler",
        &[
            "seal",
            "--batch",
            dated_staff.to_str().expect("utf8"),
            "--tenant",
            "dev",
            "--kind",
            "staff",
            "--purpose",
            "STAFF_WITHHOLDING",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        sealed.starts_with(
            "row,subject_ref,handle,existing,purposes_not_on_record,error,acquired_on\n"
        ),
        "{sealed}"
    );
    assert!(
        err.contains("acquired --batch"),
        "the handler is told who applies the dates: {err}"
    );
    let new_handles: Vec<String> = sealed
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(2).expect("handle").to_owned())
        .collect();
    assert!(
        !acquired_at(&new_handles[0]).starts_with("2016"),
        "a handler's date is not taken"
    );
    let sealed_dated = dir.path().join("sealed-dated.csv");
    std::fs::write(&sealed_dated, &sealed).expect("sealed");
    let (code, _, err) = run(
        "dev-manager",
        &[
            "acquired",
            "--batch",
            sealed_dated.to_str().expect("utf8"),
            "--reason",
            "紙の台帳から移行",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(acquired_at(&new_handles[0]).starts_with("2016-04-01"));
    assert!(acquired_at(&new_handles[1]).starts_with("2016-10-03"));

    // A number typed into the 取得日 column is never echoed into the seal's results.
    let misplaced = valid_number(7201);
    let mixed = dir.path().join("mixed.csv");
    std::fs::write(
        &mixed,
        format!(
            "社員番号,個人番号,取得日\nM201,{},{misplaced}\n",
            valid_number(7202)
        ),
    )
    .expect("mixed");
    let (_, sealed, err) = run(
        "dev-handler",
        &[
            "seal",
            "--batch",
            mixed.to_str().expect("utf8"),
            "--tenant",
            "dev",
            "--kind",
            "staff",
            "--purpose",
            "STAFF_WITHHOLDING",
        ],
    );
    assert!(
        !sealed.contains(&misplaced) && !err.contains(&misplaced),
        "{sealed}{err}"
    );
    assert!(sealed.contains("withheld"), "{sealed}");
}
