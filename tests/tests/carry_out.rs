//! 第35条 carry-out: numbers leave the locker only in an AES-256, password-protected ZIP that
//! 7-Zip opens with the password and not without, holding no number in clear; every carry-out
//! is in the audit log with its count and the file's digest and in the usage report (持出し).
//! A plaintext file needs `--plaintext-out`; standard output redirected to a file is refused
//! before anything is unsealed.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use tonic::Code;
use vault_client::{Client, pb};
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{export_audit, seal_request};
use vault_tests::{Daemon, binary_path};

const W: &str = "STAFF_WITHHOLDING";
const PASSWORD: &str = "correct horse battery staple";

/// `vault-client` as the dev handler of `daemon`, standard input closed.
fn handler_cli(daemon: &Daemon) -> Command {
    let mut command = Command::new(binary_path("vault-client"));
    command
        .arg("--endpoint")
        .arg(daemon.endpoint())
        .arg("--token-file")
        .arg(daemon.data_dir.join("tokens").join("dev-handler.token"))
        .stdin(Stdio::null());
    command
}

fn cli(daemon: &Daemon, args: &[&str]) -> (Option<i32>, String, String) {
    let output = handler_cli(daemon)
        .args(args)
        .output()
        .expect("run vault-client");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn sevenzip(args: &[&str]) -> std::process::Output {
    Command::new("7z")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("7z (p7zip-full) must be installed: scripts/install-deps.sh")
}

/// SHA-256 of a file as the audit entry shows it: hex in groups of eight (no run of twelve
/// digits ever reads as a number).
/// For every local and central header of a ZIP: its kind, its CRC-32 field and the vendor
/// version of its AES extra field (0x9901). Panics if a header has no AES field.
fn zip_aes_headers(bytes: &[u8]) -> Vec<(&'static str, u32, u16)> {
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let aes_version = |extra: &[u8]| {
        let mut at = 0;
        while at + 4 <= extra.len() {
            let id = u16::from_le_bytes([extra[at], extra[at + 1]]);
            let size = usize::from(u16::from_le_bytes([extra[at + 2], extra[at + 3]]));
            if id == 0x9901 {
                return u16::from_le_bytes([extra[at + 4], extra[at + 5]]);
            }
            at += 4 + size;
        }
        panic!("no AES extra field");
    };
    let mut found = Vec::new();
    for at in 0..bytes.len().saturating_sub(46) {
        match &bytes[at..at + 4] {
            b"PK\x03\x04" => {
                let name = usize::from(u16_at(at + 26));
                let extra = usize::from(u16_at(at + 28));
                let start = at + 30 + name;
                found.push((
                    "local",
                    u32_at(at + 14),
                    aes_version(&bytes[start..start + extra]),
                ));
            }
            b"PK\x01\x02" => {
                let name = usize::from(u16_at(at + 28));
                let extra = usize::from(u16_at(at + 30));
                let start = at + 46 + name;
                found.push((
                    "central",
                    u32_at(at + 16),
                    aes_version(&bytes[start..start + extra]),
                ));
            }
            _ => {}
        }
    }
    assert_eq!(found.len(), 2, "one entry: a local and a central header");
    found
}

fn sha256_hex(path: &std::path::Path) -> String {
    let hex = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &std::fs::read(path).expect("read"),
    ));
    hex.as_bytes()
        .chunks(8)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

