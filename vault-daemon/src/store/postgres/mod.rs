//! The cluster store on PostgreSQL: the same rows as the embedded store, in one table per kind
//! of row, shared by any number of daemons.
//!
//! - Reads run in a `REPEATABLE READ, READ ONLY` transaction: one snapshot per reader, as redb
//!   gives.
//! - Every write transaction starts by locking the chain-head row (`SELECT … FOR UPDATE`), so
//!   the group commits of all daemons append to one audit chain one after another; the audit
//!   table's primary key on the sequence refuses a fork even if that lock were bypassed.
//! - `lock_timeout` (below the commit timeout) bounds the wait for the head; the server's
//!   `idle_in_transaction_session_timeout` ends the transaction of a daemon that stalls while
//!   holding it (SIGSTOP, a hung host), so the others go on.
//!
//! A call's point reads go through a [`View`](crate::store::view::View) and are awaited, one statement each (`view`). The synchronous
//! `Store` traits (listings, the audit log, the writer) run their queries on the runtime from
//! inside `block_in_place` (as the state MAC does), so a worker thread waiting on the
//! database hands its other tasks to another thread.

pub mod schema;
pub mod tables;
mod txn;
mod view;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::TargetSessionAttrs;

use crate::store::catalogue;
use crate::store::engine::{Engine, Leases};
use crate::store::engine_store::EngineStore;
use crate::store::rows::{RowsRead, RowsWrite};
use crate::store::sealing::RowSealer;
use crate::store::view::RowSource;
use crate::store::{SCHEMA_VERSION, StoreError};

pub use txn::PgTxn;

/// How to reach and use the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// A libpq-style URL or key=value string; several hosts may be listed (the daemon always
    /// asks for a read-write session, so it follows a failover to the new primary).
    pub url: String,
    /// Connections at most.
    pub pool_size: usize,
    /// CA certificate (PEM) to verify the server with; with it, every connection must use TLS
    /// (rustls, which checks the certificate chain and the host name).
    pub tls_ca: Option<PathBuf>,
    /// How long a group commit waits for the chain head; below the commit timeout.
    pub lock_timeout: Duration,
    /// How long the server lets a transaction sit idle before it ends it (and releases the
    /// chain head): what a stalled daemon costs the others.
    pub idle_in_transaction_timeout: Duration,
    /// Longest statement.
    pub statement_timeout: Duration,
    /// Longest wait for a connection (new or from the pool).
    pub connect_timeout: Duration,
    /// The password, when not in the URL (from a file).
    pub password: Option<secrecy::SecretString>,
}

impl PgOptions {
    /// Options for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            pool_size: 16,
            tls_ca: None,
            lock_timeout: Duration::from_secs(3),
            idle_in_transaction_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            password: None,
        }
    }
}

pub(crate) fn io(error: tokio_postgres::Error) -> StoreError {
    // A server error's own text (never a row's value: values travel as parameters).
    match error.as_db_error() {
        Some(db) => StoreError::Io(format!(
            "PostgreSQL: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => StoreError::Io(format!("PostgreSQL: {error}")),
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => io(error),
        other => StoreError::Io(format!("PostgreSQL connection pool: {other}")),
    }
}

/// What the store and its transactions share.
pub(crate) struct Shared {
    pool: Pool,
    runtime: tokio::runtime::Handle,
    options: PgOptions,
    describe: String,
}

impl Shared {
    /// Runs `future` to completion from synchronous code (see the module doc).
    pub(crate) fn block<F: std::future::Future>(&self, future: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(current)
                if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(|| self.runtime.block_on(future))
            }
            _ => self.runtime.block_on(future),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }
}

fn pg_config(options: &PgOptions) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = options
        .url
        .parse()
        .map_err(|e| StoreError::Io(format!("store url does not parse: {e}")))?;
    config.target_session_attrs(TargetSessionAttrs::ReadWrite);
    // With a CA given, TLS is required: `prefer` would fall back to plaintext on a server (or
    // a man in the middle) that offers no TLS. rustls verifies the chain and the host name.
    if options.tls_ca.is_some() {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    if let Some(password) = &options.password {
        use secrecy::ExposeSecret;
        config.password(password.expose_secret());
    }
    config.connect_timeout(options.connect_timeout);
    // A database host that vanishes without a reset (a partition, a dead VM) must not hold a
    // call for TCP's own quarter of an hour: unacknowledged data gives up after the statement
    // timeout, an idle connection is probed every few seconds.
    config.tcp_user_timeout(options.statement_timeout + options.connect_timeout);
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(5));
    config.keepalives_interval(Duration::from_secs(2));
    config.keepalives_retries(3);
    config.application_name("mynumber-locker");
    let ms = |d: Duration| d.as_millis().max(1);
    let mut server_options = config.get_options().unwrap_or_default().to_owned();
    server_options.push_str(&format!(
        " -c idle_in_transaction_session_timeout={} -c statement_timeout={} -c TimeZone=UTC",
        ms(options.idle_in_transaction_timeout),
        ms(options.statement_timeout)
    ));
    config.options(server_options.trim());
    Ok(config)
}

