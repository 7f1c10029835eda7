//! The tables of the PostgreSQL store and how their keys are typed. Every table is
//! `(key, value bytea)` and bears the embedded store's table name, so a row's bytes, its MAC
//! (bound to table and key) and its place in a snapshot are the same on both stores.

use tokio_postgres::types::ToSql;

/// How a table is keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `text COLLATE "C"`: ids, handles, dates.
    Text,
    /// `bytea`: the blind index.
    Bytes,
    /// `bigint`, written as 8 big-endian bytes where a row's key is hashed or copied.
    U64,
    /// `bigint`, written as 4 big-endian bytes (audit key versions).
    U32,
}

/// One table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// Name, shared with the embedded store.
    pub name: &'static str,
    /// Its key.
    pub key: KeyKind,
}

const fn text(name: &'static str) -> Table {
    Table {
        name,
        key: KeyKind::Text,
    }
}

/// Store metadata (schema version, the state MAC key's reference).
pub const META: Table = text("meta");
/// Records by handle.
pub const RECORDS: Table = text("records");
/// Blind index: tenant ‖ 0x00 ‖ HMAC → handle.
pub const INDEX: Table = Table {
    name: "blind_index",
    key: KeyKind::Bytes,
};
/// Tenants.
pub const TENANTS: Table = text("tenants");
/// Operators.
pub const OPERATORS: Table = text("operators");
/// Tokens (hashes only).
pub const TOKENS: Table = text("tokens");
/// Audit rows by sequence number.
pub const AUDIT: Table = Table {
    name: "audit",
    key: KeyKind::U64,
};
/// Signed checkpoints by the entry they cover.
pub const CHECKPOINTS: Table = Table {
    name: "audit_checkpoints",
    key: KeyKind::U64,
};
/// Audit signing keys by version.
pub const AUDIT_KEYS: Table = Table {
    name: "audit_keys",
    key: KeyKind::U32,
};
/// Rewrap jobs by tenant.
pub const JOBS: Table = text("rewrap_jobs");
/// Key destruction requests.
pub const DESTRUCTIONS: Table = text("key_destructions");
/// Disposal-epoch keys.
pub const EPOCH_KEYS: Table = text("epoch_keys");
/// The disposal queue.
pub const DISPOSAL_QUEUE: Table = text("disposal_queue");
/// Corrections.
pub const CORRECTIONS: Table = text("corrections");
/// Ledger details.
pub const TENANT_INFO: Table = text("tenant_info");
/// Deletion certificates.
pub const CERTIFICATES: Table = text("certificates");
/// Dual-control change requests.
pub const CHANGE_REQUESTS: Table = text("change_requests");
/// The authority state.
pub const STATE: Table = text("authority_state");

/// The authority tables in digest order (the embedded store's order: text-keyed ones, then
/// audit keys).
pub const AUTHORITY: [Table; 8] = [
    TENANTS,
    OPERATORS,
    TOKENS,
    DESTRUCTIONS,
    EPOCH_KEYS,
    TENANT_INFO,
    CHANGE_REQUESTS,
    AUDIT_KEYS,
];

/// Every table in snapshot order (the embedded store's): text-keyed, the index, audit and
/// checkpoints, audit keys.
pub const SNAPSHOT_ORDER: [Table; 18] = [
    META,
    RECORDS,
    TENANTS,
    OPERATORS,
    TOKENS,
    JOBS,
    DESTRUCTIONS,
    EPOCH_KEYS,
    DISPOSAL_QUEUE,
    CORRECTIONS,
    TENANT_INFO,
    CERTIFICATES,
    CHANGE_REQUESTS,
    STATE,
    INDEX,
    AUDIT,
    CHECKPOINTS,
    AUDIT_KEYS,
];

impl Table {
    /// Whether rows of this table are authority rows.
    pub fn is_authority(&self) -> bool {
        AUTHORITY.contains(self)
    }

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

impl Key<'_> {
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
