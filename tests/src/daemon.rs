//! Starting, stopping and restarting a real daemon process.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use secrecy::SecretString;
use vault_client::{Client, ClientConfig};

/// Path of a workspace binary (`vault-daemon`, `vault-client`) next to the test executable.
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (the README's test command does)",
        path.display()
    );
    path
}

/// A loopback port nothing listens on now (the OS picked it; free until someone binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The `--dev --backend` the end-to-end suites run against: `VAULT_TEST_BACKEND`, default
/// `sim`. The README's test command runs the suites once per backend.
pub fn backend_under_test() -> String {
    std::env::var("VAULT_TEST_BACKEND").unwrap_or_else(|_| "sim".into())
}

/// The store the end-to-end suites run dev daemons on: `VAULT_TEST_STORE` (`redb`, the
/// default, or `postgres`). With `postgres`, `VAULT_TEST_PG_URL` names a PostgreSQL server
/// (`scripts/test.sh` starts one) and each data directory gets its own database there.
pub fn store_under_test() -> Option<String> {
    match std::env::var("VAULT_TEST_STORE").as_deref() {
        Ok("postgres") => Some(std::env::var("VAULT_TEST_PG_URL").expect(
            "VAULT_TEST_STORE=postgres needs VAULT_TEST_PG_URL (scripts/test.sh sets both)",
        )),
        _ => None,
    }
}

/// The database of `data_dir` on the server at `server` (`postgresql://user@host:port`),
/// created on first use; a restart of the daemon in the same directory finds it again.
fn database_for(server: &str, data_dir: &Path) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        data_dir.as_os_str().as_encoded_bytes(),
    );
    let name = format!("t_{}", hex::encode(&digest.as_ref()[..10]));
    let server = server.trim_end_matches('/');
    let created = Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-qAt", "-c"])
        .arg(format!(
            "SELECT 1 FROM pg_database WHERE datname = '{name}'"
        ))
        .output()
        .expect("psql");
    assert!(
        created.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    if String::from_utf8_lossy(&created.stdout).trim() != "1" {
        let made = Command::new("psql")
            .arg(format!("{server}/postgres"))
            .args(["-q", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .expect("psql");
        assert!(
            made.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    format!("{server}/{name}")
}

/// How to start a daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// A config file; without it the daemon runs with `--dev`.
    pub config: Option<PathBuf>,
    /// `RUST_LOG` for the daemon (default `info`; empty: not set, so `[log] level` decides).
    pub log: Option<String>,
    /// `--backend` for `--dev` (default: [`backend_under_test`]).
    pub backend: Option<String>,
    /// `--sim-faults` for `--dev --backend sim`: the token reads faults from its control file.
    pub sim_faults: bool,
    /// `--lifecycle-clock-file` for `--dev`: days to move the lifecycle clock forward.
    pub lifecycle_clock_file: Option<PathBuf>,
    /// Extra environment for the daemon (e.g. `SOFTHSM2_CONF` for a config-file daemon).
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments (e.g. `--log-format json`).
    pub args: Vec<String>,
}

/// A running daemon child process. Killed on drop.
pub struct Daemon {
    child: Option<Child>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// File receiving its standard error (the logs).
    pub log_file: PathBuf,
    /// What it printed on standard output before listening.
    pub banner: Vec<String>,
    options: DaemonOptions,
}

impl Daemon {
    /// Starts `vault-daemon --dev` on a free loopback port in `data_dir`.
    pub fn start_dev(data_dir: &Path) -> Daemon {
        Daemon::start(data_dir, DaemonOptions::default())
    }

    /// Starts a daemon; with a config, the config must name `data_dir` and a listen address.
    pub fn start(data_dir: &Path, options: DaemonOptions) -> Daemon {
        Daemon::try_start(data_dir, options).unwrap_or_else(|refusal| panic!("{refusal}"))
    }

    /// What a daemon says when it refuses to start on `data_dir`; panics if it serves (a
    /// tampered or refused store).
    pub fn refusal(data_dir: &Path, options: DaemonOptions) -> String {
        match Daemon::try_start(data_dir, options) {
            Ok(mut daemon) => {
                daemon.stop();
                panic!(
                    "the daemon served a tampered store in {}",
                    data_dir.display()
                );
            }
            Err(refusal) => refusal,
        }
    }

    /// Starts a daemon, or returns what it said when it refused to start (exit status and
    /// log).
    pub fn try_start(data_dir: &Path, options: DaemonOptions) -> Result<Daemon, String> {
        let mut command = command(data_dir, &options);
        if let Some(parent) = data_dir.parent() {
            std::fs::create_dir_all(parent).expect("create data dir parent");
        }
        let log_file = data_dir.with_extension(format!(
            "{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let stderr = File::create(&log_file).expect("create log file");
        match options.log.as_deref() {
            Some("") => command.env_remove("RUST_LOG"),
            level => command.env("RUST_LOG", level.unwrap_or("info")),
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn vault-daemon");
        let stdout = child.stdout.take().expect("stdout piped");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    // Keep draining so the daemon never blocks on a full pipe.
                    continue;
                }
            }
        });
        let mut banner = Vec::new();
        let addr = loop {
            match received.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("vault-daemon listening on ") {
                        break addr.parse().expect("listen address");
                    }
                    // With JSON logs the line is an object naming the address.
                    let listening = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v["listening"].as_str().map(str::to_owned));
                    if let Some(addr) = listening {
                        break addr.parse().expect("listen address");
                    }
                    banner.push(line);
                }
                Err(waited) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
                    let how = match waited {
                        mpsc::RecvTimeoutError::Timeout => "not listening after 30 s",
                        mpsc::RecvTimeoutError::Disconnected => "exited",
                    };
                    // Its last words first: a summary that keeps a panic's first lines shows
                    // why; the whole log follows (refusal tests look for text anywhere in it).
                    let last = log.lines().last().unwrap_or("(empty log)");
                    return Err(format!(
                        "vault-daemon did not start ({how}, exit {status:?}): {last}\nlog:\n{log}"
                    ));
                }
            }
        };
        if options.config.is_none() {
            let backend = options.backend.clone().unwrap_or_else(backend_under_test);
            // With `--dev-keys DIR` the backend's state is in DIR, shared by several daemons.
            let key_dir = options
                .args
                .iter()
                .position(|arg| arg == "--dev-keys")
                .and_then(|at| options.args.get(at + 1))
                .map_or_else(|| data_dir.to_owned(), PathBuf::from);
            let provisioned = match backend.as_str() {
                "softhsm" => key_dir.join("softhsm").join("user.pin").exists(),
                "tpm" => key_dir.join("swtpm").exists(),
                _ => key_dir.join("hsm-sim").exists(),
            };
            assert!(
                provisioned,
                "the daemon did not provision the {backend} backend"
            );
        }
        Ok(Daemon {
            child: Some(child),
            addr,
            data_dir: data_dir.to_owned(),
            log_file,
            banner,
            options,
        })
    }

    /// The daemon's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// `http://addr` (or `https://localhost:port` when `tls` is set by the caller).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The dev token of `operator` (`dev-handler`, ...).
    pub fn dev_token(&self, operator: &str) -> SecretString {
        vault_client::read_token_file(
            &self
                .data_dir
                .join("tokens")
                .join(format!("{operator}.token")),
        )
        .expect("dev token file")
    }

    /// A client with `token` over plaintext.
    pub async fn client(&self, token: Option<SecretString>) -> Client {
        Client::connect(&ClientConfig::new(self.endpoint(), token))
            .await
            .expect("connect to daemon")
    }

    /// A client with the dev token of `operator`.
    pub async fn dev_client(&self, operator: &str) -> Client {
        self.client(Some(self.dev_token(operator))).await
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("vault-daemon did not stop within 15 s of SIGTERM");
    }

    /// Waits (up to 15 s) for the daemon to exit by itself (after a signal sent by the test).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("vault-daemon did not exit within 15 s");
    }

    /// Starts the daemon again after [`Daemon::stop`], on the same data directory and options.
    pub fn start_in_place(&mut self) {
        assert!(self.child.is_none(), "the daemon is still running");
        *self = Daemon::start(&self.data_dir.clone(), self.options.clone());
    }

    /// The options it was started with.
    pub fn options(&self) -> &DaemonOptions {
        &self.options
    }

    /// Kills the daemon with SIGKILL (no shutdown, no flush) and starts it again on the same
    /// data directory and options.
    pub fn kill_and_restart(mut self) -> Daemon {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Daemon::start(&self.data_dir.clone(), self.options.clone())
    }

    /// Stops and starts again on the same data directory and options.
    pub fn restart(mut self) -> Daemon {
        let status = self.stop();
        assert!(status.success(), "daemon exited with {status}");
        Daemon::start(&self.data_dir.clone(), self.options.clone())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            // A SIGKILLed daemon cannot stop its dev swtpm; do it here so none outlives the
            // test. (Only here: after a clean stop the pid file may already be a successor's.)
            let pid_file = self
                .data_dir
                .join("swtpm")
                .join(vault_daemon::devkit::swtpm::PID_FILE);
            if let Ok(pid) = std::fs::read_to_string(&pid_file) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
                let _ = std::fs::remove_file(pid_file);
            }
        }
    }
}

