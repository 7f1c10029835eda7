//! Dev mode's local stand-ins for hardware: a SoftHSM token or an swtpm provisioned under the
//! data directory, so `vault-daemon --dev --backend softhsm|tpm` runs the real backends with
//! nothing set up by hand. A missing tool is reported with the Debian package that provides it.

pub mod softhsm;
pub mod swtpm;

use std::path::{Path, PathBuf};

/// Errors provisioning a dev token.
#[derive(Debug, thiserror::Error)]
pub enum DevkitError {
    /// A tool is not installed.
    #[error("{tool} not found: install the Debian package {package} (apt-get install {package})")]
    MissingTool {
        /// The program.
        tool: &'static str,
        /// The package that provides it.
        package: &'static str,
    },
    /// A tool ran and failed.
    #[error("{tool} failed: {message}")]
    ToolFailed {
        /// The program.
        tool: &'static str,
        /// Its stderr, or the error.
        message: String,
    },
    /// File system trouble.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Finds `tool` on PATH.
pub fn which(tool: &'static str, package: &'static str) -> Result<PathBuf, DevkitError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .ok_or(DevkitError::MissingTool { tool, package })
}

/// Creates `dir` (and parents) with mode 0700.
pub fn private_dir(dir: &Path) -> Result<(), DevkitError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| DevkitError::Io {
            context: format!("create {}", dir.display()),
            source,
        })
}

/// Writes `content` to a new file only its owner can read (0600 from the start).
pub fn write_private(path: &Path, content: &str) -> Result<(), DevkitError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |context: String| move |source| DevkitError::Io { context, source };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("create {}", path.display())))?;
    file.write_all(content.as_bytes())
        .map_err(io(format!("write {}", path.display())))
}

/// `bytes` random bytes as hex.
pub fn random_hex(bytes: usize) -> Result<String, DevkitError> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut out = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| DevkitError::ToolFailed {
            tool: "random generator",
            message: "failed".into(),
        })?;
    Ok(hex::encode(out))
}
