//! What a storage engine provides: rows of the [catalogue](super::catalogue)'s tables as bytes,
//! read and written in one transaction. Everything typed — codecs, row MACs, which table holds
//! what under which key, the authority digest — is written once above this, in
//! [`typed`](super::typed); an engine (redb, PostgreSQL) only stores and finds bytes.

use crate::store::StoreError;
use crate::store::catalogue::Table;

/// A stored row: its key and its value.
pub type Row = (Vec<u8>, Vec<u8>);

/// Reads of one transaction (one consistent state of the store).
pub trait RowsRead {
    /// The value under `key` in `table`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Rows of `table` in key order (`descending`: from the end), those after `after` in that
    /// order if given, at most `limit`.
    fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: Option<usize>,
        descending: bool,
    ) -> Result<Vec<Row>, StoreError>;

    /// The last row of `table`. An engine that knows more about the audit chain's head (the
    /// PostgreSQL writer locked it) checks it here.
    fn last(&self, table: Table) -> Result<Option<Row>, StoreError> {
        Ok(self.scan(table, None, Some(1), true)?.pop())
    }
}

/// Writes of one transaction, visible to its own reads, durable at [`RowsWrite::commit`].
pub trait RowsWrite: RowsRead {
    /// Stores `value` under `key`, replacing any row there.
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Appends audit entry `seq`; one that exists already, or (where the engine knows the
    /// chain head) one that does not follow it, is [`StoreError::Corrupt`].
    fn append_audit(&mut self, seq: u64, row: &[u8]) -> Result<(), StoreError>;

    /// Appends several audit entries, in order (an engine may do it in one go).
    fn append_audit_rows(&mut self, rows: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        rows.iter()
            .try_for_each(|(seq, row)| self.append_audit(*seq, row))
    }

    /// Removes the row under `key`, if there is one.
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError>;

    /// Makes every write durable, or none.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

impl<T: RowsRead + ?Sized> RowsRead for Box<T> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: Option<usize>,
        descending: bool,
    ) -> Result<Vec<Row>, StoreError> {
        (**self).scan(table, after, limit, descending)
    }

    fn last(&self, table: Table) -> Result<Option<Row>, StoreError> {
        (**self).last(table)
    }
}

impl<T: RowsWrite + ?Sized> RowsWrite for Box<T> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        (**self).put(table, key, value)
    }

    fn append_audit(&mut self, seq: u64, row: &[u8]) -> Result<(), StoreError> {
        (**self).append_audit(seq, row)
    }

    fn append_audit_rows(&mut self, rows: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        (**self).append_audit_rows(rows)
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        (**self).delete(table, key)
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        (*self).commit()
    }
}
