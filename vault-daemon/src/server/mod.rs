//! Assembles and runs the daemon: data directory, key backend (`backend`), store, audit
//! writer, service, bootstrap, gRPC server (TLS, health, reflection), the background tasks
//! (`tasks`), and graceful shutdown that drains requests and flushes the audit writer; and the
//! one-off maintenance commands (`maintenance`).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use vault_proto::v1::admin_server::AdminServer;
use vault_proto::v1::locker_server::LockerServer;

use crate::audit::checkpointer::CheckpointPolicy;
use crate::audit::witness::Witness;
use crate::audit::writer::{AuditWriter, WriterConfig};
use crate::clock::{Clock, OffsetFileClock, SystemClock};
use crate::config::Config;
use crate::domain::purpose::PurposeCatalogue;
use crate::grpc::admin::AdminApi;
use crate::grpc::locker::LockerApi;
use crate::keys::KeyService;
use crate::reload::Reloader;
use crate::service::rotation::{RewrapPolicy, run_rewrap};
use crate::service::run_disposal_schedule;
use crate::service::{Locker, TokenPolicy};
use crate::store::Store;

mod backend;
mod maintenance;
#[cfg(any(feature = "pkcs11", feature = "tpm"))]
mod secrets;
mod tasks;

pub use maintenance::{reanchor, recover_admin, restore};

use backend::open_backend;
use tasks::{
    announce, check_witness, refresh_store_figures, run_refusal_flush, watch_health, watch_log,
    write_witness,
};

/// How long a stopping daemon waits to hand its duty leases over.
const LEASE_RELEASE_WAIT: Duration = Duration::from_secs(2);
/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Purpose catalogue problem.
    #[error(transparent)]
    Purposes(#[from] crate::domain::purpose::PurposeError),
    /// Key backend problem.
    #[error("key backend: {0}")]
    Keys(#[from] crate::keys::KeyError),
    /// Store problem.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Startup step of the service failed.
    #[error("startup: {0}")]
    Service(#[from] crate::error::Error),
    /// The store does not check out against the key backend.
    #[error("{0}")]
    Trust(#[from] crate::trust::TrustError),
    /// The daemon stopped, but not cleanly: the log could not be anchored or flushed.
    #[error("unclean stop: {0}")]
    Shutdown(String),
    /// The witness of this data directory.
    #[error(transparent)]
    Witness(#[from] crate::audit::witness::WitnessError),
    /// File system or network problem.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// gRPC transport problem.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection setup failed.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

fn io_context(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let context = context.into();
    move |source| DaemonError::Io { context, source }
}

fn prepare_data_dir(dir: &Path) -> Result<(), DaemonError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_context(format!("create data dir {}", dir.display())))?;
    let mode = std::fs::metadata(dir)
        .map_err(io_context(format!("stat data dir {}", dir.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            io_context(format!("restrict data dir {} to 0700", dir.display())),
        )?;
        tracing::warn!(dir = %dir.display(), was = format!("{:o}", mode & 0o777), "data dir was accessible to other users; reset to 0700");
    }
    Ok(())
}

fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>, DaemonError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let read =
        |path: &Path| std::fs::read(path).map_err(io_context(format!("read {}", path.display())));
    // A handshake that never finishes gives up its place after the timeout.
    let mut server = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?))
        .timeout(Duration::from_secs(
            config.server.tls_handshake_timeout_secs,
        ));
    if let Some(ca) = &tls.client_ca {
        server = server
            .client_ca_root(Certificate::from_pem(read(ca)?))
            .client_auth_optional(!tls.require_client_cert);
    }
    Ok(Some(server))
}

/// SIGTERM and SIGINT, caught from the first moment of `run`: a stop that comes while the daemon
/// is still starting (or between its "listening" line and its first poll) drains and
/// checkpoints like any other, instead of killing the process with the signal's default.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals, DaemonError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())
                .map_err(io_context("install the SIGTERM handler"))?,
            int: signal(SignalKind::interrupt())
                .map_err(io_context("install the SIGINT handler"))?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received: draining requests"),
            _ = self.int.recv() => tracing::info!("SIGINT received: draining requests"),
        }
    }
}

