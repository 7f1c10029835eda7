//! 本人開示 (規程第45・46条): a manager asks for one person's record and its uses and gets a
//! notice signed by the audit key. Every use of the record appears, in log order, with its
//! purpose, operator and result — a carry-out with the file it went into — and nothing else;
//! the notice shows the number masked to its last four digits and never in clear (JSON, CSV,
//! PDF, audit log); it verifies offline and fails when a byte changes; withheld items are said
//! and why; a person with no record gets a notice that nothing is held; a caller without the
//! role learns nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use secrecy::ExposeSecret;
use tonic::Code;
use vault_audit::disclosure::DisclosureNotice;
use vault_client::{Client, pb};
use vault_tests::cli::{vault_cli, vault_cli_as};
use vault_tests::numbers::valid_number;
use vault_tests::pdf::{file_mode, pdftotext};
use vault_tests::rpc::{approve, export_audit, grant, seal_request, split_token, unseal};
use vault_tests::{Daemon, binary_path};

const W: &str = "STAFF_WITHHOLDING";
const HP: &str = "STAFF_HEALTH_PENSION";
const EI: &str = "STAFF_EMPLOYMENT_INSURANCE";
const PASSWORD: &str = "correct horse battery staple";

/// A second handler, 佐藤 花子, granted withholding on `dev`; its token written to a file.
async fn second_handler(daemon: &Daemon, dir: &Path) -> (Client, PathBuf) {
    let mut admin = daemon.dev_client("dev-admin").await;
    let mut approver = daemon.dev_client("dev-admin2").await;
    let created = admin
        .admin
        .create_operator(pb::CreateOperatorRequest {
            operator_id: "sato".into(),
            role: pb::Role::Handler as i32,
            display_name: "佐藤 花子".into(),
        })
        .await
        .expect("create operator")
        .into_inner();
    approve(&mut approver, created.pending_request).await;
    grant(&mut admin, &mut approver, "sato", "dev", &[W]).await;
    let (_, token) = split_token(
        &mut admin,
        &mut approver,
        pb::IssueTokenRequest {
            operator_id: "sato".into(),
            ttl_seconds: 3600,
            cert_fingerprint: String::new(),
        },
    )
    .await;
    let file = dir.join("sato.token");
    std::fs::write(&file, token.expose_secret()).expect("token file");
    (daemon.client(Some(token)).await, file)
}

/// The audit public keys, as an auditor exports them.
fn public_keys(daemon: &Daemon, dir: &Path) -> PathBuf {
    let (ok, pem, err) = vault_cli(daemon, "dev-auditor", &["audit", "public-key"], "");
    assert!(ok, "{err}");
    let file = dir.join("audit.pem");
    std::fs::write(&file, pem).expect("pem");
    file
}

fn verify(notice: &Path, pem: &Path) -> std::process::Output {
    verify_with_export(notice, pem, None)
}

/// `vault-client disclosure verify NOTICE --public-key PEM [--export EXPORT]`, no daemon.
fn verify_with_export(notice: &Path, pem: &Path, export: Option<&Path>) -> std::process::Output {
    let mut command = Command::new(binary_path("vault-client"));
    command
        .args(["disclosure", "verify"])
        .arg(notice)
        .arg("--public-key")
        .arg(pem);
    if let Some(export) = export {
        command.arg("--export").arg(export);
    }
    command.output().expect("vault-client disclosure verify")
}

/// `vault-client [--output json] disclosure notice --tenant dev ARGS` as the dev manager.
fn ask(daemon: &Daemon, json: bool, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut all = if json {
        vec!["--output", "json"]
    } else {
        vec![]
    };
    all.extend(["disclosure", "notice", "--tenant", "dev"]);
    all.extend(args);
    vault_cli(daemon, "dev-manager", &all, stdin)
}

