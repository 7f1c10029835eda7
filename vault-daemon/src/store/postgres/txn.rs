//! Transactions of the PostgreSQL store: a reader's snapshot or the writer's group commit,
//! each on one pooled connection.
//!
//! Writes are queued and sent pipelined (all at once, answers awaited together) before the
//! next read and at commit, so a group commit of many calls costs a few round trips rather
//! than one per row; a read inside the transaction still sees every earlier write.

use std::cell::{Cell, OnceCell, RefCell};
use std::time::Instant;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use super::tables::{self as pg_tables, Key};
use super::{Shared, io};
use crate::store::StoreError;
use crate::store::catalogue::{self as tables, Table};
use crate::store::rows::{Row, RowsRead, RowsWrite};

/// A reader's transaction: one snapshot, no writes, no lock anyone waits for. The server's
/// short idle-in-transaction timeout is there to free the chain head from a stalled writer;
/// a reader checks each row's MAC in the key backend between its queries, so with a slow
/// backend (a network HSM) a start that reads every authority row would have its snapshot
/// cut. Readers get a minute instead: bounded, so a stalled daemon's snapshot still ends.
pub(super) const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
     SET LOCAL idle_in_transaction_session_timeout = 60000";
const LOCK_HEAD: &str = "SELECT seq FROM locker.chain_head WHERE id = 1 FOR UPDATE";
const SET_HEAD: &str = "UPDATE locker.chain_head SET seq = $1 WHERE id = 1";
const LAST_ENTRY: &str = "SELECT key, value FROM locker.audit ORDER BY key DESC LIMIT 1";
/// The optimistic writer's lock: fails (division by zero) unless the head is still the entry
/// this daemon last committed, the entries end there, and that entry still has the hash this
/// daemon gave it (bytes 33–64 of the row; a log rewritten under the same count fails too).
const ASSERT_HEAD: &str = "SELECT 1 / (CASE WHEN seq = $1 AND seq = (SELECT coalesce(max(key), 0) FROM locker.audit) AND coalesce((SELECT substring(value from 33 for 32) FROM locker.audit WHERE key = $1), '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) = $2 THEN 1 ELSE 0 END) FROM locker.chain_head WHERE id = 1 FOR UPDATE";
/// The commit, with no statement timeout: PostgreSQL answers a COMMIT whose wait for a
/// synchronous standby is cancelled (by a timeout, too) with success and a mere warning,
/// though the standby may not have the transaction. The locker must not take that for a
/// durable commit, so it waits; its callers get UNAVAILABLE at their own commit timeout.
const COMMIT: &str = "SET LOCAL statement_timeout = 0; COMMIT";

/// An audit row: its sequence number and its bytes.
type AuditRow = (u64, Vec<u8>);

/// What ends a pipeline.
enum Last<'p> {
    /// A query whose rows are wanted.
    Query(&'p str, &'p [&'p (dyn ToSql + Sync)]),
    /// The commit, moving the chain head to the given entry if the transaction appended.
    Commit(Option<i64>),
}

/// A write waiting to be sent.
enum Pending {
    /// Insert or replace (key as the catalogue's bytes).
    Upsert(Table, Vec<u8>, Vec<u8>),
    /// Insert; the row must not exist (audit entries).
    Insert(Table, Vec<u8>, Vec<u8>),
    /// Delete.
    Delete(Table, Vec<u8>),
}

impl Pending {
    /// The key to bind.
    fn key(&self) -> Result<Key<'_>, StoreError> {
        match self {
            Pending::Upsert(table, key, _)
            | Pending::Insert(table, key, _)
            | Pending::Delete(table, key) => Key::of(*table, key),
        }
    }

    fn sql(&self) -> String {
        match self {
            Pending::Upsert(table, ..) => format!(
                "INSERT INTO {} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                table.qualified()
            ),
            Pending::Insert(table, ..) => format!(
                "INSERT INTO {} (key, value) VALUES ($1, $2)",
                table.qualified()
            ),
            Pending::Delete(table, _) => {
                format!("DELETE FROM {} WHERE key = $1", table.qualified())
            }
        }
    }
}

