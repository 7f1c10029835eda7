//! Validation of the short texts callers supply (ids, names, subject references, reasons):
//! bounded length, no control characters, and never an individual number, since these texts
//! are stored and audited in the clear.

use crate::domain::number::contains_individual_number;

/// Checks an identifier (tenant or operator id): 1-64 of `a-z 0-9 - _ .`, and not an
/// individual number (ids are written to audit entries in the clear).
pub fn identifier(what: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok && !contains_individual_number(value) {
        Ok(())
    } else {
        Err(format!(
            "{what} must be 1-64 characters of a-z, 0-9, '-', '_' and '.'"
        ))
    }
}

/// Checks a free text: within `max_chars`, non-empty if `required`, no control characters,
/// no individual number.
pub fn free_text(what: &str, value: &str, max_chars: usize, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err(format!("{what} is required"));
    }
    if value.chars().count() > max_chars {
        return Err(format!("{what} is longer than {max_chars} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    if contains_individual_number(value) {
        return Err(format!("{what} must not contain an individual number"));
    }
    Ok(())
}

/// Checks an id made of 16 lowercase hex digits (correction and destruction request ids).
pub fn hex_id(what: &str, id: &str) -> Result<(), String> {
    if id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "{what} must be the 16 hex digits shown when it was made"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(identifier("tenant", "acme-01").is_ok());
        assert!(identifier("tenant", "").is_err());
        assert!(identifier("tenant", "Acme").is_err());
        assert!(identifier("tenant", &"a".repeat(65)).is_err());
        assert!(identifier("tenant", "123456789018").is_err());
    }

    #[test]
    fn free_texts() {
        assert!(free_text("reason", "退職のため", 100, true).is_ok());
        assert!(free_text("reason", " ", 100, true).is_err());
        assert!(free_text("reason", "a\nb", 100, true).is_err());
        assert!(free_text("reason", "number 123456789018 gone", 100, true).is_err());
        assert!(free_text("reason", "abc", 2, false).is_err());
    }
}
