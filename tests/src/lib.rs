//! Test harness of MyNumber Locker: launches the real `vault-daemon` binary as a child process
//! on a free loopback port with its own data directory, makes TLS material with rcgen, and
//! offers helpers to call the API with request ids and read the audit log back.
//!
//! The daemon and CLI binaries must be built first (`cargo build --workspace --bins`); the
//! README's test command does that.

#![forbid(unsafe_code)]

pub mod cli;
pub mod conformance;
pub mod console;
pub mod daemon;
pub mod doc_blocks;
pub mod machine;
pub mod numbers;
pub mod pdf;
pub mod pki;
pub mod postgres;
pub mod python;
pub mod rpc;
pub mod softhsm;
pub mod store_conformance;
pub mod store_edit;
pub mod tls_daemon;

pub use daemon::{Daemon, DaemonOptions, binary_path, free_port};
