//! Chain verification, from the shared `vault-audit` format.

pub use vault_audit::chain::{ChainVerifier, VerifyReport};
