//! The catalogue's tables as PostgreSQL holds them: `locker.NAME (key, value bytea)`, keys as
//! `text COLLATE "C"`, `bytea` or `bigint`, and how a key is bound and read back.

use tokio_postgres::types::ToSql;

use crate::store::catalogue::{KeyKind, Table};

impl Table {
    /// The table's qualified name.
    pub fn qualified(&self) -> String {
        format!("locker.{}", self.name)
    }
}

/// A key as a query parameter.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    /// A text key.
    Text(&'a str),
    /// A byte key.
    Bytes(&'a [u8]),
    /// An integer key.
    Int(i64),
}

impl<'k> Key<'k> {
    /// The key of `bytes` in `table`, as the catalogue encodes it (text as UTF-8, integers
    /// big-endian).
    pub fn of(table: Table, bytes: &'k [u8]) -> Result<Key<'k>, crate::store::StoreError> {
        let malformed =
            || crate::store::StoreError::Corrupt(format!("a key of {} is malformed", table.name));
        Ok(match table.key {
            KeyKind::Text => Key::Text(std::str::from_utf8(bytes).map_err(|_| malformed())?),
            KeyKind::Bytes => Key::Bytes(bytes),
            KeyKind::U64 => <[u8; 8]>::try_from(bytes)
                .ok()
                .and_then(|b| i64::try_from(u64::from_be_bytes(b)).ok())
                .map(Key::Int)
                .ok_or_else(malformed)?,
            KeyKind::U32 => <[u8; 4]>::try_from(bytes)
                .map(|b| Key::Int(i64::from(u32::from_be_bytes(b))))
                .map_err(|_| malformed())?,
        })
    }

    /// The key, owned (to queue a write).
    pub fn to_owned(self) -> OwnedKey {
        match self {
            Key::Text(text) => OwnedKey::Text(text.to_owned()),
            Key::Bytes(bytes) => OwnedKey::Bytes(bytes.to_vec()),
            Key::Int(int) => OwnedKey::Int(int),
        }
    }

    /// The parameter to bind.
    pub fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Key::Text(text) => text,
            Key::Bytes(bytes) => bytes,
            Key::Int(int) => int,
        }
    }

    /// The key of sequence number or version `n` (bigint is signed; ours stay far below 2⁶³).
    pub fn int(n: u64) -> Key<'static> {
        Key::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// A key read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedKey {
    /// A text key.
    Text(String),
    /// A byte key.
    Bytes(Vec<u8>),
    /// An integer key.
    Int(i64),
}

impl OwnedKey {
    /// Reads column 0 of `row` as a key of `kind`.
    pub fn from_row(
        row: &tokio_postgres::Row,
        kind: KeyKind,
    ) -> Result<OwnedKey, tokio_postgres::Error> {
        Ok(match kind {
            KeyKind::Text => OwnedKey::Text(row.try_get(0)?),
            KeyKind::Bytes => OwnedKey::Bytes(row.try_get(0)?),
            KeyKind::U64 | KeyKind::U32 => OwnedKey::Int(row.try_get(0)?),
        })
    }

    /// The key's bytes as the embedded store encodes it (for MACs, digests and snapshots).
    pub fn bytes(&self, kind: KeyKind) -> Vec<u8> {
        match (self, kind) {
            (OwnedKey::Text(text), _) => text.as_bytes().to_vec(),
            (OwnedKey::Bytes(bytes), _) => bytes.clone(),
            (OwnedKey::Int(int), KeyKind::U32) => (*int as u32).to_be_bytes().to_vec(),
            (OwnedKey::Int(int), _) => (*int as u64).to_be_bytes().to_vec(),
        }
    }

    /// The key as an unsigned integer (audit and checkpoint keys).
    pub fn as_u64(&self) -> u64 {
        match self {
            OwnedKey::Int(int) => *int as u64,
            _ => 0,
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        match self {
            OwnedKey::Text(text) => text,
            _ => "",
        }
    }
}

/// The key of `bytes` in a table of `kind`, as a snapshot carries it.
pub fn key_from_bytes(kind: KeyKind, bytes: &[u8]) -> Option<OwnedKey> {
    match kind {
        KeyKind::Text => std::str::from_utf8(bytes)
            .ok()
            .map(|text| OwnedKey::Text(text.to_owned())),
        KeyKind::Bytes => Some(OwnedKey::Bytes(bytes.to_vec())),
        KeyKind::U64 => <[u8; 8]>::try_from(bytes)
            .ok()
            .and_then(|b| i64::try_from(u64::from_be_bytes(b)).ok())
            .map(OwnedKey::Int),
        KeyKind::U32 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| OwnedKey::Int(i64::from(u32::from_be_bytes(b)))),
    }
}

impl OwnedKey {
    /// As a key to query by.
    pub fn key(&self) -> Key<'_> {
        match self {
            OwnedKey::Text(text) => Key::Text(text),
            OwnedKey::Bytes(bytes) => Key::Bytes(bytes),
            OwnedKey::Int(int) => Key::Int(*int),
        }
    }

    /// The parameter to bind.
    pub fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            OwnedKey::Text(text) => text,
            OwnedKey::Bytes(bytes) => bytes,
            OwnedKey::Int(int) => int,
        }
    }
}
