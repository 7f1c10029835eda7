//! Daemon configuration: a TOML file with unknown fields refused, every default in this module,
//! and validation at load so a bad config stops the daemon before it listens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::service::monitor::{MonitorPolicy, Thresholds, parse_hours};
use crate::service::rate_limit::{Rate, RatePolicy, RoleRates};
use crate::service::refusals::RefusalPolicy;

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (line, column, field).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and gRPC settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// TLS; without it the daemon listens in plaintext, on loopback only.
    pub tls: Option<TlsConfig>,
    /// Where data lives.
    pub store: StoreConfig,
    /// The key backend.
    #[serde(default)]
    pub backend: BackendConfig,
    /// The audit writer.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Token lifetimes.
    #[serde(default)]
    pub tokens: TokenConfig,
    /// The purpose catalogue.
    #[serde(default)]
    pub purposes: PurposesConfig,
    /// Key rotation and destruction.
    #[serde(default)]
    pub keys: KeysConfig,
    /// Retirement and scheduled disposal.
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    /// Log monitoring (ログ監視) thresholds.
    #[serde(default)]
    pub monitoring: MonitoringConfig,
    /// Dual control: change requests.
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Rate limits per operator, failed-authentication limits per address, and the
    /// aggregation of refused calls in the audit log.
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

/// The Prometheus endpoint (`GET /metrics`, OpenMetrics text), on its own listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address to serve metrics on; none by default. Off loopback it needs `tls_cert` and
    /// `tls_key`, or `public = true`.
    pub listen: Option<SocketAddr>,
    /// How often records are counted by state for `locker_records` (a scan of the records
    /// table), in seconds; rewrap progress is read every 5 s.
    pub records_refresh_secs: u64,
    /// Certificate chain (PEM) to serve metrics over TLS.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// A file holding a token (16 characters or more) a scraper must send as
    /// `Authorization: Bearer …`; others get 401.
    pub bearer_token_file: Option<PathBuf>,
    /// Serve plain HTTP off loopback knowingly: metrics show tenants, refusal reasons and
    /// which alert rules fired. Warned about at every start.
    pub public: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            records_refresh_secs: 60,
            tls_cert: None,
            tls_key: None,
            bearer_token_file: None,
            public: false,
        }
    }
}

impl MetricsConfig {
    /// Whether metrics are served in plaintext to more than this machine (`public = true`).
    pub fn plaintext_off_loopback(&self) -> bool {
        self.tls_cert.is_none() && self.listen.is_some_and(|addr| !addr.ip().is_loopback())
    }

    fn check(&self) -> Result<(), String> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("metrics.tls_cert and metrics.tls_key go together".into());
        }
        if self.plaintext_off_loopback() && !self.public {
            return Err(
                "metrics.listen is not a loopback address and metrics.tls_cert is not set: metrics show tenants, refusal reasons and which alert rules fired; serve them over TLS (metrics.tls_cert, metrics.tls_key, optionally metrics.bearer_token_file), or set metrics.public = true knowingly".into(),
            );
        }
        if !(1..=86_400).contains(&self.records_refresh_secs) {
            return Err("metrics.records_refresh_secs must be between 1 and 86400".into());
        }
        Ok(())
    }
}

/// Rate limits on the calls that touch numbers, per role; and limits on junk traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Handlers (people).
    pub handler: RoleRatesConfig,
    /// Services (payroll systems).
    pub service: RoleRatesConfig,
    /// Managers: their disclosures by number (本人開示) draw on the lookup rate.
    pub manager: RoleRatesConfig,
    /// Failed authentications an address may make per second, sustained; beyond its burst
    /// the address's calls are refused until it refills. 0 turns the limit off.
    pub failed_auth_per_second: f64,
    /// Failed authentications an address may make at once.
    pub failed_auth_burst: u32,
    /// Refused junk calls (failed authentication, rate limits) are audited per source,
    /// reason and window of this many seconds: the first on its own, the rest as one count.
    pub refusal_window_secs: u64,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            handler: RoleRatesConfig::default(),
            service: RoleRatesConfig::default(),
            manager: RoleRatesConfig::default(),
            failed_auth_per_second: 1.0,
            failed_auth_burst: 60,
            refusal_window_secs: 60,
        }
    }
}

impl RateLimitsConfig {
    /// No per-operator limits (`--dev`, where the bench measures the daemon itself); the
    /// failed-authentication limits stay.
    pub fn unlimited_operators() -> RateLimitsConfig {
        let none = RoleRatesConfig {
            seal_per_second: Some(0.0),
            unseal_per_second: Some(0.0),
            lookup_per_second: Some(0.0),
            burst_seconds: Some(1.0),
        };
        RateLimitsConfig {
            handler: none.clone(),
            service: none.clone(),
            manager: none,
            ..RateLimitsConfig::default()
        }
    }

    /// The per-operator policy.
    pub fn rate_policy(&self) -> RatePolicy {
        RatePolicy {
            handler: self.handler.rates(HANDLER_RATES),
            service: self.service.rates(SERVICE_RATES),
            manager: self.manager.rates(MANAGER_RATES),
        }
    }

    /// The junk-traffic policy.
    pub fn refusal_policy(&self) -> RefusalPolicy {
        RefusalPolicy {
            window: std::time::Duration::from_secs(self.refusal_window_secs),
            failed_auth_per_second: self.failed_auth_per_second,
            failed_auth_burst: f64::from(self.failed_auth_burst),
        }
    }

    fn check(&self) -> Result<(), String> {
        for (role, rates) in [
            ("handler", self.handler.resolved(HANDLER_RATES)),
            ("service", self.service.resolved(SERVICE_RATES)),
            ("manager", self.manager.resolved(MANAGER_RATES)),
        ] {
            for (name, value) in [
                ("seal_per_second", rates[0]),
                ("unseal_per_second", rates[1]),
                ("lookup_per_second", rates[2]),
                ("burst_seconds", rates[3]),
            ] {
                if !value.is_finite() || !(0.0..=1_000_000.0).contains(&value) {
                    return Err(format!(
                        "rate_limits.{role}.{name} must be between 0 and 1000000"
                    ));
                }
            }
        }
        if !self.failed_auth_per_second.is_finite()
            || !(0.0..=10_000.0).contains(&self.failed_auth_per_second)
        {
            return Err("rate_limits.failed_auth_per_second must be between 0 and 10000".into());
        }
        if self.failed_auth_burst == 0 {
            return Err("rate_limits.failed_auth_burst must be at least 1".into());
        }
        if !(1..=3600).contains(&self.refusal_window_secs) {
            return Err("rate_limits.refusal_window_secs must be between 1 and 3600".into());
        }
        Ok(())
    }
}

