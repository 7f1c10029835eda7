//! Keys: the [`KeyBackend`] trait that every key store implements (the simulated token,
//! PKCS#11 and TPM 2.0, each behind its cargo feature and built by [`factory`]), the anchor
//! beside it ([`anchor::AnchorStore`]), the envelope encryption built on them, and
//! [`KeyService`], which bounds and times every backend call so a stuck token never hangs a
//! request.

pub mod anchor;
pub mod envelope;
pub mod factory;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod reconnect;
#[cfg(feature = "sim")]
pub mod sim;
pub mod state_mac;
#[cfg(feature = "tpm")]
pub mod tpm;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::keys::anchor::{Anchor, AnchorStore};

/// What a backend key is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// Wraps record DEKs (tenant KEK).
    Wrap,
    /// Computes the blind index (tenant MAC key).
    Mac,
    /// Signs audit checkpoints and certificates (ECDSA P-256).
    Sign,
}

/// A backend's reference to one of its keys (a label, an object id, a TPM blob). Opaque to the
/// rest of the locker, which stores it with the tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRef(pub Vec<u8>);

impl std::fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRef({} bytes)", self.0.len())
    }
}

/// Failures of a key backend. Never carries key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The backend is unreachable or failing: callers must fail closed.
    #[error("key backend unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer within the configured timeout.
    #[error("key backend did not answer within {0:?}")]
    Timeout(Duration),
    /// Authenticated decryption failed: wrong key, associated data or tampered bytes.
    #[error("integrity check failed")]
    Integrity,
    /// The key was destroyed.
    #[error("key has been destroyed")]
    Destroyed,
    /// The key is not known to the backend.
    #[error("key not found in backend")]
    NotFound,
    /// Anything else the backend reports.
    #[error("key backend error: {0}")]
    Other(String),
}

