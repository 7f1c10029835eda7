//! The README runs as written (issue 23, item 9): every shell block, in order, in one shell
//! session in a fresh directory, against the dev daemon its quickstart starts — the binaries
//! the test command built, reached as `./target/debug/…` through a link. A command that exits
//! other than its comment says, or does not print the word its arrow shows, fails the test
//! naming its line. The first block (run the daemon in the foreground, run every test) is
//! marked as not run, with the reason.
//!
//! Two edits keep the run apart from other tests, and each must still find its text: the
//! quickstart's `cargo build` is left to the test command, and its daemon listens on a free
//! port (`LOCKER_ADDR` tells the client).

use std::path::{Path, PathBuf};
use std::time::Duration;

use vault_tests::doc_blocks::{self, DocCommand};

/// How long the whole README may take (about 20 s here).
const DEADLINE: Duration = Duration::from_secs(300);

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("README.md")
}

fn target_dir() -> PathBuf {
    vault_tests::binary_path("vault-daemon")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/vault-daemon")
        .to_path_buf()
}

/// The README's commands with the two edits applied (each must apply exactly once).
fn commands_of(readme: &str, port: u16) -> Vec<DocCommand> {
    let mut commands = doc_blocks::commands(readme);
    let mut edit = |from: &str, to: String| {
        let matching: Vec<&mut DocCommand> =
            commands.iter_mut().filter(|c| c.text == from).collect();
        assert_eq!(
            matching.len(),
            1,
            "the README no longer has the command {from:?} exactly once"
        );
        for command in matching {
            command.text = to.clone();
        }
    };
    edit(
        "cargo build --workspace --bins",
        ": the test command built the binaries".into(),
    );
    edit(
        "./target/debug/vault-daemon --dev --data-dir ./vault-data",
        format!(
            "./target/debug/vault-daemon --dev --data-dir ./vault-data --listen 127.0.0.1:{port}"
        ),
    );
    commands
}

/// Runs `readme`'s blocks in a fresh directory; Ok with the output or Err with the failure.
fn run_readme(readme: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(target_dir(), dir.path().join("target")).expect("link target/");
    let port = vault_tests::free_port();
    let script = doc_blocks::script(&commands_of(readme, port), "README.md");
    doc_blocks::run(
        &script,
        dir.path(),
        &[
            ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME", dir.path().display().to_string()),
            ("LANG", "C.UTF-8".into()),
            ("TSS2_LOG", "all+NONE".into()),
            ("LOCKER_ADDR", format!("http://127.0.0.1:{port}")),
        ],
        DEADLINE,
    )
}

#[test]
fn every_block_of_the_readme_runs_as_written() {
    let readme = readme();
    let commands = doc_blocks::commands(&readme);
    assert!(
        commands.len() > 60,
        "the README's blocks hold {} commands; are they all found?",
        commands.len()
    );
    if let Err(failure) = run_readme(&readme) {
        panic!("the README does not run as written: {failure}");
    }
}

#[test]
fn a_broken_readme_block_fails_the_run_naming_its_line() {
    let readme = readme();
    // A purpose the record was not sealed for: the daemon refuses (exit 3 or 5), not 0.
    let line = "./target/debug/vault-client unseal \"$H\" --purpose STAFF_WITHHOLDING";
    let broken = readme.replacen(
        line,
        "./target/debug/vault-client unseal \"$H\" --purpose EMPLOYMENT_INSURANCE",
        1,
    );
    assert_ne!(broken, readme, "the quickstart's unseal moved: {line}");
    let number = readme
        .lines()
        .position(|l| l.starts_with(line))
        .expect("line")
        + 1;
    let failure = run_readme(&broken).expect_err("a broken block must fail the run");
    assert!(
        failure.contains(&format!("README.md:{number}: ")),
        "the failure names another line than {number}: {failure}"
    );
    // And a command that exits 0 where its comment promises a held change (exit 9).
    let guide = "```sh\ntrue   # HELD (exit 9)\n```\n";
    let script = doc_blocks::script(&doc_blocks::commands(guide), "guide.md");
    let dir = tempfile::tempdir().expect("tempdir");
    let failure = doc_blocks::run(&script, dir.path(), &[], DEADLINE).expect_err("exit 0 ≠ 9");
    assert!(
        failure.contains("guide.md:2: exit 0, expected 9"),
        "{failure}"
    );
    // And an arrow whose word the command does not print.
    let guide = "```sh\necho SERVING   # → NOT_SERVING\n```\n";
    let script = doc_blocks::script(&doc_blocks::commands(guide), "guide.md");
    let failure = doc_blocks::run(&script, dir.path(), &[], DEADLINE).expect_err("wrong word");
    assert!(
        failure.contains("guide.md:2: the output does not show NOT_SERVING"),
        "{failure}"
    );
}