/// Handlers' defaults (seal, unseal, lookup per second; burst seconds): people work at a
/// human pace, and a handler sweeping lookups is the oracle to stop.
const HANDLER_RATES: [f64; 4] = [20.0, 20.0, 5.0, 60.0];
/// Services' defaults: payroll systems seal and unseal a whole company at year end (100,000
/// items in one batch is ordinary), so no limit on those; lookups keep a generous one, so even
/// a service token cannot sweep the number space.
const SERVICE_RATES: [f64; 4] = [0.0, 0.0, 1000.0, 300.0];
/// Managers' defaults: they neither seal nor unseal; a disclosure by number answers whether
/// the office holds it, so it is limited like a handler's lookup.
const MANAGER_RATES: [f64; 4] = [0.0, 0.0, 1.0, 60.0];

/// One role's rates: calls per second sustained (0: no limit), and how many seconds of that
/// rate a full bucket holds (the burst). A setting left out keeps the role's default (a table
/// giving only `lookup_per_second` does not lift the other limits).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleRatesConfig {
    /// Seals (each batch item counts).
    pub seal_per_second: Option<f64>,
    /// Unseals (each batch item counts).
    pub unseal_per_second: Option<f64>,
    /// Lookups.
    pub lookup_per_second: Option<f64>,
    /// Seconds of the rate a full bucket holds.
    pub burst_seconds: Option<f64>,
}

impl RoleRatesConfig {
    /// Seal, unseal, lookup per second and burst seconds, the role's defaults filling gaps.
    fn resolved(&self, defaults: [f64; 4]) -> [f64; 4] {
        [
            self.seal_per_second.unwrap_or(defaults[0]),
            self.unseal_per_second.unwrap_or(defaults[1]),
            self.lookup_per_second.unwrap_or(defaults[2]),
            self.burst_seconds.unwrap_or(defaults[3]),
        ]
    }

    fn rates(&self, defaults: [f64; 4]) -> RoleRates {
        let [seal, unseal, lookup, burst_seconds] = self.resolved(defaults);
        let rate = |per_second: f64| Rate {
            per_second,
            burst: (per_second * burst_seconds).max(1.0),
        };
        RoleRates {
            seal: rate(seal),
            unseal: rate(unseal),
            lookup: rate(lookup),
        }
    }
}

/// Dual control (the quorum itself lives in the store and changes only by an approved request).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// How long a change request (and a key destruction request) stays approvable, in seconds.
    pub request_ttl_secs: u64,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            request_ttl_secs: 3 * 24 * 3600,
        }
    }
}

/// Longest time a change request stays approvable (`approvals.request_ttl_secs`): 30 days.
pub const MAX_REQUEST_TTL_SECS: u64 = 30 * 24 * 3600;

/// Key rotation and destruction.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Records rewrapped per transaction during a rotation.
    pub rewrap_batch: usize,
    /// Pause between rewrap batches, in milliseconds (throttles rotation under load).
    pub rewrap_pause_ms: u64,
    /// Waiting period between a second admin's approval and a key's destruction, in seconds
    /// (during it `keys cancel` stops the destruction). At least a day, unless
    /// `allow_short_destroy_wait`.
    pub destroy_wait_secs: u64,
    /// Test deployments only: accept a `destroy_wait_secs` under a day (logged as a WARN at
    /// every start). Under `--dev` any wait is accepted.
    pub allow_short_destroy_wait: bool,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            rewrap_batch: 100,
            rewrap_pause_ms: 20,
            destroy_wait_secs: 7 * 24 * 3600,
            allow_short_destroy_wait: false,
        }
    }
}

/// Log monitoring (ログ監視): per-role thresholds on unseals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// Disable an operator of any role when one of their alerts fires (each role can also
    /// turn it on for itself).
    pub auto_suspend: bool,
    /// Thresholds for handlers.
    pub handler: RoleThresholdsConfig,
    /// Thresholds for services (payroll systems: year-end runs are large, so off by default).
    pub service: RoleThresholdsConfig,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            auto_suspend: false,
            handler: RoleThresholdsConfig {
                unseals_per_hour: 1000,
                distinct_subjects_per_hour: 500,
                hours: String::new(),
                lookup_misses_per_hour: 200,
                auto_suspend: false,
            },
            service: RoleThresholdsConfig::default(),
        }
    }
}

/// One role's thresholds; 0 or an empty `hours` turns a rule off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleThresholdsConfig {
    /// Unseals per operator in any hour.
    pub unseals_per_hour: u32,
    /// Distinct records per operator in any hour.
    pub distinct_subjects_per_hour: u32,
    /// Working hours, `HH:MM-HH:MM` in JST; unseals outside raise an alert.
    pub hours: String,
    /// Lookups that found nothing (numbers probed, not held) per operator in any hour.
    pub lookup_misses_per_hour: u32,
    /// Disable an operator of this role when one of their alerts fires.
    pub auto_suspend: bool,
}

impl MonitoringConfig {
    /// The policy, or why the hours do not parse.
    pub fn policy(&self) -> Result<MonitorPolicy, String> {
        let thresholds = |role: &str, c: &RoleThresholdsConfig| -> Result<Thresholds, String> {
            Ok(Thresholds {
                unseals_per_hour: c.unseals_per_hour,
                distinct_subjects_per_hour: c.distinct_subjects_per_hour,
                lookup_misses_per_hour: c.lookup_misses_per_hour,
                auto_suspend: self.auto_suspend || c.auto_suspend,
                hours: if c.hours.trim().is_empty() {
                    None
                } else {
                    Some(parse_hours(&c.hours).map_err(|e| format!("monitoring.{role}: {e}"))?)
                },
            })
        };
        Ok(MonitorPolicy {
            handler: thresholds("handler", &self.handler)?,
            service: thresholds("service", &self.service)?,
            auto_suspend: self.auto_suspend,
        })
    }
}

/// Retirement and scheduled disposal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// How often the disposal scheduler looks for records past their disposal date, in
    /// seconds (it also runs at start and on `vault-client admin disposal run`).
    pub disposal_interval_secs: u64,
    /// Months each disposal-epoch key covers: 1 (default), 2, 3, 4, 6 or 12. On a TPM, where
    /// each live key holds a persistent handle, 12 keeps at most about eight live.
    pub epoch_months: u32,
    /// How many days in the past a handler or service may date a departure (`left_on`);
    /// earlier dates, or dates before the record was acquired, need a manager (who may retire
    /// it directly). 0 to 366.
    pub retire_backdate_days: u32,
    /// Dev only (`--lifecycle-clock-file`, never from a config file): a file holding a number
    /// of days to add to the lifecycle clock, so tests run years in milliseconds.
    #[serde(skip)]
    pub test_clock_file: Option<PathBuf>,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            disposal_interval_secs: 3600,
            epoch_months: 1,
            retire_backdate_days: 31,
            test_clock_file: None,
        }
    }
}

