//! Attribute templates of the keys the locker creates in a PKCS#11 token.
//!
//! Every key is a token object, private, sensitive and never extractable. Tokens (SoftHSM among
//! them) default most usage attributes to true, so every usage a key does not need is set to
//! false explicitly: a KEK only encrypts and decrypts, a MAC key only signs, the audit key only
//! signs (its public half only verifies).

use cryptoki::object::{Attribute, KeyType, ObjectClass};

use crate::keys::KeyUse;

/// DER of the P-256 curve OID (1.2.840.10045.3.1.7) for CKA_EC_PARAMS.
pub const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn common_secret(id: &[u8], label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Modifiable(false),
        Attribute::Copyable(false),
        Attribute::Destroyable(true),
        Attribute::Derive(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// Template of a secret key (KEK or MAC key).
pub fn secret_key(key_use: KeyUse, id: &[u8], label: &str) -> Vec<Attribute> {
    let mut template = common_secret(id, label);
    template.push(Attribute::Class(ObjectClass::SECRET_KEY));
    template.push(Attribute::ValueLen(32.into()));
    match key_use {
        KeyUse::Wrap => template.extend([
            Attribute::KeyType(KeyType::AES),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Sign(false),
            Attribute::Verify(false),
        ]),
        KeyUse::Mac | KeyUse::Sign => template.extend([
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Sign(true),
            Attribute::Verify(false),
        ]),
    }
    template
}

/// Templates (public, private) of the ECDSA P-256 signing key pair.
pub fn signing_pair(id: &[u8], label: &str) -> (Vec<Attribute>, Vec<Attribute>) {
    let public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Modifiable(false),
        Attribute::Copyable(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
        Attribute::EcParams(P256_PARAMS.to_vec()),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Modifiable(false),
        Attribute::Copyable(false),
        Attribute::Destroyable(true),
        Attribute::Sign(true),
        Attribute::SignRecover(false),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    (public, private)
}
