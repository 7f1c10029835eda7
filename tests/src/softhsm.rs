//! A SoftHSM token per test run in a temporary directory (its own `softhsm2.conf`). A missing
//! SoftHSM is a failure, never a skip: the README's test command installs it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A freshly initialised token.
pub struct SoftHsmToken {
    /// `SOFTHSM2_CONF` for processes that use it.
    pub conf: PathBuf,
    /// Token files.
    pub token_dir: PathBuf,
    /// The module.
    pub module: PathBuf,
    /// Token label.
    pub label: String,
    /// File with the user PIN (0600).
    pub pin_file: PathBuf,
    /// The user PIN.
    pub pin: String,
}

impl SoftHsmToken {
    /// Initialises a token labelled `label` under `dir`.
    pub fn create(dir: &Path, label: &str) -> SoftHsmToken {
        let module = vault_daemon::devkit::softhsm::module_path()
            .unwrap_or_else(|e| panic!("SoftHSM is required for this test: {e}"));
        let token_dir = dir.join("softhsm-tokens");
        std::fs::create_dir_all(&token_dir).expect("token dir");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                token_dir.display()
            ),
        )
        .expect("write softhsm2.conf");
        let pin = "4711-conformance".to_owned();
        let output = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                "so-pin-1234",
                "--pin",
                &pin,
            ])
            .output()
            .expect("softhsm2-util is required (Debian package softhsm2)");
        assert!(
            output.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let pin_file = dir.join("user.pin");
        std::fs::write(&pin_file, &pin).expect("pin file");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod pin");
        SoftHsmToken {
            conf,
            token_dir,
            module,
            label: label.to_owned(),
            pin_file,
            pin,
        }
    }

    /// Runs `pkcs11-tool` against the token with the given arguments; returns stdout.
    pub fn pkcs11_tool(&self, args: &[&str]) -> String {
        let output = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .arg("--module")
            .arg(&self.module)
            .args(["--token-label", &self.label, "--login", "--pin", &self.pin])
            .args(args)
            .output()
            .expect("pkcs11-tool is required (Debian package opensc)");
        assert!(
            output.status.success(),
            "pkcs11-tool: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