/// A key store that holds keys and uses them without ever handing them out.
///
/// Methods are blocking (PKCS#11 and TPM calls are); [`KeyService`] runs them off the async
/// runtime with a timeout — except wrap, unwrap and MAC of a backend that says it
/// [computes in memory](KeyBackend::computes_in_memory), which run on the calling task.
pub trait KeyBackend: Send + Sync + 'static {
    /// Short name for logs and health (`sim`, `pkcs11`, `tpm`).
    fn name(&self) -> &'static str;
    /// Whether keys are protected by hardware. The simulated token says false.
    fn is_secure(&self) -> bool;
    /// Creates a key for `key_use`; `label` names it for humans.
    fn create_key(&self, key_use: KeyUse, label: &str) -> Result<KeyRef, KeyError>;
    /// Destroys a key so nothing wrapped under it can be unwrapped again.
    fn destroy_key(&self, key: &KeyRef) -> Result<(), KeyError>;
    /// Wraps a data key under `kek`, binding `aad`.
    fn wrap(&self, kek: &KeyRef, dek: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// Unwraps a data key; fails with [`KeyError::Integrity`] if anything does not match.
    fn unwrap(
        &self,
        kek: &KeyRef,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError>;
    /// HMAC-SHA256 of `data` under `key`.
    fn mac(&self, key: &KeyRef, data: &[u8]) -> Result<[u8; 32], KeyError>;
    /// ECDSA P-256 / SHA-256 signature of `message` as fixed-size r ‖ s (64 bytes); verify
    /// with ring's `ECDSA_P256_SHA256_FIXED`.
    fn sign(&self, key: &KeyRef, message: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// Public key of a signing key (uncompressed SEC1 point).
    fn public_key(&self, key: &KeyRef) -> Result<Vec<u8>, KeyError>;
    /// Checks the backend answers.
    fn self_test(&self) -> Result<(), KeyError>;
    /// Whether `wrap`, `unwrap` and `mac` are pure in-memory computation that never waits on
    /// a device or a file. Such calls take well under a microsecond,
    /// so the key service runs them on the calling task: a hop to the blocking pool would cost
    /// more than the call. Hardware backends keep the default, `false`.
    fn computes_in_memory(&self) -> bool {
        false
    }
}

/// A key backend and the anchor it is paired with.
#[derive(Clone)]
pub struct OpenedKeys {
    /// Holds and uses the keys.
    pub backend: Arc<dyn KeyBackend>,
    /// Keeps the freshness anchor.
    pub anchor: Arc<dyn AnchorStore>,
}

impl OpenedKeys {
    /// A backend that keeps its own anchor (every backend built here does).
    pub fn self_anchored<B: KeyBackend + AnchorStore>(backend: B) -> OpenedKeys {
        let backend = Arc::new(backend);
        OpenedKeys {
            backend: Arc::clone(&backend) as Arc<dyn KeyBackend>,
            anchor: backend,
        }
    }
}

/// Runs backend calls on the blocking pool, at most `max_in_flight` at once, each within
/// `timeout`. A call that times out keeps its slot until the backend returns, so a hung token
/// makes later calls queue and time out rather than pile up threads.
#[derive(Clone)]
pub struct KeyService {
    backend: Arc<dyn KeyBackend>,
    anchor: Arc<dyn AnchorStore>,
    slots: Arc<Semaphore>,
    timeout: Duration,
}

/// The key-backend operations timed in the metrics.
pub const TIMED_OPERATIONS: [&str; 6] =
    ["create_key", "destroy_key", "wrap", "unwrap", "mac", "sign"];

impl KeyService {
    /// Wraps a backend and its anchor.
    pub fn new(keys: OpenedKeys, max_in_flight: usize, timeout: Duration) -> Self {
        KeyService {
            backend: keys.backend,
            anchor: keys.anchor,
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
            timeout,
        }
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Whether the backend is hardware-protected.
    pub fn is_secure(&self) -> bool {
        self.backend.is_secure()
    }

    async fn call<T, F>(&self, op: F) -> Result<T, KeyError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn KeyBackend) -> Result<T, KeyError> + Send + 'static,
    {
        self.call_on(Arc::clone(&self.backend), op).await
    }

    /// Runs `op` on `target` (the backend or the anchor) within the slots and the timeout.
    async fn call_on<B, T, F>(&self, target: Arc<B>, op: F) -> Result<T, KeyError>
    where
        B: ?Sized + Send + Sync + 'static,
        T: Send + 'static,
        F: FnOnce(&B) -> Result<T, KeyError> + Send + 'static,
    {
        let backend = target;
        let slots = Arc::clone(&self.slots);
        let work = async move {
            let permit = slots
                .acquire_owned()
                .await
                .map_err(|_| KeyError::Unavailable("key service closed".into()))?;
            tokio::task::spawn_blocking(move || {
                let result = op(backend.as_ref());
                drop(permit);
                result
            })
            .await
            .map_err(|_| KeyError::Other("key backend call panicked".into()))?
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(KeyError::Timeout(self.timeout)))
    }

    /// Runs `work` as operation `op`, recording its latency and failure in the metrics.
    async fn timed<T>(
        op: &'static str,
        work: impl std::future::Future<Output = Result<T, KeyError>>,
    ) -> Result<T, KeyError> {
        let started = std::time::Instant::now();
        let result = work.await;
        crate::metrics::metrics().backend(op, started.elapsed(), result.is_err());
        result
    }

    /// See [`KeyBackend::create_key`].
    pub async fn create_key(&self, key_use: KeyUse, label: String) -> Result<KeyRef, KeyError> {
        Self::timed(
            "create_key",
            self.call(move |b| b.create_key(key_use, &label)),
        )
        .await
    }

    /// See [`KeyBackend::destroy_key`].
    pub async fn destroy_key(&self, key: KeyRef) -> Result<(), KeyError> {
        Self::timed("destroy_key", self.call(move |b| b.destroy_key(&key))).await
    }

    /// Runs a hot-path operation (wrap, unwrap, mac): on the calling task when the backend
    /// computes in memory, else like every other call.
    async fn call_hot<T, F>(&self, op: F) -> Result<T, KeyError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn KeyBackend) -> Result<T, KeyError> + Send + 'static,
    {
        if self.backend.computes_in_memory() {
            op(self.backend.as_ref())
        } else {
            self.call(op).await
        }
    }

    /// See [`KeyBackend::wrap`].
    pub async fn wrap(
        &self,
        kek: KeyRef,
        dek: Zeroizing<Vec<u8>>,
        aad: Vec<u8>,
    ) -> Result<Vec<u8>, KeyError> {
        Self::timed("wrap", self.call_hot(move |b| b.wrap(&kek, &dek, &aad))).await
    }

    /// See [`KeyBackend::unwrap`].
    pub async fn unwrap(
        &self,
        kek: KeyRef,
        wrapped: Vec<u8>,
        aad: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        Self::timed(
            "unwrap",
            self.call_hot(move |b| b.unwrap(&kek, &wrapped, &aad)),
        )
        .await
    }

    /// See [`KeyBackend::mac`].
    pub async fn mac(&self, key: KeyRef, data: Zeroizing<Vec<u8>>) -> Result<[u8; 32], KeyError> {
        Self::timed("mac", self.call_hot(move |b| b.mac(&key, &data))).await
    }

    /// See [`KeyBackend::sign`].
    pub async fn sign(&self, key: KeyRef, message: Vec<u8>) -> Result<Vec<u8>, KeyError> {
        Self::timed("sign", self.call(move |b| b.sign(&key, &message))).await
    }

    /// See [`KeyBackend::public_key`].
    pub async fn public_key(&self, key: KeyRef) -> Result<Vec<u8>, KeyError> {
        self.call(move |b| b.public_key(&key)).await
    }

    /// See [`KeyBackend::self_test`].
    pub async fn self_test(&self) -> Result<(), KeyError> {
        self.call(|b| b.self_test()).await
    }

    /// See [`AnchorStore::read_anchor`].
    pub async fn read_anchor(&self) -> Result<Option<Anchor>, KeyError> {
        self.call_on(Arc::clone(&self.anchor), |a| a.read_anchor())
            .await
    }

    /// See [`AnchorStore::write_anchor`].
    pub async fn write_anchor(&self, anchor: Anchor) -> Result<(), KeyError> {
        self.call_on(Arc::clone(&self.anchor), move |a| a.write_anchor(&anchor))
            .await
    }

    /// The backend itself (for the state MAC, which calls it from its own thread).
    pub fn backend(&self) -> Arc<dyn KeyBackend> {
        Arc::clone(&self.backend)
    }

    /// The timeout of every backend call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
