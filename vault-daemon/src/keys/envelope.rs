//! Envelope encryption of a number and the blind index.
//!
//! A fresh 256-bit DEK per record encrypts the number with AES-256-GCM (ring); the tenant KEK
//! wraps the DEK inside the backend. Both layers bind the same associated data — format
//! version, handle, tenant, KEK version and the sorted permitted purposes — so a ciphertext
//! moved to another handle or tenant, or a purpose list edited in the database, fails to open.
//!
//! The DEK wrap also binds the record's state — active, suspended (with who and why), retired
//! (with its dates) — so a status edited in the store (a suspension lifted, a retirement
//! undone, retention dates moved) makes the unwrap fail. A status change re-wraps the DEK under
//! the new state ([`rebind`]); the number's ciphertext stays as it is.
//!
//! The blind index is HMAC-SHA256 of the normalised number under the tenant's MAC key in the
//! backend; a plain hash would be brute-forced in seconds (10^11 candidates).

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::domain::handle::Handle;
use crate::domain::number::IndividualNumber;
use crate::domain::operator::TenantKeys;
use crate::domain::record::{RecordStatus, SealedNumber};
use crate::error::Error;
use crate::keys::{KeyError, KeyRef, KeyService};

/// Current layout of [`SealedNumber`] and its associated data, DEK under a tenant key
/// (`key_version` = the tenant key version).
pub const FORMAT_V1: u8 = 1;
/// The same layout with the DEK under a disposal-epoch key (`key_version` = the epoch).
pub const FORMAT_EPOCH: u8 = 2;
const AAD_TAG: &[u8] = b"MNL-RECORD";
const INDEX_TAG: &[u8] = b"MNL-INDEX-v1:";
const STATE_TAG: &[u8] = b"STATE";

/// The associated data bound to a record's ciphertext and wrapped DEK.
pub fn record_aad(
    format: u8,
    handle: &Handle,
    tenant: &str,
    key_version: u32,
    purposes: &[String],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(AAD_TAG);
    out.push(format);
    push_field(&mut out, handle.as_str().as_bytes());
    push_field(&mut out, tenant.as_bytes());
    out.extend_from_slice(&key_version.to_be_bytes());
    out.extend_from_slice(&(purposes.len() as u32).to_be_bytes());
    for purpose in purposes {
        push_field(&mut out, purpose.as_bytes());
    }
    out
}

/// The associated data of the DEK wrap: the record's, then its state.
fn wrap_aad(record_aad: &[u8], status: &RecordStatus) -> Result<Vec<u8>, Error> {
    let state = postcard::to_allocvec(status)
        .map_err(|e| Error::Internal(format!("record state does not encode: {e}")))?;
    let mut out = Vec::with_capacity(record_aad.len() + state.len() + 10);
    out.extend_from_slice(record_aad);
    out.extend_from_slice(STATE_TAG);
    push_field(&mut out, &state);
    Ok(out)
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

impl From<KeyError> for Error {
    fn from(error: KeyError) -> Error {
        match error {
            KeyError::Unavailable(_) | KeyError::Timeout(_) => {
                Error::Unavailable(format!("{error}; nothing was released"))
            }
            KeyError::Integrity => {
                Error::Integrity("record failed its integrity check; nothing was released".into())
            }
            KeyError::Destroyed => Error::FailedPrecondition(
                "the key protecting this record has been destroyed".into(),
            ),
            // In a cluster a key just made on one HSM can take a moment to reach the others:
            // worth retrying, not a loss.
            KeyError::NotFound => Error::Unavailable(
                "the key protecting this record is not (yet) visible in the key backend; retry (a key new to one HSM of a cluster may take a moment to reach the others); nothing was released".into(),
            ),
            KeyError::Other(_) => Error::Internal(error.to_string()),
        }
    }
}

/// Which key wraps a record's DEK: a tenant key version, or a disposal-epoch key.
#[derive(Debug, Clone, Copy)]
pub struct Wrapping<'a> {
    /// Backend reference of the KEK.
    pub kek: &'a [u8],
    /// [`FORMAT_V1`] (tenant key) or [`FORMAT_EPOCH`] (disposal-epoch key).
    pub format: u8,
    /// The tenant key version, or the epoch.
    pub key_version: u32,
}