/// A transaction on one connection: a reader (`REPEATABLE READ, READ ONLY`, its snapshot
/// taken with its first query) or the writer (holding the chain-head lock, taken at once or,
/// optimistically, with its first statement).
pub struct PgTxn<'a> {
    shared: &'a Shared,
    /// The connection: a reader's is taken from the pool with its first query.
    client: OnceCell<Object>,
    write: bool,
    /// Whether the transaction has begun (a reader's begins with its first query).
    begun: Cell<bool>,
    pending: RefCell<Vec<Pending>>,
    /// The chain head as locked (writer).
    head_seq: u64,
    /// The last entry as read with the lock (writer), until a write makes it stale.
    head_row: RefCell<Option<Option<AuditRow>>>,
    /// The last audit entry this transaction appended.
    appended: Option<u64>,
    /// When the chain head was locked (writer).
    locked_at_cell: Cell<Option<Instant>>,
    /// An optimistic writer: the head it expects (its lock asserts it, sent with its first
    /// statement; [`StoreError::HeadMoved`] if another writer moved it).
    expect_head: Option<i64>,
    /// The hash the optimistic writer expects its head entry to have.
    expect_hash: [u8; 32],
    /// The first error the server answered: PostgreSQL refuses every later statement of the
    /// transaction (25P02), so each later call gets this one — the cause, not the echo (a
    /// moved head stays [`StoreError::HeadMoved`], which the writer redoes the long way).
    failed: RefCell<Option<StoreError>>,
}

/// Whether `error` says the connection's transaction had already failed (25P02): a
/// connection that went back to the pool inside one.
fn in_failed_transaction(error: &tokio_postgres::Error) -> bool {
    let failed = error.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION);
    if failed {
        tracing::warn!(
            "a pooled PostgreSQL connection was inside a failed transaction; rolled back and used again"
        );
    }
    failed
}

fn tampered_head(head: u64, last: u64) -> StoreError {
    StoreError::Tampered {
        table: "chain_head".into(),
        key: format!("head {head}, last audit entry {last}"),
    }
}

impl<'a> PgTxn<'a> {
    /// A reader. Its transaction begins with its first query, sent together with it (one
    /// round trip); REPEATABLE READ takes the snapshot there, so the reader sees one snapshot
    /// from its first read on.
    pub(crate) fn reader(shared: &'a Shared) -> Result<PgTxn<'a>, StoreError> {
        Ok(PgTxn {
            shared,
            client: OnceCell::new(),
            write: false,
            begun: Cell::new(false),
            pending: RefCell::new(Vec::new()),
            head_seq: 0,
            head_row: RefCell::new(None),
            appended: None,
            locked_at_cell: Cell::new(None),
            expect_head: None,
            expect_hash: [0; 32],
            failed: RefCell::new(None),
        })
    }

    /// The writer's transaction: begun, with the chain head locked (waiting at most the lock
    /// timeout for another daemon's commit).
    pub(crate) fn writer(shared: &'a Shared) -> Result<PgTxn<'a>, StoreError> {
        let asked = Instant::now();
        let lock_ms = shared.options.lock_timeout.as_millis().max(1);
        let (client, head, head_row) = shared.block(async {
            let client = shared.client().await?;
            let lock = client.prepare_cached(LOCK_HEAD).await.map_err(io)?;
            let last = client.prepare_cached(LAST_ENTRY).await.map_err(io)?;
            let begin = format!("BEGIN; SET LOCAL lock_timeout = {lock_ms}");
            // One round trip: the last entry is read after the lock is held (each statement
            // of a READ COMMITTED transaction sees what was committed before it began).
            let mut attempt = futures::join!(
                client.batch_execute(&begin),
                client.query_one(&lock, &[]),
                client.query_opt(&last, &[])
            );
            // A connection pooled inside a failed transaction refuses even BEGIN: end that
            // transaction and begin again, once.
            if attempt.0.as_ref().is_err_and(in_failed_transaction) {
                let _ = client.batch_execute("ROLLBACK").await;
                attempt = futures::join!(
                    client.batch_execute(&begin),
                    client.query_one(&lock, &[]),
                    client.query_opt(&last, &[])
                );
            }
            let (begun, locked, last_row) = attempt;
            let outcome = begun.and(locked).and_then(|row| Ok((row, last_row?)));
            match outcome {
                Ok((row, last_row)) => {
                    let seq: i64 = row.get(0);
                    let head_row = match last_row {
                        Some(row) => {
                            let key: i64 = row.try_get(0).map_err(io)?;
                            Some((key.max(0) as u64, row.try_get::<_, Vec<u8>>(1).map_err(io)?))
                        }
                        None => None,
                    };
                    Ok((client, seq.max(0) as u64, head_row))
                }
                Err(error) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    Err(io(error))
                }
            }
        })?;
        let locked_at = Instant::now();
        crate::metrics::metrics()
            .head_lock_wait
            .observe(locked_at.duration_since(asked).as_secs_f64());
        Ok(PgTxn {
            shared,
            client: OnceCell::from(client),
            write: true,
            begun: Cell::new(true),
            pending: RefCell::new(Vec::new()),
            head_seq: head,
            head_row: RefCell::new(Some(head_row)),
            appended: None,
            locked_at_cell: Cell::new(Some(locked_at)),
            expect_head: None,
            expect_hash: [0; 32],
            failed: RefCell::new(None),
        })
    }

    /// An optimistic writer's transaction: nothing is sent until its first read or its commit,
    /// which carry its BEGIN and a head lock asserting the head is still `head` — one round
    /// trip for a whole group commit while this daemon is the only one appending.
    pub(crate) fn optimistic_writer(
        shared: &'a Shared,
        head: u64,
        hash: [u8; 32],
    ) -> Result<PgTxn<'a>, StoreError> {
        Ok(PgTxn {
            shared,
            client: OnceCell::new(),
            write: true,
            begun: Cell::new(false),
            pending: RefCell::new(Vec::new()),
            head_seq: head,
            head_row: RefCell::new(None),
            appended: None,
            locked_at_cell: Cell::new(None),
            expect_head: Some(i64::try_from(head).unwrap_or(i64::MAX)),
            expect_hash: hash,
            failed: RefCell::new(None),
        })
    }

