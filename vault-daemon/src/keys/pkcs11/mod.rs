//! The `pkcs11` backend (cryptoki): keys generated inside a PKCS#11 token (SoftHSM in tests, an
//! HSM in production), used only through the token.
//!
//! - KEK: AES-256; a DEK is wrapped with `CKM_AES_GCM` inside the token, with the record's
//!   associated data, as `iv ‖ ciphertext ‖ tag`.
//! - Blind-index key: 256-bit generic secret, `CKM_SHA256_HMAC`.
//! - Audit key: ECDSA P-256; `CKM_ECDSA` over a SHA-256 digest gives r ‖ s; the public point is
//!   exportable.
//!
//! A [`KeyRef`] is the key's random 16-byte `CKA_ID`. The library is initialised once per
//! connection and the user logs in once per connection; sessions are pooled. When the token
//! goes away (device removed, token not present, session invalid, library not initialised),
//! calls fail `Unavailable`, the connection is dropped, and a later call (or the health check)
//! connects and logs in again — no daemon restart.

mod connection;
pub mod templates;

use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::keys::anchor::{Anchor, AnchorStore, check_advance};
use crate::keys::reconnect::{Reconnecting, Verdict};
use crate::keys::{KeyBackend, KeyError, KeyRef, KeyUse};
use connection::{Connection, Failure};

/// Label of the anchor: a private token data object, so only a logged-in session (one that
/// holds the PIN) can read or change it.
const ANCHOR_LABEL: &str = "mynumber-locker-anchor";

/// How to reach the token.
#[derive(Clone)]
pub struct Pkcs11Settings {
    /// Path of the PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Label of the token; the slot is found by it.
    pub token_label: String,
    /// User PIN.
    pub pin: SecretString,
    /// Sessions kept open at most.
    pub max_sessions: usize,
}

impl std::fmt::Debug for Pkcs11Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Settings")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("pin", &"<redacted>")
            .field("max_sessions", &self.max_sessions)
            .finish()
    }
}

const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// The PKCS#11 backend.
pub struct Pkcs11Backend {
    settings: Pkcs11Settings,
    connection: Reconnecting<Connection>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Whether an error means the token or the library connection is gone.
fn is_connection_loss(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::CryptokiNotInitialized
                | RvError::UserNotLoggedIn
                | RvError::SlotIdInvalid
                | RvError::GeneralError
                // Handles go stale when the token's storage is reloaded; a new connection
                // looks them up again.
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid,
            _
        )
    )
}

fn other(context: &str, error: CkError) -> KeyError {
    KeyError::Other(format!("{context}: {error}"))
}

impl Pkcs11Backend {
    /// Connects to the token now, so a wrong module, label or PIN stops the daemon at start.
    pub fn open(settings: Pkcs11Settings) -> Result<Pkcs11Backend, KeyError> {
        let connection = Connection::open(&settings)?;
        Ok(Pkcs11Backend {
            connection: Reconnecting::new("PKCS#11 token", connection),
            rng: SystemRandom::new(),
            settings,
        })
    }

    /// Runs `op` with a pooled session. On a connection loss the connection is dropped so the
    /// next call reconnects, and the call fails `Unavailable`; a missing key object is
    /// `Destroyed` (the store only refers to keys that were created); `classify` maps any other
    /// token error.
    fn with_session<T>(
        &self,
        op: impl FnOnce(&Connection, &Session) -> Result<T, Failure>,
        classify: impl FnOnce(CkError) -> KeyError,
    ) -> Result<T, KeyError> {
        let (connection, session) = self.checkout()?;
        match op(&connection, &session) {
            Ok(value) => {
                connection.checkin(session);
                Ok(value)
            }
            Err(Failure::Token(error)) if is_connection_loss(&error) => {
                tracing::error!(%error, token = %self.settings.token_label, "PKCS#11 token lost; will reconnect");
                drop(session);
                self.drop_connection(&connection);
                Err(KeyError::Unavailable(format!(
                    "PKCS#11 token unavailable: {error}"
                )))
            }
            Err(Failure::Token(error)) => {
                connection.checkin(session);
                Err(classify(error))
            }
            Err(Failure::Missing) => match connection.token_present(&session) {
                Ok(true) => {
                    connection.checkin(session);
                    Err(KeyError::Destroyed)
                }
                Ok(false) | Err(_) => self.lost(
                    connection,
                    session,
                    "the token no longer holds the locker's objects",
                ),
            },
            Err(Failure::Lost) => self.lost(
                connection,
                session,
                "the token no longer holds the locker's objects",
            ),
            Err(Failure::Integrity) => {
                connection.checkin(session);
                Err(KeyError::Integrity)
            }
        }
    }

