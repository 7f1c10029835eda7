//! The audit log: entries and their hash chain, the group-commit writer through which every
//! state change and every audit entry reaches the store, and chain verification.

pub mod checkpointer;
pub mod entry;
pub mod integrity;
pub mod verify;
pub mod writer;