    /// The connection, taken from the pool on first use.
    async fn connection(&self) -> Result<&Object, StoreError> {
        if self.client.get().is_none() {
            let _ = self.client.set(self.shared.client().await?);
        }
        self.client
            .get()
            .ok_or_else(|| StoreError::Io("the transaction has ended".into()))
    }

    /// Sends, in one pipeline (one round trip), what this transaction still owes the server —
    /// its opening (a reader's BEGIN; an optimistic writer's BEGIN and head assertion), the
    /// queued writes — then `last`, and waits for every answer. Returns `last`'s rows.
    async fn send(
        &self,
        client: &Object,
        last: Last<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        if let Some(error) = self.failed.borrow().clone() {
            return Err(error);
        }
        let outcome = self.send_owed(client, last).await;
        if let Err(error) = &outcome {
            self.failed
                .borrow_mut()
                .get_or_insert_with(|| error.clone());
        }
        outcome
    }

    /// [`PgTxn::send`] once the transaction has not failed.
    async fn send_owed(
        &self,
        client: &Object,
        last: Last<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        type Step<'f> = std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<Vec<tokio_postgres::Row>, StoreError>> + 'f,
            >,
        >;
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let keys = pending
            .iter()
            .map(Pending::key)
            .collect::<Result<Vec<_>, _>>()?;
        let mut statements = Vec::with_capacity(pending.len());
        for write in &pending {
            statements.push(client.prepare_cached(&write.sql()).await.map_err(io)?);
        }
        let assert_head = match self.expect_head {
            Some(_) if !self.begun.get() => {
                Some(client.prepare_cached(ASSERT_HEAD).await.map_err(io)?)
            }
            _ => None,
        };
        let last_statement = match &last {
            Last::Query(sql, _) => Some(client.prepare_cached(sql).await.map_err(io)?),
            Last::Commit(Some(_)) => Some(client.prepare_cached(SET_HEAD).await.map_err(io)?),
            Last::Commit(None) => None,
        };
        let mut steps: Vec<Step<'_>> = Vec::with_capacity(pending.len() + 4);
        if !self.begun.get() {
            match (&assert_head, self.expect_head) {
                (Some(statement), Some(expected)) => {
                    let begin = format!(
                        "BEGIN; SET LOCAL lock_timeout = {}",
                        self.shared.options.lock_timeout.as_millis().max(1)
                    );
                    let asked = Instant::now();
                    steps.push(Box::pin(async move {
                        // A connection pooled inside a failed transaction refuses even BEGIN:
                        // the batch is redone the long way (on this connection once it is
                        // rolled back), not refused.
                        client.batch_execute(&begin).await.map_err(|error| {
                            if in_failed_transaction(&error) {
                                StoreError::HeadMoved
                            } else {
                                io(error)
                            }
                        })?;
                        Ok(Vec::new())
                    }));
                    let locked_at = &self.locked_at_cell;
                    steps.push(Box::pin(async move {
                        let hash: &[u8] = &self.expect_hash;
                        let outcome = client.query_one(statement, &[&expected, &hash]).await;
                        let now = Instant::now();
                        locked_at.set(Some(now));
                        crate::metrics::metrics()
                            .head_lock_wait
                            .observe(now.duration_since(asked).as_secs_f64());
                        match outcome {
                            Ok(_) => Ok(Vec::new()),
                            Err(error)
                                if error.code()
                                    == Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO) =>
                            {
                                Err(StoreError::HeadMoved)
                            }
                            Err(error) => Err(io(error)),
                        }
                    }));
                }
                _ => steps.push(Box::pin(async move {
                    client.batch_execute(BEGIN_READ).await.map_err(io)?;
                    Ok(Vec::new())
                })),
            }
            self.begun.set(true);
        }
        for ((write, statement), key) in pending.iter().zip(&statements).zip(&keys) {
            let params: Vec<&(dyn ToSql + Sync)> = match write {
                Pending::Upsert(_, _, value) | Pending::Insert(_, _, value) => {
                    vec![key.param(), value]
                }
                Pending::Delete(..) => vec![key.param()],
            };
            steps.push(Box::pin(async move {
                match client.execute(statement, &params).await {
                    Ok(_) => Ok(Vec::new()),
                    Err(error)
                        if error.code()
                            == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                    {
                        Err(StoreError::Corrupt(
                            "an audit entry with this sequence number exists already (another writer appended it): the batch is refused".into(),
                        ))
                    }
                    Err(error) => Err(io(error)),
                }
            }));
        }
        let want_rows = matches!(last, Last::Query(..));
        match (last, &last_statement) {
            (Last::Query(_, params), Some(statement)) => {
                steps.push(Box::pin(async move {
                    client.query(statement, params).await.map_err(io)
                }));
            }
            (Last::Commit(head), statement) => {
                if let (Some(seq), Some(statement)) = (head, statement) {
                    steps.push(Box::pin(async move {
                        client.execute(statement, &[&seq]).await.map_err(io)?;
                        Ok(Vec::new())
                    }));
                }
                steps.push(Box::pin(async move {
                    client.batch_execute(COMMIT).await.map_err(io)?;
                    Ok(Vec::new())
                }));
            }
            _ => {}
        }
        // Polled in order, so sent in order; the first answer that is an error is the first
        // statement that failed (the server skips the rest of an aborted transaction).
        let mut answers = futures::future::try_join_all(steps).await?;
        Ok(if want_rows {
            answers.pop().unwrap_or_default()
        } else {
            Vec::new()
        })
    }

    /// Runs one query in this transaction, after what it still owes the server.
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.shared.block(async {
            let client = self.connection().await?;
            self.send(client, Last::Query(sql, params)).await
        })
    }

    /// Rows of `table` in key order (`descending`: from the end), after `after` if given, at
    /// most `limit`.
    fn scan_keyed(
        &self,
        table: &Table,
        after: Option<Key<'_>>,
        limit: Option<usize>,
        descending: bool,
    ) -> Result<Vec<Row>, StoreError> {
        let limit = limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let order = if descending { "DESC" } else { "ASC" };
        let rows = match after {
            Some(after) => {
                let compare = if descending { "<" } else { ">" };
                let sql = format!(
                    "SELECT key, value FROM {} WHERE key {compare} $1 ORDER BY key {order} LIMIT $2",
                    table.qualified()
                );
                self.query(&sql, &[after.param(), &limit])?
            }
            None => {
                let sql = format!(
                    "SELECT key, value FROM {} ORDER BY key {order} LIMIT $1",
                    table.qualified()
                );
                self.query(&sql, &[&limit])?
            }
        };
        rows.iter()
            .map(|row| {
                let key = pg_tables::key_bytes(row, 0, *table).map_err(io)?;
                Ok((key, row.try_get(1).map_err(io)?))
            })
            .collect()
    }
}

