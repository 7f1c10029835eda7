//! One connection to a device that can go away (a PKCS#11 token, a TPM), reconnected on
//! demand: when a call finds the device gone, the connection is dropped and a later call (or
//! the health check) connects again, at most once per [`RECONNECT_INTERVAL`] so a burst of
//! calls against a missing device does not hammer it. Written once for every hardware backend.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::keys::KeyError;

/// Minimum pause between connection attempts while the device is gone.
pub const RECONNECT_INTERVAL: Duration = Duration::from_millis(250);

/// What a call found out about the connection it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The device answered (successfully or not): keep the connection.
    Keep,
    /// The device is gone: drop the connection so the next call reconnects.
    Lost,
}

/// A connection of type `C`, or none while the device is away.
pub struct Reconnecting<C> {
    device: &'static str,
    slot: Mutex<Option<C>>,
    last_attempt: Mutex<Option<Instant>>,
}

impl<C> std::fmt::Debug for Reconnecting<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnecting")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl<C> Reconnecting<C> {
    /// Starts connected: backends connect at start, so a wrong device stops the daemon there.
    /// `device` names it in errors ("PKCS#11 token", "TPM").
    pub fn new(device: &'static str, connection: C) -> Reconnecting<C> {
        Reconnecting {
            device,
            slot: Mutex::new(Some(connection)),
            last_attempt: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<C>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `op` on the connection, calling `connect` first if there is none (refused with
    /// `Unavailable` while the last attempt is younger than [`RECONNECT_INTERVAL`]). Calls are
    /// serialised on the connection; a [`Verdict::Lost`] drops it.
    pub fn with<T>(
        &self,
        connect: impl FnOnce() -> Result<C, KeyError>,
        op: impl FnOnce(&mut C) -> (Result<T, KeyError>, Verdict),
    ) -> Result<T, KeyError> {
        let mut guard = self.lock();
        if guard.is_none() {
            let mut last = self.last_attempt.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < RECONNECT_INTERVAL) {
                return Err(KeyError::Unavailable(format!(
                    "{} unavailable (reconnecting)",
                    self.device
                )));
            }
            *last = Some(Instant::now());
            *guard = Some(connect()?);
            tracing::info!(device = self.device, "key device connected");
        }
        let Some(connection) = guard.as_mut() else {
            return Err(KeyError::Unavailable(format!(
                "no {} connection",
                self.device
            )));
        };
        let (result, verdict) = op(connection);
        if verdict == Verdict::Lost {
            *guard = None;
        }
        result
    }

    /// Drops the connection if `is_lost` picks it: for a backend that checked a handle out
    /// and found the device gone after letting go of the lock (a newer connection stays).
    pub fn forget_if(&self, is_lost: impl FnOnce(&C) -> bool) {
        let mut guard = self.lock();
        if guard.as_ref().is_some_and(is_lost) {
            *guard = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_lost_connection_is_replaced_but_not_more_than_once_per_interval() {
        let connection = Reconnecting::new("test device", 1u32);
        let connects = Cell::new(0);
        let connect = || {
            connects.set(connects.get() + 1);
            Ok(10 + connects.get())
        };
        assert_eq!(connection.with(connect, |c| (Ok(*c), Verdict::Lost)), Ok(1));
        // Gone: the next call connects again (first attempt, no wait).
        assert_eq!(
            connection.with(connect, |c| (Ok(*c), Verdict::Keep)),
            Ok(11)
        );
        connection.forget_if(|c| *c == 11);
        // A second attempt within the interval is refused without touching the device.
        let refused = connection.with(connect, |c| (Ok(*c), Verdict::Keep));
        assert!(
            matches!(&refused, Err(KeyError::Unavailable(m)) if m.contains("test device unavailable (reconnecting)")),
            "{refused:?}"
        );
        assert_eq!(connects.get(), 1);
        std::thread::sleep(RECONNECT_INTERVAL);
        assert_eq!(
            connection.with(connect, |c| (Ok(*c), Verdict::Keep)),
            Ok(12)
        );
        // A failed connect leaves no connection and reports the failure.
        connection.forget_if(|_| true);
        std::thread::sleep(RECONNECT_INTERVAL);
        let failed: Result<u32, KeyError> = connection.with(
            || Err(KeyError::Unavailable("no device".into())),
            |c| (Ok(*c), Verdict::Keep),
        );
        assert_eq!(failed, Err(KeyError::Unavailable("no device".into())));
    }

    #[test]
    fn forget_if_leaves_a_newer_connection() {
        let connection = Reconnecting::new("test device", 2u32);
        connection.forget_if(|c| *c == 1);
        assert_eq!(
            connection.with(|| Ok(9), |c| (Ok(*c), Verdict::Keep)),
            Ok(2)
        );
    }
}