async fn unseals(client: &mut Client) -> usize {
    export_audit(client)
        .await
        .iter()
        .filter(|e| e.action == "UNSEAL")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_leave_only_in_an_encrypted_zip_and_every_carry_out_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let numbers: Vec<String> = (0..5).map(|i| valid_number(8800 + i)).collect();
    let mut handles = Vec::new();
    for (i, number) in numbers.iter().enumerate() {
        let sealed = handler
            .locker
            .seal(seal_request("dev", &format!("E-{i}"), number, &[W]))
            .await
            .expect("seal")
            .into_inner();
        handles.push(sealed.handle);
    }
    let list = dir.path().join("handles.txt");
    std::fs::write(&list, handles.join("\n")).expect("handles");
    let password_file = dir.path().join("zip.password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf8").to_owned();
    let list_arg = path("handles.txt");
    let pw_arg = path("zip.password");

    // The carry-out.
    let zip = dir.path().join("年末調整.zip");
    let zip_arg = path("年末調整.zip");
    let (code, out, err) = cli(
        &daemon,
        &[
            "unseal",
            "--batch",
            &list_arg,
            "--purpose",
            W,
            "--zip",
            &zip_arg,
            "--password-file",
            &pw_arg,
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("5 numbers written") && out.contains("carry-out"),
        "{out}"
    );
    for number in &numbers {
        assert!(!out.contains(number.as_str()) && !err.contains(number.as_str()));
    }
    let mode = std::fs::metadata(&zip).expect("zip").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only its owner reads the ZIP");
    let bytes = std::fs::read(&zip).expect("zip bytes");
    for number in &numbers {
        assert!(
            !bytes.windows(12).any(|w| w == number.as_bytes()),
            "a number in clear in the ZIP"
        );
    }

    // WinZip AE-2: the AES extra field says vendor version 2, and no header holds the
    // plaintext's CRC-32 (which would narrow a few numbers down without the password).
    for (header, crc, version) in zip_aes_headers(&bytes) {
        assert_eq!(version, 2, "{header} AES extra field: AE-{version}");
        assert_eq!(crc, 0, "{header} carries the plaintext's CRC-32");
    }

    // 7-Zip: AES-256, opens with the password, not without it.
    let listing = sevenzip(&["l", "-slt", &format!("-p{PASSWORD}"), &zip_arg]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("AES-256"), "{listing}");
    assert!(listing.contains("Encrypted = +"), "{listing}");
    let wrong_dir = dir.path().join("wrong");
    let wrong = sevenzip(&[
        "x",
        "-y",
        "-pnot the password at all",
        &format!("-o{}", wrong_dir.display()),
        &zip_arg,
    ]);
    assert!(
        !wrong.status.success(),
        "7z opened it with a wrong password"
    );
    let leaked = std::fs::read(wrong_dir.join("numbers.csv")).unwrap_or_default();
    assert!(
        !numbers
            .iter()
            .any(|n| leaked.windows(12).any(|w| w == n.as_bytes())),
        "a wrong password yielded numbers"
    );
    let right_dir = dir.path().join("right");
    let right = sevenzip(&[
        "x",
        "-y",
        &format!("-p{PASSWORD}"),
        &format!("-o{}", right_dir.display()),
        &zip_arg,
    ]);
    assert!(right.status.success(), "{right:?}");
    let csv = std::fs::read_to_string(right_dir.join("numbers.csv")).expect("numbers.csv");
    let mut lines = csv.lines();
    // Each number beside whose it is, as sealed.
    assert_eq!(
        lines.next(),
        Some("row,handle,subject_ref,subject_kind,number,error")
    );
    for (i, line) in lines.enumerate() {
        assert_eq!(
            line,
            format!("{},{},E-{i},staff,{},", i + 1, handles[i], numbers[i]),
            "row {i}"
        );
    }
    // Dated when it was written (a ZIP's local time, read as Japan's), not 1980-01-01.
    let modified = listing
        .lines()
        .find_map(|line| line.strip_prefix("Modified = "))
        .expect("7z lists the entry's date");
    let jst = time::UtcOffset::from_hms(9, 0, 0).expect("JST");
    let today = time::OffsetDateTime::now_utc().to_offset(jst).date();
    let yesterday = today.previous_day().expect("a day before");
    assert!(
        [today, yesterday]
            .iter()
            .any(|day| modified.starts_with(&day.to_string())),
        "entry dated {modified}, today is {today} in Japan"
    );

    // In the audit log: who, which purpose, how many, the file's digest; never a number.
    let entries = export_audit(&mut auditor).await;
    let carry: Vec<&pb::AuditEntry> = entries.iter().filter(|e| e.action == "CARRY_OUT").collect();
    assert_eq!(carry.len(), 1, "{carry:#?}");
    let entry = carry[0];
    assert_eq!(
        (
            entry.outcome.as_str(),
            entry.operator_id.as_str(),
            entry.purpose.as_str(),
            entry.tenant.as_str()
        ),
        ("ALLOWED", "dev-handler", W, "dev")
    );
    assert!(
        entry.reason.contains("carried out 5 numbers"),
        "{}",
        entry.reason
    );
    assert!(entry.reason.contains("AES-256"), "{}", entry.reason);
    assert!(
        entry.reason.contains(&sha256_hex(&zip)),
        "the digest of the file: {}",
        entry.reason
    );
    // In the usage report, as 持出し.
    let report = auditor
        .admin
        .usage_report(pb::UsageReportRequest {
            from_unix: 0,
            to_unix: 4_102_444_800,
            tenant: String::new(),
        })
        .await
        .expect("usage report")
        .into_inner();
    let row = report
        .rows
        .iter()
        .find(|r| r.category == "carry_out")
        .unwrap_or_else(|| panic!("no carry_out row in {:#?}", report.rows));
    assert_eq!((row.action.as_str(), row.count), ("CARRY_OUT", 1));
    // The manager of the tenant sees it too.
    let mut manager = daemon.dev_client("dev-manager").await;
    let scoped = manager
        .admin
        .usage_report(pb::UsageReportRequest {
            from_unix: 0,
            to_unix: 4_102_444_800,
            tenant: "dev".into(),
        })
        .await
        .expect("manager's usage report")
        .into_inner();
    assert!(scoped.rows.iter().any(|r| r.category == "carry_out"));

    // Refusals, each before anything is unsealed or written.
    let before = unseals(&mut auditor).await;
    // Standard output redirected to a file.
    let redirected = dir.path().join("redirected.csv");
    let status = handler_cli(&daemon)
        .args(["unseal", "--batch", &list_arg, "--purpose", W])
        .stdout(File::create(&redirected).expect("file"))
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert_eq!(status.status.code(), Some(2), "{status:?}");
    assert!(String::from_utf8_lossy(&status.stderr).contains("--zip"));
    assert_eq!(std::fs::metadata(&redirected).expect("file").len(), 0);
    // A short password; a ZIP that exists already; a password on no file and no terminal.
    std::fs::write(dir.path().join("short"), "hunter2\n").expect("short");
    let (code, _, err) = cli(
        &daemon,
        &[
            "unseal",
            "--batch",
            &list_arg,
            "--purpose",
            W,
            "--zip",
            &path("short.zip"),
            "--password-file",
            &path("short"),
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("12 characters") && !dir.path().join("short.zip").exists());
    let (code, _, err) = cli(
        &daemon,
        &[
            "unseal",
            "--batch",
            &list_arg,
            "--purpose",
            W,
            "--zip",
            &zip_arg,
            "--password-file",
            &pw_arg,
        ],
    );
    assert_ne!(code, Some(0), "an existing ZIP is never overwritten: {err}");
    assert_eq!(
        sha256_hex(&zip),
        entry.reason.rsplit(' ').next().unwrap_or_default()
    );
    let (code, _, err) = cli(
        &daemon,
        &[
            "unseal",
            "--batch",
            &list_arg,
            "--purpose",
            W,
            "--zip",
            &path("p.zip"),
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--password-file"), "{err}");
    // The password never goes on the command line: there is no option for it.
    let (code, _, _) = cli(
        &daemon,
        &[
            "unseal",
            "--batch",
            &list_arg,
            "--purpose",
            W,
            "--zip",
            &path("q.zip"),
            "--password",
            PASSWORD,
        ],
    );
    assert_eq!(code, Some(2));
    assert_eq!(unseals(&mut auditor).await, before, "nothing was unsealed");

    // Nothing unsealed (no grant for that purpose on these records): no file is left.
    let (code, _, err) = cli(
        &daemon,
        &[
            "unseal",
            "--batch",
            &list_arg,
            "--purpose",
            "STAFF_HEALTH_PENSION",
            "--zip",
            &path("empty.zip"),
            "--password-file",
            &pw_arg,
        ],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("no number was unsealed"), "{err}");
    assert!(!dir.path().join("empty.zip").exists());

    // A plaintext file, asked for by name: written 0600 and recorded as PLAINTEXT.
    let plain = dir.path().join("plain.csv");
    let (code, _, err) = cli(
        &daemon,
        &[
            "unseal",
            "--batch",
            &list_arg,
            "--purpose",
            W,
            "--plaintext-out",
            &path("plain.csv"),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::metadata(&plain)
            .expect("plain")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&plain)
            .expect("plain")
            .contains(&numbers[0])
    );
    let entries = export_audit(&mut auditor).await;
    let plain_entry = entries
        .iter()
        .rfind(|e| e.action == "CARRY_OUT")
        .expect("plaintext carry-out");
    assert!(
        plain_entry.reason.contains("PLAINTEXT"),
        "{}",
        plain_entry.reason
    );
    assert!(plain_entry.reason.contains(&sha256_hex(&plain)));
    for e in &entries {
        for number in &numbers {
            assert!(
                !format!("{e:?}").contains(number.as_str()),
                "number in {e:?}"
            );
        }
    }

    // The RPC itself refuses what is not a carry-out record, and admins.
    let bad = handler
        .locker
        .record_carry_out(pb::CarryOutRequest {
            purpose: W.into(),
            count: 5,
            format: pb::CarryOutFormat::ZipAes256 as i32,
            file_sha256: numbers[0].clone(),
        })
        .await
        .expect_err("not a digest");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mut admin = daemon.dev_client("dev-admin").await;
    let denied = admin
        .locker
        .record_carry_out(pb::CarryOutRequest {
            purpose: W.into(),
            count: 5,
            format: pb::CarryOutFormat::ZipAes256 as i32,
            file_sha256: "ab".repeat(32),
        })
        .await
        .expect_err("admins never carry numbers out");
    assert_eq!(denied.code(), Code::PermissionDenied);
}

/// A carry-out cut short (the daemon dies mid-run) leaves no partial file of numbers behind,
/// plaintext or ZIP: what was written before the cut is deleted, and nothing is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carry_out_cut_short_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = valid_number(8899);
    let handle = handler
        .locker
        .seal(seal_request("dev", "E-cut", &number, &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let list = dir.path().join("handles.txt");
    std::fs::write(&list, vec![handle.as_str(); 200_000].join("\n")).expect("handles");
    let password_file = dir.path().join("pw");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password");
    let mut daemon = daemon;
    for (name, extra) in [
        ("plain.csv", vec!["--plaintext-out"]),
        (
            "cut.zip",
            vec![
                "--password-file",
                password_file.to_str().expect("utf8"),
                "--zip",
            ],
        ),
    ] {
        let out = dir.path().join(name);
        let mut child = handler_cli(&daemon)
            .args([
                "unseal",
                "--batch",
                list.to_str().expect("utf8"),
                "--purpose",
                W,
            ])
            .args(&extra)
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run vault-client");
        // Once numbers are flowing into the file, the daemon dies.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < 4096 {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: nothing was written"
            );
            assert!(
                child.try_wait().expect("poll").is_none(),
                "{name}: the run ended early"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        daemon = daemon.kill_and_restart();
        let output = child.wait_with_output().expect("client");
        assert!(!output.status.success(), "{name}: a cut run succeeded");
        assert!(
            !out.exists(),
            "{name}: a partial file of numbers was left behind"
        );
    }
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    assert!(
        !entries.iter().any(|e| e.action == "CARRY_OUT"),
        "a cut run was recorded as a carry-out"
    );
}

/// The year-end as an office runs it: Japanese Excel's Shift_JIS export of 1,000 employees
/// (社員番号, 氏名, 個人番号) with a row left empty, a mistyped number and a number Excel turned
/// into `1.23457E+11`; sealed, then unsealed from the seal's own output into a ZIP whose rows
/// say whose each number is. A refused row ends the run with exit 5 (mend it), never 6 (try
/// again), so cron does not retry a check-digit error forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_end_names_every_employee_beside_the_number_and_exits_5_for_bad_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let path = |name: &str| dir.path().join(name).to_str().expect("utf8").to_owned();
    let employees = 1000u64;
    let (blank_after, mistyped, exponent) = (300u64, 500u64, 700u64);
    let mut text = String::from("社員番号,氏名,個人番号\r\n");
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..employees {
        let employee = format!("S{i:04}");
        let number = match i {
            _ if i == mistyped => "123456789019".to_owned(), // check digit wrong
            _ if i == exponent => "1.23457E+11".to_owned(),
            _ => {
                let number = valid_number(60_000 + i);
                expected.insert(employee.clone(), number.clone());
                number
            }
        };
        text.push_str(&format!("{employee},社員　{i},{number}\r\n"));
        if i == blank_after {
            text.push_str(",,\r\n");
        }
    }
    let (sjis, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&text);
    assert!(!unmappable);
    std::fs::write(path("社員.csv"), &sjis).expect("csv");

    let (code, sealed, err) = cli(
        &daemon,
        &[
            "seal",
            "--batch",
            &path("社員.csv"),
            "--tenant",
            "dev",
            "--kind",
            "staff",
            "--purpose",
            W,
        ],
    );
    assert_eq!(code, Some(5), "two rows refused INVALID_ARGUMENT: {err}");
    assert!(err.contains("2 items of the batch failed"), "{err}");
    let rows: Vec<&str> = sealed.lines().skip(1).collect();
    assert_eq!(
        rows.len() as u64,
        employees,
        "the empty row is no row at all"
    );
    let refused: Vec<&&str> = rows
        .iter()
        .filter(|r| r.contains("INVALID_ARGUMENT"))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|r| r.contains("S0700") && r.contains("format the column as text")),
        "Excel's exponent form is named with the way out: {refused:?}"
    );
    assert!(
        !refused
            .iter()
            .any(|r| r.contains("S0500") && r.contains("exponent")),
        "a mistyped number is not called Excel's doing: {refused:?}"
    );
    std::fs::write(path("sealed.csv"), &sealed).expect("seal output");

    std::fs::write(path("zip.password"), format!("{PASSWORD}\n")).expect("password");
    let (code, out, err) = cli(
        &daemon,
        &[
            "unseal",
            "--batch",
            &path("sealed.csv"),
            "--purpose",
            W,
            "--zip",
            &path("年末調整.zip"),
            "--password-file",
            &path("zip.password"),
        ],
    );
    // The two refused rows have no handle: refused again, and the run says mend them.
    assert_eq!(code, Some(5), "{err}");
    assert!(out.contains("998 numbers written"), "{out}");

    let extracted = dir.path().join("extracted");
    let opened = sevenzip(&[
        "x",
        "-y",
        &format!("-p{PASSWORD}"),
        &format!("-o{}", extracted.display()),
        &path("年末調整.zip"),
    ]);
    assert!(opened.status.success(), "{opened:?}");
    let csv = std::fs::read_to_string(extracted.join("numbers.csv")).expect("numbers.csv");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let at = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
    };
    let (subject, kind, number) = (at("subject_ref"), at("subject_kind"), at("number"));
    let mut named = 0;
    for record in reader.records() {
        let record = record.expect("row");
        match expected.get(&record[subject]) {
            Some(expected_number) => {
                assert_eq!(&record[number], expected_number, "{record:?}");
                assert_eq!(&record[kind], "staff");
                named += 1;
            }
            None => assert!(record[number].is_empty(), "{record:?}"),
        }
    }
    assert_eq!(
        named,
        expected.len(),
        "every employee is named beside the number"
    );
}