impl Drop for PgTxn<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if !self.begun.get() {
            return;
        }
        // End the transaction before the connection goes back to the pool, without making the
        // reader's caller wait for it; a connection that cannot is closed rather than pooled
        // mid-transaction (as it is if the task never runs: the runtime is shutting down).
        self.shared.runtime.spawn(async move {
            if client.batch_execute("ROLLBACK").await.is_err() {
                drop(Object::take(client));
            }
        });
    }
}

impl RowsRead for PgTxn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = format!("SELECT value FROM {} WHERE key = $1", table.qualified());
        let rows = self.query(&sql, &[Key::of(table, key)?.param()])?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: Option<usize>,
        descending: bool,
    ) -> Result<Vec<Row>, StoreError> {
        let after = after.map(|key| Key::of(table, key)).transpose()?;
        self.scan_keyed(&table, after, limit, descending)
    }

    /// The audit chain's last entry: on the writer, the one read with the head lock (until a
    /// write makes it stale), checked against the head it locked.
    fn last(&self, table: Table) -> Result<Option<Row>, StoreError> {
        if table != tables::AUDIT {
            return Ok(self.scan(table, None, Some(1), true)?.pop());
        }
        Ok(self
            .audit_last()?
            .map(|(seq, row)| (seq.to_be_bytes().to_vec(), row)))
    }
}

