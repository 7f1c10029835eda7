//! The witness: the newest audit position (sequence number and hash) this daemon verified,
//! kept in its own data directory. The store — a database a DBA holds, or a file anyone with
//! disk access can edit — must hold that entry with that hash at the next start; a store cut
//! back, rolled back or re-chained past it is refused, naming both positions, until the
//! holder of the key backend accepts it with `--reanchor`. A DBA does not hold the daemons'
//! disks, so each daemon of a cluster is one more witness.
//!
//! File `audit-witness`: one line, `MNL-WITNESS-1 <seq> <hash hex>`, written to a temporary
//! file, synced and renamed over the old one, so a crash leaves the old or the new position,
//! never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::audit::integrity::ChainPosition;

const FILE: &str = "audit-witness";
const TAG: &str = "MNL-WITNESS-1";

/// Failures reading or writing the witness.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The file could not be read or written.
    #[error("audit witness {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a position.
    #[error(
        "audit witness {path} is unreadable ({what}); move it away only if you know why it changed"
    )]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        what: &'static str,
    },
}

/// The witness file of one data directory.
#[derive(Debug, Clone)]
pub struct Witness {
    path: PathBuf,
}

impl Witness {
    /// The witness in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Witness {
        Witness {
            path: data_dir.join(FILE),
        }
    }

    fn io(&self, source: std::io::Error) -> WitnessError {
        WitnessError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Where the witness is, for messages.
    pub fn describe(&self) -> String {
        self.path.display().to_string()
    }

    /// The position last written; `None` when there is no witness yet (a new data directory).
    pub fn read(&self) -> Result<Option<ChainPosition>, WitnessError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.io(error)),
        };
        let malformed = |what| WitnessError::Malformed {
            path: self.path.display().to_string(),
            what,
        };
        let mut fields = text.split_whitespace();
        if fields.next() != Some(TAG) {
            return Err(malformed("no witness tag"));
        }
        let seq = fields
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| malformed("no sequence number"))?;
        let hash = fields
            .next()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .ok_or_else(|| malformed("no hash"))?;
        Ok(Some(ChainPosition { seq, hash }))
    }

    /// Records `position` durably (temporary file, fsync, rename, fsync of the directory).
    pub fn write(&self, position: ChainPosition) -> Result<(), WitnessError> {
        let temporary = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary).map_err(|e| self.io(e))?;
        writeln!(
            file,
            "{TAG} {} {}",
            position.seq,
            hex::encode(position.hash)
        )
        .map_err(|e| self.io(e))?;
        file.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| self.io(e))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refuses_garbage() {
        let dir = tempfile::tempdir().expect("dir");
        let witness = Witness::in_dir(dir.path());
        assert!(witness.read().expect("read").is_none());
        let position = ChainPosition {
            seq: 42,
            hash: [7u8; 32],
        };
        witness.write(position).expect("write");
        assert_eq!(witness.read().expect("read"), Some(position));
        std::fs::write(dir.path().join(FILE), "junk").expect("write");
        assert!(witness.read().is_err());
    }
}
