//! Generated gRPC types and stubs of the MyNumber Locker API (`mynumber.locker.v1`).
//!
//! Nothing but generated code lives here: conversions to domain types belong to the daemon's
//! `grpc` module, so the wire format stays the one contract between daemon and clients.

/// The `mynumber.locker.v1` package: services `Locker` and `Admin` and their messages.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("mynumber.locker.v1");
}

/// Encoded `FileDescriptorSet` of the API, served by gRPC reflection when it is enabled.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("locker_descriptor");
