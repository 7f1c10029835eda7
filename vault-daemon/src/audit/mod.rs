//! The audit log: entries and their hash chain, the group-commit writer through which every
//! state change and every audit entry reaches the store, chain verification, the in-memory views of current state every decision is checked against
//! (authority rows, records), and the witness
//! each daemon keeps of the newest position it verified.

pub mod authority;
pub mod checked_txn;
pub mod checkpointer;
pub mod entry;
pub mod integrity;
pub mod records;
pub mod verify;
pub mod witness;
pub mod writer;
