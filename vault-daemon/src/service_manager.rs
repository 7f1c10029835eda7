//! Tells systemd (`Type=notify`) what the daemon is doing: ready once it serves, reloading
//! while a SIGHUP is applied, stopping once a stop signal came. Outside systemd
//! (`NOTIFY_SOCKET` unset) every call does nothing.
//!
//! A notification that cannot be sent is logged and otherwise ignored: the daemon serves the
//! same whether or not its service manager heard it (systemd then reports the start as timed
//! out, which is the visible failure an operator needs).

use sd_notify::NotifyState;

/// The daemon accepts calls: `systemctl start` returns now, and units ordered after it start.
pub fn ready() {
    send(
        &[NotifyState::Ready, NotifyState::Status("serving")],
        "ready",
    );
}

/// A SIGHUP is being applied; [`reloaded`] follows.
pub fn reloading() {
    send(&[NotifyState::Reloading], "reloading");
}

/// The SIGHUP has been applied (or refused: the old configuration stays in force).
pub fn reloaded() {
    send(
        &[NotifyState::Ready, NotifyState::Status("serving")],
        "reloaded",
    );
}

/// A stop signal came: requests drain, the audit writer flushes, a final checkpoint follows.
pub fn stopping() {
    send(
        &[
            NotifyState::Stopping,
            NotifyState::Status("draining; final audit checkpoint follows"),
        ],
        "stopping",
    );
}

fn send(states: &[NotifyState], what: &'static str) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(notification = what, %error, "cannot notify the service manager");
    }
}
