//! Printable records: the 削除証明書 and the 管理台帳 as PDF in Japanese, read back with
//! poppler's `pdftotext` as an office's printer and filing system would see them.

use std::process::Command;

use vault_client::pb;
use vault_tests::Daemon;
use vault_tests::cli::vault_cli;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::seal_request;

fn file_mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("written")
        .permissions()
        .mode()
        & 0o777
}

fn pdftotext(path: &std::path::Path) -> String {
    let output = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) must be installed: scripts/install-deps.sh");
    assert!(
        output.status.success(),
        "pdftotext refused {}",
        path.display()
    );
    String::from_utf8(output.stdout).expect("UTF-8 text")
}

fn jst_date(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .expect("time")
        .to_offset(time::UtcOffset::from_hms(9, 0, 0).expect("offset"));
    format!(
        "{:04}年{:02}月{:02}日",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_and_ledger_print_in_japanese() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut manager = daemon.dev_client("dev-manager").await;
    let number = valid_number(3141);
    let handle = handler
        .locker
        .seal(seal_request(
            "dev",
            "社員-0042",
            &number,
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    manager
        .locker
        .dispose(pb::DisposeRequest {
            handle: handle.clone(),
            reason: "保存期間経過".into(),
        })
        .await
        .expect("dispose");
    let certificate = manager
        .locker
        .get_deletion_certificate(pb::CertificateRequest {
            handle: handle.clone(),
        })
        .await
        .expect("certificate")
        .into_inner();

    // 削除証明書.
    let pdf = dir.path().join("削除証明書.pdf");
    let pdf_arg = pdf.to_str().expect("utf8");
    let (ok, out, err) = vault_cli(
        &daemon,
        "dev-manager",
        &["certificate", "pdf", &handle, "--out", pdf_arg],
        "",
    );
    assert!(ok, "{err}");
    assert!(out.contains("written"), "{out}");
    assert!(std::fs::read(&pdf).expect("pdf").starts_with(b"%PDF-"));
    assert_eq!(
        file_mode(&pdf),
        0o600,
        "the certificate is readable by others"
    );
    let text = pdftotext(&pdf);
    for expected in [
        "削除証明書",
        handle.as_str(),
        jst_date(certificate.disposed_at_ms).as_str(),
        "社員-0042",
        "保存期間経過",
        "dev-manager",
        "確認",
        "承認",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains(&number), "the number in the certificate");
    // In Japanese throughout, naming the office by its name.
    assert!(!certificate.tenant_name.is_empty(), "{certificate:?}");
    for expected in [
        certificate.tenant_name.as_str(),
        "事業所",
        "管理責任者の指示",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    for english in [
        "ciphertext",
        "wrapped",
        "Certificate of Deletion",
        "(tenant)",
    ] {
        assert!(!text.contains(english), "{english} in:\n{text}");
    }
    // The font is embedded (subset), so it prints the same anywhere.
    let fonts = Command::new("pdffonts")
        .arg(&pdf)
        .output()
        .expect("pdffonts");
    let fonts = String::from_utf8_lossy(&fonts.stdout);
    assert!(fonts.contains("yes yes yes"), "{fonts}");
    // Never over an existing file.
    let (ok, _, err) = vault_cli(
        &daemon,
        "dev-manager",
        &["certificate", "pdf", &handle, "--out", pdf_arg],
        "",
    );
    assert!(!ok && err.contains("exists"), "{err}");

    // 管理台帳.
    let (ok, _, err) = vault_cli(
        &daemon,
        "dev-admin",
        &[
            "tenant",
            "info",
            "dev",
            "--file-kind",
            "給与・社会保険",
            "--responsible-person",
            "事務取扱責任者 山田",
            "--management-area",
            "サーバ室A",
        ],
        "",
    );
    assert!(ok, "{err}");
    let ledger = dir.path().join("管理台帳.pdf");
    let ledger_arg = ledger.to_str().expect("utf8");
    let (ok, _, err) = vault_cli(
        &daemon,
        "dev-auditor",
        &["ledger", "--format", "pdf", "--out", ledger_arg],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(
        file_mode(&ledger),
        0o600,
        "the ledger is readable by others"
    );
    let text = pdftotext(&ledger);
    for expected in [
        "特定個人情報管理台帳",
        "dev",
        "給与・社会保険",
        "事務取扱責任者 山田",
        "サーバ室A",
        "廃棄済 1 件",
        "STAFF_WITHHOLDING",
        "源泉徴収票",
        "dev-handler",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    // A PDF needs a file; a font that is not one is refused before anything is read.
    let (ok, _, err) = vault_cli(&daemon, "dev-auditor", &["ledger", "--format", "pdf"], "");
    assert!(!ok && err.contains("--out"), "{err}");
    let not_a_font = dir.path().join("font.ttf");
    std::fs::write(&not_a_font, b"not a font").expect("write");
    let (ok, _, err) = vault_cli(
        &daemon,
        "dev-auditor",
        &[
            "ledger",
            "--format",
            "pdf",
            "--out",
            dir.path().join("x.pdf").to_str().expect("utf8"),
            "--font",
            not_a_font.to_str().expect("utf8"),
        ],
        "",
    );
    assert!(!ok && err.contains("font"), "{err}");
    assert!(!dir.path().join("x.pdf").exists());
}

/// The words of a PDF as `pdftotext -bbox-layout` places them: (page, xMin, xMax, text).
fn words(path: &std::path::Path) -> Vec<(usize, f32, f32, String)> {
    let output = Command::new("pdftotext")
        .args(["-bbox-layout", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) must be installed: scripts/install-deps.sh");
    let html = String::from_utf8(output.stdout).expect("UTF-8");
    let attribute = |tag: &str, name: &str| -> f32 {
        tag.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|v| v.parse().ok())
            .expect("a coordinate")
    };
    let mut page = 0;
    let mut out = Vec::new();
    for piece in html.split('<').skip(1) {
        if piece.starts_with("page ") {
            page += 1;
        } else if let Some(rest) = piece.strip_prefix("word ") {
            let (tag, text) = rest.split_once('>').expect("a word");
            out.push((
                page,
                attribute(tag, "xMin"),
                attribute(tag, "xMax"),
                text.to_owned(),
            ));
        }
    }
    out
}

/// The 管理台帳 fit to file: labels never run into their values and no word crosses the right
/// margin; purposes in 第4条's order; operators by name; a page the section runs onto says
/// whose it is; boxes for the seals of who checked and who approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_fits_its_pages_in_the_order_of_the_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut admin = daemon.dev_client("dev-admin").await;
    let mut approver = daemon.dev_client("dev-admin2").await;
    let purposes = [
        "STAFF_WORKERS_COMP",
        "PAYEE_REAL_ESTATE",
        "ENTRUSTED_OTHER",
        "STAFF_EMPLOYMENT_INSURANCE",
        "ENTRUSTED_EI_ACQUISITION",
        "STAFF_HEALTH_PENSION",
    ];
    // Enough operators, each with a name and purposes, to run onto a second page.
    for i in 0..16 {
        let id = format!("clerk-{i:02}");
        let created = admin
            .admin
            .create_operator(pb::CreateOperatorRequest {
                operator_id: id.clone(),
                role: pb::Role::Handler as i32,
                display_name: format!("事務担当者 第{i:02}号"),
            })
            .await
            .expect("create")
            .into_inner();
        vault_tests::rpc::approve(&mut approver, created.pending_request).await;
        let granted = [
            purposes[i % purposes.len()],
            purposes[(i + 1) % purposes.len()],
        ];
        vault_tests::rpc::grant(&mut admin, &mut approver, &id, "dev", &granted).await;
    }
    let ledger = dir.path().join("管理台帳.pdf");
    let (ok, _, err) = vault_cli(
        &daemon,
        "dev-auditor",
        &[
            "ledger",
            "--format",
            "pdf",
            "--out",
            ledger.to_str().expect("utf8"),
        ],
        "",
    );
    assert!(ok, "{err}");
    let placed = words(&ledger);
    let pages = placed.iter().map(|w| w.0).max().unwrap_or(0);
    assert!(pages >= 2, "the section runs onto a second page: {pages}");
    // The label column ends 150 points in from the 56-point margin: no label runs past it.
    let value_column = 56.0 + 150.0;
    let right_margin = 595.0 - 56.0;
    let labels = [
        "事業所",
        "特定個人情報ファイルの種類",
        "特定個人情報ファイルの名称",
        "責任者",
        "取扱部署",
        "管理区域",
        "取扱区域",
        "記録件数",
        "最終廃棄日時",
    ];
    let is_label = |text: &str| {
        labels
            .iter()
            .any(|label| label.contains(text) || text.contains(label))
            || text.starts_with("第4条")
            || text.contains("事務担当者")
            || text.starts_with("clerk-")
            || text.starts_with("dev-")
    };
    let mut seen_labels = 0;
    for (page, x_min, x_max, text) in &placed {
        if *x_min < value_column - 1.0 && is_label(text) {
            seen_labels += 1;
            assert!(
                *x_max <= value_column - 2.0,
                "page {page}: the label {text:?} ({x_min}–{x_max}) runs into its value"
            );
        }
        assert!(
            *x_max <= right_margin + 2.0,
            "page {page}: {text:?} ends at {x_max}, over the margin"
        );
    }
    assert!(seen_labels > 30, "labels found: {seen_labels}");
    let text = pdftotext(&ledger);
    let continued = text.split('\u{c}').nth(1).expect("a second page");
    assert!(
        continued.contains("（続き）") && continued.contains("dev"),
        "the second page says whose section it continues:\n{continued}"
    );
    for expected in ["事務担当者 第07号", "clerk-07", "確認", "承認"] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    // Every purpose whole, in the order of 第4条's list.
    let order: Vec<usize> = ["1-①", "1-②", "1-③", "2-③", "3-(1)①", "3-(3)"]
        .iter()
        .map(|article| {
            text.find(&format!("第4条 {article}"))
                .unwrap_or_else(|| panic!("第4条 {article} missing from:\n{text}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "not in 第4条 order: {order:?}"
    );
    for code in purposes {
        assert!(text.contains(code), "{code} broken or missing:\n{text}");
    }
}
