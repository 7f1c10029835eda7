//! Domain types of the locker, free of transport and storage concerns: the individual number,
//! handles, the purpose catalogue, records, operators, tokens, the role policy, and the state
//! the store keeps for keys (audit key versions, rewrap jobs, destruction requests).

pub mod approval;
pub mod audit_key;
pub mod correction;
pub mod handle;
pub mod identity;
pub mod lifecycle;
pub mod number;
pub mod operator;
pub mod policy;
pub mod purpose;
pub mod record;
pub mod rotation;
pub mod tenant_info;
pub mod text;
pub mod token;
