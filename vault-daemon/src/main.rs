//! `vault-daemon`: runs the locker from a config file, or on its embedded default with `--dev`.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vault_daemon::config::{Config, KeyStoreConfig, LogFormat};

/// MyNumber Locker daemon.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML). See deploy/locker.example.toml.
    #[arg(long, value_name = "FILE", conflicts_with = "dev")]
    config: Option<PathBuf>,
    /// Run on the embedded default: simulated (insecure) token, local store, loopback plaintext,
    /// a `dev` tenant and one operator per role with tokens in DATA_DIR/tokens/.
    #[arg(long)]
    dev: bool,
    /// Data directory for --dev.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "./vault-data",
        requires = "dev"
    )]
    data_dir: PathBuf,
    /// Listen address for --dev (loopback only without TLS).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:50051",
        requires = "dev"
    )]
    listen: SocketAddr,
    /// --dev on a PostgreSQL database instead of the embedded store: several dev daemons on
    /// one database form a cluster (give them one --dev-keys directory).
    #[arg(long, value_name = "URL", requires = "dev")]
    store_url: Option<String>,
    /// --dev with the key backend's state (the simulated token, or the SoftHSM token) in DIR
    /// instead of the data directory, so several dev daemons share their keys.
    #[arg(long, value_name = "DIR", requires = "dev")]
    dev_keys: Option<PathBuf>,
    /// Key backend for --dev: the simulated token, a SoftHSM token provisioned under
    /// DATA_DIR/softhsm, or an swtpm with its state under DATA_DIR/swtpm.
    #[arg(long, value_enum, default_value_t = DevBackend::Sim, requires = "dev")]
    backend: DevBackend,
    /// With `--backend sim`: let the simulated token read a fault (`unavailable`, `fail`,
    /// `delay MS`) from DATA_DIR/hsm-sim/hsm-sim.fault before every operation. For
    /// fault-injection tests; it costs a file read per key operation.
    #[arg(long, requires = "dev")]
    sim_faults: bool,
    /// Tests only: move the lifecycle clock (retirement, disposal, correction dates) forward
    /// by the number of days written in FILE, read on every use. Audit and token times stay
    /// real. Never available outside --dev.
    #[arg(long, value_name = "FILE", requires = "dev")]
    lifecycle_clock_file: Option<PathBuf>,
    /// After restoring a backup of the data directory: verify the store's whole history,
    /// accept it as current by moving the key backend's anchor to its newest checkpoint (with
    /// a raised counter), record ANCHOR_RESET in the audit log, and exit. Needs the key
    /// backend (PIN or TPM); never done automatically.
    #[arg(long, conflicts_with = "restore_from")]
    reanchor: bool,
    /// Restore a snapshot written by `vault-client backup` into the data directory (which must
    /// hold no store): checked, verified against the key backend, then put in place and
    /// re-anchored; and exit. Needs the same key backend as the daemon that was backed up.
    #[arg(long, value_name = "FILE")]
    restore_from: Option<PathBuf>,
    /// Break-glass, when every admin token is lost or expired: with the daemon stopped, mint
    /// a new token for the admin OPERATOR (enabling it if disabled), write it 0600 to
    /// --token-out (default DATA_DIR/recovered-OPERATOR.token), record ADMIN_RECOVER in the
    /// audit log, and exit. Needs the key backend (PIN or TPM auth file).
    #[arg(long, value_name = "OPERATOR", conflicts_with_all = ["reanchor", "restore_from"])]
    recover_admin: Option<String>,
    /// Serve Prometheus metrics on ADDR (`GET /metrics`); overrides `[metrics] listen`.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Sign and anchor a checkpoint at least every MS milliseconds while there are new
    /// entries (50 to 3600000); overrides `[audit] checkpoint_interval_ms`.
    #[arg(long, value_name = "MS")]
    checkpoint_interval_ms: Option<u64>,
    /// Log lines as `text` or `json` (one object per line); overrides `[log] format`.
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Where --recover-admin writes the token.
    #[arg(long, value_name = "FILE", requires = "recover_admin")]
    token_out: Option<PathBuf>,
}

/// Backends `--dev` can provision: each needs its backend's feature, and the hardware
/// stand-ins the devkit (feature `dev`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DevBackend {
    /// hsm-sim (insecure, keys in a file).
    Sim,
    /// SoftHSM through PKCS#11.
    #[cfg(all(feature = "dev", feature = "pkcs11"))]
    Softhsm,
    /// An swtpm (TPM 2.0 simulator) started on free loopback ports.
    #[cfg(all(feature = "dev", feature = "tpm"))]
    Tpm,
}

/// What keeps a dev backend running while the daemon runs (the swtpm process).
#[cfg(all(feature = "dev", feature = "tpm"))]
type DevGuard = vault_daemon::devkit::swtpm::Swtpm;
/// What keeps a dev backend running while the daemon runs: nothing in this build.
#[cfg(not(all(feature = "dev", feature = "tpm")))]
type DevGuard = ();

