//! The freshness anchor: the newest checkpoint's position, kept in the key backend where a
//! process that can write the store cannot change it. A store whose checkpoints do not reach the
//! anchored one (an older copy, a replaced, emptied or deleted store) is refused at start.
//!
//! Every advance raises a counter that never goes back, so even restoring a genuine older
//! backup (which moves the checkpoint position back) leaves a trace: the counter keeps rising.
//! Encoding in the backend: counter (8) ‖ checkpoint number (8) ‖ checkpoint hash (32),
//! integers big-endian.

use crate::keys::KeyError;

/// Where the anchor is kept: a capability of its own, beside
/// [`KeyBackend`](crate::keys::KeyBackend), so a key store that has no tamper-resistant place for it (a cloud
/// KMS) can be paired with one that has. Every backend built here keeps its own: a private
/// token object (PKCS#11), NV indices (TPM), a file (the simulated token).
pub trait AnchorStore: Send + Sync + 'static {
    /// The anchor, if one was ever written.
    fn read_anchor(&self) -> Result<Option<Anchor>, KeyError>;
    /// Replaces the anchor. Refused unless `anchor.counter` is above the stored counter: the
    /// anchor never goes back.
    fn write_anchor(&self, anchor: &Anchor) -> Result<(), KeyError>;
}

/// Refuses an anchor write that would not raise the counter.
pub fn check_advance(current: Option<&Anchor>, next: &Anchor) -> Result<(), KeyError> {
    match current {
        Some(current) if next.counter <= current.counter => Err(KeyError::Other(format!(
            "anchor counter would go from {} to {}: it never goes back",
            current.counter, next.counter
        ))),
        _ => Ok(()),
    }
}

/// Bytes of an encoded anchor.
pub const ANCHOR_LEN: usize = 48;

/// The anchored position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// Raised by one at every write; never lowered.
    pub counter: u64,
    /// Number of the newest anchored checkpoint.
    pub checkpoint: u64,
    /// Hash of that checkpoint.
    pub hash: [u8; 32],
}

impl Anchor {
    /// The bytes kept in the backend.
    pub fn encode(&self) -> [u8; ANCHOR_LEN] {
        let mut out = [0u8; ANCHOR_LEN];
        out[..8].copy_from_slice(&self.counter.to_be_bytes());
        out[8..16].copy_from_slice(&self.checkpoint.to_be_bytes());
        out[16..].copy_from_slice(&self.hash);
        out
    }

    /// Parses the bytes kept in the backend.
    pub fn decode(bytes: &[u8]) -> Option<Anchor> {
        if bytes.len() != ANCHOR_LEN {
            return None;
        }
        let mut counter = [0u8; 8];
        let mut checkpoint = [0u8; 8];
        let mut hash = [0u8; 32];
        counter.copy_from_slice(&bytes[..8]);
        checkpoint.copy_from_slice(&bytes[8..16]);
        hash.copy_from_slice(&bytes[16..]);
        Some(Anchor {
            counter: u64::from_be_bytes(counter),
            checkpoint: u64::from_be_bytes(checkpoint),
            hash,
        })
    }

    /// The anchor after this one, at checkpoint `checkpoint` with hash `hash`.
    pub fn next(previous: Option<&Anchor>, checkpoint: u64, hash: [u8; 32]) -> Anchor {
        Anchor {
            counter: previous.map_or(1, |a| a.counter + 1),
            checkpoint,
            hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_counter() {
        let first = Anchor::next(None, 1, [5; 32]);
        assert_eq!(first.counter, 1);
        assert_eq!(Anchor::decode(&first.encode()), Some(first));
        let second = Anchor::next(Some(&first), 2, [6; 32]);
        assert_eq!((second.counter, second.checkpoint), (2, 2));
        assert_eq!(Anchor::decode(&[0u8; 47]), None);
    }
}
