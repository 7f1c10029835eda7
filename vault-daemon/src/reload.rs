//! SIGHUP, the reload signal every daemon's operator knows: the config file is read again and
//! what can change on a running locker is applied — the log filter, the log monitoring
//! thresholds and the per-operator rate limits — each change logged. A file that does not load or validate changes nothing
//! (an ERROR line says why) and the daemon keeps serving. Other sections that changed are named
//! in a WARN line: they take effect at the next restart.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::service::Locker;

/// Swaps the log filter (the directive string of `[log] level`).
pub type LogFilterSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a reload needs: where the config came from, and how to change the log filter.
pub struct Reloader {
    /// The config file (`None` under `--dev`: nothing to re-read).
    pub config_path: Option<PathBuf>,
    /// Applies a new `[log] level`.
    pub set_log_filter: LogFilterSetter,
    /// `RUST_LOG` overrides `[log] level`, at start and on reload.
    pub log_filter_from_env: bool,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

/// The sections a running locker cannot take over, by name, with a comparable rendering.
fn restart_only(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("server", format!("{:?}", config.server)),
        ("tls", format!("{:?}", config.tls)),
        ("store", format!("{:?}", config.store)),
        ("backend", format!("{:?}", config.backend)),
        ("audit", format!("{:?}", config.audit)),
        ("tokens", format!("{:?}", config.tokens)),
        ("purposes", format!("{:?}", config.purposes)),
        ("keys", format!("{:?}", config.keys)),
        ("lifecycle", format!("{:?}", config.lifecycle)),
        ("approvals", format!("{:?}", config.approvals)),
        ("metrics", format!("{:?}", config.metrics)),
        ("log (format)", format!("{:?}", config.log.format)),
        (
            "rate_limits (failed_auth_*, refusal_window_secs)",
            format!("{:?}", config.rate_limits.refusal_policy()),
        ),
    ]
}

impl Reloader {
    /// Re-reads the config and applies what it can; `current` becomes what is in force.
    pub fn reload(&self, current: &mut Config, locker: &Locker) {
        let Some(path) = &self.config_path else {
            tracing::info!("SIGHUP: running with --dev, there is no config file to reload");
            return;
        };
        let loaded = Config::load(path).and_then(|config| config.validate(false).map(|()| config));
        let new = match loaded {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "SIGHUP: reload refused; the settings in force are unchanged");
                return;
            }
        };
        let policy = match new.monitoring.policy() {
            Ok(policy) => policy,
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "SIGHUP: reload refused; the settings in force are unchanged");
                return;
            }
        };
        let mut changed = Vec::new();
        if new.log.level != current.log.level {
            if self.log_filter_from_env {
                tracing::warn!(
                    "SIGHUP: [log] level changed but RUST_LOG is set and takes precedence; log filter unchanged"
                );
            } else if let Err(error) = (self.set_log_filter)(&new.log.level) {
                tracing::error!(%error, "SIGHUP: the new [log] level does not parse; log filter unchanged");
            } else {
                tracing::info!(from = %current.log.level, to = %new.log.level, "SIGHUP: log level reloaded");
                changed.push("log");
                current.log = new.log.clone();
            }
        }
        let previous = locker.set_monitoring(policy.clone());
        if *previous != policy {
            tracing::info!(from = %*previous, to = %policy, "SIGHUP: monitoring thresholds reloaded");
            changed.push("monitoring");
        }
        current.monitoring = new.monitoring.clone();
        let rates = new.rate_limits.rate_policy();
        let previous = locker.set_rate_limits(rates);
        if *previous != rates {
            tracing::info!(from = %*previous, to = %rates, "SIGHUP: rate limits reloaded");
            changed.push("rate_limits");
        }
        current.rate_limits.handler = new.rate_limits.handler.clone();
        current.rate_limits.service = new.rate_limits.service.clone();
        let pending: Vec<&str> = restart_only(current)
            .into_iter()
            .zip(restart_only(&new))
            .filter(|(old, new)| old.1 != new.1)
            .map(|(old, _)| old.0)
            .collect();
        if !pending.is_empty() {
            tracing::warn!(sections = %pending.join(", "), "SIGHUP: these sections changed and take effect at the next restart");
        }
        tracing::info!(changed = %changed.join(", "), "SIGHUP: reload done");
    }
}

/// Reloads on every SIGHUP until the task is aborted. The handler is installed by the caller
/// before the daemon does anything slow, so an early SIGHUP never kills it.
pub async fn watch_hangup(
    mut hangup: tokio::signal::unix::Signal,
    reloader: Reloader,
    mut current: Config,
    locker: Arc<Locker>,
) {
    while hangup.recv().await.is_some() {
        vault_host::service_manager::reloading();
        reloader.reload(&mut current, &locker);
        vault_host::service_manager::reloaded("serving");
    }
}
