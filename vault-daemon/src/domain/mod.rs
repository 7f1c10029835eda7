//! Domain types of the locker, free of transport and storage concerns: the individual number,
//! handles, the purpose catalogue, records, operators, tokens and the role policy.

pub mod approval;
pub mod correction;
pub mod handle;
pub mod identity;
pub mod lifecycle;
pub mod number;
pub mod operator;
pub mod policy;
pub mod purpose;
pub mod record;
pub mod tenant_info;
pub mod text;
pub mod token;