    fn lost<T>(&self, connection: Connection, session: Session, why: &str) -> Result<T, KeyError> {
        tracing::error!(token = %self.settings.token_label, why, "PKCS#11 token lost; will reconnect");
        drop(session);
        self.drop_connection(&connection);
        Err(KeyError::Unavailable(format!(
            "PKCS#11 token unavailable: {why}"
        )))
    }

    fn checkout(&self) -> Result<(Connection, Session), KeyError> {
        let connection = self.connection.with(
            || Connection::open(&self.settings),
            |connection| (Ok(connection.clone_handle()), Verdict::Keep),
        )?;
        match connection.checkout() {
            Ok(session) => Ok((connection, session)),
            Err(error) => {
                if is_connection_loss(&error) {
                    self.drop_connection(&connection);
                }
                Err(KeyError::Unavailable(format!(
                    "PKCS#11 token unavailable: {error}"
                )))
            }
        }
    }

    fn drop_connection(&self, lost: &Connection) {
        self.connection.forget_if(|c| c.same_as(lost));
    }

    fn find(
        &self,
        connection: &Connection,
        session: &Session,
        key: &KeyRef,
        class: ObjectClass,
    ) -> Result<ObjectHandle, Failure> {
        connection.find_cached(session, &key.0, class)
    }

    fn random(&self, len: usize) -> Result<Vec<u8>, KeyError> {
        let mut out = vec![0u8; len];
        self.rng
            .fill(&mut out)
            .map_err(|_| KeyError::Other("random generator failed".into()))?;
        Ok(out)
    }
}

fn op_error(op: &'static str) -> impl FnOnce(CkError) -> KeyError {
    move |error| other(op, error)
}

/// A failed authenticated decryption: the tag did not match (wrong key, associated data or
/// bytes). Tokens report it with one of these codes.
fn decrypt_error(error: CkError) -> KeyError {
    match error {
        CkError::Pkcs11(
            RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::DataInvalid
            | RvError::DataLenRange
            | RvError::FunctionFailed,
            _,
        ) => KeyError::Integrity,
        other_error => other("unwrap", other_error),
    }
}

impl KeyBackend for Pkcs11Backend {
    fn name(&self) -> &'static str {
        "pkcs11"
    }

    fn is_secure(&self) -> bool {
        true
    }

    fn create_key(&self, key_use: KeyUse, label: &str) -> Result<KeyRef, KeyError> {
        let id = self.random(16)?;
        self.with_session(
            |_, session| {
                match key_use {
                    KeyUse::Wrap => session
                        .generate_key(
                            &Mechanism::AesKeyGen,
                            &templates::secret_key(key_use, &id, label),
                        )
                        .map(drop),
                    KeyUse::Mac => session
                        .generate_key(
                            &Mechanism::GenericSecretKeyGen,
                            &templates::secret_key(key_use, &id, label),
                        )
                        .map(drop),
                    KeyUse::Sign => {
                        let (public, private) = templates::signing_pair(&id, label);
                        session
                            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
                            .map(drop)
                    }
                }
                .map_err(Failure::from)
            },
            op_error("create key"),
        )?;
        Ok(KeyRef(id))
    }

    fn destroy_key(&self, key: &KeyRef) -> Result<(), KeyError> {
        self.with_session(
            |connection, session| {
                let objects = session.find_objects(&[Attribute::Id(key.0.clone())])?;
                connection.forget(&key.0);
                if objects.is_empty() {
                    return Err(Failure::Missing);
                }
                for object in objects {
                    session.destroy_object(object)?;
                }
                Ok(())
            },
            op_error("destroy key"),
        )
    }

    fn wrap(&self, kek: &KeyRef, dek: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut iv = self.random(IV_LEN)?;
        let sealed = self.with_session(
            |connection, session| {
                let key = self.find(connection, session, kek, ObjectClass::SECRET_KEY)?;
                let params = GcmParams::new(&mut iv, aad, TAG_BITS.into())?;
                Ok(session.encrypt(&Mechanism::AesGcm(params), key, dek)?)
            },
            op_error("wrap"),
        )?;
        let mut out = iv;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap(
        &self,
        kek: &KeyRef,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if wrapped.len() <= IV_LEN + 16 {
            return Err(KeyError::Integrity);
        }
        let (iv, sealed) = wrapped.split_at(IV_LEN);
        let mut iv = iv.to_vec();
        self.with_session(
            |connection, session| {
                let key = self.find(connection, session, kek, ObjectClass::SECRET_KEY)?;
                let params = GcmParams::new(&mut iv, aad, TAG_BITS.into())?;
                match session.decrypt(&Mechanism::AesGcm(params), key, sealed) {
                    Ok(plain) => Ok(Zeroizing::new(plain)),
                    // SoftHSM reports a tag mismatch as CKR_GENERAL_ERROR, which otherwise
                    // means the token is in trouble: the sentinel tells the two apart.
                    Err(CkError::Pkcs11(RvError::GeneralError | RvError::FunctionFailed, _)) => {
                        if connection.token_present(session)? {
                            Err(Failure::Integrity)
                        } else {
                            Err(Failure::Lost)
                        }
                    }
                    Err(other_error) => Err(Failure::Token(other_error)),
                }
            },
            decrypt_error,
        )
    }

    fn mac(&self, key: &KeyRef, data: &[u8]) -> Result<[u8; 32], KeyError> {
        let tag = self.with_session(
            |connection, session| {
                let handle = self.find(connection, session, key, ObjectClass::SECRET_KEY)?;
                Ok(session.sign(&Mechanism::Sha256Hmac, handle, data)?)
            },
            op_error("hmac"),
        )?;
        tag.try_into()
            .map_err(|_| KeyError::Other("HMAC has the wrong length".into()))
    }

    fn sign(&self, key: &KeyRef, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let hash = digest::digest(&digest::SHA256, message);
        self.with_session(
            |connection, session| {
                let handle = self.find(connection, session, key, ObjectClass::PRIVATE_KEY)?;
                Ok(session.sign(&Mechanism::Ecdsa, handle, hash.as_ref())?)
            },
            op_error("sign"),
        )
    }

    fn public_key(&self, key: &KeyRef) -> Result<Vec<u8>, KeyError> {
        let point = self
            .with_session(
                |connection, session| {
                    let handle = self.find(connection, session, key, ObjectClass::PUBLIC_KEY)?;
                    let attributes = session.get_attributes(handle, &[AttributeType::EcPoint])?;
                    Ok(attributes.into_iter().find_map(|a| match a {
                        Attribute::EcPoint(point) => Some(point),
                        _ => None,
                    }))
                },
                op_error("public key"),
            )?
            .ok_or_else(|| KeyError::Other("public key has no EC point".into()))?;
        // CKA_EC_POINT is a DER OCTET STRING around the uncompressed point.
        match point.as_slice() {
            [0x04, 0x41, rest @ ..] if rest.len() == 65 => Ok(rest.to_vec()),
            [0x04, ..] if point.len() == 65 => Ok(point),
            _ => Err(KeyError::Other(
                "EC point has an unexpected encoding".into(),
            )),
        }
    }

    fn self_test(&self) -> Result<(), KeyError> {
        self.with_session(
            |connection, session| {
                if connection.token_present(session)? {
                    Ok(())
                } else {
                    Err(Failure::Lost)
                }
            },
            op_error("self-test"),
        )
    }
}

