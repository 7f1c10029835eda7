//! The `sim` backend: [`KeyBackend`] over the `hsm-sim` crate. Insecure by construction (keys
//! in a file); the daemon accepts it in dev mode or when the config says so explicitly.

use std::io::Write;
use std::path::{Path, PathBuf};

use hsm_sim::{KeyKind, SimError, SimOptions, SimToken};
use zeroize::Zeroizing;

use crate::keys::anchor::{Anchor, AnchorStore, check_advance};
use crate::keys::{KeyBackend, KeyError, KeyRef, KeyUse};

/// Directory, under the data dir, that holds the simulated token.
pub const SIM_DIR: &str = "hsm-sim";
/// The anchor's file in the token's directory (as insecure as the rest of the simulated token).
pub const ANCHOR_FILE: &str = "anchor";

/// The simulated token as a key backend.
#[derive(Debug)]
pub struct SimBackend {
    token: SimToken,
    fault_control_file: bool,
    anchor_path: PathBuf,
    anchor_lock: std::sync::Mutex<()>,
}

impl SimBackend {
    /// Opens the token in `data_dir/hsm-sim`. With `fault_control_file`, the token reads its
    /// fault from a control file there (tests and dev only).
    pub fn open(data_dir: &Path, fault_control_file: bool) -> Result<SimBackend, KeyError> {
        SimBackend::open_with(data_dir, fault_control_file, false)
    }

    /// Like [`SimBackend::open`], for a token directory that several dev daemons share
    /// (`--dev-keys`): each takes in the others' key changes.
    pub fn open_shared(data_dir: &Path, fault_control_file: bool) -> Result<SimBackend, KeyError> {
        SimBackend::open_with(data_dir, fault_control_file, true)
    }

    fn open_with(
        data_dir: &Path,
        fault_control_file: bool,
        shared: bool,
    ) -> Result<SimBackend, KeyError> {
        let token = SimToken::open(
            &data_dir.join(SIM_DIR),
            SimOptions {
                fault_control_file,
                shared,
            },
        )
        .map_err(map_error)?;
        Ok(SimBackend {
            token,
            fault_control_file,
            anchor_path: data_dir.join(SIM_DIR).join(ANCHOR_FILE),
            anchor_lock: std::sync::Mutex::new(()),
        })
    }

    /// The underlying token, for in-process fault injection in tests.
    pub fn token(&self) -> &SimToken {
        &self.token
    }
}

fn key_id(key: &KeyRef) -> Result<&str, KeyError> {
    std::str::from_utf8(&key.0).map_err(|_| KeyError::NotFound)
}

fn map_error(error: SimError) -> KeyError {
    match error {
        SimError::Unavailable | SimError::Injected | SimError::Io(_) => {
            KeyError::Unavailable(error.to_string())
        }
        SimError::Authentication => KeyError::Integrity,
        SimError::KeyDestroyed(_) => KeyError::Destroyed,
        SimError::KeyNotFound(_) => KeyError::NotFound,
        SimError::WrongKind { .. } | SimError::Crypto | SimError::Corrupt(_) => {
            KeyError::Other(error.to_string())
        }
    }
}

impl KeyBackend for SimBackend {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn is_secure(&self) -> bool {
        self.token.is_secure()
    }

    /// In memory unless faults come from the control file: reading it is I/O, and an injected
    /// delay must not stall the runtime (the fail-closed tests rely on the key-service timeout).
    fn computes_in_memory(&self) -> bool {
        !self.fault_control_file
    }

    fn create_key(&self, key_use: KeyUse, label: &str) -> Result<KeyRef, KeyError> {
        let kind = match key_use {
            KeyUse::Wrap => KeyKind::Aes256Gcm,
            KeyUse::Mac => KeyKind::HmacSha256,
            KeyUse::Sign => KeyKind::EcdsaP256,
        };
        let id = self.token.create_key(kind, label).map_err(map_error)?;
        Ok(KeyRef(id.into_bytes()))
    }

    fn destroy_key(&self, key: &KeyRef) -> Result<(), KeyError> {
        self.token.destroy_key(key_id(key)?).map_err(map_error)
    }

    fn wrap(&self, kek: &KeyRef, dek: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.token.wrap(key_id(kek)?, dek, aad).map_err(map_error)
    }

    fn unwrap(
        &self,
        kek: &KeyRef,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.token
            .unwrap(key_id(kek)?, wrapped, aad)
            .map_err(map_error)
    }

    fn mac(&self, key: &KeyRef, data: &[u8]) -> Result<[u8; 32], KeyError> {
        self.token.hmac(key_id(key)?, data).map_err(map_error)
    }

    fn sign(&self, key: &KeyRef, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.token.sign(key_id(key)?, message).map_err(map_error)
    }

    fn public_key(&self, key: &KeyRef) -> Result<Vec<u8>, KeyError> {
        self.token.public_key(key_id(key)?).map_err(map_error)
    }

    fn self_test(&self) -> Result<(), KeyError> {
        self.token.self_test().map_err(map_error)
    }
}

impl AnchorStore for SimBackend {
    fn read_anchor(&self) -> Result<Option<Anchor>, KeyError> {
        self.token.self_test().map_err(map_error)?;
        match std::fs::read(&self.anchor_path) {
            Ok(bytes) => Anchor::decode(&bytes)
                .map(Some)
                .ok_or_else(|| KeyError::Other("anchor file is malformed".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KeyError::Unavailable(format!("read anchor: {e}"))),
        }
    }

    fn write_anchor(&self, anchor: &Anchor) -> Result<(), KeyError> {
        let _guard = self.anchor_lock.lock().unwrap_or_else(|e| e.into_inner());
        check_advance(self.read_anchor()?.as_ref(), anchor)?;
        // Write and rename, so a crash leaves the old anchor or the new one, never half.
        let temporary = self.anchor_path.with_extension("tmp");
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&anchor.encode())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.anchor_path)
        })();
        written.map_err(|e| KeyError::Unavailable(format!("write anchor: {e}")))
    }
}
