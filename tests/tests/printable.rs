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
