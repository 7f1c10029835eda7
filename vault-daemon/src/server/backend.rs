//! Opening the key backend the configuration names, with its PIN or authorisation secret read
//! from a file, an environment variable or a systemd credential.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;

use crate::config::{BackendKind, Config};
use crate::keys::KeyBackend;
use crate::keys::pkcs11::{Pkcs11Backend, Pkcs11Settings};
use crate::keys::sim::SimBackend;
use crate::keys::tpm::{TpmAuth, TpmBackend, TpmSettings};

use super::{DaemonError, io_context};

pub(super) fn open_backend(config: &Config) -> Result<Arc<dyn KeyBackend>, DaemonError> {
    match (config.backend.kind, &config.backend.pkcs11) {
        (BackendKind::Sim, _) => Ok(Arc::new(match &config.backend.sim_dir {
            Some(dir) => SimBackend::open_shared(dir, config.backend.sim_fault_control_file)?,
            None => SimBackend::open(
                &config.store.data_dir,
                config.backend.sim_fault_control_file,
            )?,
        })),
        (BackendKind::Pkcs11, Some(p11)) => {
            let pin = read_pin(p11)?;
            Ok(Arc::new(Pkcs11Backend::open(Pkcs11Settings {
                module: p11.module.clone(),
                token_label: p11.token_label.clone(),
                pin,
                max_sessions: p11.max_sessions,
            })?))
        }
        (BackendKind::Pkcs11, None) => {
            Err(DaemonError::Config(crate::config::ConfigError::Invalid(
                "backend.kind = \"pkcs11\" needs a [backend.pkcs11] section".into(),
            )))
        }
        (BackendKind::Tpm, _) => {
            let tpm = config.backend.tpm.as_ref().ok_or_else(|| {
                DaemonError::Config(crate::config::ConfigError::Invalid(
                    "backend.kind = \"tpm\" needs a [backend.tpm] section".into(),
                ))
            })?;
            Ok(Arc::new(TpmBackend::open(TpmSettings {
                tcti: tpm.tcti.clone(),
                persistent_base: tpm.persistent_base,
                persistent_count: tpm.persistent_count,
                parameter_encryption: tpm.parameter_encryption,
                auth: tpm_auth_path(tpm)?
                    .map(|path| read_secret_file(&path, "TPM auth file"))
                    .transpose()?
                    .map(|secret| TpmAuth::from_secret(&secret)),
            })?))
        }
    }
}

/// Reads a secret file (`what` names it in errors), refusing one others can read.
pub(super) fn read_secret_file(
    path: &Path,
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

/// The TPM auth secret's file: `auth_file`, or the systemd credential `auth_credential`.
pub(super) fn tpm_auth_path(
    tpm: &crate::config::TpmConfig,
) -> Result<Option<PathBuf>, DaemonError> {
    match (&tpm.auth_file, &tpm.auth_credential) {
        (Some(path), _) => Ok(Some(path.clone())),
        (None, Some(name)) => Ok(Some(crate::config::credential_path(
            name,
            "backend.tpm.auth_credential",
        )?)),
        (None, None) => Ok(None),
    }
}

/// Reads the user PIN from its file or systemd credential (refusing one others can read) or
/// environment variable.
pub(super) fn read_pin(p11: &crate::config::Pkcs11Config) -> Result<SecretString, DaemonError> {
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
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    let name = p11.pin_env.as_deref().unwrap_or_default();
    std::env::var(name).map(SecretString::from).map_err(|_| {
        invalid(format!(
            "environment variable {name} (backend.pkcs11.pin_env) is not set"
        ))
    })
}
