//! Encoding of stored values: a one-byte codec version, then postcard. The version byte lets a
//! later layout be read beside this one. Authenticated rows (version 2) carry a tag between the
//! version byte and the body; see [`sealing`](crate::store::sealing).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::StoreError;
use crate::store::sealing::RowSealer;

const CODEC_V1: u8 = 1;

/// Encodes a value for storage.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![CODEC_V1];
    out.extend(postcard::to_allocvec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?);
    Ok(out)
}

/// Decodes a stored value; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&CODEC_V1, body)) => postcard::from_bytes(body)
            .map_err(|e| StoreError::Corrupt(format!("{what} does not decode: {e}"))),
        Some((version, _)) => Err(StoreError::Corrupt(format!(
            "{what} has unknown codec version {version}"
        ))),
        None => Err(StoreError::Corrupt(format!("{what} is empty"))),
    }
}

/// Encodes `value` as an authenticated row under `key` in `table`.
pub fn encode_sealed<T: Serialize>(
    sealer: &RowSealer,
    table: &str,
    key: &[u8],
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    let body = postcard::to_allocvec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sealer.seal(table, key, &body)
}

/// Decodes an authenticated row after checking its tag for `key` in `table`.
pub fn decode_sealed<T: DeserializeOwned>(
    sealer: &RowSealer,
    table: &str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    let body = sealer.open(table, key, bytes)?;
    postcard::from_bytes(body).map_err(|e| {
        StoreError::Corrupt(format!(
            "{table}/{} does not decode: {e}",
            crate::store::sealing::describe_key(key)
        ))
    })
}

/// Blind index key: tenant ‖ 0x00 ‖ HMAC. Tenant ids cannot contain 0x00.
pub fn index_key(tenant: &str, index: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(tenant.len() + 33);
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key.extend_from_slice(index);
    key
}

/// Key of an epoch key: the tenant, then the epoch zero-padded so keys sort by month.
pub fn epoch_key_id(tenant: &str, epoch: u32) -> String {
    format!("{tenant}/{epoch:08}")
}

/// Key of a disposal queue entry: the date first, so the queue reads in date order.
pub fn disposal_key(dispose_on: &str, handle: &str) -> String {
    format!("{dispose_on}/{handle}")
}

/// Adds one stored row to the authority digest: table, key and value, each length-prefixed.
/// Every store digests the same bytes, so the digest does not depend on the store.
pub fn digest_row(context: &mut ring::digest::Context, table: &str, key: &[u8], value: &[u8]) {
    for field in [table.as_bytes(), key, value] {
        context.update(&(field.len() as u32).to_be_bytes());
        context.update(field);
    }
}
