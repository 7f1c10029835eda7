//! The freshness anchor in TPM NV: an NV counter that only ever increases (`TPM2_NV_Increment`)
//! and an ordinary NV index holding counter ‖ checkpoint number ‖ checkpoint hash. Both are
//! authorised by the locker's authValue (see `TpmAuth`; by the owner when none is configured):
//! a process that can write the store but not present that value cannot move them, and the
//! counter cannot move back at all.
//!
//! A write increments the counter first, then writes the index with the counter's new value;
//! a crash between the two leaves the index one write behind the counter, which reads as the
//! previous anchor (the store is then one checkpoint ahead, which start-up accepts).

use tss_esapi::Context;
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::NvIndexType;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::structures::{MaxNvBuffer, NvPublicBuilder};

use super::{Connection, Failure, authorized};
use crate::keys::anchor::{ANCHOR_LEN, Anchor};

/// NV index of the anchor's data (owner range).
pub const ANCHOR_DATA_INDEX: u32 = 0x0100_4d4c;
/// NV index of the anchor's monotonic counter (owner range).
pub const ANCHOR_COUNTER_INDEX: u32 = 0x0100_4d4d;

fn nv_handle(context: &mut Context, index: u32) -> Result<Option<NvIndexHandle>, Failure> {
    let tpm_handle = NvIndexTpmHandle::new(index)?;
    // Looking up a handle with a password session set crashes libtss2-esys 3.2.1 (see
    // HARDWARE-NOTES): without a session.
    match context
        .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle)))
    {
        Ok(object) => Ok(Some(NvIndexHandle::from(object))),
        Err(_) => Ok(None),
    }
}

fn define(
    connection: &mut Connection,
    index: u32,
    kind: NvIndexType,
    size: usize,
) -> Result<NvIndexHandle, Failure> {
    let auth = connection.object_auth()?;
    let builder = NvIndexAttributesBuilder::new().with_nv_index_type(kind);
    let attributes = if auth.is_some() {
        builder
            .with_auth_write(true)
            .with_auth_read(true)
            .with_no_da(true)
    } else {
        builder.with_owner_write(true).with_owner_read(true)
    }
    .build()?;
    let public = NvPublicBuilder::new()
        .with_nv_index(NvIndexTpmHandle::new(index)?)
        .with_index_name_algorithm(HashingAlgorithm::Sha256)
        .with_index_attributes(attributes)
        .with_data_area_size(size)
        .build()?;
    Ok(authorized(
        &mut connection.context,
        connection.encrypt,
        |ctx| ctx.nv_define_space(Provision::Owner, auth, public),
    )?)
}

/// How to authorise a read or write of `handle`: its own authValue, or the owner.
fn nv_auth(connection: &mut Connection, handle: NvIndexHandle) -> Result<NvAuth, Failure> {
    match connection.object_auth()? {
        Some(auth) => {
            connection.context.tr_set_auth(handle.into(), auth)?;
            Ok(NvAuth::NvIndex(handle))
        }
        None => Ok(NvAuth::Owner),
    }
}

fn read(connection: &mut Connection, handle: NvIndexHandle, size: u16) -> Result<Vec<u8>, Failure> {
    let auth = nv_auth(connection, handle)?;
    let data = authorized(&mut connection.context, connection.encrypt, |ctx| {
        ctx.nv_read(auth, handle, size, 0)
    })?;
    Ok(data.value().to_vec())
}

fn close(connection: &mut Connection, handle: NvIndexHandle) {
    let mut object = handle.into();
    let _ = connection.context.tr_close(&mut object);
}

/// The anchor, if the TPM holds one.
pub fn read_anchor(connection: &mut Connection) -> Result<Option<Anchor>, Failure> {
    let Some(data) = nv_handle(&mut connection.context, ANCHOR_DATA_INDEX)? else {
        return Ok(None);
    };
    // An index defined but never written (a crash right after defining it) holds no anchor.
    let written = connection
        .context
        .execute_without_session(|ctx| ctx.nv_read_public(data))
        .map(|(public, _)| public.attributes().written());
    let bytes = match written {
        Ok(true) => read(connection, data, ANCHOR_LEN as u16).map(Some),
        Ok(false) => Ok(None),
        Err(error) => Err(Failure::Tpm(error)),
    };
    close(connection, data);
    match bytes? {
        Some(bytes) => Anchor::decode(&bytes)
            .map(Some)
            .ok_or(Failure::Local("TPM anchor index is malformed")),
        None => Ok(None),
    }
}

/// Raises the counter and writes the anchor with the counter's new value (the counter in
/// `anchor` is ignored: the TPM's own counter is authoritative).
pub fn write_anchor(connection: &mut Connection, anchor: &Anchor) -> Result<Anchor, Failure> {
    let counter = match nv_handle(&mut connection.context, ANCHOR_COUNTER_INDEX)? {
        Some(handle) => handle,
        None => define(connection, ANCHOR_COUNTER_INDEX, NvIndexType::Counter, 8)?,
    };
    let incremented = nv_auth(connection, counter).and_then(|auth| {
        Ok(authorized(
            &mut connection.context,
            connection.encrypt,
            |ctx| ctx.nv_increment(auth, counter),
        )?)
    });
    let value = incremented.and_then(|()| read(connection, counter, 8));
    close(connection, counter);
    let value = value?;
    let value = <[u8; 8]>::try_from(value.as_slice())
        .map(u64::from_be_bytes)
        .map_err(|_| Failure::Local("TPM counter has the wrong size"))?;
    let written = Anchor {
        counter: value,
        ..*anchor
    };
    let data = match nv_handle(&mut connection.context, ANCHOR_DATA_INDEX)? {
        Some(handle) => handle,
        None => define(
            connection,
            ANCHOR_DATA_INDEX,
            NvIndexType::Ordinary,
            ANCHOR_LEN,
        )?,
    };
    let buffer = MaxNvBuffer::try_from(written.encode().to_vec())?;
    let result = nv_auth(connection, data).and_then(|auth| {
        Ok(authorized(
            &mut connection.context,
            connection.encrypt,
            |ctx| ctx.nv_write(auth, data, buffer, 0),
        )?)
    });
    close(connection, data);
    result?;
    Ok(written)
}
