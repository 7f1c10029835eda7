//! Opaque record handles: `mnh_` followed by 128 random bits in lowercase hex.

use ring::rand::{SecureRandom, SystemRandom};

/// The prefix every handle starts with, so a handle is recognisable in logs and configs.
pub const HANDLE_PREFIX: &str = "mnh_";
const RANDOM_BYTES: usize = 16;

/// A record handle. It carries no information about the record; it is not a secret either.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Handle(String);

/// A string that is not a handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("handle must be \"{HANDLE_PREFIX}\" followed by 32 lowercase hex digits")]
pub struct HandleSyntaxError;

impl Handle {
    /// A fresh random handle.
    pub fn generate(rng: &SystemRandom) -> Result<Handle, ring::error::Unspecified> {
        let mut bytes = [0u8; RANDOM_BYTES];
        rng.fill(&mut bytes)?;
        Ok(Handle(format!("{HANDLE_PREFIX}{}", hex::encode(bytes))))
    }

    /// Parses a handle, checking its syntax only.
    pub fn parse(text: &str) -> Result<Handle, HandleSyntaxError> {
        let hex_part = text.strip_prefix(HANDLE_PREFIX).ok_or(HandleSyntaxError)?;
        let well_formed = hex_part.len() == RANDOM_BYTES * 2
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if well_formed {
            Ok(Handle(text.to_owned()))
        } else {
            Err(HandleSyntaxError)
        }
    }

    /// The handle's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_handles_parse_and_differ() {
        let rng = SystemRandom::new();
        let a = Handle::generate(&rng).expect("rng");
        let b = Handle::generate(&rng).expect("rng");
        assert_ne!(a, b);
        assert_eq!(Handle::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(a.as_str().len(), HANDLE_PREFIX.len() + 32);
    }

    #[test]
    fn rejects_malformed_handles() {
        for bad in [
            "",
            "mnh_",
            "mnh_0123456789abcdef0123456789abcde",
            "mnh_0123456789ABCDEF0123456789abcdef",
            "xyz_0123456789abcdef0123456789abcdef",
            "mnh_0123456789abcdef0123456789abcdefg",
        ] {
            assert_eq!(Handle::parse(bad), Err(HandleSyntaxError), "{bad}");
        }
    }
}
