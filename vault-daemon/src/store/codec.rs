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
