//! The `tpm` backend (tss-esapi): keys are TPM 2.0 objects under an ECC P-256 storage primary
//! re-created from its template on every connection (`device:/dev/tpmrm0` in production,
//! `swtpm:host=…,port=…` in tests). Only sealed blobs leave the TPM; they live in the store as
//! the key references.
//!
//! - KEK: an HMAC-SHA256 key under a storage parent of its own that lives only in TPM NV (a
//!   persistent handle, never exported). Wrapping derives a one-time key inside the TPM,
//!   `K = HMAC_KEK("MNL-TPM-WRAP-v1" ‖ r ‖ SHA-256(aad))` for a random `r`, and seals the DEK
//!   with AES-256-GCM under `K` (ring), binding `aad`: one TPM command per wrap or unwrap, and
//!   any change to `r`, the associated data or the ciphertext fails authentication.
//!   Destroying the KEK evicts its parent, so no copy of the KEK blob — backups included — can
//!   be loaded again (crypto-shredding).
//! - MAC key: an HMAC-SHA256 key under the primary.
//! - Audit key: ECDSA P-256 under the primary; signatures as r ‖ s.
//! - Authorisation: every key (and the anchor's NV indices) gets an authValue derived from a
//!   secret the daemon reads from a 0600 file ([`TpmAuth`]), so a process that can open the TPM
//!   and read the store's key blobs, but not that file, cannot use them.
//!
//! Without a resource manager a TPM holds three transient objects: the primary and at most one
//! loaded key at a time (loaded, used, flushed). All TPM commands go through one connection,
//! serialised; the key service's timeout bounds every call. After a TPM restart or a lost
//! connection, the next call (or health check) reconnects.

mod keyref;
mod nv_anchor;
pub mod templates;

use std::str::FromStr;
use std::time::Duration;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Auth, Digest, EccParameter, HashScheme, HashcheckTicket, MaxBuffer, Public, Signature,
    SignatureScheme,
};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::{Context, TctiNameConf};
use zeroize::Zeroizing;

use crate::keys::anchor::{Anchor, AnchorStore};
use crate::keys::reconnect::{Reconnecting, Verdict};
use crate::keys::{KeyBackend, KeyError, KeyRef, KeyUse};
use keyref::TpmKeyRef;

/// The authValue of the locker's TPM objects: SHA-256 of `MNL-TPM-AUTH-v1` ‖ the secret.
#[derive(Clone)]
pub struct TpmAuth(Zeroizing<Vec<u8>>);

impl TpmAuth {
    /// Derives the authValue from the secret file's bytes.
    pub fn from_secret(secret: &[u8]) -> TpmAuth {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(b"MNL-TPM-AUTH-v1");
        context.update(secret);
        TpmAuth(Zeroizing::new(context.finish().as_ref().to_vec()))
    }

    fn auth(&self) -> Result<Auth, Failure> {
        Ok(Auth::try_from(self.0.to_vec())?)
    }
}

impl std::fmt::Debug for TpmAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TpmAuth(<redacted>)")
    }
}

/// How to reach the TPM.
#[derive(Debug, Clone)]
pub struct TpmSettings {
    /// TCTI configuration string.
    pub tcti: String,
    /// First persistent handle the backend may use for KEK parents (e.g. `0x81018000`).
    pub persistent_base: u32,
    /// How many persistent handles from `persistent_base` it may use.
    pub persistent_count: u32,
    /// Encrypt command parameters on the way to and from the TPM (a fresh salted HMAC session
    /// per command). Protects the derived per-record wrapping key on the TPM bus, at roughly
    /// ten times the cost per operation; off, commands use an empty password session.
    pub parameter_encryption: bool,
    /// The authValue of the keys and NV indices the locker creates; `None`: empty (tests of
    /// exactly that, and TPMs set up before authValues existed).
    pub auth: Option<TpmAuth>,
}

/// Runs `f` with the authorisation session the settings ask for.
fn authorized<T>(
    context: &mut Context,
    encrypt: bool,
    f: impl FnOnce(&mut Context) -> tss_esapi::Result<T>,
) -> tss_esapi::Result<T> {
    if encrypt {
        context.execute_with_nullauth_session(f)
    } else {
        context.execute_with_session(Some(AuthSession::Password), f)
    }
}

