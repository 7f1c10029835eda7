//! The state MAC key: one non-extractable HMAC key per deployment, apart from the tenants'
//! blind-index and wrapping keys, that authenticates the store's authority rows
//! ([`RowAuthenticator`]).
//!
//! Row checks happen inside synchronous store reads and writes (on request tasks and on the
//! audit writer's thread). A backend that computes in memory is called inline; a hardware one
//! is called from a worker thread of its own and waited for at most the key-service timeout, so
//! a hung token fails the read (closed) instead of hanging it. On the async runtime the wait is
//! announced with `block_in_place`, so other tasks move to another thread meanwhile. Only rows
//! not yet verified (see `store::sealing`) get here; in steady state, none.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::keys::{KeyBackend, KeyError, KeyRef};
use crate::store::StoreError;
use crate::store::sealing::RowAuthenticator;

/// Tags waiting for the worker at most; more fail at once (the token is hung or swamped).
const QUEUE: usize = 256;

type Reply = SyncSender<Result<[u8; 32], KeyError>>;

/// Computes row tags with the state MAC key in the backend.
pub struct StateMac {
    backend: Arc<dyn KeyBackend>,
    key: KeyRef,
    timeout: Duration,
    worker: Option<SyncSender<(Vec<u8>, Reply)>>,
}

impl StateMac {
    /// Tags with `key` in `backend`, each within `timeout`.
    pub fn new(backend: Arc<dyn KeyBackend>, key: KeyRef, timeout: Duration) -> StateMac {
        let worker = if backend.computes_in_memory() {
            None
        } else {
            let (queue, jobs) = sync_channel(QUEUE);
            // The worker must not keep the backend alive: its last owner drops it on the main
            // thread (SoftHSM crashes at exit when its library was never finalised).
            let (backend, key) = (Arc::downgrade(&backend), key.clone());
            let spawned = std::thread::Builder::new()
                .name("state-mac".into())
                .spawn(move || serve(&backend, &key, jobs));
            match spawned {
                Ok(_) => Some(queue),
                Err(error) => {
                    // Without the worker every tag fails closed (see `tag`).
                    tracing::error!(%error, "cannot start the state MAC worker");
                    let (queue, _) = sync_channel(0);
                    Some(queue)
                }
            }
        };
        StateMac {
            backend,
            key,
            timeout,
            worker,
        }
    }
}

fn serve(backend: &Weak<dyn KeyBackend>, key: &KeyRef, jobs: Receiver<(Vec<u8>, Reply)>) {
    while let Ok((message, reply)) = jobs.recv() {
        let result = match backend.upgrade() {
            Some(backend) => backend.mac(key, &message),
            None => Err(KeyError::Unavailable("key backend closed".into())),
        };
        let _ = reply.send(result);
    }
}

fn failed(error: KeyError) -> StoreError {
    StoreError::Unauthenticated(error.to_string())
}

impl RowAuthenticator for StateMac {
    fn tag(&self, message: &[u8]) -> Result<[u8; 32], StoreError> {
        let Some(worker) = &self.worker else {
            return self.backend.mac(&self.key, message).map_err(failed);
        };
        let (reply, answer) = sync_channel(1);
        worker
            .try_send((message.to_vec(), reply))
            .map_err(|_| failed(KeyError::Unavailable("state MAC queue is full".into())))?;
        let wait = || match answer.recv_timeout(self.timeout) {
            Ok(result) => result.map_err(failed),
            Err(_) => Err(failed(KeyError::Timeout(self.timeout))),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime)
                if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }
}
