//! The connections the daemon accepts: at most `max_connections` at once (a connection over
//! the cap is closed at once, and counted in one WARN line every few seconds), each closed
//! once it has had no call in flight for `idle_timeout`. TLS handshakes have their own timeout
//! (tonic's, set where TLS is configured), and HTTP/2 keepalive pings find dead peers during
//! long calls; so neither idle sockets nor stalled handshakes pile up.
//!
//! Idleness is counted in calls, not bytes: keepalive pings and their answers are traffic, and
//! a long call is not idle. The call guard tells the registry when a call on a connection
//! starts and ends, finding the connection by its peer address.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Limits on accepted connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// A connection with no call in flight for this long is closed.
    pub idle_timeout: Duration,
}

/// What one connection is doing, shared between its IO and the calls on it.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` when the last call ended (or the connection opened).
    last_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection becomes idle-expired, if it is quiet now.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle)
    }
}

/// The open connections by peer address, so a call can be counted on its connection.
#[derive(Default)]
pub struct ConnectionRegistry {
    open: Mutex<HashMap<SocketAddr, Arc<Activity>>>,
    refused: AtomicU64,
}

/// A call in flight on a connection; ending it (drop) lets the connection's idle time run.
pub struct CallOnConnection(Option<Arc<Activity>>);

impl Drop for CallOnConnection {
    fn drop(&mut self) {
        if let Some(activity) = self.0.take() {
            activity.touch();
            activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl ConnectionRegistry {
    /// Counts a call on the connection from `peer` until the returned guard is dropped.
    pub fn call_started(&self, peer: Option<SocketAddr>) -> CallOnConnection {
        let activity = peer.and_then(|peer| {
            self.open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&peer)
                .cloned()
        });
        if let Some(activity) = &activity {
            activity.in_flight.fetch_add(1, Ordering::AcqRel);
        }
        CallOnConnection(activity)
    }

    /// Connections open now.
    pub fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// An accepted connection: holds its place under the cap, and ends (reads fail) once idle.
pub struct LimitedIo {
    inner: TcpStream,
    peer: Option<SocketAddr>,
    activity: Arc<Activity>,
    registry: Arc<ConnectionRegistry>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for LimitedIo {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            self.registry
                .open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&peer);
        }
    }
}

impl LimitedIo {
    /// Whether the connection has been idle for its whole timeout; re-arms the timer if not.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let next = match self.activity.idle_deadline(self.idle) {
                Some(deadline) if deadline <= Instant::now() => return true,
                Some(deadline) => deadline,
                // A call is running: look again after another period.
                None => Instant::now() + self.idle,
            };
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(next));
        }
    }
}

impl Connected for LimitedIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for LimitedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending if this.poll_idle(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle",
            ))),
            other => other,
        }
    }
}

impl AsyncWrite for LimitedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections on `listener` within `limits`, as a stream for tonic's
/// `serve_with_incoming`. Accepting runs in its own task; it ends when the stream is dropped.
pub fn accept(
    listener: TcpListener,
    limits: ConnectionLimits,
    registry: Arc<ConnectionRegistry>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<LimitedIo>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::spawn(async move {
        let mut last_warning: Option<Instant> = None;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                drop(stream);
                let refused = registry.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        refused_so_far = refused,
                        "connection limit reached; new connections are closed"
                    );
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            let activity = Arc::new(Activity {
                in_flight: AtomicUsize::new(0),
                last_ms: AtomicU64::new(0),
                epoch: Instant::now(),
            });
            registry
                .open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(peer, Arc::clone(&activity));
            let io = LimitedIo {
                inner: stream,
                peer: Some(peer),
                activity,
                registry: Arc::clone(&registry),
                idle: limits.idle_timeout,
                timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
                _permit: permit,
            };
            if sender.send(Ok(io)).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (listener, addr)
    }

    #[tokio::test]
    async fn the_cap_closes_extra_connections_and_idle_ones_end() {
        use tokio_stream::StreamExt;
        let (listener, addr) = listener().await;
        let registry = Arc::new(ConnectionRegistry::default());
        let mut incoming = accept(
            listener,
            ConnectionLimits {
                max_connections: 2,
                idle_timeout: Duration::from_millis(300),
            },
            Arc::clone(&registry),
        );
        let _a = TcpStream::connect(addr).await.expect("a");
        let _b = TcpStream::connect(addr).await.expect("b");
        let mut first = incoming.next().await.expect("first").expect("io");
        let _second = incoming.next().await.expect("second").expect("io");
        assert_eq!(registry.open_count(), 2);
        // The third is closed by the daemon at once: its read sees the end.
        let mut c = TcpStream::connect(addr).await.expect("c");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), c.read(&mut byte))
            .await
            .expect("closed promptly");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

        // A call in flight keeps a connection open past the idle time; once it ends, the
        // connection's reads fail after the idle time.
        let call = registry.call_started(Some(_a.local_addr().expect("addr")));
        let mut buf = [0u8; 8];
        let waited = tokio::time::timeout(Duration::from_millis(700), first.read(&mut buf)).await;
        assert!(waited.is_err(), "not closed while a call runs");
        drop(call);
        let ended = tokio::time::timeout(Duration::from_secs(2), first.read(&mut buf))
            .await
            .expect("idle connection ended");
        assert_eq!(ended.expect_err("idle").kind(), io::ErrorKind::TimedOut);
        drop(first);
        assert_eq!(registry.open_count(), 1);
    }
}