const WRAP_TAG: &[u8] = b"MNL-TPM-WRAP-v1";
const WRAP_FORMAT: u8 = 1;

struct Connection {
    context: Context,
    primary: KeyHandle,
    encrypt: bool,
    auth: Option<TpmAuth>,
}

impl Connection {
    /// The authValue for objects the locker creates.
    fn object_auth(&self) -> Result<Option<Auth>, Failure> {
        self.auth.as_ref().map(TpmAuth::auth).transpose()
    }
}

/// The TPM backend.
pub struct TpmBackend {
    settings: TpmSettings,
    connection: Reconnecting<Connection>,
    rng: SystemRandom,
}

impl std::fmt::Debug for TpmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmBackend")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Why a TPM operation failed.
enum Failure {
    Tpm(tss_esapi::Error),
    /// The KEK's parent is no longer in the TPM: the key was destroyed.
    Destroyed,
    /// A local problem (not the TPM's).
    Local(&'static str),
}

impl From<tss_esapi::Error> for Failure {
    fn from(error: tss_esapi::Error) -> Failure {
        Failure::Tpm(error)
    }
}

fn connect(settings: &TpmSettings) -> Result<Connection, KeyError> {
    let unavailable =
        |what: &str, e: tss_esapi::Error| KeyError::Unavailable(format!("TPM {what}: {e}"));
    let tcti = TctiNameConf::from_str(&settings.tcti)
        .map_err(|e| KeyError::Other(format!("invalid TCTI {:?}: {e}", settings.tcti)))?;
    // An swtpm serves one connection at a time and takes a moment to accept the next one after
    // a client goes away: a few short retries, bounded well below the backend timeout.
    let mut attempt = 0;
    let mut context = loop {
        match Context::new(tcti.clone()) {
            Ok(context) => break context,
            Err(e) if attempt >= 5 => return Err(unavailable("connect", e)),
            Err(_) => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20 * attempt));
            }
        }
    };
    let template = templates::storage_key().map_err(|e| KeyError::Other(e.to_string()))?;
    let primary = authorized(&mut context, settings.parameter_encryption, |ctx| {
        ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
    })
    .map_err(|e| unavailable("create primary", e))?
    .key_handle;
    Ok(Connection {
        context,
        primary,
        encrypt: settings.parameter_encryption,
        auth: settings.auth.clone(),
    })
}

fn null_ticket() -> Result<HashcheckTicket, tss_esapi::Error> {
    HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
}

fn padded(parameter: &EccParameter) -> Result<[u8; 32], KeyError> {
    let value = parameter.value();
    if value.len() > 32 {
        return Err(KeyError::Other("ECC parameter longer than 32 bytes".into()));
    }
    let mut out = [0u8; 32];
    out[32 - value.len()..].copy_from_slice(value);
    Ok(out)
}

impl TpmBackend {
    /// Connects now, so a wrong TCTI stops the daemon at start.
    pub fn open(settings: TpmSettings) -> Result<TpmBackend, KeyError> {
        let connection = connect(&settings)?;
        Ok(TpmBackend {
            settings,
            connection: Reconnecting::new("TPM", connection),
            rng: SystemRandom::new(),
        })
    }

    /// Runs `op` on the connection (connecting first if needed). A failure is probed: if the
    /// TPM no longer answers, the connection is dropped and the call is `Unavailable`.
    fn with_tpm<T>(
        &self,
        op: impl FnOnce(&mut Connection) -> Result<T, Failure>,
    ) -> Result<T, KeyError> {
        self.connection.with(
            || connect(&self.settings),
            |connection| match op(connection) {
                Ok(value) => (Ok(value), Verdict::Keep),
                Err(Failure::Destroyed) => (Err(KeyError::Destroyed), Verdict::Keep),
                Err(Failure::Local(what)) => (Err(KeyError::Other(what.into())), Verdict::Keep),
                Err(Failure::Tpm(error)) => {
                    let alive = connection
                        .context
                        .execute_without_session(|ctx| ctx.get_random(8))
                        .is_ok();
                    if alive {
                        (Err(KeyError::Other(format!("TPM: {error}"))), Verdict::Keep)
                    } else {
                        tracing::error!(%error, tcti = %self.settings.tcti, "TPM lost; will reconnect");
                        (
                            Err(KeyError::Unavailable(format!("TPM unavailable: {error}"))),
                            Verdict::Lost,
                        )
                    }
                }
            },
        )
    }

