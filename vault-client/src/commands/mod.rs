//! The command families of the CLI, one file each (as parsec-tool lays them out): each holds
//! its clap definitions and the calls it makes; printing is in `output`, `reports` and `pdf`,
//! batches in `batch`.

pub mod audit;
pub mod keys;
pub mod lifecycle;
pub mod operators;
pub mod purposes;
pub mod records;
pub mod reports;
pub mod requests;
pub mod tenants;
pub mod tokens;
