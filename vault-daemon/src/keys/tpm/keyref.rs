//! The key reference of a TPM key: which parent it lives under and its sealed blobs.
//! Layout: version (1) ‖ use (1) ‖ parent handle (4, 0 = the primary) ‖ len (2) ‖ public ‖
//! len (2) ‖ private.

use tss_esapi::structures::{Private, Public};
use tss_esapi::traits::{Marshall, UnMarshall};

use crate::keys::{KeyError, KeyUse};

const VERSION: u8 = 1;

/// A decoded TPM key reference.
pub struct TpmKeyRef {
    /// What the key is for.
    pub key_use: KeyUse,
    /// Persistent handle of the key's own parent, or 0 for the primary.
    pub parent: u32,
    public: Vec<u8>,
    private: Vec<u8>,
}

impl TpmKeyRef {
    /// From a freshly created key.
    pub fn new(
        key_use: KeyUse,
        parent: u32,
        public: &Public,
        private: &Private,
    ) -> tss_esapi::Result<TpmKeyRef> {
        Ok(TpmKeyRef {
            key_use,
            parent,
            public: public.marshall()?,
            private: private.value().to_vec(),
        })
    }

    /// The public area.
    pub fn public(&self) -> tss_esapi::Result<Public> {
        Public::unmarshall(&self.public)
    }

    /// The sealed private area.
    pub fn private(&self) -> tss_esapi::Result<Private> {
        Private::try_from(self.private.clone())
    }

    /// Serialises the reference.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION, use_tag(self.key_use)];
        out.extend_from_slice(&self.parent.to_be_bytes());
        for part in [&self.public, &self.private] {
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// Parses a reference.
    pub fn decode(bytes: &[u8]) -> Result<TpmKeyRef, KeyError> {
        let bad = || KeyError::Other("malformed TPM key reference".into());
        let [version, tag, p0, p1, p2, p3, rest @ ..] = bytes else {
            return Err(bad());
        };
        if *version != VERSION {
            return Err(bad());
        }
        let key_use = match tag {
            1 => KeyUse::Wrap,
            2 => KeyUse::Mac,
            3 => KeyUse::Sign,
            _ => return Err(bad()),
        };
        let mut rest = rest;
        let mut take = || -> Result<Vec<u8>, KeyError> {
            let [l0, l1, tail @ ..] = rest else {
                return Err(bad());
            };
            let len = usize::from(u16::from_be_bytes([*l0, *l1]));
            if tail.len() < len {
                return Err(bad());
            }
            let (part, tail) = tail.split_at(len);
            rest = tail;
            Ok(part.to_vec())
        };
        let public = take()?;
        let private = take()?;
        Ok(TpmKeyRef {
            key_use,
            parent: u32::from_be_bytes([*p0, *p1, *p2, *p3]),
            public,
            private,
        })
    }
}

fn use_tag(key_use: KeyUse) -> u8 {
    match key_use {
        KeyUse::Wrap => 1,
        KeyUse::Mac => 2,
        KeyUse::Sign => 3,
    }
}
