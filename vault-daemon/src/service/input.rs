//! A call's input read before anything is looked up: the number, a handle, a tenant id and a
//! purpose code, each refused with a clear message and a machine-readable reason, and named
//! in the call's audit entry only once it is well-formed (never the number).

use crate::audit::entry::AuditEntry;
use crate::domain::handle::Handle;
use crate::domain::number::IndividualNumber;
use crate::domain::purpose::CodeError;
use crate::domain::text;
use crate::error::{Error, Reason, Result};

use super::invalid;

/// The number as the caller gave it, refused with the exact reason when it is not one.
pub(super) fn parse_number(input: &str) -> Result<IndividualNumber> {
    use crate::domain::number::NumberError;
    IndividualNumber::parse(input).map_err(|e| {
        let reason = match e {
            NumberError::CheckDigit => Reason::CheckDigitMismatch,
            NumberError::WrongLength(_) => Reason::WrongLength,
            NumberError::InvalidCharacter => Reason::InvalidCharacter,
            NumberError::MisplacedSeparator => Reason::MisplacedSeparator,
        };
        invalid(e.to_string()).because(reason)
    })
}

/// A purpose list or code refused by the catalogue; an unknown code says so to programs.
pub(super) fn purpose_error(error: CodeError) -> Error {
    let reason = matches!(error, CodeError::Unknown(_)).then_some(Reason::PurposeUnknown);
    let error = invalid(error.to_string());
    match reason {
        Some(reason) => error.because(reason),
        None => error,
    }
}

/// The handle as the caller gave it, named in the call's entry once it is well-formed.
pub(super) fn parse_handle(input: &str, entry: &mut AuditEntry) -> Result<Handle> {
    let handle = Handle::parse(input).map_err(|e| invalid(e.to_string()))?;
    // Only a well-formed handle reaches the audit entry: a malformed one could be anything.
    entry.handle = handle.to_string();
    Ok(handle)
}

/// The tenant id as the caller gave it, named in the call's entry once it is well-formed.
pub(super) fn check_tenant_id(tenant: &str, entry: &mut AuditEntry) -> Result<()> {
    text::identifier("tenant", tenant).map_err(invalid)?;
    entry.tenant = tenant.to_owned();
    Ok(())
}
