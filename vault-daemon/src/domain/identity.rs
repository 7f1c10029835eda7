//! How a number and its holder were verified at acquisition (番号法16条, 規程第25条). Only the
//! kinds of document are kept — never images or document numbers.

use serde::{Deserialize, Serialize};

/// 番号確認: documents that prove the number.
pub const NUMBER_CHECK_KINDS: &[&str] = &["MNC", "NTC", "JRC", "PRIOR_FILE"];
/// 身元確認: documents that prove the person.
pub const IDENTITY_CHECK_KINDS: &[&str] = &[
    "MNC",
    "DL",
    "DLH",
    "PP",
    "SHG",
    "SEI",
    "RYO",
    "ZRC",
    "TEI",
    "PHOTO_OTHER",
    "TWO_NONPHOTO",
    "EMPLOYEE_KNOWN",
    "ONLINE_JPKI",
];
/// Proof that an agent (代理人) may act: 法定代理人 (e.g. 戸籍謄本) or 任意代理人 (委任状).
pub const AGENT_AUTHORITY_KINDS: &[&str] = &["LEGAL_REPRESENTATIVE", "POWER_OF_ATTORNEY"];

/// The verification kinds recorded with a record; `None` means not recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityVerification {
    /// 番号確認 kind.
    pub number_check: Option<String>,
    /// 身元確認 kind.
    pub identity_check: Option<String>,
    /// Agent's proof of authority kind, when an agent provided the number.
    pub agent_authority: Option<String>,
}

impl IdentityVerification {
    /// Builds a verification from the wire's strings (empty = not recorded), checking each kind.
    pub fn from_codes(
        number_check: &str,
        identity_check: &str,
        agent_authority: &str,
    ) -> Result<IdentityVerification, String> {
        Ok(IdentityVerification {
            number_check: checked("number check", number_check, NUMBER_CHECK_KINDS)?,
            identity_check: checked("identity check", identity_check, IDENTITY_CHECK_KINDS)?,
            agent_authority: checked("agent authority", agent_authority, AGENT_AUTHORITY_KINDS)?,
        })
    }
}

fn checked(what: &str, code: &str, allowed: &[&str]) -> Result<Option<String>, String> {
    if code.is_empty() {
        Ok(None)
    } else if allowed.contains(&code) {
        Ok(Some(code.to_owned()))
    } else {
        Err(format!(
            "unknown {what} kind; expected one of {}",
            allowed.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_kinds_and_rejects_others() {
        let v = IdentityVerification::from_codes("MNC", "DL", "").expect("valid");
        assert_eq!(v.number_check.as_deref(), Some("MNC"));
        assert_eq!(v.agent_authority, None);
        assert!(IdentityVerification::from_codes("DL", "", "").is_err());
        assert!(IdentityVerification::from_codes("", "", "FRIEND").is_err());
    }
}
