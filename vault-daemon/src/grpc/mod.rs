//! The gRPC surface: thin adapters between `vault-proto` messages and the service, request
//! context extraction (token, peer, client certificate), and the one mapping from
//! [`crate::error::Error`] to `tonic::Status`.

pub mod admin;
pub mod call_guard;
pub mod connections;
pub mod context;
pub mod convert;
pub mod locker;
pub mod reports;
pub mod status;
