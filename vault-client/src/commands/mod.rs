//! The command families of the CLI, one file each (as parsec-tool lays them out): each holds
//! its clap definitions and the calls it makes; printing is in `output`, `reports` and `pdf`,
//! batches in `batch`.

pub mod audit;
pub mod disclosure;
pub mod health;
pub mod keys;
pub mod lifecycle;
pub mod operators;
pub mod purposes;
pub mod records;
pub mod reports;
pub mod requests;
pub mod tenants;
pub mod tokens;

/// How a command that asked for a change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or nothing to approve).
    Done,
    /// Held for another admin's approval: not in force yet (exit status 9).
    Held,
}

impl Outcome {
    /// `Held` when the answer names a pending change request.
    pub fn of(pending: Option<&vault_client::pb::ChangeRequest>) -> Outcome {
        if pending.is_some() {
            Outcome::Held
        } else {
            Outcome::Done
        }
    }
}
