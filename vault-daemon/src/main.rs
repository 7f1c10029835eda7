//! `vault-daemon`: runs the locker from a config file, or on its embedded default with `--dev`.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vault_daemon::config::Config;

/// MyNumber Locker daemon.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML). See deploy/vault-daemon.example.toml.
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
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
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
    init_logging(&config.log.level);
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
    match runtime.block_on(vault_daemon::server::run(config, dev)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "vault-daemon stopped");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
