//! The one place a key backend is built from its settings, each backend behind its cargo
//! feature (`sim`, `pkcs11`, `tpm`), parsec-style: a build without a backend links none of its
//! libraries, and a configuration naming it is refused with the feature it needs.

use crate::keys::{KeyError, OpenedKeys};

#[cfg(not(any(feature = "sim", feature = "pkcs11", feature = "tpm")))]
compile_error!("a locker needs a key backend: enable the feature sim, pkcs11 or tpm");

/// A backend's settings, secrets read: what [`open`] needs.
#[derive(Debug)]
pub enum BackendSettings {
    /// The simulated token in `dir` (insecure; dev and tests).
    #[cfg(feature = "sim")]
    Sim {
        /// The data directory, or the directory several dev daemons share (`shared`).
        dir: std::path::PathBuf,
        /// Whether `dir` is shared by several daemons (`--dev-keys`).
        shared: bool,
        /// Read injected faults from the control file (tests).
        fault_control_file: bool,
    },
    /// A PKCS#11 token.
    #[cfg(feature = "pkcs11")]
    Pkcs11(crate::keys::pkcs11::Pkcs11Settings),
    /// A TPM 2.0.
    #[cfg(feature = "tpm")]
    Tpm(crate::keys::tpm::TpmSettings),
}

/// The backends this build has, by their configuration names.
pub const BUILT: &[&str] = &[
    #[cfg(feature = "sim")]
    "sim",
    #[cfg(feature = "pkcs11")]
    "pkcs11",
    #[cfg(feature = "tpm")]
    "tpm",
];

/// Whether this build has the backend named `kind` (`sim`, `pkcs11`, `tpm`).
pub fn is_built(kind: &str) -> bool {
    BUILT.contains(&kind)
}

/// Connects to the backend now, so a wrong module, label, PIN or TCTI stops the daemon at
/// start.
pub fn open(settings: BackendSettings) -> Result<OpenedKeys, KeyError> {
    Ok(match settings {
        #[cfg(feature = "sim")]
        BackendSettings::Sim {
            dir,
            shared: true,
            fault_control_file,
        } => OpenedKeys::self_anchored(crate::keys::sim::SimBackend::open_shared(
            &dir,
            fault_control_file,
        )?),
        #[cfg(feature = "sim")]
        BackendSettings::Sim {
            dir,
            shared: false,
            fault_control_file,
        } => OpenedKeys::self_anchored(crate::keys::sim::SimBackend::open(
            &dir,
            fault_control_file,
        )?),
        #[cfg(feature = "pkcs11")]
        BackendSettings::Pkcs11(settings) => {
            OpenedKeys::self_anchored(crate::keys::pkcs11::Pkcs11Backend::open(settings)?)
        }
        #[cfg(feature = "tpm")]
        BackendSettings::Tpm(settings) => {
            OpenedKeys::self_anchored(crate::keys::tpm::TpmBackend::open(settings)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_list_follows_the_features() {
        assert_eq!(is_built("sim"), cfg!(feature = "sim"));
        assert_eq!(is_built("pkcs11"), cfg!(feature = "pkcs11"));
        assert_eq!(is_built("tpm"), cfg!(feature = "tpm"));
        assert!(!is_built("kms"));
    }
}
