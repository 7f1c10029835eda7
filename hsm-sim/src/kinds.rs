//! The words the token and its key file share: what a key is for, and how an operation fails.

use serde::{Deserialize, Serialize};

/// What a key is for; a key is only usable for the operations of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    /// AES-256-GCM key that wraps (encrypts) other keys with associated data.
    Aes256Gcm,
    /// HMAC-SHA256 key.
    HmacSha256,
    /// ECDSA P-256 signing key.
    EcdsaP256,
}

/// Errors of the simulated token. Messages never contain key material or wrapped data.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The token is not reachable (injected `Fault::Unavailable`).
    #[error("simulated token unavailable")]
    Unavailable,
    /// The token failed the operation (injected `Fault::Fail`).
    #[error("simulated token failure (injected)")]
    Injected,
    /// No key has that id.
    #[error("no key with id {0}")]
    KeyNotFound(String),
    /// The key was destroyed.
    #[error("key {0} has been destroyed")]
    KeyDestroyed(String),
    /// The key exists but is of another kind than the operation needs.
    #[error("key {id} is a {actual:?} key, not {expected:?}")]
    WrongKind {
        /// The key id.
        id: String,
        /// What the operation needed.
        expected: KeyKind,
        /// What the key is.
        actual: KeyKind,
    },
    /// Unwrapping failed: wrong key, wrong associated data or altered ciphertext.
    #[error("unwrap failed: authentication tag mismatch")]
    Authentication,
    /// The system random generator or a cryptographic primitive failed.
    #[error("cryptographic primitive failed")]
    Crypto,
    /// The key file is unreadable or malformed.
    #[error("key file corrupt: {0}")]
    Corrupt(String),
    /// Reading or writing the key file failed.
    #[error("key file I/O: {0}")]
    Io(#[from] std::io::Error),
}