fn tls_connector(
    ca: &std::path::Path,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(ca)
        .map_err(|e| StoreError::Io(format!("store TLS CA {}: {e}", ca.display())))?;
    for certificate in certificates {
        let certificate = certificate
            .map_err(|e| StoreError::Io(format!("store TLS CA {}: {e}", ca.display())))?;
        roots
            .add(certificate)
            .map_err(|e| StoreError::Io(format!("store TLS CA {}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Io(format!("store TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The database, migrated and schema-checked, before its rows can be authenticated.
pub struct PgDatabase {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDatabase")
            .field("database", &self.shared.describe)
            .finish()
    }
}

/// The hosts of a PostgreSQL URL that are neither a loopback address (`localhost`, 127.0.0.0/8,
/// `::1`) nor a Unix socket: a connection to one of them crosses a network. `Err` when the URL
/// does not parse.
pub fn hosts_off_this_machine(url: &str) -> Result<Vec<String>, String> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("store.url does not parse: {e}"))?;
    let loopback = |name: &str| {
        name.eq_ignore_ascii_case("localhost")
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let mut remote: Vec<String> = config
        .get_hosts()
        .iter()
        .filter_map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) if !loopback(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    // `hostaddr` overrides where a named host is reached.
    remote.extend(
        config
            .get_hostaddrs()
            .iter()
            .filter(|ip| !ip.is_loopback())
            .map(|ip| ip.to_string()),
    );
    Ok(remote)
}

/// A description of the database for messages: hosts, ports and name, never the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    format!(
        "PostgreSQL {}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("postgres")
    )
}

/// The advisory lock a daemon holds while it provisions an empty database's state MAC key.
pub const FIRST_START_LOCK: i64 = 0x004d_4e4c_6669_7273;

/// Held by the one daemon provisioning an empty database; the others wait for it.
pub struct FirstStartLock {
    client: Option<deadpool_postgres::Object>,
}

impl std::fmt::Debug for FirstStartLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstStartLock").finish_non_exhaustive()
    }
}

impl FirstStartLock {
    /// Gives the lock up.
    pub async fn release(mut self) -> Result<(), StoreError> {
        if let Some(client) = self.client.take() {
            client
                .execute("SELECT pg_advisory_unlock($1)", &[&FIRST_START_LOCK])
                .await
                .map_err(io)?;
        }
        Ok(())
    }
}