/// Listener and gRPC settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Serve gRPC server reflection (schema only, no data).
    pub reflection: bool,
    /// Largest accepted request message, in bytes.
    pub max_message_bytes: usize,
    /// How long shutdown waits for in-flight requests, in seconds.
    pub shutdown_grace_secs: u64,
    /// Longest a call may take before it answers DEADLINE_EXCEEDED (1 to 3600 s; a stream's
    /// items are not bound by it, only its start).
    pub request_timeout_secs: u64,
    /// Connections open at once; one over the cap is closed at once.
    pub max_connections: usize,
    /// A connection with no call in flight for this many seconds is closed.
    pub idle_timeout_secs: u64,
    /// A TLS handshake not finished within this many seconds is abandoned.
    pub tls_handshake_timeout_secs: u64,
    /// HTTP/2 keepalive: the server pings a connection after this many seconds without
    /// frames, and closes it when the ping is not answered within the timeout below.
    pub http2_keepalive_interval_secs: u64,
    /// See `http2_keepalive_interval_secs`.
    pub http2_keepalive_timeout_secs: u64,
    /// Concurrent streams (calls) one connection may have.
    pub max_concurrent_streams: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            reflection: false,
            max_message_bytes: 64 * 1024,
            shutdown_grace_secs: 10,
            request_timeout_secs: 60,
            max_connections: 1024,
            idle_timeout_secs: 300,
            tls_handshake_timeout_secs: 10,
            http2_keepalive_interval_secs: 60,
            http2_keepalive_timeout_secs: 20,
            max_concurrent_streams: 256,
        }
    }
}

/// TLS settings (rustls).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Server private key, PEM.
    pub key: PathBuf,
    /// CA that signs client certificates, PEM; enables client certificates.
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate (needs `client_ca`).
    #[serde(default)]
    pub require_client_cert: bool,
}

/// Where data lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Data directory (created 0700): the embedded store, the simulated token, first-admin
    /// token.
    pub data_dir: PathBuf,
    /// Page cache of the embedded store in MiB (bounds the daemon's memory; default 64).
    #[serde(default = "default_cache_mb")]
    pub cache_mb: usize,
    /// Which store: the embedded `redb` file (default) or a `postgres` database that several
    /// daemons share.
    #[serde(default)]
    pub backend: StoreBackend,
    /// PostgreSQL: a libpq URL or key=value string. List several hosts for failover
    /// (`postgresql://locker@db1,db2/locker`); the daemon always asks for a read-write
    /// session. Keep the password out of it: `password_file`.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL: a file (0600) holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: connections at most (default 16).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// PostgreSQL: a CA certificate (PEM); with it every connection must use TLS (rustls,
    /// which checks the chain and the host name).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// PostgreSQL: how long a group commit waits for the chain-head lock (default 3000 ms;
    /// below `audit.commit_timeout_ms`).
    #[serde(default = "default_lock_timeout_ms")]
    pub lock_timeout_ms: u64,
    /// PostgreSQL: how long the server lets a transaction idle before ending it, releasing the
    /// chain head a stalled daemon held (default 1000 ms).
    #[serde(default = "default_idle_in_transaction_ms")]
    pub idle_in_transaction_ms: u64,
}

/// Which store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The embedded redb file in the data directory.
    #[default]
    Redb,
    /// A PostgreSQL database.
    Postgres,
}

fn default_cache_mb() -> usize {
    64
}

fn default_pool_size() -> usize {
    16
}

fn default_lock_timeout_ms() -> u64 {
    3000
}

fn default_idle_in_transaction_ms() -> u64 {
    1000
}

impl StoreConfig {
    /// The embedded store in `data_dir`, with the defaults.
    pub fn embedded(data_dir: PathBuf) -> StoreConfig {
        StoreConfig {
            data_dir,
            cache_mb: default_cache_mb(),
            backend: StoreBackend::Redb,
            url: None,
            password_file: None,
            pool_size: default_pool_size(),
            tls_ca: None,
            lock_timeout_ms: default_lock_timeout_ms(),
            idle_in_transaction_ms: default_idle_in_transaction_ms(),
        }
    }
}

/// Which key backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The simulated token (insecure; dev and tests).
    Sim,
    /// A PKCS#11 token (HSM; SoftHSM in tests), configured in `[backend.pkcs11]`.
    Pkcs11,
    /// A TPM 2.0 (`/dev/tpmrm0`; swtpm in tests), configured in `[backend.tpm]`.
    Tpm,
}

/// A TPM 2.0.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmConfig {
    /// TCTI: `device:/dev/tpmrm0` (with the kernel resource manager) or
    /// `swtpm:host=127.0.0.1,port=2321`.
    pub tcti: String,
    /// First persistent handle for KEK parents (each KEK takes one until destroyed).
    #[serde(default = "default_persistent_base")]
    pub persistent_base: u32,
    /// How many persistent handles from `persistent_base` the locker may use.
    #[serde(default = "default_persistent_count")]
    pub persistent_count: u32,
    /// Encrypt TPM command parameters (a salted session per command): protects the per-record
    /// derived wrapping key on the TPM bus at about ten times the cost. Default off.
    #[serde(default)]
    pub parameter_encryption: bool,
    /// File (mode 0600 or stricter) holding the secret from which the authValue of every TPM
    /// key and NV index the locker creates is derived. Required: without it, anyone who can
    /// open the TPM and read the store's key blobs could use the keys.
    pub auth_file: Option<PathBuf>,
    /// Or the name of a systemd credential holding that secret (`LoadCredential=NAME:FILE` in
    /// the unit): read from `$CREDENTIALS_DIRECTORY/NAME`, so the file itself stays root's.
    pub auth_credential: Option<String>,
}

impl TpmConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.auth_file.is_some() && self.auth_credential.is_some() {
            return invalid("[backend.tpm] takes one of auth_file and auth_credential, not both");
        }
        if self.auth_file.is_none() && self.auth_credential.is_none() {
            return invalid(
                "[backend.tpm] needs auth_file (or auth_credential, under systemd): a 0600 file with the secret the TPM keys' authValue is derived from (e.g. 32 random bytes: head -c 32 /dev/urandom > FILE)",
            );
        }
        if let Some(name) = &self.auth_credential {
            check_credential_name(name, "backend.tpm.auth_credential")?;
        }
        let in_range = (0x8100_0000..=0x81FF_FFFF).contains(&self.persistent_base)
            && self.persistent_count >= 1
            && self
                .persistent_base
                .checked_add(self.persistent_count - 1)
                .is_some_and(|last| last <= 0x81FF_FFFF);
        if !in_range {
            return invalid(
                "[backend.tpm] persistent_base..+persistent_count must lie in 0x81000000..=0x81FFFFFF",
            );
        }
        Ok(())
    }
}

fn default_persistent_base() -> u32 {
    0x8101_8000
}

fn default_persistent_count() -> u32 {
    32
}

/// A PKCS#11 token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// Label of the token; the slot is found by it.
    pub token_label: String,
    /// File holding the user PIN (mode 0600 or stricter). One of `pin_file`, `pin_env` and
    /// `pin_credential`.
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN.
    pub pin_env: Option<String>,
    /// Name of a systemd credential holding the user PIN (`LoadCredential=NAME:FILE` in the
    /// unit): read from `$CREDENTIALS_DIRECTORY/NAME`, so the PIN file itself stays root's.
    pub pin_credential: Option<String>,
    /// Sessions kept open at most (default 16).
    #[serde(default = "default_sessions")]
    pub max_sessions: usize,
}

