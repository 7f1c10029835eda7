//! A [`View`](crate::store::view::View)'s rows on PostgreSQL: each read is one statement,
//! awaited on the runtime, outside any transaction (a statement sees one state of the
//! database by itself; a transaction would cost a BEGIN and a ROLLBACK per call).

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use super::{Shared, io};
use crate::store::StoreError;
use crate::store::view::{
    IndexedFuture, IndexedRow, ListFuture, RowKey, RowSource, RowsFuture, StoredRow, ViewTable,
    text_key,
};

/// The scalar subquery reading one row of `table` under parameter `$n`.
fn subquery(table: ViewTable, n: usize) -> String {
    format!(
        "(SELECT value FROM locker.{} WHERE key = ${n})",
        table.name()
    )
}

/// The blind index entry and the record it names, in one statement. An entry whose handle is
/// not UTF-8 fails the statement (a corrupt entry, never written by a daemon).
const BY_INDEX: &str = "SELECT i.value, r.value FROM locker.blind_index i
    LEFT JOIN locker.records r ON r.key = convert_from(i.value, 'UTF8')
    WHERE i.key = $1";

/// A view's rows: a pooled connection per read.
pub(crate) struct PgRows<'a> {
    shared: &'a Shared,
}

impl<'a> PgRows<'a> {
    /// Rows read from `shared`'s pool.
    pub(crate) fn new(shared: &'a Shared) -> PgRows<'a> {
        PgRows { shared }
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.shared.client().await
    }

    async fn read_many(&self, keys: &[RowKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut texts = Vec::with_capacity(keys.len());
        for (table, key) in keys {
            texts.push(if table.text_keyed() {
                Some(text_key(*table, key)?)
            } else {
                None
            });
        }
        let params: Vec<&(dyn ToSql + Sync)> = keys
            .iter()
            .zip(&texts)
            .map(|((_, key), text)| match text {
                Some(text) => text as &(dyn ToSql + Sync),
                None => key as &(dyn ToSql + Sync),
            })
            .collect();
        let columns: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, (table, _))| subquery(*table, i + 1))
            .collect();
        let sql = format!("SELECT {}", columns.join(", "));
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await.map_err(io)?;
        let row = client.query_one(&statement, &params).await.map_err(io)?;
        (0..keys.len())
            .map(|i| row.try_get::<_, Option<Vec<u8>>>(i).map_err(io))
            .collect()
    }

    async fn read_list(&self, table: ViewTable) -> Result<Vec<StoredRow>, StoreError> {
        if !table.text_keyed() {
            return Err(StoreError::Corrupt(
                "the blind index is not a text-keyed table".into(),
            ));
        }
        let sql = format!(
            "SELECT key, value FROM locker.{} ORDER BY key",
            table.name()
        );
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await.map_err(io)?;
        client
            .query(&statement, &[])
            .await
            .map_err(io)?
            .iter()
            .map(|row| {
                let key: String = row.try_get(0).map_err(io)?;
                Ok((key.into_bytes(), row.try_get(1).map_err(io)?))
            })
            .collect()
    }

    async fn read_by_index(&self, key: &[u8]) -> Result<Option<IndexedRow>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(BY_INDEX).await.map_err(io)?;
        let Some(row) = client.query_opt(&statement, &[&key]).await.map_err(io)? else {
            return Ok(None);
        };
        Ok(Some((
            row.try_get(0).map_err(io)?,
            row.try_get(1).map_err(io)?,
        )))
    }
}

impl RowSource for PgRows<'_> {
    fn get_many<'b>(&'b self, keys: &'b [RowKey]) -> RowsFuture<'b> {
        Box::pin(self.read_many(keys))
    }

    fn by_index<'b>(&'b self, key: &'b [u8]) -> IndexedFuture<'b> {
        Box::pin(self.read_by_index(key))
    }

    fn list<'b>(&'b self, table: ViewTable) -> ListFuture<'b> {
        Box::pin(self.read_list(table))
    }
}