    fn random(&self, len: usize) -> Result<Vec<u8>, KeyError> {
        let mut out = vec![0u8; len];
        self.rng
            .fill(&mut out)
            .map_err(|_| KeyError::Other("random generator failed".into()))?;
        Ok(out)
    }

    /// Loads `key` (under its persistent parent or the primary), runs `op`, flushes it.
    fn with_loaded<T>(
        connection: &mut Connection,
        key: &TpmKeyRef,
        op: impl FnOnce(&mut Context, bool, KeyHandle) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let parent = match key.parent {
            0 => connection.primary,
            handle => {
                let tpm_handle = PersistentTpmHandle::new(handle).map_err(Failure::Tpm)?;
                match connection.context.execute_without_session(|ctx| {
                    ctx.tr_from_tpm_public(TpmHandle::Persistent(tpm_handle))
                }) {
                    Ok(object) => KeyHandle::from(object),
                    Err(error) => {
                        // The TPM answers but has no such persistent object: evicted.
                        if connection
                            .context
                            .execute_without_session(|ctx| ctx.get_random(8))
                            .is_ok()
                        {
                            return Err(Failure::Destroyed);
                        }
                        return Err(Failure::Tpm(error));
                    }
                }
            }
        };
        let public = key.public()?;
        let private = key.private()?;
        let loaded = authorized(&mut connection.context, connection.encrypt, |ctx| {
            ctx.load(parent, private, public)
        })?;
        let result = match connection.object_auth() {
            Ok(Some(auth)) => connection
                .context
                .tr_set_auth(ObjectHandle::from(loaded), auth)
                .map_err(Failure::Tpm),
            Ok(None) => Ok(()),
            Err(failure) => Err(failure),
        }
        .and_then(|()| op(&mut connection.context, connection.encrypt, loaded));
        // Flushing frees the transient slot; failing to flush would exhaust the TPM.
        if let Err(error) = connection.context.flush_context(ObjectHandle::from(loaded)) {
            tracing::warn!(%error, "TPM flush failed");
        }
        if key.parent != 0 {
            let mut parent_object = ObjectHandle::from(parent);
            let _ = connection.context.tr_close(&mut parent_object);
        }
        result
    }

    fn hmac(
        context: &mut Context,
        encrypt: bool,
        key: KeyHandle,
        data: &[u8],
    ) -> Result<[u8; 32], Failure> {
        let buffer = MaxBuffer::try_from(data.to_vec())?;
        let digest = authorized(context, encrypt, |ctx| {
            ctx.hmac(ObjectHandle::from(key), buffer, HashingAlgorithm::Sha256)
        })?;
        digest
            .value()
            .try_into()
            .map_err(|_| Failure::Local("TPM HMAC has the wrong length"))
    }

    /// Creates a storage parent and makes it persistent in the first free handle of the range.
    fn persistent_parent(&self, connection: &mut Connection) -> Result<u32, Failure> {
        let template = templates::storage_key()?;
        let primary = connection.primary;
        let created = authorized(&mut connection.context, connection.encrypt, |ctx| {
            ctx.create(primary, template, None, None, None, None)
        })?;
        let loaded = authorized(&mut connection.context, connection.encrypt, |ctx| {
            ctx.load(
                primary,
                created.out_private.clone(),
                created.out_public.clone(),
            )
        })?;
        let mut result = Err(Failure::Local(
            "no free persistent TPM handle for a KEK parent",
        ));
        for offset in 0..self.settings.persistent_count {
            let handle = self.settings.persistent_base + offset;
            let persistent = Persistent::Persistent(PersistentTpmHandle::new(handle)?);
            let evicted = authorized(&mut connection.context, connection.encrypt, |ctx| {
                ctx.evict_control(Provision::Owner, ObjectHandle::from(loaded), persistent)
            });
            if let Ok(mut object) = evicted {
                let _ = connection.context.tr_close(&mut object);
                result = Ok(handle);
                break;
            }
        }
        let _ = connection.context.flush_context(ObjectHandle::from(loaded));
        if result.is_err() {
            tracing::error!(
                base = format!("{:#x}", self.settings.persistent_base),
                count = self.settings.persistent_count,
                "no free persistent TPM handle for a new KEK parent"
            );
        }
        result
    }
}