impl Pkcs11Config {
    fn check(&self) -> Result<(), ConfigError> {
        let sources = [
            self.pin_file.is_some(),
            self.pin_env.is_some(),
            self.pin_credential.is_some(),
        ];
        if sources.iter().filter(|given| **given).count() != 1 {
            return invalid(
                "[backend.pkcs11] needs exactly one of pin_file, pin_env and pin_credential",
            );
        }
        if let Some(name) = &self.pin_credential {
            check_credential_name(name, "backend.pkcs11.pin_credential")?;
        }
        if self.token_label.is_empty() || self.max_sessions == 0 {
            return invalid("[backend.pkcs11] needs a token_label and max_sessions of at least 1");
        }
        Ok(())
    }
}

/// A systemd credential name is one file name in `$CREDENTIALS_DIRECTORY`: never a path that
/// could lead the daemon to read some other file as its PIN.
fn check_credential_name(name: &str, key: &str) -> Result<(), ConfigError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if plain {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "{key} must be a credential name (letters, digits, '-', '_', '.', '@'), as in LoadCredential=NAME:FILE"
        )))
    }
}

/// Where systemd put the credential `name` of this service: `$CREDENTIALS_DIRECTORY/name`.
/// Outside systemd (a one-off `--reanchor`, say) the caller may point `CREDENTIALS_DIRECTORY`
/// at a directory holding a file of that name.
pub fn credential_path(name: &str, key: &str) -> Result<PathBuf, ConfigError> {
    check_credential_name(name, key)?;
    let directory = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
        ConfigError::Invalid(format!(
            "{key} = \"{name}\" is a systemd credential, but CREDENTIALS_DIRECTORY is not set: start the daemon from its unit (LoadCredential={name}:FILE), or for a one-off command set CREDENTIALS_DIRECTORY to a directory holding a file named {name}"
        ))
    })?;
    let path = PathBuf::from(&directory).join(name);
    if !path.exists() {
        // The packaged unit loads every file of one directory as `locker_FILE`.
        let hint = match name.strip_prefix("locker_") {
            Some(file) => format!(
                "; the packaged unit loads /etc/mynumber-locker/credentials/{file} as {name}"
            ),
            None => String::new(),
        };
        return Err(ConfigError::Invalid(format!(
            "{key} = \"{name}\": this service has no such credential (none in {}){hint}",
            PathBuf::from(directory).display()
        )));
    }
    Ok(path)
}

fn default_sessions() -> usize {
    16
}

/// The simulated token's settings (`kind = "sim"`).
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// Let the simulated token read faults from its control file (tests).
    pub fault_control_file: bool,
    /// The token's directory when several dev daemons share it (`--dev-keys`); default: the
    /// data directory, one daemon.
    pub dir: Option<PathBuf>,
}

/// The key store with its settings: a tagged choice, so a backend's settings exist exactly
/// when it is chosen. In the file, `kind` is the tag and the section of that name holds the
/// settings (`kind = "pkcs11"` with `[backend.pkcs11]`).
#[derive(Debug, Clone)]
pub enum KeyStoreConfig {
    /// The simulated token (insecure; dev and tests).
    Sim(SimConfig),
    /// A PKCS#11 token.
    Pkcs11(Pkcs11Config),
    /// A TPM 2.0.
    Tpm(TpmConfig),
}

impl KeyStoreConfig {
    /// The `kind` tag.
    pub fn kind(&self) -> BackendKind {
        match self {
            KeyStoreConfig::Sim(_) => BackendKind::Sim,
            KeyStoreConfig::Pkcs11(_) => BackendKind::Pkcs11,
            KeyStoreConfig::Tpm(_) => BackendKind::Tpm,
        }
    }
}

impl BackendKind {
    /// The name in the file (and the cargo feature that builds it).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Sim => "sim",
            BackendKind::Pkcs11 => "pkcs11",
            BackendKind::Tpm => "tpm",
        }
    }
}

/// Key backend settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "BackendSection")]
pub struct BackendConfig {
    /// The backend and its settings.
    pub keys: KeyStoreConfig,
    /// Accept an insecure backend outside dev mode. Never in production.
    pub allow_insecure: bool,
    /// Per-call timeout, in milliseconds.
    pub timeout_ms: u64,
    /// Backend calls in flight at most.
    pub max_in_flight: usize,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            keys: KeyStoreConfig::Sim(SimConfig::default()),
            allow_insecure: false,
            timeout_ms: 2000,
            max_in_flight: 64,
        }
    }
}

/// `[backend]` as written in the file, before its tag picks the settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendSection {
    kind: Option<BackendKind>,
    allow_insecure: Option<bool>,
    timeout_ms: Option<u64>,
    max_in_flight: Option<usize>,
    sim_fault_control_file: Option<bool>,
    sim_dir: Option<PathBuf>,
    pkcs11: Option<Pkcs11Config>,
    tpm: Option<TpmConfig>,
}

impl TryFrom<BackendSection> for BackendConfig {
    type Error = String;

    /// Picks the settings by the tag, refusing a missing section or one for another backend
    /// (a file that configures two backends says something its author did not mean).
    fn try_from(section: BackendSection) -> Result<Self, String> {
        let defaults = BackendConfig::default();
        let kind = section.kind.unwrap_or(BackendKind::Sim);
        let stray = [
            (
                "[backend.pkcs11]",
                BackendKind::Pkcs11,
                section.pkcs11.is_some(),
            ),
            ("[backend.tpm]", BackendKind::Tpm, section.tpm.is_some()),
            (
                "backend.sim_dir",
                BackendKind::Sim,
                section.sim_dir.is_some(),
            ),
            // `false` is the default and does nothing: the example config writes it out, so a
            // file switched from "sim" to a hardware backend keeps it, and must still start.
            (
                "backend.sim_fault_control_file = true",
                BackendKind::Sim,
                section.sim_fault_control_file == Some(true),
            ),
        ]
        .into_iter()
        .find(|(_, owner, given)| *given && *owner != kind);
        if let Some((what, owner, _)) = stray {
            return Err(format!(
                "{what} belongs to backend.kind = \"{}\", but backend.kind is \"{}\"",
                owner.as_str(),
                kind.as_str()
            ));
        }
        let missing = |kind: BackendKind| {
            format!(
                "backend.kind = \"{0}\" needs a [backend.{0}] section",
                kind.as_str()
            )
        };
        let keys = match kind {
            BackendKind::Sim => KeyStoreConfig::Sim(SimConfig {
                fault_control_file: section.sim_fault_control_file.unwrap_or(false),
                dir: section.sim_dir,
            }),
            BackendKind::Pkcs11 => {
                KeyStoreConfig::Pkcs11(section.pkcs11.ok_or_else(|| missing(kind))?)
            }
            BackendKind::Tpm => KeyStoreConfig::Tpm(section.tpm.ok_or_else(|| missing(kind))?),
        };
        Ok(BackendConfig {
            keys,
            allow_insecure: section.allow_insecure.unwrap_or(defaults.allow_insecure),
            timeout_ms: section.timeout_ms.unwrap_or(defaults.timeout_ms),
            max_in_flight: section.max_in_flight.unwrap_or(defaults.max_in_flight),
        })
    }
}

