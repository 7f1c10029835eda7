//! A Debian 12 machine booted under a real systemd, for the package tests: `systemd-nspawn`
//! boots the tree `scripts/test-machine.sh` makes (debootstrap, cached under `target/`) with
//! `--volatile=overlay`, so whatever a test installs or breaks vanishes with the machine.
//!
//! The machine has a network of its own (`--private-network`: loopback only, so a daemon it
//! runs on any port meets nothing of the host's tests) and sees one host directory read-only at
//! `/srv/share`. Commands run in it through `nsenter` into every namespace of its systemd, with
//! a clean environment.
//!
//! One machine at a time per test binary: nspawn locks the tree it boots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long a boot may take before the test fails (a cold boot here takes 2–5 s).
const BOOT_DEADLINE: Duration = Duration::from_secs(90);

/// A booted machine; dropping it powers it off.
pub struct Machine {
    nspawn: Child,
    init_pid: u32,
    log: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

/// What a command in the machine returned.
#[derive(Debug)]
pub struct Ran {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output, lossily UTF-8.
    pub stdout: String,
    /// Standard error, lossily UTF-8.
    pub stderr: String,
}

/// The workspace root (scripts, deploy, target).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// Runs a script of the workspace and returns its last line of output (a path, say).
pub fn workspace_script(script: &str, args: &[&str]) -> String {
    let output = Command::new(workspace_root().join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

impl Machine {
    /// Boots a fresh machine with `share` visible read-only at `/srv/share`, and waits until
    /// its systemd reports the boot finished.
    pub fn boot(share: &Path) -> Machine {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let root = PathBuf::from(workspace_script("scripts/test-machine.sh", &[]));
        let log = share.with_extension("boot.log");
        let nspawn = Command::new("systemd-nspawn")
            // Without these two it needs a system bus on the host, which this one lacks.
            .args(["--register=no", "--keep-unit", "--quiet"])
            .arg("-D")
            .arg(&root)
            .args(["--volatile=overlay", "--private-network"])
            .arg(format!("--bind-ro={}:/srv/share", share.display()))
            .args(["-b", "--console=read-only"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("boot log"))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("boot log"),
            ))
            .spawn()
            .expect("systemd-nspawn (package systemd-container; scripts/install-deps.sh)");
        let started = Instant::now();
        let init_pid = loop {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", nspawn.id()))
                    .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                break pid.parse().expect("pid");
            }
            assert!(
                started.elapsed() < BOOT_DEADLINE,
                "nspawn started no init: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let machine = Machine {
            nspawn,
            init_pid,
            log,
            _turn: turn,
        };
        loop {
            let state = machine.sh("systemctl is-system-running");
            match state.stdout.trim() {
                "running" => break,
                // A unit of the minimal system that failed is no reason to stop a package test,
                // but it is named.
                "degraded" => {
                    eprintln!(
                        "machine degraded: {}",
                        machine.sh("systemctl --failed --no-legend").stdout
                    );
                    break;
                }
                _ => {}
            }
            assert!(
                started.elapsed() < BOOT_DEADLINE,
                "no boot within {BOOT_DEADLINE:?} ({state:?}): {}",
                std::fs::read_to_string(&machine.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        machine
    }

    /// Runs `script` with `/bin/sh -c` in the machine, as root, with a clean environment.
    pub fn sh(&self, script: &str) -> Ran {
        let output = Command::new("nsenter")
            .args(["-t", &self.init_pid.to_string(), "-a", "--"])
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
                "HOME=/root",
                "/bin/sh",
                "-c",
                script,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter (package util-linux)");
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs `script` and returns its standard output; a failure fails the test with the output
    /// and the tail of the journal.
    pub fn ok(&self, script: &str) -> String {
        let ran = self.sh(script);
        assert!(
            ran.code == 0,
            "{script:?} exited {}:\n{}{}\njournal:\n{}",
            ran.code,
            ran.stdout,
            ran.stderr,
            self.sh("journalctl --no-pager -n 60").stdout
        );
        ran.stdout
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SIGTERM to nspawn powers the machine off cleanly; a machine that hangs is killed.
        if let Some(pid) = rustix::process::Pid::from_raw(self.nspawn.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}
