//! Printable records: the 削除証明書 and the 管理台帳 as PDF in Japanese, read back with
//! poppler's `pdftotext` as an office's printer and filing system would see them, and rendered
//! with `pdftoppm` to check what the printed page shows: nothing in the margins, no label
//! running into its value.

use std::process::Command;

use vault_client::pb;
use vault_tests::Daemon;
use vault_tests::cli::vault_cli;
use vault_tests::numbers::valid_number;
use vault_tests::pdf::{file_mode, pdftotext};
use vault_tests::rpc::seal_request;

/// One page rendered at 72 dpi in grey (one pixel per point): `width × height` bytes, 0 black.
struct Rendered {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Rendered {
    fn inked(&self, x: usize, y: usize) -> bool {
        self.pixels[y * self.width + x] < 160
    }
}

/// Every page of `pdf` as the printer would put it on paper (`pdftoppm -r 72 -gray`).
fn render(pdf: &std::path::Path) -> Vec<Rendered> {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = dir.path().join("page");
    let status = Command::new("pdftoppm")
        .args(["-r", "72", "-gray"])
        .arg(pdf)
        .arg(&prefix)
        .status()
        .expect("pdftoppm (poppler-utils) must be installed: scripts/install-deps.sh");
    assert!(status.success(), "pdftoppm refused {}", pdf.display());
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("pages")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|file| {
            let bytes = std::fs::read(file).expect("page");
            // P5 <width> <height> 255, each after one whitespace byte, then the pixels.
            let mut fields = Vec::new();
            let mut at = 0;
            while fields.len() < 4 {
                let end = at
                    + bytes[at..]
                        .iter()
                        .position(u8::is_ascii_whitespace)
                        .expect("PGM header");
                fields.push(String::from_utf8_lossy(&bytes[at..end]).into_owned());
                at = end + 1;
            }
            assert_eq!(fields[0], "P5", "{}", file.display());
            let (width, height) = (
                fields[1].parse().expect("width"),
                fields[2].parse().expect("height"),
            );
            let pixels = bytes[at..].to_vec();
            assert_eq!(pixels.len(), width * height, "{}", file.display());
            Rendered {
                width,
                height,
                pixels,
            }
        })
        .collect()
}

/// No ink within `margin` points of the paper's edges on any page (what a printer may cut,
/// and where a filing punch goes), except the page number's line at the foot.
fn assert_margins_blank(pdf: &std::path::Path, margin: usize) {
    let pages = render(pdf);
    assert!(!pages.is_empty(), "{} has no page", pdf.display());
    for (number, page) in pages.iter().enumerate() {
        assert_eq!((page.width, page.height), (595, 842), "A4 portrait");
        for y in 0..page.height {
            for x in 0..page.width {
                let in_margin = x < margin
                    || x >= page.width - margin
                    || y < margin
                    || y >= page.height - margin / 2;
                assert!(
                    !(in_margin && page.inked(x, y)),
                    "{} page {}: ink at ({x}, {y}) pt, inside the {margin}-point margin",
                    pdf.display(),
                    number + 1
                );
            }
        }
    }
}