/// `vault-daemon` for `data_dir` as `options` say: `--config FILE`, or `--dev` with the backend
/// under test on a free loopback port.
fn command(data_dir: &Path, options: &DaemonOptions) -> Command {
    let mut command = Command::new(binary_path("vault-daemon"));
    match &options.config {
        Some(config) => {
            command.arg("--config").arg(config);
        }
        None => {
            let backend = options.backend.clone().unwrap_or_else(backend_under_test);
            command
                .arg("--dev")
                .arg("--backend")
                .arg(backend)
                .arg("--data-dir")
                .arg(data_dir)
                .arg("--listen")
                .arg("127.0.0.1:0");
            if options.sim_faults {
                command.arg("--sim-faults");
            }
            if let Some(file) = &options.lifecycle_clock_file {
                command.arg("--lifecycle-clock-file").arg(file);
            }
            let chose_store = options.args.iter().any(|arg| arg == "--store-url");
            if let (Some(server), false) = (store_under_test(), chose_store) {
                command
                    .arg("--store-url")
                    .arg(database_for(&server, data_dir));
            }
        }
    }
    command.args(&options.args);
    command.env_remove("SOFTHSM2_CONF");
    for (name, value) in &options.env {
        command.env(name, value);
    }
    command.env("TSS2_LOG", "all+NONE");
    command
}

/// Runs `vault-daemon` once on `data_dir` (as `options` say) with `args`, as a host
/// operation that exits (break-glass, restore), and returns its output.
pub fn run_once(data_dir: &Path, options: &DaemonOptions, args: &[&str]) -> std::process::Output {
    command(data_dir, options)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vault-daemon")
}

/// Accepts a restored store on purpose: runs `vault-daemon --reanchor` on `data_dir` with the
/// backend or config of `options`, and returns what it printed. Panics if it fails.
pub fn reanchor(data_dir: &Path, options: &DaemonOptions) -> String {
    let output = command(data_dir, options)
        .arg("--reanchor")
        .stdin(Stdio::null())
        .output()
        .expect("run vault-daemon --reanchor");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && stdout.contains("re-anchored"),
        "--reanchor failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