impl PgTxn<'_> {
    fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let prefetched = if self.appended.is_none() && self.pending.borrow().is_empty() {
            self.head_row.borrow_mut().take()
        } else {
            None
        };
        let last = match prefetched {
            Some(last) => last,
            None => match self.scan_keyed(&tables::AUDIT, None, Some(1), true)?.pop() {
                Some((key, value)) => Some((
                    <[u8; 8]>::try_from(key.as_slice())
                        .map(u64::from_be_bytes)
                        .map_err(|_| StoreError::Corrupt("an audit key".into()))?,
                    value,
                )),
                None => None,
            },
        };
        // The writer checks the head it locked against the entries: rows added or removed
        // behind the locker's back do not pass.
        if self.write && self.appended.is_none() {
            let last_seq = last.as_ref().map_or(0, |(seq, _)| *seq);
            if last_seq != self.head_seq {
                return Err(tampered_head(self.head_seq, last_seq));
            }
        }
        Ok(last)
    }
}

impl RowsWrite for PgTxn<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        Key::of(table, key)?;
        self.pending
            .get_mut()
            .push(Pending::Upsert(table, key.to_vec(), value.to_vec()));
        Ok(())
    }

    fn append_audit(&mut self, seq: u64, row: &[u8]) -> Result<(), StoreError> {
        if !self.write {
            return Err(StoreError::Io(
                "audit entries are appended by the writer only".into(),
            ));
        }
        let expected = self.appended.unwrap_or(self.head_seq) + 1;
        if seq != expected {
            return Err(StoreError::Corrupt(format!(
                "audit entry {seq} does not follow the chain head {}",
                expected - 1
            )));
        }
        i64::try_from(seq).map_err(|_| StoreError::Corrupt("audit sequence".into()))?;
        self.pending.get_mut().push(Pending::Insert(
            tables::AUDIT,
            seq.to_be_bytes().to_vec(),
            row.to_vec(),
        ));
        self.appended = Some(seq);
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        Key::of(table, key)?;
        self.pending
            .get_mut()
            .push(Pending::Delete(table, key.to_vec()));
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if !self.write {
            return Err(StoreError::Io("a reader has nothing to commit".into()));
        }
        let taken = self.client.take();
        let head = self
            .appended
            .map(|seq| i64::try_from(seq).unwrap_or(i64::MAX));
        // An optimistic writer that has not read anything meets the server only here.
        let client = match taken {
            Some(client) => client,
            None => self.shared.block(self.shared.client())?,
        };
        let outcome = self
            .shared
            .block(self.send(&client, Last::Commit(head)))
            .map(drop);
        if let Some(locked_at) = self.locked_at_cell.get() {
            crate::metrics::metrics()
                .head_lock_hold
                .observe(locked_at.elapsed().as_secs_f64());
        }
        match &outcome {
            Ok(()) => {}
            // A moved head failed the pipeline's first statement, so the transaction is
            // aborted (its COMMIT never ran): end it, and the connection serves on.
            Err(StoreError::HeadMoved) => {
                if self.shared.block(client.batch_execute("ROLLBACK")).is_err() {
                    drop(Object::take(client));
                }
            }
            // Its outcome unknown or failed: never pool a connection in that state.
            Err(_) => drop(Object::take(client)),
        }
        outcome
    }
}