/// Prepares the dev backend. SoftHSM reads `SOFTHSM2_CONF` when the library initialises, and
/// changing the environment of a running process is unsafe, so the daemon re-executes itself
/// with the variable set; `exec` replaces this process (same pid, so signals still reach it).
#[cfg_attr(
    not(all(feature = "dev", any(feature = "pkcs11", feature = "tpm"))),
    allow(unused_variables)
)]
fn prepare_dev_backend(
    config: &mut Config,
    backend: DevBackend,
    dev_keys: Option<&std::path::Path>,
) -> Result<Option<DevGuard>, String> {
    match backend {
        DevBackend::Sim => Ok(None),
        #[cfg(all(feature = "dev", feature = "tpm"))]
        DevBackend::Tpm if dev_keys.is_some() => Err(
            "--dev-keys cannot share a TPM: its keys never leave the TPM (duplication between TPMs is not built); use --backend softhsm or sim for several daemons".into(),
        ),
        #[cfg(all(feature = "dev", feature = "tpm"))]
        DevBackend::Tpm => {
            let swtpm = vault_daemon::devkit::swtpm::Swtpm::start(&config.store.data_dir.join("swtpm"), None)
                .map_err(|e| e.to_string())?;
            config.backend.keys = KeyStoreConfig::Tpm(vault_daemon::config::TpmConfig {
                tcti: swtpm.tcti(),
                persistent_base: 0x8101_8000,
                persistent_count: 32,
                parameter_encryption: false,
                auth_file: Some(
                    vault_daemon::devkit::swtpm::auth_file(&config.store.data_dir.join("swtpm"))
                        .map_err(|e| e.to_string())?,
                ),
                auth_credential: None,
            });
            Ok(Some(swtpm))
        }
        #[cfg(all(feature = "dev", feature = "pkcs11"))]
        DevBackend::Softhsm => {
            let token = vault_daemon::devkit::softhsm::provision(
                dev_keys.unwrap_or(&config.store.data_dir),
            )
            .map_err(|e| e.to_string())?;
            if std::env::var_os("SOFTHSM2_CONF").as_deref() != Some(token.conf.as_os_str()) {
                use std::os::unix::process::CommandExt;
                let exe = std::env::current_exe()
                    .map_err(|e| format!("cannot find own executable: {e}"))?;
                let error = std::process::Command::new(exe)
                    .args(std::env::args_os().skip(1))
                    .env("SOFTHSM2_CONF", &token.conf)
                    .exec();
                return Err(format!("cannot re-execute with SOFTHSM2_CONF: {error}"));
            }
            config.backend.keys = KeyStoreConfig::Pkcs11(token.backend);
            Ok(None)
        }
    }
}

/// Installs the log subscriber (text or JSON lines on standard error) with a filter a reload
/// (SIGHUP) can replace; returns the setter for that, and whether `RUST_LOG` chose the filter
/// (then it stays).
fn init_logging(level: &str, format: LogFormat) -> (vault_daemon::reload::LogFilterSetter, bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let from_env = EnvFilter::try_from_default_env().ok();
    let log_filter_from_env = from_env.is_some();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(false),
            )
            .init(),
    }
    let set: vault_daemon::reload::LogFilterSetter = Box::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    (set, log_filter_from_env)
}

/// With the `dhat-heap` feature, every allocation goes through DHAT (issue 24's counts).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    // Written to dhat-heap.json in the working directory when main returns.
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    // Before anything else, and before any secret is read: no core dumps, not dumpable.
    if let Err(error) = vault_host::hardening::harden_process() {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let args = Args::parse();
    let (config, dev) = match (&args.config, args.dev) {
        (Some(path), false) => match Config::load(path) {
            Ok(config) => (config, false),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        },
        (None, true) => (Config::dev(args.data_dir.clone(), args.listen), true),
        _ => {
            eprintln!("error: give --config FILE, or --dev for the embedded default");
            return ExitCode::from(2);
        }
    };
    let mut config = config;
    if dev {
        if args.backend == DevBackend::Sim {
            config.backend.keys = KeyStoreConfig::Sim(vault_daemon::config::SimConfig {
                fault_control_file: args.sim_faults,
                dir: args.dev_keys.clone(),
            });
        }
        config.lifecycle.test_clock_file = args.lifecycle_clock_file.clone();
        if let Some(url) = &args.store_url {
            config.store.backend = vault_daemon::config::StoreBackend::Postgres;
            config.store.url = Some(url.clone());
        }
    }
    if let Some(addr) = args.metrics_listen {
        config.metrics.listen = Some(addr);
    }
    if let Some(ms) = args.checkpoint_interval_ms {
        config.audit.checkpoint_interval_ms = Some(ms);
    }
    if let Some(format) = args.log_format {
        config.log.format = format;
    }
    let (set_log_filter, log_filter_from_env) = init_logging(&config.log.level, config.log.format);
    let reloader = vault_daemon::reload::Reloader {
        config_path: if dev { None } else { args.config.clone() },
        set_log_filter,
        log_filter_from_env,
    };
    // Held until the daemon stops: dropping it stops the dev swtpm.
    let _dev_tpm = if dev {
        match prepare_dev_backend(&mut config, args.backend, args.dev_keys.as_deref()) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        if args.reanchor {
            vault_daemon::server::reanchor(config, dev).await
        } else if let Some(operator) = &args.recover_admin {
            vault_daemon::server::recover_admin(config, dev, operator, args.token_out.clone()).await
        } else if let Some(snapshot) = &args.restore_from {
            vault_daemon::server::restore(config, dev, snapshot).await
        } else {
            vault_daemon::server::run(config, dev, reloader).await
        }
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "vault-daemon stopped");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
