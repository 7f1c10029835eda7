//! Running the real `vault-client` binary against a test daemon, as an operator would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Daemon, binary_path};

/// Runs `vault-client ARGS` with the dev token of `operator` and `stdin` on its standard input;
/// returns (success, stdout, stderr).
pub fn vault_cli(
    daemon: &Daemon,
    operator: &str,
    args: &[&str],
    stdin: &str,
) -> (bool, String, String) {
    let token = daemon
        .data_dir
        .join("tokens")
        .join(format!("{operator}.token"));
    vault_cli_as(daemon, &token, args, stdin)
}

/// [`vault_cli`] with nothing on standard input, checked to succeed: its standard output.
pub fn vault_cli_ok(daemon: &Daemon, operator: &str, args: &[&str]) -> String {
    let (ok, stdout, stderr) = vault_cli(daemon, operator, args, "");
    assert!(ok, "vault-client {args:?}: {stderr}");
    stdout
}

/// [`vault_cli`] with the token in `token_file`.
pub fn vault_cli_as(
    daemon: &Daemon,
    token_file: &Path,
    args: &[&str],
    stdin: &str,
) -> (bool, String, String) {
    let mut child = Command::new(binary_path("vault-client"))
        .arg("--endpoint")
        .arg(daemon.endpoint())
        .arg("--token-file")
        .arg(token_file)
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
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait for vault-client");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
