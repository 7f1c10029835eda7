//! Carry-out records (持出し, 規程第35条): numbers a handler or service has unsealed, written to
//! a file that leaves the locker. The unseals are audited one by one already; this entry names
//! the file they went into (its digest), how many, for which purpose and in which form, so an
//! audit can match a file found later to who took it out.

use crate::audit::entry::EntryOutcome;
use crate::domain::policy::Action;
use crate::error::{Error, Reason, Result};
use crate::service::input::purpose_error;
use crate::service::{Locker, RequestContext, invalid};
use crate::store::mutation::Mutation;

/// The most numbers one carry-out may claim (a year-end run of a large employer fits).
pub const MAX_CARRY_OUT_COUNT: u64 = 10_000_000;

/// How the numbers left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarryOutFormat {
    /// A ZIP whose entries are AES-256 encrypted under a password.
    ZipAes256,
    /// A plain file, asked for explicitly.
    Plaintext,
}

impl CarryOutFormat {
    fn describe(self) -> &'static str {
        match self {
            CarryOutFormat::ZipAes256 => "AES-256 encrypted, password-protected ZIP",
            CarryOutFormat::Plaintext => "PLAINTEXT file (not encrypted)",
        }
    }
}

/// One carry-out as the caller states it.
#[derive(Debug, Clone)]
pub struct CarryOut {
    /// Purpose the numbers were unsealed for.
    pub purpose: String,
    /// How many numbers the file holds.
    pub count: u64,
    /// How the file protects them; `None` when the caller did not say.
    pub format: Option<CarryOutFormat>,
    /// Lowercase hex SHA-256 of the file.
    pub file_sha256: String,
}

/// The digest in groups of eight (`3f2a0c9b:...`): any 64 hex digits may hold a run of twelve
/// decimal ones, and an audit entry never shows anything that reads as an individual number.
fn grouped(hex: &str) -> String {
    hex.as_bytes()
        .chunks(8)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// The file a CARRY_OUT entry's reason names: its form and digest (`AES-256 encrypted,
/// password-protected ZIP, file sha256 3f2a0c9b:...`), as [`Locker::record_carry_out`] wrote it.
pub(super) fn carried_file(reason: &str) -> Option<&str> {
    let rest = reason.strip_prefix("carried out ")?;
    let (_count, file) = rest.split_once(" numbers as ")?;
    file.contains(", file sha256 ").then_some(file)
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Locker {
    /// Records a carry-out; returns when it was recorded (ms since the epoch).
    pub async fn record_carry_out(&self, ctx: &RequestContext, carry_out: CarryOut) -> Result<i64> {
        let (caller, mut entry) = self.begin(ctx, Action::CarryOut).await?;
        let body = (|| {
            self.purposes
                .check(&carry_out.purpose)
                .map_err(purpose_error)?;
            entry.purpose = carry_out.purpose.clone();
            // The numbers came from the tenants the caller holds this purpose on: with one
            // (the usual case) the entry names it, so that tenant's manager sees the carry-out.
            let mut tenants = caller
                .operator
                .grants
                .iter()
                .filter(|g| g.purpose == carry_out.purpose)
                .map(|g| g.tenant.as_str());
            match (tenants.next(), tenants.next()) {
                (Some(only), None) => entry.tenant = only.to_owned(),
                (None, _) => {
                    return Err(Error::PermissionDenied(format!(
                        "operator {} is granted purpose {} on no tenant: it unsealed nothing for it",
                        caller.operator.id, carry_out.purpose
                    ))
                    .because(Reason::PurposeNotGranted));
                }
                (Some(_), Some(_)) => {}
            }
            let format = carry_out
                .format
                .ok_or_else(|| invalid("format is required"))?;
            if carry_out.count == 0 || carry_out.count > MAX_CARRY_OUT_COUNT {
                return Err(invalid(format!(
                    "count must be 1 to {MAX_CARRY_OUT_COUNT}, not {}",
                    carry_out.count
                )));
            }
            if !is_sha256_hex(&carry_out.file_sha256) {
                return Err(invalid(
                    "file_sha256 must be 64 lowercase hex digits (the SHA-256 of the file)",
                ));
            }
            entry.allow(format!(
                "carried out {} numbers as {}, file sha256 {}",
                carry_out.count,
                format.describe(),
                grouped(&carry_out.file_sha256)
            ));
            Ok(((), Mutation::None))
        })();
        self.finish(entry, body).await?;
        Ok(self.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::{carried_file, grouped, is_sha256_hex};

    #[test]
    fn the_file_is_read_back_from_the_reason_written() {
        let reason = "carried out 3 numbers as AES-256 encrypted, password-protected ZIP, file sha256 0123abcd:ef";
        assert_eq!(
            carried_file(reason),
            Some("AES-256 encrypted, password-protected ZIP, file sha256 0123abcd:ef")
        );
        assert_eq!(carried_file("carry-out refused"), None);
    }

    #[test]
    fn only_a_sha256_in_lowercase_hex_is_a_digest() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex(&"ab".repeat(31)));
        assert!(!is_sha256_hex("123456789018"));
    }

    #[test]
    fn a_digest_of_digits_shows_no_twelve_in_a_row() {
        let digits = "1234567890".repeat(7);
        let shown = grouped(&digits[..64]);
        assert_eq!(shown.len(), 64 + 7);
        let longest = shown
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max();
        assert_eq!(longest, Some(8), "{shown}");
    }
}