impl KeyBackend for TpmBackend {
    fn name(&self) -> &'static str {
        "tpm"
    }

    fn is_secure(&self) -> bool {
        true
    }

    fn create_key(&self, key_use: KeyUse, _label: &str) -> Result<KeyRef, KeyError> {
        let reference = self.with_tpm(|connection| {
            let (parent, template) = match key_use {
                KeyUse::Wrap => (self.persistent_parent(connection)?, templates::hmac_key()?),
                KeyUse::Mac => (0, templates::hmac_key()?),
                KeyUse::Sign => (0, templates::signing_key()?),
            };
            let parent_handle = if parent == 0 {
                connection.primary
            } else {
                let handle = PersistentTpmHandle::new(parent)?;
                KeyHandle::from(connection.context.execute_without_session(|ctx| {
                    ctx.tr_from_tpm_public(TpmHandle::Persistent(handle))
                })?)
            };
            let auth = connection.object_auth()?;
            let created = authorized(&mut connection.context, connection.encrypt, |ctx| {
                ctx.create(parent_handle, template, auth, None, None, None)
            })?;
            if parent != 0 {
                let mut object = ObjectHandle::from(parent_handle);
                let _ = connection.context.tr_close(&mut object);
            }
            TpmKeyRef::new(key_use, parent, &created.out_public, &created.out_private)
                .map_err(Failure::Tpm)
        })?;
        Ok(KeyRef(reference.encode()))
    }

    fn destroy_key(&self, key: &KeyRef) -> Result<(), KeyError> {
        let key = TpmKeyRef::decode(&key.0)?;
        if key.parent == 0 {
            return Err(KeyError::Other(
                "only KEKs can be destroyed in the TPM backend (their parent is evicted)".into(),
            ));
        }
        self.with_tpm(|connection| {
            let handle = PersistentTpmHandle::new(key.parent)?;
            let mut object = match connection.context.execute_without_session(|ctx| {
                ctx.tr_from_tpm_public(TpmHandle::Persistent(handle))
            }) {
                Ok(object) => object,
                Err(_) => return Err(Failure::Destroyed),
            };
            let evicted = authorized(&mut connection.context, connection.encrypt, |ctx| {
                ctx.evict_control(Provision::Owner, object, Persistent::Persistent(handle))
            });
            // ESYS keeps the evicted object's name under this handle; a later key made
            // persistent at the same handle would then fail with a name mismatch.
            let _ = connection.context.tr_close(&mut object);
            evicted?;
            Ok(())
        })
    }

    fn wrap(&self, kek: &KeyRef, dek: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = TpmKeyRef::decode(&kek.0)?;
        let r = self.random(32)?;
        let mut nonce = [0u8; 12];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| KeyError::Other("random generator failed".into()))?;
        let derived = Zeroizing::new(self.with_tpm(|connection| {
            Self::with_loaded(connection, &key, |ctx, encrypt, loaded| {
                Self::hmac(ctx, encrypt, loaded, &derivation_input(&r, aad))
            })
        })?);
        let cipher = LessSafeKey::new(
            UnboundKey::new(&aead::AES_256_GCM, derived.as_slice())
                .map_err(|_| KeyError::Other("AEAD key".into()))?,
        );
        let mut sealed = dek.to_vec();
        cipher
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            .map_err(|_| KeyError::Other("AEAD seal failed".into()))?;
        let mut out = Vec::with_capacity(1 + 32 + 12 + sealed.len());
        out.push(WRAP_FORMAT);
        out.extend_from_slice(&r);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap(
        &self,
        kek: &KeyRef,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let key = TpmKeyRef::decode(&kek.0)?;
        let Some((&WRAP_FORMAT, rest)) = wrapped.split_first() else {
            return Err(KeyError::Integrity);
        };
        if rest.len() < 32 + 12 + 16 {
            return Err(KeyError::Integrity);
        }
        let (r, rest) = rest.split_at(32);
        let (nonce, sealed) = rest.split_at(12);
        let derived = Zeroizing::new(self.with_tpm(|connection| {
            Self::with_loaded(connection, &key, |ctx, encrypt, loaded| {
                Self::hmac(ctx, encrypt, loaded, &derivation_input(r, aad))
            })
        })?);
        let cipher = LessSafeKey::new(
            UnboundKey::new(&aead::AES_256_GCM, derived.as_slice())
                .map_err(|_| KeyError::Other("AEAD key".into()))?,
        );
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Integrity)?;
        let mut buffer = Zeroizing::new(sealed.to_vec());
        let len = cipher
            .open_in_place(nonce, Aad::from(aad), &mut buffer)
            .map_err(|_| KeyError::Integrity)?
            .len();
        buffer.truncate(len);
        Ok(buffer)
    }

    fn mac(&self, key: &KeyRef, data: &[u8]) -> Result<[u8; 32], KeyError> {
        let key = TpmKeyRef::decode(&key.0)?;
        if data.len() > 1024 {
            return Err(KeyError::Other(
                "HMAC input longer than one TPM buffer".into(),
            ));
        }
        self.with_tpm(|connection| {
            Self::with_loaded(connection, &key, |ctx, encrypt, loaded| {
                Self::hmac(ctx, encrypt, loaded, data)
            })
        })
    }

    fn sign(&self, key: &KeyRef, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = TpmKeyRef::decode(&key.0)?;
        let hash = digest::digest(&digest::SHA256, message);
        let signature = self.with_tpm(|connection| {
            Self::with_loaded(connection, &key, |ctx, encrypt, loaded| {
                let digest = Digest::try_from(hash.as_ref().to_vec())?;
                let ticket = null_ticket()?;
                Ok(authorized(ctx, encrypt, |ctx| {
                    ctx.sign(
                        loaded,
                        digest,
                        SignatureScheme::EcDsa {
                            hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
                        },
                        ticket,
                    )
                })?)
            })
        })?;
        match signature {
            Signature::EcDsa(ecc) => {
                let mut out = padded(ecc.signature_r())?.to_vec();
                out.extend_from_slice(&padded(ecc.signature_s())?);
                Ok(out)
            }
            _ => Err(KeyError::Other("TPM returned a non-ECDSA signature".into())),
        }
    }

    fn public_key(&self, key: &KeyRef) -> Result<Vec<u8>, KeyError> {
        let key = TpmKeyRef::decode(&key.0)?;
        match key.public().map_err(|e| KeyError::Other(e.to_string()))? {
            Public::Ecc { unique, .. } => {
                let mut out = vec![0x04];
                out.extend_from_slice(&padded(unique.x())?);
                out.extend_from_slice(&padded(unique.y())?);
                Ok(out)
            }
            _ => Err(KeyError::Other("not an ECC key".into())),
        }
    }

    fn self_test(&self) -> Result<(), KeyError> {
        self.with_tpm(|connection| {
            connection
                .context
                .execute_without_session(|ctx| ctx.get_random(8))?;
            Ok(())
        })
    }
}

impl AnchorStore for TpmBackend {
    fn read_anchor(&self) -> Result<Option<Anchor>, KeyError> {
        self.with_tpm(nv_anchor::read_anchor)
    }

    fn write_anchor(&self, anchor: &Anchor) -> Result<(), KeyError> {
        // The TPM's own NV counter provides the monotonic counter (it cannot go back).
        self.with_tpm(|connection| nv_anchor::write_anchor(connection, anchor).map(drop))
    }
}

/// `tag ‖ r ‖ SHA-256(aad)`: fixed length, so any associated data fits one TPM buffer.
fn derivation_input(r: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(WRAP_TAG.len() + 64);
    input.extend_from_slice(WRAP_TAG);
    input.extend_from_slice(r);
    input.extend_from_slice(digest::digest(&digest::SHA256, aad).as_ref());
    input
}