impl Drop for FirstStartLock {
    fn drop(&mut self) {
        // Not released (an error on the way): close the session, which ends its lock, rather
        // than pool a connection that still holds it.
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

impl PgDatabase {
    /// Takes the lock on provisioning an empty database (waiting at most the statement
    /// timeout for another daemon's provisioning), so daemons starting together create one
    /// state MAC key, not one each.
    pub async fn lock_first_start(&self) -> Result<FirstStartLock, StoreError> {
        let client = self.shared.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&FIRST_START_LOCK])
            .await
            .map_err(|error| match error.code() {
                Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) => StoreError::Io(format!(
                    "another daemon has been provisioning this new database for longer than the statement timeout ({} ms); start again once it serves",
                    self.shared.options.statement_timeout.as_millis()
                )),
                _ => io(error),
            })?;
        Ok(FirstStartLock {
            client: Some(client),
        })
    }

    /// Connects, applies missing migrations (refusing a newer schema) and checks the row
    /// format version. Must be called on the runtime the store will use.
    pub async fn open(options: PgOptions) -> Result<PgDatabase, StoreError> {
        let config = pg_config(&options)?;
        let describe = describe(&config);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &options.tls_ca {
            Some(ca) => Manager::from_config(config, tls_connector(ca)?, manager_config),
            None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Io(format!("PostgreSQL connection pool: {e}")))?;
        let shared = Arc::new(Shared {
            pool,
            runtime: tokio::runtime::Handle::current(),
            options,
            describe,
        });
        let mut client = shared.client().await?;
        schema::migrate(&mut client).await?;
        let version = SCHEMA_VERSION.to_be_bytes();
        client
            .execute(
                "INSERT INTO locker.meta (key, value) VALUES ('schema_version', $1) ON CONFLICT DO NOTHING",
                &[&version.as_slice()],
            )
            .await
            .map_err(io)?;
        let stored: Vec<u8> = client
            .query_one(
                "SELECT value FROM locker.meta WHERE key = 'schema_version'",
                &[],
            )
            .await
            .map_err(io)?
            .get(0);
        crate::store::check_schema_version(&stored)?;
        Ok(PgDatabase { shared })
    }

    /// Which database, for messages.
    pub fn describe(&self) -> &str {
        &self.shared.describe
    }

    /// A metadata value.
    pub async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.shared.client().await?;
        let row = client
            .query_opt("SELECT value FROM locker.meta WHERE key = $1", &[&key])
            .await
            .map_err(io)?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Sets a metadata value unless one is there; returns the value now stored, so daemons
    /// starting together on an empty database all take the first one written.
    pub async fn put_meta_once(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let client = self.shared.client().await?;
        client
            .execute(
                "INSERT INTO locker.meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &value],
            )
            .await
            .map_err(io)?;
        let row = client
            .query_one("SELECT value FROM locker.meta WHERE key = $1", &[&key])
            .await
            .map_err(io)?;
        Ok(row.get(0))
    }

    /// Whether the database holds no audit entry and no operator: never used.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let client = self.shared.client().await?;
        let row = client
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM locker.audit) AND NOT EXISTS (SELECT 1 FROM locker.operators)",
                &[],
            )
            .await
            .map_err(io)?;
        Ok(row.get(0))
    }

    /// The store, authenticating authority rows with `sealer`.
    pub fn authenticated(self, sealer: Arc<RowSealer>) -> EngineStore {
        EngineStore::new(
            Box::new(PgEngine {
                shared: self.shared,
            }),
            sealer,
        )
    }

    /// Writes snapshot rows into this database, which must hold no data (a restore), in one
    /// transaction. Nothing is verified here: the caller verifies the result.
    pub async fn load_rows(
        &self,
        rows: &[crate::store::snapshot::SnapshotRow],
    ) -> Result<(), StoreError> {
        if !self.is_empty().await? {
            return Err(StoreError::Io(format!(
                "{} holds data already; a restore writes only into an empty database",
                self.shared.describe
            )));
        }
        let mut client = self.shared.client().await?;
        let txn = client.transaction().await.map_err(io)?;
        let mut head = 0u64;
        for row in rows {
            let table = catalogue::Table::named(&row.table).ok_or_else(|| {
                StoreError::Corrupt(format!("snapshot names an unknown table {}", row.table))
            })?;
            if catalogue::is_engine_row(table, &row.key) {
                continue;
            }
            let key = tables::Key::of(table, &row.key)?;
            if let (true, tables::Key::Int(seq)) = (table == catalogue::AUDIT, key) {
                head = head.max(seq.max(0) as u64);
            }
            let sql = format!(
                "INSERT INTO {} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                table.qualified()
            );
            txn.execute(sql.as_str(), &[key.param(), &row.value.as_slice()])
                .await
                .map_err(io)?;
        }
        let head = i64::try_from(head).unwrap_or(i64::MAX);
        txn.execute(
            "UPDATE locker.chain_head SET seq = $1 WHERE id = 1",
            &[&head],
        )
        .await
        .map_err(io)?;
        txn.commit().await.map_err(io)
    }
}

/// The PostgreSQL engine.
struct PgEngine {
    shared: Arc<Shared>,
}

impl Engine for PgEngine {
    fn read(&self) -> Result<Box<dyn RowsRead + '_>, StoreError> {
        Ok(Box::new(PgTxn::reader(&self.shared)?))
    }

    fn write(&self) -> Result<Box<dyn RowsWrite + '_>, StoreError> {
        Ok(Box::new(PgTxn::writer(&self.shared)?))
    }

    fn rows(&self) -> Result<Box<dyn RowSource + '_>, StoreError> {
        Ok(Box::new(view::PgRows::new(&self.shared)))
    }

    fn optimistic_write(
        &self,
        head: u64,
        hash: &[u8; 32],
    ) -> Result<Option<Box<dyn RowsWrite + '_>>, StoreError> {
        Ok(Some(Box::new(PgTxn::optimistic_writer(
            &self.shared,
            head,
            *hash,
        )?)))
    }

    fn leases(&self) -> Option<&dyn Leases> {
        Some(self)
    }
}

impl Leases for PgEngine {
    fn hold(&self, duty: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.shared.block(async {
            let client = self.shared.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO locker.leases (name, holder, expires_at)
                     VALUES ($1, $2, now() + $3 * interval '1 millisecond')
                     ON CONFLICT (name) DO UPDATE
                        SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                        WHERE locker.leases.holder = EXCLUDED.holder
                           OR locker.leases.expires_at < now()
                     RETURNING holder",
                )
                .await
                .map_err(io)?;
            let row = client
                .query_opt(&statement, &[&duty, &holder, &(ttl_ms as f64)])
                .await
                .map_err(io)?;
            Ok(row.is_some())
        })
    }

    fn release(&self, duty: &str, holder: &str) -> Result<(), StoreError> {
        self.shared.block(async {
            let client = self.shared.client().await?;
            let statement = client
                .prepare_cached("DELETE FROM locker.leases WHERE name = $1 AND holder = $2")
                .await
                .map_err(io)?;
            client
                .execute(&statement, &[&duty, &holder])
                .await
                .map_err(io)?;
            Ok(())
        })
    }
}
