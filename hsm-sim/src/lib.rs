//! `hsm-sim`: an in-process stand-in for a hardware key token, for development and tests.
//!
//! It offers what the locker asks of a real token — keys that are referred to by id and used
//! only through operations (AEAD wrap/unwrap with associated data, HMAC-SHA256, ECDSA P-256
//! signatures) — and keeps its keys in a file in the data directory so restarts keep them.
//!
//! **It is not secure**: the key material sits in that file, readable by whoever reads the data
//! directory. [`SimToken::is_secure`] says so, and the daemon refuses it outside dev mode unless
//! the configuration accepts that explicitly.
//!
//! Faults can be injected ([`Fault`]) to test that the locker fails closed: programmatically,
//! or, when [`SimOptions::fault_control_file`] is set, by writing a control file next to the key
//! file, which lets an end-to-end test drive a daemon running in another process.

#![forbid(unsafe_code)]

mod fault;
mod keystore;
mod kinds;
mod token;

pub use fault::{FAULT_FILE_NAME, Fault};
pub use kinds::{KeyKind, SimError};
pub use token::{KEY_FILE_NAME, SimOptions, SimToken};
