//! An swtpm for dev mode and tests: a TPM 2.0 simulator on a free loopback port pair (the
//! control port must be the server port + 1: the swtpm TCTI connects to both), its state in a
//! directory, stopped when the guard is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::devkit::{DevkitError, private_dir, random_hex, which, write_private};

/// File in the state directory holding the simulator's pid (so a supervisor can stop it if
/// its parent was killed without cleaning up).
pub const PID_FILE: &str = "swtpm.pid";

/// File in the state directory holding the secret of the dev TPM keys' authValue.
pub const AUTH_FILE: &str = "tpm-auth.secret";

/// The dev secret file of the TPM keys' authValue in `state_dir`, created (0600, 32 random
/// bytes as hex) if missing.
pub fn auth_file(state_dir: &Path) -> Result<PathBuf, DevkitError> {
    private_dir(state_dir)?;
    let path = state_dir.join(AUTH_FILE);
    if !path.exists() {
        write_private(&path, &random_hex(32)?)?;
    }
    Ok(path)
}

/// A running swtpm; killed on drop.
pub struct Swtpm {
    child: Option<Child>,
    /// Server port (control port is `port + 1`).
    pub port: u16,
    /// State directory.
    pub state_dir: PathBuf,
}

impl std::fmt::Debug for Swtpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swtpm")
            .field("port", &self.port)
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

/// Lowest port tried below the ephemeral range (clear of the well-known and registered ports
/// dev machines commonly run, such as PostgreSQL's 5432).
const FIXED_RANGE_START: u16 = 10_000;

/// A free port P on loopback whose P+1 is free too.
///
/// Looked for below the kernel's ephemeral range first: the TPM TCTI opens a connection per
/// command, and on a busy test machine the ephemeral range fills with their TIME_WAIT sockets
/// (tens of thousands), any of which makes P+1 unbindable. Ports below the range are never
/// handed out for outgoing connections, so they stay clear. The start is random so that
/// daemons started in parallel rarely probe the same ports.
pub fn free_port_pair() -> Result<u16, DevkitError> {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let pair_free = |port: u16| {
        TcpListener::bind(("127.0.0.1", port))
            .and_then(|first| {
                TcpListener::bind(("127.0.0.1", port + 1)).map(|second| (first, second))
            })
            .is_ok()
    };
    if ephemeral_start > FIXED_RANGE_START + 2 {
        let span = ephemeral_start - 1 - FIXED_RANGE_START;
        let offset = u16::from_str_radix(&random_hex(2)?, 16).unwrap_or(0) % span;
        for step in 0..256u16 {
            let port = FIXED_RANGE_START + (offset + step * 2) % span;
            if pair_free(port) {
                return Ok(port);
            }
        }
    }
    for _ in 0..64 {
        let first = TcpListener::bind("127.0.0.1:0").map_err(|source| DevkitError::Io {
            context: "find a free port".into(),
            source,
        })?;
        let port = first
            .local_addr()
            .map_err(|source| DevkitError::Io {
                context: "local addr".into(),
                source,
            })?
            .port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(DevkitError::ToolFailed {
        tool: "swtpm",
        message: "no free loopback port pair".into(),
    })
}

/// Stops an swtpm left running on `state_dir` by a daemon that was killed (its pid file names
/// it, and it holds the state's lock, so a new one could not start). Only a process whose
/// command line is swtpm's with this very state directory is touched.
fn stop_stale(state_dir: &Path) {
    let Ok(pid) = std::fs::read_to_string(state_dir.join(PID_FILE)) else {
        return;
    };
    let pid = pid.trim();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return;
    }
    let ours = |pid: &str| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            text.contains("swtpm") && text.contains(&format!("dir={}", state_dir.display()))
        })
    };
    if !ours(pid) {
        return;
    }
    tracing::warn!(pid, state = %state_dir.display(), "stopping an swtpm left over from a previous run");
    for signal in ["-TERM", "-KILL"] {
        let _ = Command::new("kill").args([signal, pid]).status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while ours(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !ours(pid) {
            return;
        }
    }
}

impl Swtpm {
    /// Starts an swtpm with its state in `state_dir` on a free port pair (or on `port` when
    /// given, to restart one on the same ports), and waits until it accepts connections.
    pub fn start(state_dir: &Path, port: Option<u16>) -> Result<Swtpm, DevkitError> {
        let swtpm = which("swtpm", "swtpm")?;
        private_dir(state_dir)?;
        stop_stale(state_dir);
        let mut last_error = String::new();
        let requested = port;
        for _ in 0..8 {
            let port = match requested {
                Some(port) => port,
                None => free_port_pair()?,
            };
            let mut child = Command::new(&swtpm)
                .args(["socket", "--tpm2", "--tpmstate"])
                .arg(format!("dir={}", state_dir.display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .args(["--flags", "not-need-init,startup-clear"])
                .arg("--pid")
                .arg(format!("file={}", state_dir.join(PID_FILE).display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| DevkitError::Io {
                    context: "start swtpm".into(),
                    source,
                })?;
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                    }
                    last_error = format!("swtpm exited with {status}: {}", stderr.trim());
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(Swtpm {
                        child: Some(child),
                        port,
                        state_dir: state_dir.to_owned(),
                    });
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = "swtpm did not accept connections within 5 s".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if requested.is_some() {
                // The same ports may still be in TIME_WAIT from the previous instance.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Err(DevkitError::ToolFailed {
            tool: "swtpm",
            message: last_error,
        })
    }

    /// The TCTI string for this swtpm.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Kills the simulator (its state stays on disk).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.state_dir.join(PID_FILE));
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pair must sit where outgoing connections' TIME_WAIT sockets cannot: below the
    /// ephemeral range.
    #[test]
    fn the_port_pair_is_below_the_ephemeral_range_and_bindable() {
        let ephemeral_start: u16 =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
                .expect("port range")
                .split_whitespace()
                .next()
                .expect("start")
                .parse()
                .expect("number");
        for _ in 0..20 {
            let port = free_port_pair().expect("pair");
            assert!(
                port >= FIXED_RANGE_START && port + 1 < ephemeral_start,
                "{port}"
            );
            let _first = TcpListener::bind(("127.0.0.1", port)).expect("P free");
            let _second = TcpListener::bind(("127.0.0.1", port + 1)).expect("P+1 free");
        }
    }
}