/// Audit writer settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How long a call waits for its audit entry to commit before failing closed, in ms.
    pub commit_timeout_ms: u64,
    /// Units per transaction at most.
    pub max_batch: usize,
    /// Sign a checkpoint after this many new entries.
    pub checkpoint_every: u64,
    /// Or after this many seconds when there are new entries (and always at shutdown).
    pub checkpoint_interval_secs: u64,
    /// Or after this many milliseconds (50 to 3,600,000), instead of
    /// `checkpoint_interval_secs`: a shorter unanchored window, for a signature and an anchor
    /// write in the key backend per interval (docs/SECURITY.md, docs/PERFORMANCE.md).
    pub checkpoint_interval_ms: Option<u64>,
}

impl AuditConfig {
    /// The longest time between checkpoints while there are new entries.
    pub fn checkpoint_interval(&self) -> Duration {
        match self.checkpoint_interval_ms {
            Some(ms) => Duration::from_millis(ms),
            None => Duration::from_secs(self.checkpoint_interval_secs),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            commit_timeout_ms: 5000,
            max_batch: 512,
            checkpoint_every: 1000,
            checkpoint_interval_secs: 10,
            checkpoint_interval_ms: None,
        }
    }
}

/// Token lifetimes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Lifetime when the issuer does not say, in seconds.
    pub default_ttl_secs: u64,
    /// Longest lifetime an issuer may ask for, in seconds.
    pub max_ttl_secs: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            default_ttl_secs: 30 * 24 * 3600,
            max_ttl_secs: 365 * 24 * 3600,
        }
    }
}

/// The purpose catalogue.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PurposesConfig {
    /// A TOML catalogue replacing the built-in 第4条 list.
    pub file: Option<PathBuf>,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter (`info`, `vault_daemon=debug`, ...). `RUST_LOG` overrides it.
    pub level: String,
    /// `text` (default) or `json`: one JSON object per line, with the same fields, for log
    /// shippers. `--log-format` overrides it.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Most entries between checkpoints (`audit.checkpoint_every`).
pub const MAX_CHECKPOINT_EVERY: u64 = 100_000;
/// Longest time between checkpoints (`audit.checkpoint_interval_secs`): an hour.
pub const MAX_CHECKPOINT_INTERVAL_SECS: u64 = 3600;
/// Shortest time between checkpoints (`audit.checkpoint_interval_ms`).
pub const MIN_CHECKPOINT_INTERVAL_MS: u64 = 50;
/// Shortest waiting period before a key is destroyed (`keys.destroy_wait_secs`): a day.
pub const MIN_DESTROY_WAIT_SECS: u64 = 24 * 3600;
/// Longest waiting period before a key is destroyed: 90 days.
pub const MAX_DESTROY_WAIT_SECS: u64 = 90 * 24 * 3600;
/// Longest token lifetime (`tokens.max_ttl_secs`): a year.
pub const MAX_TOKEN_TTL_SECS: u64 = 365 * 24 * 3600;

/// A setting refused: the message says which and what it must be.
fn invalid<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid(message.into()))
}

impl LifecycleConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if !crate::domain::lifecycle::valid_epoch_months(self.epoch_months) {
            return invalid("lifecycle.epoch_months must be 1, 2, 3, 4, 6 or 12");
        }
        if self.retire_backdate_days > 366 {
            return invalid("lifecycle.retire_backdate_days must be at most 366");
        }
        Ok(())
    }
}

impl ServerConfig {
    /// The listener and its limits; plaintext only on loopback.
    fn check(&self, tls: Option<&TlsConfig>) -> Result<(), ConfigError> {
        match tls {
            None if !self.listen.ip().is_loopback() => {
                return invalid(
                    "server.listen is not a loopback address and [tls] is not configured: plaintext is only allowed on loopback",
                );
            }
            Some(tls) if tls.require_client_cert && tls.client_ca.is_none() => {
                return invalid("tls.require_client_cert needs tls.client_ca");
            }
            _ => {}
        }
        if !(1..=100_000).contains(&self.max_connections) {
            return invalid("server.max_connections must be between 1 and 100000");
        }
        if !(1..=86_400).contains(&self.idle_timeout_secs) {
            return invalid("server.idle_timeout_secs must be between 1 and 86400");
        }
        if !(1..=300).contains(&self.tls_handshake_timeout_secs) {
            return invalid("server.tls_handshake_timeout_secs must be between 1 and 300");
        }
        if !(1..=3600).contains(&self.http2_keepalive_interval_secs)
            || !(1..=600).contains(&self.http2_keepalive_timeout_secs)
        {
            return invalid(
                "server.http2_keepalive_interval_secs must be between 1 and 3600, http2_keepalive_timeout_secs between 1 and 600",
            );
        }
        if !(1..=10_000).contains(&self.max_concurrent_streams) {
            return invalid("server.max_concurrent_streams must be between 1 and 10000");
        }
        if !(1..=3600).contains(&self.request_timeout_secs) {
            return invalid("server.request_timeout_secs must be between 1 and 3600");
        }
        if self.max_message_bytes < 1024 || self.max_message_bytes > 16 << 20 {
            return invalid("server.max_message_bytes must be between 1024 and 16777216");
        }
        Ok(())
    }
}

impl StoreConfig {
    /// The store; a database's lock wait stays below the commit deadline `commit_timeout_ms`.
    fn check(&self, commit_timeout_ms: u64) -> Result<(), ConfigError> {
        if self.cache_mb == 0 || self.cache_mb > 65_536 {
            return invalid("store.cache_mb must be between 1 and 65536");
        }
        if self.backend != StoreBackend::Postgres {
            if self.url.is_some() {
                return invalid("store.url is set but store.backend is not \"postgres\"");
            }
            return Ok(());
        }
        if self.tls_ca.is_none() {
            let url = self.url.as_deref().unwrap_or_default();
            let remote = crate::store::postgres::hosts_off_this_machine(url)
                .map_err(ConfigError::Invalid)?;
            if !remote.is_empty() {
                return invalid(format!(
                    "store.url reaches {} over the network but store.tls_ca is not set: without TLS a man in the middle is the DBA of the store; set store.tls_ca (plaintext is only allowed to loopback or a Unix socket)",
                    remote.join(", ")
                ));
            }
        }
        if self.url.as_deref().is_none_or(|url| url.trim().is_empty()) {
            return invalid("store.backend = \"postgres\" needs store.url");
        }
        if !(1..=1000).contains(&self.pool_size) {
            return invalid("store.pool_size must be between 1 and 1000");
        }
        if self.lock_timeout_ms == 0 || self.lock_timeout_ms >= commit_timeout_ms {
            return invalid(
                "store.lock_timeout_ms must be at least 1 and below audit.commit_timeout_ms (a call must not outwait its commit)",
            );
        }
        if self.idle_in_transaction_ms == 0 {
            return invalid("store.idle_in_transaction_ms must be at least 1");
        }
        Ok(())
    }
}

