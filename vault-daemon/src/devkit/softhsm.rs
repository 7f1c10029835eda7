//! A SoftHSM token for dev mode: `DATA_DIR/softhsm/` holds its own `softhsm2.conf`, the token
//! files and the user PIN in `user.pin` (0600), so `pkcs11-tool` can inspect it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Pkcs11Config;
use crate::devkit::{DevkitError, private_dir, random_hex, which, write_private};

/// Label of the dev token.
pub const DEV_TOKEN_LABEL: &str = "mynumber-locker-dev";
/// Where Debian installs the SoftHSM module.
pub const MODULE_CANDIDATES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
];

/// A provisioned dev token.
#[derive(Debug, Clone)]
pub struct DevSoftHsm {
    /// The `softhsm2.conf` the daemon must run with (`SOFTHSM2_CONF`).
    pub conf: PathBuf,
    /// The backend config pointing at the token.
    pub backend: Pkcs11Config,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> DevkitError {
    move |source| DevkitError::Io { context, source }
}

fn random_pin() -> Result<String, DevkitError> {
    random_hex(12)
}

/// The SoftHSM module path, or the package to install.
pub fn module_path() -> Result<PathBuf, DevkitError> {
    MODULE_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(DevkitError::MissingTool {
            tool: "libsofthsm2.so",
            package: "softhsm2",
        })
}

/// Provisions (once) a token under `data_dir/softhsm`. Idempotent: an existing token is kept.
pub fn provision(data_dir: &Path) -> Result<DevSoftHsm, DevkitError> {
    let module = module_path()?;
    let util = which("softhsm2-util", "softhsm2")?;
    let root = data_dir.join("softhsm");
    let tokens = root.join("tokens");
    private_dir(&tokens)?;
    let conf = root.join("softhsm2.conf");
    write_private(
        &conf,
        &format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )?;
    let pin_file = root.join("user.pin");
    let marker = root.join("initialised");
    if !marker.exists() {
        let pin = random_pin()?;
        let so_pin = random_pin()?;
        let output = Command::new(&util)
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                DEV_TOKEN_LABEL,
                "--so-pin",
                &so_pin,
                "--pin",
                &pin,
            ])
            .output()
            .map_err(io("run softhsm2-util".into()))?;
        if !output.status.success() {
            return Err(DevkitError::ToolFailed {
                tool: "softhsm2-util",
                message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        write_private(&pin_file, &format!("{pin}\n"))?;
        write_private(&marker, "")?;
    }
    Ok(DevSoftHsm {
        conf,
        backend: Pkcs11Config {
            module,
            token_label: DEV_TOKEN_LABEL.into(),
            pin_file: Some(pin_file),
            pin_env: None,
            pin_credential: None,
            max_sessions: 16,
        },
    })
}
