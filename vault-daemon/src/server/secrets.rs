//! A hardware backend's secrets: the PKCS#11 user PIN and the TPM authorisation secret, read
//! from a file no other user can read, an environment variable or a systemd credential.

use std::os::unix::fs::PermissionsExt;

use super::{DaemonError, io_context};

/// Reads a secret file (`what` names it in errors), refusing one others can read.
pub(crate) fn read_secret_file(
    path: &std::path::Path,
    what: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, DaemonError> {
    let mode = std::fs::metadata(path)
        .map_err(io_context(format!("read {what} {}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(DaemonError::Config(crate::config::ConfigError::Invalid(
            format!(
                "{what} {} is accessible to other users (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            ),
        )));
    }
    Ok(zeroize::Zeroizing::new(std::fs::read(path).map_err(
        io_context(format!("read {what} {}", path.display())),
    )?))
}

#[cfg(feature = "tpm")]
/// The TPM auth secret's file: `auth_file`, or the systemd credential `auth_credential`.
pub(crate) fn tpm_auth_path(
    tpm: &crate::config::TpmConfig,
) -> Result<Option<std::path::PathBuf>, DaemonError> {
    match (&tpm.auth_file, &tpm.auth_credential) {
        (Some(path), _) => Ok(Some(path.clone())),
        (None, Some(name)) => Ok(Some(crate::config::credential_path(
            name,
            "backend.tpm.auth_credential",
        )?)),
        (None, None) => Ok(None),
    }
}

#[cfg(feature = "pkcs11")]
/// Reads the user PIN from its file or systemd credential (refusing one others can read) or
/// environment variable.
pub(crate) fn read_pin(
    p11: &crate::config::Pkcs11Config,
) -> Result<secrecy::SecretString, DaemonError> {
    let invalid = |m: String| DaemonError::Config(crate::config::ConfigError::Invalid(m));
    let pin_path = match (&p11.pin_file, &p11.pin_credential) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(name)) => Some(crate::config::credential_path(
            name,
            "backend.pkcs11.pin_credential",
        )?),
        (None, None) => None,
    };
    if let Some(path) = &pin_path {
        let bytes = read_secret_file(path, "PIN file")?;
        let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
        return Ok(secrecy::SecretString::from(text.trim().to_owned()));
    }
    let name = p11.pin_env.as_deref().unwrap_or_default();
    std::env::var(name)
        .map(secrecy::SecretString::from)
        .map_err(|_| {
            invalid(format!(
                "environment variable {name} (backend.pkcs11.pin_env) is not set"
            ))
        })
}