impl BackendConfig {
    /// The key backend and its section; a TPM's keys cannot serve a shared `store`.
    fn check(&self, dev: bool, store: StoreBackend) -> Result<(), ConfigError> {
        let kind = self.keys.kind();
        if !crate::keys::factory::is_built(kind.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "backend.kind = \"{0}\": this vault-daemon was built without the {0} backend (cargo feature `{0}`; built: {1})",
                kind.as_str(),
                crate::keys::factory::BUILT.join(", ")
            )));
        }
        match &self.keys {
            KeyStoreConfig::Sim(_) => {
                if !dev && !self.allow_insecure {
                    return invalid(
                        "backend.kind = \"sim\" keeps keys in a file and is insecure; use it with --dev, or set backend.allow_insecure = true knowingly",
                    );
                }
            }
            KeyStoreConfig::Pkcs11(p11) => p11.check()?,
            KeyStoreConfig::Tpm(tpm) => {
                tpm.check()?;
                if store == StoreBackend::Postgres {
                    return invalid(
                        "backend.kind = \"tpm\" cannot serve a shared PostgreSQL store: a TPM's keys never leave its machine, so the other daemons could not open what this one seals (duplicating TPM keys between machines is not built). Use a network HSM (pkcs11) for a cluster, or the embedded store with a TPM",
                    );
                }
            }
        }
        if self.timeout_ms == 0 || self.timeout_ms > 600_000 {
            return invalid("backend.timeout_ms must be between 1 and 600000");
        }
        if self.max_in_flight == 0 {
            return invalid("backend.max_in_flight must be at least 1");
        }
        Ok(())
    }
}

impl AuditConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.commit_timeout_ms == 0 || self.commit_timeout_ms > 600_000 {
            return invalid("audit.commit_timeout_ms must be between 1 and 600000");
        }
        // These two bound the unanchored window, what a rollback of the store can hide
        // (docs/SECURITY.md): not past 100,000 entries or an hour.
        if !(1..=MAX_CHECKPOINT_EVERY).contains(&self.checkpoint_every) {
            return invalid("audit.checkpoint_every must be between 1 and 100000");
        }
        if !(1..=MAX_CHECKPOINT_INTERVAL_SECS).contains(&self.checkpoint_interval_secs) {
            return invalid("audit.checkpoint_interval_secs must be between 1 and 3600");
        }
        if self.checkpoint_interval_ms.is_some_and(|ms| {
            !(MIN_CHECKPOINT_INTERVAL_MS..=MAX_CHECKPOINT_INTERVAL_SECS * 1000).contains(&ms)
        }) {
            return invalid("audit.checkpoint_interval_ms must be between 50 and 3600000");
        }
        if self.max_batch == 0 {
            return invalid("audit.max_batch must be at least 1");
        }
        Ok(())
    }
}

impl KeysConfig {
    /// Rotation and destruction; `dev` allows a short destruction wait.
    fn check(&self, dev: bool) -> Result<(), ConfigError> {
        if self.rewrap_batch == 0 || self.rewrap_batch > 10_000 {
            return invalid("keys.rewrap_batch must be between 1 and 10000");
        }
        // The waiting period is when a mistaken or malicious destruction can still be
        // cancelled: not shorter than a day outside --dev without saying so.
        if self.destroy_wait_secs == 0 {
            return invalid("keys.destroy_wait_secs must be at least 86400 (one day), and never 0");
        }
        if !dev && self.destroy_wait_secs < MIN_DESTROY_WAIT_SECS && !self.allow_short_destroy_wait
        {
            return invalid(
                "keys.destroy_wait_secs must be at least 86400 (one day): it is the time to cancel a mistaken or malicious destruction (test deployments: keys.allow_short_destroy_wait = true)",
            );
        }
        if self.destroy_wait_secs > MAX_DESTROY_WAIT_SECS {
            return invalid("keys.destroy_wait_secs must be at most 7776000 (90 days)");
        }
        Ok(())
    }
}

impl ApprovalsConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_REQUEST_TTL_SECS).contains(&self.request_ttl_secs) {
            return invalid("approvals.request_ttl_secs must be between 1 and 2592000 (30 days)");
        }
        Ok(())
    }
}