impl AnchorStore for Pkcs11Backend {
    fn read_anchor(&self) -> Result<Option<Anchor>, KeyError> {
        let value = self.with_session(
            |_, session| Ok(anchor_object(session)?.map(|(_, value)| value)),
            op_error("read anchor"),
        )?;
        value
            .map(|bytes| {
                Anchor::decode(&bytes)
                    .ok_or_else(|| KeyError::Other("anchor object is malformed".into()))
            })
            .transpose()
    }

    fn write_anchor(&self, anchor: &Anchor) -> Result<(), KeyError> {
        let result = self.with_session(
            |_, session| {
                let current = anchor_object(session)?;
                let stored = current
                    .as_ref()
                    .and_then(|(_, value)| Anchor::decode(value));
                if check_advance(stored.as_ref(), anchor).is_err() {
                    return Ok(Err(stored.map_or(0, |a| a.counter)));
                }
                // A data object's value cannot be changed (SoftHSM refuses it): the new anchor
                // is created first and the old one destroyed after, so a crash between leaves
                // both and the higher counter wins.
                session.create_object(&[
                    Attribute::Class(ObjectClass::DATA),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Label(ANCHOR_LABEL.as_bytes().to_vec()),
                    Attribute::Value(anchor.encode().to_vec()),
                ])?;
                if let Some((handle, _)) = current {
                    session.destroy_object(handle)?;
                }
                Ok(Ok(()))
            },
            op_error("write anchor"),
        )?;
        result.map_err(|counter| {
            KeyError::Other(format!(
                "anchor counter would go from {counter} to {}: it never goes back",
                anchor.counter
            ))
        })
    }
}

/// The anchor object and its value, if the token holds one.
fn anchor_object(session: &Session) -> Result<Option<(ObjectHandle, Vec<u8>)>, Failure> {
    let found = session.find_objects(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Label(ANCHOR_LABEL.as_bytes().to_vec()),
    ])?;
    let mut newest: Option<(ObjectHandle, Vec<u8>)> = None;
    for handle in found {
        let value = session
            .get_attributes(handle, &[AttributeType::Value])?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })
            .unwrap_or_default();
        let counter = |v: &[u8]| Anchor::decode(v).map_or(0, |a| a.counter);
        if newest
            .as_ref()
            .is_none_or(|(_, best)| counter(&value) > counter(best))
        {
            newest = Some((handle, value));
        }
    }
    Ok(newest)
}
