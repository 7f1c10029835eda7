//! The store's tables, one list for every engine: each table's name (bound into its rows' MACs
//! and carried by snapshots), how it is keyed, and whether its rows are authority rows. A key
//! is handled as bytes everywhere above the engines — text as UTF-8, integers big-endian — an
//! encoding whose byte order is each engine's own key order.

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

/// The metadata row an engine may write as padding (redb's recovery reserve, committed to
/// prove the disk takes writes again): not data, left out of snapshots.
pub const RECOVERY_RESERVE_KEY: &str = "recovery_reserve";

/// The metadata row holding an engine's own schema version (the redb file's differs from
/// PostgreSQL's tables').
pub const SCHEMA_KEY: &str = "schema_version";

/// Whether the row under `key` in `table` is the engine's own (its schema version, padding)
/// rather than data: left out of snapshots, and never loaded from one (older snapshots hold the
/// schema version of the engine they were taken from).
pub fn is_engine_row(table: Table, key: &[u8]) -> bool {
    table == META && (key == RECOVERY_RESERVE_KEY.as_bytes() || key == SCHEMA_KEY.as_bytes())
}

impl Table {
    /// Whether rows of this table are authority rows.
    pub fn is_authority(&self) -> bool {
        AUTHORITY.contains(self)
    }

    /// The table named `name`.
    pub fn named(name: &str) -> Option<Table> {
        SNAPSHOT_ORDER.into_iter().find(|table| table.name == name)
    }
}
