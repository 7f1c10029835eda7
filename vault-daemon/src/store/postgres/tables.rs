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

    /// The parameter to bind.
    pub fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Key::Text(text) => text,
            Key::Bytes(bytes) => bytes,
            Key::Int(int) => int,
        }
    }
}

/// Column `column` of `row`, a key of `table` as PostgreSQL holds it, as the catalogue's bytes.
pub fn key_bytes(
    row: &tokio_postgres::Row,
    column: usize,
    table: Table,
) -> Result<Vec<u8>, tokio_postgres::Error> {
    Ok(match table.key {
        KeyKind::Text => row.try_get::<_, String>(column)?.into_bytes(),
        KeyKind::Bytes => row.try_get(column)?,
        KeyKind::U64 => (row.try_get::<_, i64>(column)? as u64)
            .to_be_bytes()
            .to_vec(),
        KeyKind::U32 => (row.try_get::<_, i64>(column)? as u32)
            .to_be_bytes()
            .to_vec(),
    })
}