impl<'a> Wrapping<'a> {
    /// Under a tenant key version.
    pub fn tenant(keys: &'a TenantKeys) -> Wrapping<'a> {
        Wrapping {
            kek: &keys.kek,
            format: FORMAT_V1,
            key_version: keys.version,
        }
    }

    /// Under a disposal-epoch key.
    pub fn epoch(key: &'a crate::domain::lifecycle::EpochKey) -> Wrapping<'a> {
        Wrapping {
            kek: &key.kek,
            format: FORMAT_EPOCH,
            key_version: key.epoch,
        }
    }
}

/// Seals `number` for the record `handle` in state `status` under the tenant's active keys.
#[allow(clippy::too_many_arguments)]
pub async fn seal(
    keys: &KeyService,
    rng: &SystemRandom,
    tenant_keys: &TenantKeys,
    handle: &Handle,
    tenant: &str,
    purposes: &[String],
    number: &IndividualNumber,
    status: &RecordStatus,
) -> Result<SealedNumber, Error> {
    seal_with(
        keys,
        rng,
        Wrapping::tenant(tenant_keys),
        handle,
        tenant,
        purposes,
        number,
        status,
    )
    .await
}

/// Seals `number` for the record `handle` in state `status` with the DEK wrapped as
/// `wrapping` says.
#[allow(clippy::too_many_arguments)]
pub async fn seal_with(
    keys: &KeyService,
    rng: &SystemRandom,
    wrapping: Wrapping<'_>,
    handle: &Handle,
    tenant: &str,
    purposes: &[String],
    number: &IndividualNumber,
    status: &RecordStatus,
) -> Result<SealedNumber, Error> {
    let aad = record_aad(
        wrapping.format,
        handle,
        tenant,
        wrapping.key_version,
        purposes,
    );
    let mut dek = Zeroizing::new(vec![0u8; 32]);
    let mut nonce = [0u8; 12];
    rng.fill(&mut dek)
        .and_then(|()| rng.fill(&mut nonce))
        .map_err(|_| Error::Internal("random generator failed".into()))?;
    let cipher = aead_key(&dek)?;
    let mut ciphertext = number.digits().as_bytes().to_vec();
    cipher
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut ciphertext,
        )
        .map_err(|_| Error::Internal("AEAD seal failed".into()))?;
    let wrapped_dek = keys
        .wrap(KeyRef(wrapping.kek.to_vec()), dek, wrap_aad(&aad, status)?)
        .await?;
    Ok(SealedNumber {
        format: wrapping.format,
        key_version: wrapping.key_version,
        wrapped_dek,
        nonce,
        ciphertext,
    })
}

/// Opens a sealed number of a record in state `status`. Any mismatch of key, associated
/// data, state or bytes is an [`Error::Integrity`]; no partial plaintext is ever returned.
pub async fn open(
    keys: &KeyService,
    tenant_keys: &TenantKeys,
    handle: &Handle,
    tenant: &str,
    purposes: &[String],
    sealed: &SealedNumber,
    status: &RecordStatus,
) -> Result<Zeroizing<String>, Error> {
    open_with(
        keys,
        &tenant_keys.kek,
        handle,
        tenant,
        purposes,
        sealed,
        status,
    )
    .await
}

fn check_format(sealed: &SealedNumber) -> Result<(), Error> {
    if sealed.format != FORMAT_V1 && sealed.format != FORMAT_EPOCH {
        return Err(Error::Integrity(format!(
            "record format {} is not known; nothing was released",
            sealed.format
        )));
    }
    Ok(())
}

/// The DEK of a sealed number, unwrapped under `kek` with the record's state bound.
async fn unwrap_dek(
    keys: &KeyService,
    kek: &[u8],
    aad: &[u8],
    sealed: &SealedNumber,
    status: &RecordStatus,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    Ok(keys
        .unwrap(
            KeyRef(kek.to_vec()),
            sealed.wrapped_dek.clone(),
            wrap_aad(aad, status)?,
        )
        .await?)
}

/// The same sealed number bound to the record's new state `to` (from `from`): the DEK is
/// unwrapped and wrapped again under the same key; the ciphertext is unchanged.
#[allow(clippy::too_many_arguments)]
pub async fn rebind(
    keys: &KeyService,
    kek: &[u8],
    handle: &Handle,
    tenant: &str,
    purposes: &[String],
    sealed: &SealedNumber,
    from: &RecordStatus,
    to: &RecordStatus,
) -> Result<SealedNumber, Error> {
    check_format(sealed)?;
    let aad = record_aad(sealed.format, handle, tenant, sealed.key_version, purposes);
    let dek = unwrap_dek(keys, kek, &aad, sealed, from).await?;
    let wrapped_dek = keys
        .wrap(KeyRef(kek.to_vec()), dek, wrap_aad(&aad, to)?)
        .await?;
    Ok(SealedNumber {
        wrapped_dek,
        ..sealed.clone()
    })
}

/// Opens a sealed number whose DEK is wrapped by `kek` (the tenant key or disposal-epoch key
/// its format and key version name), of a record in state `status`.
pub async fn open_with(
    keys: &KeyService,
    kek: &[u8],
    handle: &Handle,
    tenant: &str,
    purposes: &[String],
    sealed: &SealedNumber,
    status: &RecordStatus,
) -> Result<Zeroizing<String>, Error> {
    check_format(sealed)?;
    let aad = record_aad(sealed.format, handle, tenant, sealed.key_version, purposes);
    let dek = unwrap_dek(keys, kek, &aad, sealed, status).await?;
    let cipher = aead_key(&dek)?;
    let mut buffer = Zeroizing::new(sealed.ciphertext.clone());
    let plain = cipher
        .open_in_place(
            Nonce::assume_unique_for_key(sealed.nonce),
            Aad::from(&aad),
            &mut buffer,
        )
        .map_err(|_| {
            Error::Integrity("record failed its integrity check; nothing was released".into())
        })?;
    let text = std::str::from_utf8(plain).map_err(|_| {
        Error::Integrity("record plaintext is not text; nothing was released".into())
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The blind index of `number` under the tenant's MAC key.
pub async fn blind_index(
    keys: &KeyService,
    tenant_keys: &TenantKeys,
    number: &IndividualNumber,
) -> Result<[u8; 32], Error> {
    let mut data = Zeroizing::new(Vec::with_capacity(INDEX_TAG.len() + 12));
    data.extend_from_slice(INDEX_TAG);
    data.extend_from_slice(number.digits().as_bytes());
    Ok(keys.mac(KeyRef(tenant_keys.mac.clone()), data).await?)
}

fn aead_key(dek: &[u8]) -> Result<LessSafeKey, Error> {
    UnboundKey::new(&aead::AES_256_GCM, dek)
        .map(LessSafeKey::new)
        .map_err(|_| Error::Integrity("data key has the wrong length; nothing was released".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_binds_every_field() {
        let rng = SystemRandom::new();
        let h1 = Handle::generate(&rng).expect("rng");
        let h2 = Handle::generate(&rng).expect("rng");
        let p = vec!["A".to_owned(), "B".to_owned()];
        let base = record_aad(1, &h1, "t", 1, &p);
        assert_ne!(base, record_aad(1, &h2, "t", 1, &p));
        assert_ne!(base, record_aad(1, &h1, "u", 1, &p));
        assert_ne!(base, record_aad(1, &h1, "t", 2, &p));
        assert_ne!(base, record_aad(1, &h1, "t", 1, &p[..1]));
        assert_ne!(base, record_aad(2, &h1, "t", 1, &p));
        // Length prefixes keep ("AB") and ("A","B") apart.
        assert_ne!(record_aad(1, &h1, "t", 1, &["AB".into()]), base);
    }
}
