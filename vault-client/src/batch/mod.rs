//! `seal --batch`, `unseal --batch` and `acquired --batch`: many items through one command, with a progress bar
//! on standard error and one result per item, in input order, each with its input line.
//!
//! `input` reads the files, `report` writes result rows, `carry_out` decides where unsealed
//! numbers may go; `seal` and `unseal` run the streams.

mod acquired;
pub mod carry_out;
pub mod input;
pub mod report;
mod seal;
mod unseal;

pub use acquired::{AcquiredBatch, set_all as set_acquisition_dates};
pub use report::Failures;
pub use seal::seal;
pub use unseal::{UnsealBatch, unseal};

fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len}  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    bar
}
