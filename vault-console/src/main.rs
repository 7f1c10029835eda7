//! `vault-console`: the web console of MyNumber Locker for the people who approve, watch and
//! file — the 特定個人情報管理責任者, the second admin, the 事務取扱責任者 and the auditor.
//!
//! It is a client of the daemon's gRPC API: every page calls the daemon with the signed-in
//! person's own token, so authorisation, dual control, rate limits and the audit log stay in
//! the daemon. It has no unseal and shows no number. Plain HTTP only on loopback; off this
//! machine it serves HTTPS.

#![forbid(unsafe_code)]

mod daemon;
mod guard;
mod pages;
mod session;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vault_client::ClientConfig;

/// How long a browser has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Command line of the console.
#[derive(Debug, Parser)]
#[command(name = "vault-console", version, about)]
struct Args {
    /// Address to serve on (plain HTTP only on a loopback address; else give --tls-cert).
    #[arg(long, default_value = "127.0.0.1:8480", env = "VAULT_CONSOLE_LISTEN")]
    listen: SocketAddr,
    /// The daemon's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051", env = "VAULT_ENDPOINT")]
    daemon: String,
    /// CA certificate (PEM) that signed the daemon's certificate.
    #[arg(long, value_name = "PEM")]
    daemon_ca: Option<PathBuf>,
    /// This console's client certificate (PEM) for a daemon that asks for one.
    #[arg(long, value_name = "PEM", requires = "daemon_key")]
    daemon_cert: Option<PathBuf>,
    /// The key of --daemon-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "daemon_cert")]
    daemon_key: Option<PathBuf>,
    /// This console's HTTPS certificate chain (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A session ends after this long without a request.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// A session ends this long after sign-in, however active.
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
    absolute_timeout: Duration,
    /// Font for PDFs (default: IPAex or Noto CJK from the system).
    #[arg(long, value_name = "FILE")]
    font: Option<PathBuf>,
}

/// Why the console cannot start.
fn check(args: &Args) -> Result<(), String> {
    if args.tls_cert.is_none() && !args.listen.ip().is_loopback() {
        return Err(format!(
            "--listen {} is not a loopback address: serving sign-in tokens over plain HTTP off this machine is refused; give --tls-cert and --tls-key",
            args.listen
        ));
    }
    if args.idle_timeout.is_zero() || args.absolute_timeout < args.idle_timeout {
        return Err("--idle-timeout must be above zero and at most --absolute-timeout".into());
    }
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    // Before anything is announced: a SIGTERM right after the banner must stop, not kill.
    let shutdown = stop_signal()?;
    check(&args)?;
    let mut config = ClientConfig::new(args.daemon.clone(), None);
    config.ca = args.daemon_ca.clone();
    config.cert = args.daemon_cert.clone();
    config.key = args.daemon_key.clone();
    config.timeout = Duration::from_secs(30);
    let daemon = daemon::DaemonLink::new(&config).map_err(|e| e.to_string())?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(vault_host::https::acceptor(cert, key).map_err(|e| {
            let option = match e.file {
                vault_host::https::PemFile::Certificate => "--tls-cert",
                vault_host::https::PemFile::Key => "--tls-key",
            };
            format!("{option} {e}")
        })?),
        _ => None,
    };
    let app = Arc::new(pages::App {
        daemon,
        sessions: session::Sessions::new(session::Lifetimes {
            idle: args.idle_timeout,
            absolute: args.absolute_timeout,
        }),
        tls: tls.is_some(),
        font: args.font.clone(),
    });
    let router = pages::router(app);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Tests and service managers read this line for the address (port 0 picks a free one).
    println!("vault-console listening on {scheme}://{local}");
    tracing::info!(%local, tls = tls.is_some(), daemon = %args.daemon, "console serving");
    vault_host::service_manager::ready("serving");
    let served = match tls {
        Some(acceptor) => {
            let listener = vault_host::https::TlsListener::new(
                listener,
                acceptor,
                HANDSHAKE_TIMEOUT,
                "console",
            )
            .map_err(|e| e.to_string())?;
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    served.map_err(|e| e.to_string())
}

/// Resolves on SIGTERM (`systemctl stop`) or SIGINT: axum then finishes the requests in
/// flight and the console exits 0, which systemd records as a clean stop.
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("stopping: finishing the requests in flight");
        vault_host::service_manager::stopping("finishing the requests in flight");
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Sessions hold people's tokens: no core dump and no ptrace by a process of the same user.
    if let Err(error) = vault_host::hardening::harden_process() {
        eprintln!("vault-console: {error}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("vault-console: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vault-console: {error}");
            ExitCode::FAILURE
        }
    }
}
