//! The audit log format of MyNumber Locker, shared by the daemon that writes it and the tools
//! that check it: canonical entry encoding and the hash chain (`entry`, `chain`), what an
//! entry names as current state (`state`), checkpoints signed with the key backend's ECDSA
//! P-256 audit key (`checkpoint`), the signed statement of the anchored checkpoint an export
//! carries (`statement`), the signed deletion certificates and disclosure notices
//! (`certificate`, `disclosure`), and the offline verification of an export (`offline`), which
//! needs neither daemon nor token.

#![forbid(unsafe_code)]

pub mod certificate;
pub mod chain;
pub mod checkpoint;
pub mod disclosure;
pub mod entry;
pub mod offline;
pub mod state;
pub mod statement;