/// The audit writer on `store` as the config tunes it.
fn start_writer(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    verified: &crate::audit::integrity::Verified,
) -> Result<(AuditWriter, crate::audit::writer::WriterThread), DaemonError> {
    Ok(AuditWriter::start(
        Arc::clone(store),
        Arc::clone(clock),
        WriterConfig {
            commit_timeout: config.commit_timeout(),
            max_batch: config.audit.max_batch,
            ..WriterConfig::default()
        },
        verified.head,
        verified.records.map(|(_, digest)| digest),
    )?)
}

/// A locker opened on a verified store, with its writer running.
struct Opened {
    locker: Arc<Locker>,
    keys: KeyService,
    writer: AuditWriter,
    writer_thread: crate::audit::writer::WriterThread,
    verified: crate::audit::integrity::Verified,
    witness: Witness,
}

/// Opens the key backend and the store (verifying it against the backend's anchor), starts
/// the audit writer and assembles the locker as `config` says.
async fn open_locker(config: &Config) -> Result<Opened, DaemonError> {
    let purposes = match &config.purposes.file {
        Some(path) => PurposeCatalogue::load(path)?,
        None => PurposeCatalogue::default(),
    };

    let backend = open_backend(config)?;
    if !backend.backend.is_secure() {
        tracing::warn!(
            backend = backend.backend.name(),
            "key backend is NOT hardware-protected: keys are stored in the data directory. Development and tests only."
        );
    }
    let keys = KeyService::new(
        backend,
        config.backend.max_in_flight,
        config.backend_timeout(),
    );
    keys.self_test().await?;

    let (store, verified) = crate::trust::open_store(&config.store_location()?, &keys).await?;
    let witness = Witness::in_dir(&config.store.data_dir);
    {
        let (store, witness) = (Arc::clone(&store), witness.clone());
        tokio::task::spawn_blocking(move || check_witness(&witness, store.as_ref()))
            .await
            .map_err(|e| {
                DaemonError::Trust(crate::trust::TrustError::Refused(format!(
                    "checking the audit witness failed: {e}"
                )))
            })??;
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (writer, writer_thread) = start_writer(config, &store, &clock, &verified)?;
    let stop_writer = writer.clone();
    let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let locker = Arc::new(
        Locker::with_destroy_wait(
            store,
            writer,
            keys.clone(),
            purposes,
            clock,
            TokenPolicy {
                default_ttl_ms: ms(config.tokens.default_ttl_secs),
                max_ttl_ms: ms(config.tokens.max_ttl_secs),
            },
            CheckpointPolicy {
                every: config.audit.checkpoint_every,
                interval: config.audit.checkpoint_interval(),
            },
            ms(config.keys.destroy_wait_secs),
        )
        .with_lifecycle_clock(match &config.lifecycle.test_clock_file {
            Some(file) => Arc::new(OffsetFileClock::new(file.clone())),
            None => Arc::new(SystemClock),
        })
        .with_epoch_months(config.lifecycle.epoch_months)
        .with_request_ttl(ms(config.approvals.request_ttl_secs))
        .with_retire_backdate_days(config.lifecycle.retire_backdate_days)
        .with_rate_limits(config.rate_limits.rate_policy())
        .with_refusal_policy(config.rate_limits.refusal_policy())
        .with_monitoring(
            config
                .monitoring
                .policy()
                .map_err(crate::config::ConfigError::Invalid)?,
        )
        .with_shared_store(config.store.backend == crate::config::StoreBackend::Postgres),
    );
    Ok(Opened {
        locker,
        keys,
        writer: stop_writer,
        writer_thread,
        verified,
        witness,
    })
}

/// Runs the daemon until SIGTERM or SIGINT. `dev` provisions the dev tenant and operators.
pub async fn run(config: Config, dev: bool, reloader: Reloader) -> Result<(), DaemonError> {
    // First of all: from here on SIGHUP reloads instead of killing the daemon.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(io_context("install the SIGHUP handler"))?;
    let stop_signals = StopSignals::install()?;
    config.validate(dev)?;
    let reload_config = config.clone();
    let data_dir = config.store.data_dir.clone();
    prepare_data_dir(&data_dir)?;
    if config.keys.destroy_wait_secs < crate::config::MIN_DESTROY_WAIT_SECS {
        tracing::warn!(
            destroy_wait_secs = config.keys.destroy_wait_secs,
            "keys.destroy_wait_secs is under a day (allow_short_destroy_wait, or --dev): a key destruction can hardly be cancelled in time. Test deployments only."
        );
    }
    let Opened {
        locker,
        keys,
        writer: stop_writer,
        writer_thread,
        verified,
        witness,
    } = open_locker(&config).await?;
    let checkpointer = locker.checkpointer().clone();
    checkpointer.resume(&verified).await;
    let provisioning = locker.provisioning_lease().await?;
    checkpointer.ensure_key().await?;

    let mut stdout = std::io::stdout();
    if dev {
        for (operator, path) in locker.provision_dev(&data_dir).await? {
            announce(
                &mut stdout,
                config.log.format,
                &format!("dev token for {operator}: {}", path.display()),
                serde_json::json!({"operator": operator, "token_file": path.display().to_string()}),
            );
        }
    } else {
        for path in locker.ensure_first_admin(&data_dir).await? {
            tracing::warn!(path = %path.display(), "empty store: created a first admin ('admin', 'admin2': dual control needs two); its token is in this file (mode 0600). Hand it to its holder and delete it here.");
        }
    }
    drop(provisioning);

    // Every backend operation and alert rule has its counter from the start (at 0).
    crate::metrics::metrics().known_from_start(
        &crate::keys::TIMED_OPERATIONS,
        &crate::service::monitor::RULES,
    );
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let anchor_keys = keys.clone();
    let health_task = tokio::spawn(watch_health(
        keys,
        checkpointer.clone(),
        stop_writer.clone(),
        reporter,
    ));
    let checkpoint_task = tokio::spawn(checkpointer.clone().run());
    let anchored = locker
        .shares_store()
        .then(|| (anchor_keys, Arc::clone(locker.store())));
    let log_check_task = tokio::spawn(watch_log(stop_writer.clone(), witness.clone(), anchored));
    let token_expiry_task = tokio::spawn(crate::service::token_expiry::watch_token_expiry(
        Arc::clone(&locker),
    ));
    let hangup_task = tokio::spawn(crate::reload::watch_hangup(
        hangup,
        reloader,
        reload_config,
        Arc::clone(&locker),
    ));
    let rewrap_task = tokio::spawn(run_rewrap(
        Arc::clone(&locker),
        RewrapPolicy {
            batch: config.keys.rewrap_batch,
            pause: Duration::from_millis(config.keys.rewrap_pause_ms),
        },
    ));

    let refusal_task = tokio::spawn(run_refusal_flush(Arc::clone(&locker)));
    let metrics_task = match config.metrics.listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(io_context(format!("listen for metrics on {addr}")))?;
            let local = listener
                .local_addr()
                .map_err(io_context("read the metrics address"))?;
            let bearer = match &config.metrics.bearer_token_file {
                Some(path) => Some(crate::metrics_listener::read_bearer_token(path).map_err(
                    |e| DaemonError::Config(crate::config::ConfigError::Invalid(e.to_string())),
                )?),
                None => None,
            };
            let serve = match (&config.metrics.tls_cert, &config.metrics.tls_key) {
                (Some(cert), Some(key)) => {
                    let listener = crate::metrics_listener::tls_listener(listener, cert, key)
                        .map_err(|e| {
                            DaemonError::Config(crate::config::ConfigError::Invalid(e.to_string()))
                        })?;
                    tracing::info!(%local, "metrics listening (TLS)");
                    announce(
                        &mut stdout,
                        config.log.format,
                        &format!("metrics listening on {local} (TLS)"),
                        serde_json::json!({"metrics": local.to_string(), "tls": true}),
                    );
                    tokio::spawn(crate::metrics::serve(listener, bearer))
                }
                _ => {
                    if config.metrics.plaintext_off_loopback() {
                        tracing::warn!(
                            %local,
                            "metrics are served in plaintext to the network (metrics.public = true): anyone who reaches {local} sees tenants, refusal reasons and which alert rules fired"
                        );
                    }
                    tracing::info!(%local, "metrics listening");
                    announce(
                        &mut stdout,
                        config.log.format,
                        &format!("metrics listening on {local}"),
                        serde_json::json!({"metrics": local.to_string(), "tls": false}),
                    );
                    tokio::spawn(crate::metrics::serve(listener, bearer))
                }
            };
            Some((
                serve,
                tokio::spawn(refresh_store_figures(
                    Arc::clone(&locker),
                    config.metrics.records_refresh_secs,
                )),
            ))
        }
        None => None,
    };
    let disposal_task = tokio::spawn(run_disposal_schedule(
        Arc::clone(&locker),
        Duration::from_secs(config.lifecycle.disposal_interval_secs.max(1)),
    ));
    // On a shared store one daemon at a time monitors the whole cluster's log.
    let log_watch_task = locker.shares_store().then(|| {
        tokio::spawn(crate::service::log_watch::run_log_watch(Arc::clone(
            &locker,
        )))
    });

    let max = config.server.max_message_bytes;
    let locker_service = LockerServer::new(LockerApi::new(Arc::clone(&locker)))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let admin_service =
        AdminServer::new(AdminApi::new(Arc::clone(&locker))).max_decoding_message_size(max);
    // Reflection in both versions: grpcurl before 1.9 and Python's grpcio-reflection speak
    // only v1alpha.
    let (reflection, reflection_alpha) = if config.server.reflection {
        let schema = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(vault_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        (Some(schema().build_v1()?), Some(schema().build_v1alpha()?))
    } else {
        (None, None)
    };
    // The call guard keeps the server's deadline (DEADLINE_EXCEEDED, audited), not tonic.
    let connections = Arc::new(crate::grpc::connections::ConnectionRegistry::default());
    let guard = crate::grpc::call_guard::CallGuardLayer::new(
        Arc::clone(&locker),
        Duration::from_secs(config.server.request_timeout_secs),
        Arc::clone(&connections),
    );
    // HTTP/2 windows: a stream may have 64 KiB in flight; the connection 4 MiB, which also sets
    // h2's budget for small DATA frames left unread (half the connection window): a batch
    // client whose items wait on flow control (past the read-ahead queue) stays within it
    // instead of having its connection closed (GOAWAY too_many_data_frames).
    let mut builder = Server::builder()
        .concurrency_limit_per_connection(config.server.max_concurrent_streams as usize)
        .max_concurrent_streams(Some(config.server.max_concurrent_streams))
        .http2_keepalive_interval(Some(Duration::from_secs(
            config.server.http2_keepalive_interval_secs,
        )))
        .http2_keepalive_timeout(Some(Duration::from_secs(
            config.server.http2_keepalive_timeout_secs,
        )))
        .initial_stream_window_size(Some(64 << 10))
        .initial_connection_window_size(Some(4 << 20))
        // h2's guard against reset floods closes a connection once 20 streams are reset before
        // the server accepted them; a daemon that stalled for 10 s under 32 callers with 1 s
        // deadlines sees hundreds (each caller giving up on its own), and all the other calls
        // on that connection died with it. 4,096 per connection still bounds a flood.
        .http2_max_pending_accept_reset_streams(Some(4096));
    if let Some(tls) = tls_config(&config)? {
        builder = builder.tls_config(tls)?;
    }
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(io_context(format!("listen on {}", config.server.listen)))?;
    let local = listener
        .local_addr()
        .map_err(io_context("read listen address"))?;
    tracing::info!(%local, tls = config.tls.is_some(), "listening");
    announce(
        &mut stdout,
        config.log.format,
        &format!("vault-daemon listening on {local}"),
        serde_json::json!({"listening": local.to_string()}),
    );
    let _ = stdout.flush();
    vault_host::service_manager::ready("serving");

    let (signalled, on_signal) = tokio::sync::oneshot::channel();
    let server = builder
        .layer(guard)
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_optional_service(reflection_alpha)
        .add_service(locker_service)
        .add_service(admin_service)
        // Nagle's algorithm would hold a response's trailing frames until the client's delayed
        // ACK (≈ 40 ms on Linux): that was the whole of the p99 under load.
        .serve_with_incoming_shutdown(
            crate::grpc::connections::accept(
                listener,
                crate::grpc::connections::ConnectionLimits {
                    max_connections: config.server.max_connections,
                    idle_timeout: Duration::from_secs(config.server.idle_timeout_secs),
                },
                connections,
            ),
            async {
                stop_signals.received().await;
                vault_host::service_manager::stopping("draining; final audit checkpoint follows");
                let _ = signalled.send(());
            },
        );
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    // Draining waits for clients to close their connections; a client that never does must
    // not keep the daemon (and its unflushed writer) alive, so the grace period bounds it.
    let served = tokio::select! {
        served = server => served,
        () = async {
            let _ = on_signal.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing remaining connections");
            Ok(())
        }
    };
    health_task.abort();
    let _ = health_task.await;
    log_check_task.abort();
    let _ = log_check_task.await;
    hangup_task.abort();
    let _ = hangup_task.await;
    token_expiry_task.abort();
    let _ = token_expiry_task.await;
    // A batch cut short is simply redone after the restart: the job's cursor is in the store.
    rewrap_task.abort();
    disposal_task.abort();
    if let Some(task) = log_watch_task {
        task.abort();
    }
    let _ = rewrap_task.await;
    refusal_task.abort();
    let _ = refusal_task.await;
    if let Some((serve, refresh)) = metrics_task {
        serve.abort();
        refresh.abort();
        let _ = serve.await;
        let _ = refresh.await;
    }
    // The counts of refused calls still in their window go into the log before it closes.
    if let Err(error) = locker.flush_refusals(true).await {
        tracing::error!(%error, "could not record the last refusal counts");
    }
    let store = Arc::clone(locker.store());
    drop(locker);
    checkpoint_task.abort();
    let _ = checkpoint_task.await;
    // Anchor the whole log before stopping: a verifier then finds no unanchored tail.
    let final_checkpoint = match checkpointer.checkpoint_final().await {
        Ok(Some(checkpoint)) => {
            tracing::info!(seq = checkpoint.seq, "final audit checkpoint signed");
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(error) => {
            tracing::error!(%error, "final audit checkpoint failed; the newest entries stay unanchored");
            Err(error)
        }
    };
    drop(checkpointer);
    // The duties are handed over now (every duty task has stopped, the final checkpoint is
    // signed): another daemon takes each on its next round instead of waiting for the lease
    // to run out.
    // Bounded: a database that is gone must not hold the stop (the leases then run out).
    let released = tokio::task::spawn_blocking(move || {
        for duty in [
            crate::store::lease::CHECKPOINTS,
            crate::store::lease::REWRAP,
            crate::store::lease::DISPOSAL,
            crate::service::log_watch::MONITOR,
        ] {
            if let Err(error) = store.release_lease(duty, crate::store::lease::holder_id()) {
                tracing::warn!(duty, %error, "cannot give up the duty's lease; it runs out by itself");
                return;
            }
        }
    });
    if tokio::time::timeout(LEASE_RELEASE_WAIT, released)
        .await
        .is_err()
    {
        tracing::warn!("the duty leases were not given up in time; they run out by themselves");
    }
    // Everything queued is committed; requests still running get UNAVAILABLE and release nothing.
    stop_writer.shutdown().await;
    let flushed = stop_writer.healthy();
    writer_thread.join();
    write_witness(&witness, &stop_writer);
    if flushed {
        tracing::info!("audit writer flushed; stopped");
    } else {
        tracing::error!("the audit writer's last commit failed; stopped");
    }
    served.map_err(DaemonError::from)?;
    // A stop that could not anchor or flush the log is not a clean one: exit non-zero.
    match (final_checkpoint, flushed) {
        (Ok(()), true) => Ok(()),
        (Err(error), _) => Err(DaemonError::Shutdown(format!(
            "final audit checkpoint failed: {error}"
        ))),
        (Ok(()), false) => Err(DaemonError::Shutdown(
            "the audit writer's last commit failed".into(),
        )),
    }
}
