//! MyNumber Locker daemon library: seals Japanese individual numbers (個人番号) under keys held
//! in a key backend, releases them only for a granted purpose, and audits every call in a
//! hash-chained log before answering.
//!
//! Layers, outside in: `grpc` (thin adapters and the one error → status mapping) → `service`
//! (authentication, authorisation, operations) → `domain` (pure types and rules), `keys`
//! (backends and envelope encryption), `store` (persistence) and `audit` (the chain and the
//! group-commit writer through which every write goes).

#![forbid(unsafe_code)]

pub mod audit;
pub mod clock;
pub mod config;
#[cfg(feature = "dev")]
pub mod devkit;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod keys;
pub mod metrics;
pub mod metrics_listener;
pub mod process_metrics;
pub mod reload;
pub mod server;
pub mod service;
pub mod store;
pub mod trust;