fn read_notice(path: &Path) -> DisclosureNotice {
    DisclosureNotice::from_json(&std::fs::read_to_string(path).expect("notice")).expect("notice")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disclosure_lists_every_use_of_the_record_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut manager = daemon.dev_client("dev-manager").await;
    let (mut sato, sato_token) = second_handler(&daemon, dir.path()).await;

    // The person's record, and another person's, used alongside (it must not appear).
    let number = valid_number(4501);
    let corrected = valid_number(4502);
    let other = valid_number(4503);
    let handle = handler
        .locker
        .seal(seal_request("dev", "E-45", &number, &[W, HP]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let other_handle = handler
        .locker
        .seal(seal_request("dev", "E-46", &other, &[W]))
        .await
        .expect("seal other")
        .into_inner()
        .handle;
    // Two purposes through two operators; the second carries the number out in a ZIP.
    unseal(&mut handler, &handle, HP)
        .await
        .expect("use for 健康保険");
    unseal(&mut handler, &other_handle, W)
        .await
        .expect("other person");
    let list = dir.path().join("handles.txt");
    std::fs::write(&list, format!("{handle}\n")).expect("list");
    let password = dir.path().join("zip.password");
    std::fs::write(&password, format!("{PASSWORD}\n")).expect("password");
    let zip = dir.path().join("年末調整.zip");
    let (ok, _, err) = vault_cli_as(
        &daemon,
        &sato_token,
        &[
            "unseal",
            "--batch",
            list.to_str().expect("utf8"),
            "--purpose",
            W,
            "--zip",
            zip.to_str().expect("utf8"),
            "--password-file",
            password.to_str().expect("utf8"),
        ],
        "",
    );
    assert!(ok, "carry-out: {err}");
    let zip_sha256 = {
        let bytes = std::fs::read(&zip).expect("zip");
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
    };
    // A refused attempt: a purpose the record does not have.
    let refused = unseal(&mut sato, &handle, EI).await.expect_err("refused");
    assert_eq!(refused.code(), Code::PermissionDenied);
    // A correction, requested by the handler and approved by the manager.
    let correction = handler
        .locker
        .request_correction(pb::CorrectionRequest {
            handle: handle.clone(),
            number: corrected.clone(),
            reason: "番号の誤記".into(),
            asked_by: "本人".into(),
        })
        .await
        .expect("request correction")
        .into_inner();
    manager
        .locker
        .approve_correction(pb::CorrectionDecision {
            id: correction.id,
            note: "本人確認済み".into(),
        })
        .await
        .expect("approve correction");

    // The office's details, as its 管理台帳 holds them.
    let mut admin = daemon.dev_client("dev-admin").await;
    admin
        .admin
        .update_tenant_info(pb::UpdateTenantInfoRequest {
            tenant: "dev".into(),
            responsible_person: Some("鈴木 一郎".into()),
            responsible_department: Some("人事部".into()),
            ..pb::UpdateTenantInfoRequest::default()
        })
        .await
        .expect("tenant details");

    // The person asks; the manager answers by their (corrected) number.
    let json = dir.path().join("開示.json");
    let csv = dir.path().join("開示.csv");
    let pdf = dir.path().join("開示通知書.pdf");
    let (ok, out, err) = ask(
        &daemon,
        false,
        &[
            "--reference",
            "開示-2026-001",
            "--json",
            json.to_str().expect("utf8"),
            "--csv",
            csv.to_str().expect("utf8"),
            "--pdf",
            pdf.to_str().expect("utf8"),
        ],
        &format!("{corrected}\n"),
    );
    assert!(ok, "disclosure: {err}");
    assert!(out.contains("a record is held"), "{out}");
    for file in [&json, &csv, &pdf] {
        assert_eq!(file_mode(file), 0o600, "{}", file.display());
    }
    let notice = read_notice(&json);
    let body = &notice.body;
    assert!(body.held);
    assert_eq!(body.number_masked, format!("********{}", &corrected[8..]));
    let record = body.record.as_ref().expect("the record's facts");
    assert_eq!(record.handle, handle);
    assert_eq!(record.subject_ref, "E-45");
    let labels: Vec<(&str, &str)> = record
        .purposes
        .iter()
        .map(|p| (p.code.as_str(), p.article.as_str()))
        .collect();
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(record.purposes.iter().all(|p| !p.label_ja.is_empty()));
    assert_eq!(record.corrections, 1);

    // Every use, in order, with its purpose, operator and result — and nothing else.
    let uses: Vec<(&str, &str, &str, &str)> = body
        .uses
        .iter()
        .map(|u| {
            (
                u.action.as_str(),
                u.handler.as_str(),
                u.purpose.as_str(),
                u.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        uses,
        vec![
            ("SEAL", "dev handler", "", "ALLOWED"),
            ("UNSEAL", "dev handler", HP, "ALLOWED"),
            ("UNSEAL", "佐藤 花子", W, "ALLOWED"),
            ("UNSEAL", "佐藤 花子", EI, "DENIED"),
            ("CORRECTION_REQUEST", "dev handler", "", "ALLOWED"),
            ("CORRECTION_APPROVE", "dev manager", "", "ALLOWED"),
        ],
        "{:#?}",
        body.uses
    );
    assert!(body.uses.windows(2).all(|w| w[0].seq < w[1].seq));
    // The carry-out names the very file that left.
    let carried: Vec<&str> = body.uses.iter().map(|u| u.carried_out.as_str()).collect();
    let grouped = zip_sha256
        .as_bytes()
        .chunks(8)
        .map(|c| std::str::from_utf8(c).expect("hex"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        carried[2].contains("ZIP") && carried[2].contains(&grouped),
        "{carried:?}"
    );
    assert!(
        carried
            .iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_empty())
    );

    // Complete up to a signed checkpoint the auditor can find.
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let checkpoints = auditor
        .admin
        .audit_checkpoints(pb::AuditCheckpointsRequest::default())
        .await
        .expect("checkpoints")
        .into_inner()
        .checkpoints;
    let anchor = checkpoints
        .iter()
        .find(|c| c.number == body.coverage.checkpoint)
        .expect("the notice's checkpoint is stored");
    assert_eq!(anchor.seq, body.coverage.last_seq);
    assert_eq!(anchor.chain_hash, body.coverage.chain_hash);

    // Never the number in clear; the other person's record nowhere.
    let csv_text = std::fs::read_to_string(&csv).expect("csv");
    let pdf_text = pdftotext(&pdf);
    let json_text = std::fs::read_to_string(&json).expect("json");
    for text in [&csv_text, &pdf_text, &json_text, &out, &err] {
        for n in [&number, &corrected, &other] {
            assert!(!text.contains(n.as_str()), "a number in clear");
        }
        assert!(!text.contains(&other_handle), "another person's record");
    }
    assert_eq!(csv_text.lines().count(), 1 + body.uses.len(), "{csv_text}");
    assert!(csv_text.contains("佐藤 花子") && csv_text.contains("DENIED"));
    // The PDF as the person reads it.
    for expected in [
        "開示通知書",
        "開示-2026-001",
        &body.number_masked,
        "保有しています",
        "第4条",
        "利用の記録",
        "拒否",
        "持出し",
        "佐藤 花子",
        "承認",
    ] {
        assert!(
            pdf_text.contains(expected),
            "PDF lacks {expected}:\n{pdf_text}"
        );
    }
    let label = &record.purposes[0].label_ja;
    assert!(pdf_text.contains(label.as_str()), "第4条 label: {pdf_text}");
    // In the office's name, with its 責任者 and 取扱部署 from the 管理台帳.
    assert!(!body.office.is_empty());
    for office in [body.office.as_str(), "鈴木 一郎", "人事部"] {
        assert!(pdf_text.contains(office), "PDF lacks {office}:\n{pdf_text}");
    }

    // Verifies offline; one changed byte anywhere in a value does not.
    let pem = public_keys(&daemon, dir.path());
    let verified = verify(&json, &pem);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    for (from, to) in [
        ("佐藤 花子", "佐藤 花男"),
        ("\"DENIED\"", "\"DENIEX\""),
        (
            &format!("\"seq\":{}", body.uses[1].seq),
            &format!("\"seq\":{}", body.uses[1].seq + 1),
        ),
    ] {
        let forged = dir.path().join("forged.json");
        let _ = std::fs::remove_file(&forged);
        assert!(json_text.contains(from), "{from}");
        std::fs::write(&forged, json_text.replacen(from, to, 1)).expect("forged");
        let refused = verify(&forged, &pem);
        assert!(!refused.status.success(), "{from} → {to} still verifies");
    }

    // An auditor holds the notice against an export of the log: every use there, none left
    // out; an export cut before the notice's checkpoint proves nothing and is refused.
    let export = dir.path().join("audit.jsonl");
    let (ok, _, err) = vault_cli(
        &daemon,
        "dev-auditor",
        &["audit", "export", "--out", export.to_str().expect("utf8")],
        "",
    );
    assert!(ok, "{err}");
    let checked = verify_with_export(&json, &pem, Some(&export));
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success() && said.contains("uses OK") && said.contains("6 entries"),
        "{said}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let cut = dir.path().join("cut.jsonl");
    let text = std::fs::read_to_string(&export).expect("export");
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64))
                .is_none_or(|seq| seq != body.uses[2].seq)
        })
        .collect();
    std::fs::write(&cut, kept.join("\n") + "\n").expect("cut export");
    let refused = verify_with_export(&json, &pem, Some(&cut));
    assert!(
        !refused.status.success(),
        "an export missing a use proves nothing"
    );

    // Audited as DISCLOSURE with the reference and the handle, never the number.
    let entries = export_audit(&mut auditor).await;
    let disclosure = entries
        .iter()
        .find(|e| e.action == "DISCLOSURE")
        .expect("DISCLOSURE entry");
    assert_eq!(disclosure.operator_id, "dev-manager");
    assert_eq!(disclosure.handle, handle);
    assert!(
        disclosure.reason.contains("開示-2026-001"),
        "{}",
        disclosure.reason
    );
    for entry in &entries {
        let text = format!("{entry:?}");
        for n in [&number, &corrected, &other] {
            assert!(!text.contains(n.as_str()), "a number in the audit log");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_held_is_said_and_signed_and_a_caller_without_the_role_learns_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let held = valid_number(4601);
    let absent = valid_number(4602);
    handler
        .locker
        .seal(seal_request("dev", "E-1", &held, &[W]))
        .await
        .expect("seal");

    let json = dir.path().join("none.json");
    let pdf = dir.path().join("none.pdf");
    let (ok, out, err) = ask(
        &daemon,
        false,
        &[
            "--reference",
            "開示-2026-002",
            "--json",
            json.to_str().expect("utf8"),
            "--pdf",
            pdf.to_str().expect("utf8"),
        ],
        &format!("{absent}\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("nothing is held"), "{out}");
    let notice = read_notice(&json);
    assert!(!notice.body.held);
    assert!(notice.body.record.is_none() && notice.body.uses.is_empty());
    assert_eq!(
        notice.body.number_masked,
        format!("********{}", &absent[8..])
    );
    let text = pdftotext(&pdf);
    assert!(text.contains("保有していません"), "{text}");
    assert!(!text.contains(absent.as_str()));
    let pem = public_keys(&daemon, dir.path());
    assert!(verify(&json, &pem).status.success());

    // A handler (no disclosure role) is refused alike for a number held and one not: the
    // refusal answers nothing.
    let mut refusals = Vec::new();
    for number in [&held, &absent] {
        let status = handler
            .admin
            .disclose(pb::DisclosureRequest {
                tenant: "dev".into(),
                subject: Some(pb::disclosure_request::Subject::Number(number.clone())),
                reference: "probe".into(),
                ..pb::DisclosureRequest::default()
            })
            .await
            .expect_err("handlers may not");
        assert_eq!(status.code(), Code::PermissionDenied);
        refusals.push(status.message().to_owned());
    }
    assert_eq!(refusals[0], refusals[1]);
    // A manager of another tenant is refused before anything is looked up.
    let mut manager = daemon.dev_client("dev-manager").await;
    let other = manager
        .admin
        .disclose(pb::DisclosureRequest {
            tenant: "elsewhere".into(),
            subject: Some(pb::disclosure_request::Subject::Number(held.clone())),
            reference: "probe".into(),
            ..pb::DisclosureRequest::default()
        })
        .await
        .expect_err("not its tenant");
    assert_eq!(other.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_items_are_left_out_and_said_with_their_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = valid_number(4701);
    let handle = handler
        .locker
        .seal(seal_request("dev", "E-47", &number, &[W, HP]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    unseal(&mut handler, &handle, W).await.expect("use");

    // By handle, handlers shown by role, and who handled it withheld under 第45条2②.
    let reason = "担当者の氏名を開示すると業務の適正な実施に著しい支障を及ぼすおそれがあるため";
    let json = dir.path().join("withheld.json");
    let pdf = dir.path().join("withheld.pdf");
    let (ok, _, err) = ask(
        &daemon,
        false,
        &[
            "--handle",
            &handle,
            "--reference",
            "開示-2026-003",
            "--handlers",
            "role",
            "--withhold",
            &format!("handlers:2:{reason}"),
            "--json",
            json.to_str().expect("utf8"),
            "--pdf",
            pdf.to_str().expect("utf8"),
        ],
        "",
    );
    assert!(ok, "{err}");
    let notice = read_notice(&json);
    let body = &notice.body;
    // By handle, the number is still shown only by its last four digits.
    assert_eq!(body.number_masked, format!("********{}", &number[8..]));
    assert_eq!(body.uses.len(), 2, "{:?}", body.uses);
    assert!(
        body.uses
            .iter()
            .all(|u| u.handler.is_empty() && u.role.is_empty())
    );
    assert!(
        body.record
            .as_ref()
            .is_some_and(|r| r.acquired_by.is_empty())
    );
    assert_eq!(body.withheld.len(), 1);
    assert_eq!(body.withheld[0].ground, 2);
    let text = pdftotext(&pdf);
    for expected in ["不開示とした事項", "第45条2②", "不開示", "著しい支障"] {
        assert!(text.contains(expected), "PDF lacks {expected}:\n{text}");
    }
    assert!(
        !text.contains("dev handler") && !text.contains("dev-handler"),
        "{text}"
    );
    assert!(!text.contains(number.as_str()));

    // Roles only, nothing withheld: the role is shown, no operator's name or id.
    let (ok, roles, err) = ask(
        &daemon,
        true,
        &[
            "--handle",
            &handle,
            "--reference",
            "開示-2026-004",
            "--handlers",
            "role",
        ],
        "",
    );
    assert!(ok, "{err}");
    let roles = DisclosureNotice::from_json(roles.trim()).expect("notice on stdout");
    assert!(
        roles
            .body
            .uses
            .iter()
            .all(|u| u.handler == u.role && !u.role.is_empty())
    );
    let shown = format!("{roles:?}");
    assert!(!shown.contains("dev-handler") && !shown.contains("dev handler"));

    // A period that ended before every use: the record, and no use.
    let yesterday = vault_tests::rpc::jst_date_in(-1);
    let (ok, later, err) = ask(
        &daemon,
        true,
        &[
            "--handle",
            &handle,
            "--reference",
            "開示-2026-005",
            "--to",
            &yesterday,
        ],
        "",
    );
    assert!(ok, "{err}");
    let later = DisclosureNotice::from_json(later.trim()).expect("notice on stdout");
    assert!(later.body.record.is_some() && later.body.uses.is_empty());

    // The record withheld: neither its facts nor its purposes are named; the uses still are.
    let (ok, withheld, err) = ask(
        &daemon,
        true,
        &[
            "--handle",
            &handle,
            "--reference",
            "開示-2026-006",
            "--withhold",
            "record:1:第三者の権利利益を害するおそれがあるため",
        ],
        "",
    );
    assert!(ok, "{err}");
    let withheld = DisclosureNotice::from_json(withheld.trim()).expect("notice on stdout");
    assert!(withheld.body.held && withheld.body.record.is_none());
    assert_eq!(withheld.body.uses.len(), 5, "{:?}", withheld.body.uses);
    // The one use named with a purpose (the UNSEAL) names only its own: not the record's other
    // purpose.
    let codes: Vec<&str> = withheld
        .body
        .purposes
        .iter()
        .map(|p| p.code.as_str())
        .collect();
    assert_eq!(codes, vec![W]);

    // Bad requests change nothing and say what is wrong.
    for (withhold, wrong) in [
        ("everything:2:理由", "unknown"),
        ("uses:4:理由", "1, 2 or 3"),
        ("uses:1:", "required"),
    ] {
        let (ok, _, err) = ask(
            &daemon,
            false,
            &[
                "--handle",
                &handle,
                "--reference",
                "開示-2026-005",
                "--withhold",
                withhold,
            ],
            "",
        );
        assert!(!ok && err.contains(wrong), "{withhold}: {err}");
    }
    let (ok, _, err) = ask(
        &daemon,
        false,
        &["--handle", &handle, "--reference", &number],
        "",
    );
    assert!(
        !ok && err.contains("must not contain an individual number"),
        "{err}"
    );
    assert!(!err.contains(number.as_str()));
}
