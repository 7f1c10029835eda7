//! The token's key file: loading, and atomic, owner-only persistence.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::kinds::{KeyKind, SimError};

/// One key as persisted: its kind and its raw material (hex), or nothing once destroyed.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredKey {
    pub(crate) kind: KeyKind,
    pub(crate) label: String,
    /// Hex of the key material; `None` after destruction (the id stays known, so a use of a
    /// destroyed key is reported as such rather than as an unknown key).
    pub(crate) material_hex: Option<Zeroizing<String>>,
}

#[derive(Serialize, Deserialize, Default)]
pub(crate) struct KeyFile {
    pub(crate) format: u32,
    pub(crate) keys: BTreeMap<String, StoredKey>,
}

pub(crate) const KEY_FILE_FORMAT: u32 = 1;

pub(crate) fn load(path: &Path) -> Result<KeyFile, SimError> {
    match fs::read(path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            let file: KeyFile = serde_json::from_slice(&bytes)
                .map_err(|e| SimError::Corrupt(format!("key file is not valid: {e}")))?;
            if file.format != KEY_FILE_FORMAT {
                return Err(SimError::Corrupt(format!(
                    "key file format {} is not supported (expected {KEY_FILE_FORMAT})",
                    file.format
                )));
            }
            Ok(file)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile {
            format: KEY_FILE_FORMAT,
            keys: BTreeMap::new(),
        }),
        Err(e) => Err(SimError::Io(e)),
    }
}

/// Writes the key file through a temporary file, fsync and rename, so a crash leaves either
/// the old or the new file, never a torn one; the file is created 0600.
pub(crate) fn save(path: &Path, file: &KeyFile) -> Result<(), SimError> {
    let json = Zeroizing::new(
        serde_json::to_vec_pretty(file).map_err(|e| SimError::Corrupt(e.to_string()))?,
    );
    let tmp: PathBuf = path.with_extension("tmp");
    {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        out.write_all(&json)?;
        out.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
