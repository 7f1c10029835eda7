//! What a MyNumber Locker server process needs of its host, written once for the daemon and
//! the web console: hardening the process before it reads a secret, telling systemd what it
//! is doing (`Type=notify`), and serving HTTPS from a listener whose TLS handshakes cannot
//! stall the accept loop.

#![forbid(unsafe_code)]

pub mod hardening;
pub mod https;
pub mod service_manager;
