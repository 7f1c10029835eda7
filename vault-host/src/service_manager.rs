//! Tells systemd (`Type=notify`) what the process is doing: ready once it serves, reloading
//! while a SIGHUP is applied, stopping once a stop signal came. Outside systemd
//! (`NOTIFY_SOCKET` unset) every call does nothing.
//!
//! A notification that cannot be sent is logged and otherwise ignored: the process serves the
//! same whether or not its service manager heard it (systemd then reports the start as timed
//! out, which is the visible failure an operator needs).

use sd_notify::NotifyState;

/// The process accepts calls: `systemctl start` returns now, and units ordered after it
/// start. `status` is what `systemctl status` shows.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)], "ready");
}

/// A SIGHUP is being applied; [`reloaded`] follows.
pub fn reloading() {
    send(&[NotifyState::Reloading], "reloading");
}

/// The SIGHUP has been applied (or refused: the old configuration stays in force).
pub fn reloaded(status: &str) {
    send(
        &[NotifyState::Ready, NotifyState::Status(status)],
        "reloaded",
    );
}

/// A stop signal came; `status` says what happens before the process exits.
pub fn stopping(status: &str) {
    send(
        &[NotifyState::Stopping, NotifyState::Status(status)],
        "stopping",
    );
}

fn send(states: &[NotifyState], what: &'static str) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(notification = what, %error, "cannot notify the service manager");
    }
}