/// Where each label the text layer places (`is_label`) stands, the rendered page shows no ink
/// in the gap between the label column and the values (`gap` points before `value_column`):
/// a label that ran into its value would put some there.
fn assert_labels_clear(
    pdf: &std::path::Path,
    value_column: f32,
    gap: f32,
    is_label: impl Fn(&str) -> bool,
) -> usize {
    let pages = render(pdf);
    let mut checked = 0;
    for word in placed_words(pdf) {
        if word.x_min >= value_column - 1.0 || !is_label(&word.text) {
            continue;
        }
        checked += 1;
        let page = &pages[word.page - 1];
        for y in word.y_min.floor() as usize..word.y_max.ceil() as usize {
            for x in (value_column - gap + 1.0) as usize..(value_column - 1.0) as usize {
                assert!(
                    !page.inked(x, y),
                    "{} page {}: the label {:?} puts ink at ({x}, {y}) pt, in the gap before its value",
                    pdf.display(),
                    word.page,
                    word.text
                );
            }
        }
    }
    checked
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
    let mut admin = daemon.dev_client("dev-admin").await;
    admin
        .admin
        .set_tenant_info(pb::TenantInfo {
            tenant: "dev".into(),
            file_kind: "給与・社会保険".into(),
            file_name: "従業員個人番号ファイル".into(),
            responsible_person: "人事部長 山田太郎".into(),
            responsible_department: "人事部".into(),
            ..pb::TenantInfo::default()
        })
        .await
        .expect("tenant details");
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
    // On paper: nothing over the margins, no label into its value (the values start 150
    // points in from the 56-point margin).
    assert_margins_blank(&pdf, 36);
    let labels = [
        "事業所",
        "特定個人情報ファイルの種類",
        "特定個人情報ファイルの名称",
        "責任者",
        "取扱部署",
        "削除・廃棄状況",
        "対象者の管理番号",
        "記録のハンドル",
        "削除日時",
        "削除方法",
        "削除実施者",
        "鍵バージョン",
        "署名鍵",
        "署名",
    ];
    let checked = assert_labels_clear(&pdf, 56.0 + 150.0, 8.0, |text| {
        labels
            .iter()
            .any(|label| text.starts_with(label) || label.contains(text))
    });
    assert!(
        checked >= labels.len(),
        "labels found on the page: {checked}"
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
    // What the handling rules ask a deletion record to hold (規程第36条2): the file's kind and
    // name, the responsible person and department, and the state of the deletion — never the
    // number.
    for (item, value) in [
        ("特定個人情報ファイルの種類", "給与・社会保険"),
        ("特定個人情報ファイルの名称", "従業員個人番号ファイル"),
        ("責任者", "人事部長 山田太郎"),
        ("取扱部署", "人事部"),
        ("削除・廃棄状況", "削除済み"),
    ] {
        assert!(
            text.contains(item) && text.contains(value),
            "第36条2: {item} ({value}) missing from:\n{text}"
        );
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

/// A word of a PDF's text layer where `pdftotext -bbox-layout` places it, in points.
struct Placed {
    page: usize,
    x_min: f32,
    x_max: f32,
    y_min: f32,
    y_max: f32,
    text: String,
}

/// The words of a PDF as `pdftotext -bbox-layout` places them: (page, xMin, xMax, text).
fn words(path: &std::path::Path) -> Vec<(usize, f32, f32, String)> {
    placed_words(path)
        .into_iter()
        .map(|w| (w.page, w.x_min, w.x_max, w.text))
        .collect()
}

/// Every word of a PDF's text layer with its box.
fn placed_words(path: &std::path::Path) -> Vec<Placed> {
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
            out.push(Placed {
                page,
                x_min: attribute(tag, "xMin"),
                x_max: attribute(tag, "xMax"),
                y_min: attribute(tag, "yMin"),
                y_max: attribute(tag, "yMax"),
                text: text.to_owned(),
            });
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
    // A second tenant (office): the ledger has a section for each.
    admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            name: "株式会社ACME".into(),
        })
        .await
        .expect("tenant");
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
        if i % 2 == 0 {
            vault_tests::rpc::grant(&mut admin, &mut approver, &id, "acme", &granted).await;
        }
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
    assert!(
        pages >= 3,
        "two sections, the first onto a second page: {pages}"
    );
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
        "削除・廃棄状況",
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
    // On paper: nothing over the margins, and where each label stands no ink in the gap
    // before its value.
    assert_margins_blank(&ledger, 36);
    let checked = assert_labels_clear(&ledger, value_column, 8.0, is_label);
    assert!(
        checked > 30,
        "labels checked on the rendered pages: {checked}"
    );
    let text = pdftotext(&ledger);
    let continued = text.split('\u{c}').nth(1).expect("a second page");
    assert!(
        continued.contains("（続き）") && continued.contains("dev"),
        "the second page says whose section it continues:\n{continued}"
    );
    // Every item the handling rules ask the 管理台帳 to record (規程第16条 ①–⑦), in each
    // office's section.
    for item in [
        "特定個人情報ファイルの種類",
        "特定個人情報ファイルの名称",
        "責任者",
        "取扱部署",
        "利用目的",
        "削除・廃棄状況",
        "アクセス権を有する者",
        "管理区域",
        "取扱区域",
    ] {
        let sections = text.matches(item).count();
        assert!(
            sections >= 2,
            "第16条: {item} in {sections} of 2 sections:\n{text}"
        );
    }
    for expected in [
        "事務担当者 第07号",
        "clerk-07",
        "確認",
        "承認",
        "株式会社ACME",
    ] {
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