impl TokenConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.max_ttl_secs > MAX_TOKEN_TTL_SECS {
            return invalid("tokens.max_ttl_secs must be at most 31536000 (one year)");
        }
        if self.default_ttl_secs == 0 || self.default_ttl_secs > self.max_ttl_secs {
            return invalid(
                "tokens.default_ttl_secs must be at least 1 and at most tokens.max_ttl_secs",
            );
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        let config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: display,
            message,
        })?;
        config.validate(false)?;
        Ok(config)
    }

    /// Parses TOML without validating values.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The embedded default of `--dev`: simulated token with fault control, local store,
    /// loopback plaintext.
    pub fn dev(data_dir: PathBuf, listen: SocketAddr) -> Config {
        Config {
            server: ServerConfig {
                listen,
                reflection: true,
                ..ServerConfig::default()
            },
            tls: None,
            store: StoreConfig::embedded(data_dir),
            backend: BackendConfig {
                allow_insecure: true,
                ..BackendConfig::default()
            },
            audit: AuditConfig::default(),
            tokens: TokenConfig {
                default_ttl_secs: 365 * 24 * 3600,
                ..TokenConfig::default()
            },
            purposes: PurposesConfig::default(),
            keys: KeysConfig::default(),
            lifecycle: LifecycleConfig::default(),
            monitoring: MonitoringConfig::default(),
            approvals: ApprovalsConfig::default(),
            metrics: MetricsConfig::default(),
            rate_limits: RateLimitsConfig::unlimited_operators(),
            log: LogConfig::default(),
        }
    }

    /// Checks the settings: each section on its own, then what ties sections together.
    pub fn validate(&self, dev: bool) -> Result<(), ConfigError> {
        if let Err(message) = self.monitoring.policy() {
            return invalid(message);
        }
        self.lifecycle.check()?;
        self.server.check(self.tls.as_ref())?;
        self.store.check(self.audit.commit_timeout_ms)?;
        self.backend.check(dev, self.store.backend)?;
        self.audit.check()?;
        self.keys.check(dev)?;
        self.metrics.check().or_else(invalid)?;
        self.rate_limits.check().or_else(invalid)?;
        self.approvals.check()?;
        self.tokens.check()
    }

    /// Backend call timeout.
    pub fn backend_timeout(&self) -> Duration {
        Duration::from_millis(self.backend.timeout_ms)
    }

    /// Audit commit timeout.
    pub fn commit_timeout(&self) -> Duration {
        Duration::from_millis(self.audit.commit_timeout_ms)
    }

    /// Where the store lives, as configured.
    pub fn store_location(&self) -> Result<crate::trust::StoreLocation, ConfigError> {
        use crate::store::postgres::PgOptions;
        use crate::trust::StoreLocation;
        match self.store.backend {
            StoreBackend::Redb => Ok(StoreLocation::Redb {
                data_dir: self.store.data_dir.clone(),
                cache_bytes: self.store.cache_mb.saturating_mul(1 << 20),
            }),
            StoreBackend::Postgres => {
                let mut options = PgOptions::new(self.store.url.clone().unwrap_or_default());
                options.pool_size = self.store.pool_size;
                options.tls_ca = self.store.tls_ca.clone();
                options.lock_timeout = Duration::from_millis(self.store.lock_timeout_ms);
                options.idle_in_transaction_timeout =
                    Duration::from_millis(self.store.idle_in_transaction_ms);
                options.statement_timeout = self.commit_timeout();
                if let Some(file) = &self.store.password_file {
                    let password = std::fs::read_to_string(file).map_err(|e| {
                        ConfigError::Invalid(format!("store.password_file {}: {e}", file.display()))
                    })?;
                    options.password = Some(secrecy::SecretString::from(
                        password.trim_end_matches(['\n', '\r']).to_owned(),
                    ));
                }
                Ok(StoreLocation::Postgres(options))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write");
        Config::load(&path)
    }

    #[test]
    fn a_partial_rate_table_keeps_the_other_defaults() {
        let text =
            "[store]\ndata_dir = \"/tmp/x\"\n[rate_limits.handler]\nlookup_per_second = 1.0\n";
        let config = Config::parse(text).expect("parses");
        let policy = config.rate_limits.rate_policy();
        assert_eq!(policy.handler.lookup.per_second, 1.0);
        assert_eq!(
            policy.handler.unseal.per_second, 20.0,
            "not lifted by omission"
        );
        assert_eq!(policy.handler.lookup.burst, 60.0);
        assert_eq!(policy.service.lookup.per_second, 1000.0);
    }

    #[test]
    fn shipped_examples_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("deploy");
        let text = std::fs::read_to_string(root.join("locker.example.toml")).expect("example");
        let config = Config::parse(&text).expect("example parses");
        // The example keeps the insecure simulated token refused outside dev mode.
        assert!(config.validate(false).is_err());
        config.validate(true).expect("example is otherwise valid");
        // The production example suspends a handler at its first alert, never a service
        // (a payroll system limited at year end must not be switched off).
        let policy = config.monitoring.policy().expect("policy");
        assert!(policy.handler.auto_suspend && !policy.service.auto_suspend);
        assert!(!policy.auto_suspend);
        assert!(config.rate_limits.rate_policy().handler.lookup.per_second > 0.0);
        crate::domain::purpose::PurposeCatalogue::load(&root.join("purposes.example.toml"))
            .expect("example catalogue loads");
        for (file, kind) in [
            ("softhsm.example.toml", BackendKind::Pkcs11),
            ("network-hsm.example.toml", BackendKind::Pkcs11),
            ("tpm.example.toml", BackendKind::Tpm),
            ("postgres.example.toml", BackendKind::Pkcs11),
        ] {
            let text = std::fs::read_to_string(root.join(file)).expect(file);
            let config = Config::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            config
                .validate(false)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(config.backend.keys.kind(), kind, "{file}");
        }
    }

    #[test]
    fn a_backend_this_build_lacks_is_refused_by_its_feature() {
        let base = "[store]\ndata_dir = \"/x\"\n";
        for (kind, section) in [
            ("sim", "allow_insecure = true\n"),
            (
                "pkcs11",
                "[backend.pkcs11]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_env = \"PIN\"\n",
            ),
            (
                "tpm",
                "[backend.tpm]\ntcti = \"device:/dev/tpmrm0\"\nauth_file = \"/a\"\n",
            ),
        ] {
            let text = format!("{base}[backend]\nkind = \"{kind}\"\n{section}");
            let config = Config::parse(&text).unwrap_or_else(|e| panic!("{kind}: {e}"));
            let checked = config.validate(false);
            if crate::keys::factory::is_built(kind) {
                checked.unwrap_or_else(|e| panic!("{kind}: {e}"));
            } else {
                let message = checked.expect_err(kind).to_string();
                assert!(
                    message.contains(&format!("built without the {kind} backend"))
                        && message.contains(&format!("cargo feature `{kind}`")),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn a_section_for_another_backend_or_none_is_refused_at_parse() {
        let missing = Config::parse("[backend]\nkind = \"pkcs11\"\n").expect_err("no section");
        assert!(
            missing.contains("backend.kind = \"pkcs11\" needs a [backend.pkcs11] section"),
            "{missing}"
        );
        let stray = Config::parse(
            "[backend]\nkind = \"sim\"\n[backend.tpm]\ntcti = \"device:/dev/tpmrm0\"\n",
        )
        .expect_err("stray section");
        assert!(
            stray.contains(
                "[backend.tpm] belongs to backend.kind = \"tpm\", but backend.kind is \"sim\""
            ),
            "{stray}"
        );
        let stray = Config::parse(
            "[backend]\nkind = \"tpm\"\nsim_dir = \"/k\"\n[backend.tpm]\ntcti = \"x\"\n",
        )
        .expect_err("sim setting with a TPM");
        assert!(stray.contains("backend.sim_dir belongs to"), "{stray}");
        let faults = Config::parse(
            "[backend]\nkind = \"pkcs11\"\nsim_fault_control_file = true\n[backend.pkcs11]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_env = \"P\"\n",
        )
        .expect_err("faults for a token that is not the sim");
        assert!(
            faults.contains("sim_fault_control_file = true belongs to"),
            "{faults}"
        );
        // The default written out, as the example does, is no conflict.
        Config::parse(
            "[store]\ndata_dir = \"/x\"\n[backend]\nkind = \"pkcs11\"\nsim_fault_control_file = false\n[backend.pkcs11]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_env = \"P\"\n",
        )
        .expect("the default, written out");
        let unknown = Config::parse("[backend]\nkind = \"sim\"\nsim_faults = true\n")
            .expect_err("unknown field");
        assert!(unknown.contains("unknown field `sim_faults`"), "{unknown}");
        let defaulted = Config::parse("[store]\ndata_dir = \"/x\"\n[backend]\ntimeout_ms = 5\n")
            .expect("defaults");
        assert!(matches!(defaulted.backend.keys, KeyStoreConfig::Sim(_)));
        assert_eq!(
            (
                defaulted.backend.timeout_ms,
                defaulted.backend.max_in_flight
            ),
            (5, 64)
        );
    }

    #[test]
    fn the_postgres_store_is_checked_at_load() {
        let base = "[store]\ndata_dir = \"/x\"\nbackend = \"postgres\"\n";
        let sim = "[backend]\nkind = \"sim\"\nallow_insecure = true\n";
        let check = |extra: &str, backend: &str| {
            parse(&format!("{base}{extra}{backend}")).and_then(|c| {
                c.validate(false)?;
                Ok(c)
            })
        };
        let refused = |extra: &str, backend: &str, says: &str| match check(extra, backend) {
            Err(ConfigError::Invalid(message)) => assert!(message.contains(says), "{message}"),
            other => panic!("{extra}: {other:?}"),
        };
        refused("", sim, "needs store.url");
        refused(
            "url = \"postgresql://localhost/db\"\nlock_timeout_ms = 5000\n",
            sim,
            "below audit.commit_timeout_ms",
        );
        refused(
            "url = \"postgresql://localhost/db\"\npool_size = 0\n",
            sim,
            "pool_size",
        );
        // A TPM's keys stay on its machine: no shared store.
        refused(
            "url = \"postgresql://localhost/db\"\n",
            "[backend]\nkind = \"tpm\"\n[backend.tpm]\ntcti = \"device:/dev/tpmrm0\"\nauth_file = \"/a\"\n",
            "never leave its machine",
        );
        // Plaintext only to this machine: a host over the network needs TLS.
        for remote in [
            "postgresql://192.0.2.10:5432/locker",
            "postgresql://localhost,db2.example/locker",
            "host=db.example dbname=locker",
            "postgresql://localhost/locker?hostaddr=192.0.2.10",
        ] {
            refused(
                &format!("url = \"{remote}\"\n"),
                sim,
                "store.tls_ca is not set",
            );
        }
        for local in [
            "postgresql://127.0.0.1:5432/locker",
            "postgresql://[::1]/locker",
            "host=/run/postgresql dbname=locker",
        ] {
            check(&format!("url = \"{local}\"\n"), sim).expect(local);
        }
        let config = check(
            "url = \"postgresql://h1,h2/db\"\ntls_ca = \"/etc/locker/db-ca.pem\"\n",
            sim,
        )
        .expect("valid");
        assert!(matches!(
            config.store_location(),
            Ok(crate::trust::StoreLocation::Postgres(options)) if options.pool_size == 16
        ));
        // A URL without the backend is a mistake, not silently the embedded store.
        assert!(matches!(
            parse("[store]\ndata_dir = \"/x\"\nurl = \"postgresql://h/db\"\n[backend]\nkind = \"sim\"\nallow_insecure = true\n")
                .and_then(|c| c.validate(false)),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn a_checkpoint_interval_in_milliseconds_is_bounded_and_wins() {
        let base = "[store]\ndata_dir = \"/x\"\n[backend]\nallow_insecure = true\n[audit]\n";
        let config = parse(&format!("{base}checkpoint_interval_ms = 100\n")).expect("valid");
        assert_eq!(
            config.audit.checkpoint_interval(),
            Duration::from_millis(100)
        );
        for bad in [0, 49, 3_600_001] {
            let message = parse(&format!("{base}checkpoint_interval_ms = {bad}\n"))
                .expect_err("out of range")
                .to_string();
            assert!(message.contains("checkpoint_interval_ms"), "{message}");
        }
        let default =
            parse("[store]\ndata_dir = \"/x\"\n[backend]\nallow_insecure = true\n").expect("valid");
        assert_eq!(default.audit.checkpoint_interval(), Duration::from_secs(10));
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse(
            "[store]\ndata_dir = \"/tmp/x\"\n[backend]\nkind = \"sim\"\nallow_insecure = true\n",
        )
        .expect("valid");
        assert_eq!(config.server.listen.port(), 50051);
        assert_eq!(config.audit.commit_timeout_ms, 5000);
    }

    #[test]
    fn refuses_unknown_fields_garbage_and_unsafe_combinations() {
        assert!(matches!(
            parse("[store]\ndata_dir = \"/x\"\ncolour = 1\n"),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(parse("]]]"), Err(ConfigError::Parse { .. })));
        let message = parse("[store]\ndata_dir = \"/x\"\n")
            .expect_err("sim refused")
            .to_string();
        assert!(message.contains("insecure"), "{message}");
        let message = parse(
            "[server]\nlisten = \"0.0.0.0:50051\"\n[store]\ndata_dir = \"/x\"\n[backend]\nallow_insecure = true\n",
        )
        .expect_err("plaintext off loopback refused")
        .to_string();
        assert!(message.contains("loopback"), "{message}");
    }

    #[test]
    fn secrets_come_from_one_source_and_a_credential_is_a_plain_name() {
        let p11 = |pin: &str| {
            parse(&format!(
                "[store]\ndata_dir = \"/x\"\n[backend]\nkind = \"pkcs11\"\n[backend.pkcs11]\nmodule = \"/m.so\"\ntoken_label = \"t\"\n{pin}"
            ))
        };
        p11("pin_credential = \"locker_pkcs11-pin\"\n").expect("a credential alone");
        for (pins, says) in [
            ("", "exactly one of pin_file, pin_env and pin_credential"),
            (
                "pin_file = \"/p\"\npin_credential = \"locker_pkcs11-pin\"\n",
                "exactly one of",
            ),
            ("pin_credential = \"../etc/shadow\"\n", "credential name"),
            ("pin_credential = \"..\"\n", "credential name"),
            ("pin_credential = \"\"\n", "credential name"),
        ] {
            let message = p11(pins).expect_err(pins).to_string();
            assert!(message.contains(says), "{pins}: {message}");
        }
        let tpm = |auth: &str| {
            parse(&format!(
                "[store]\ndata_dir = \"/x\"\n[backend]\nkind = \"tpm\"\n[backend.tpm]\ntcti = \"device:/dev/tpmrm0\"\n{auth}"
            ))
        };
        tpm("auth_credential = \"locker_tpm-auth\"\n").expect("a credential alone");
        let both = tpm("auth_file = \"/a\"\nauth_credential = \"locker_tpm-auth\"\n")
            .expect_err("two sources")
            .to_string();
        assert!(both.contains("not both"), "{both}");
        let none = tpm("").expect_err("no source").to_string();
        assert!(none.contains("auth_credential"), "{none}");
    }

    #[test]
    fn monitoring_hours_are_checked_at_load() {
        let base = "[store]\ndata_dir = \"/x\"\n[backend]\nallow_insecure = true\n";
        let message = parse(&format!(
            "{base}[monitoring.handler]\nhours = \"22:00-07:00\"\n"
        ))
        .expect_err("reversed hours refused")
        .to_string();
        assert!(message.contains("monitoring.handler"), "{message}");
        let config = parse(&format!(
            "{base}[monitoring]\nauto_suspend = true\n[monitoring.handler]\nunseals_per_hour = 5\nhours = \"08:00-20:00\"\n"
        ))
        .expect("valid");
        let policy = config.monitoring.policy().expect("policy");
        assert!(policy.auto_suspend);
        assert_eq!(policy.handler.unseals_per_hour, 5);
        assert_eq!(policy.handler.hours, Some((480, 1200)));
    }
}
