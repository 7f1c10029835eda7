//! A real PostgreSQL 15 per test, as the cluster suites need it: its own directory and
//! loopback port, initialised and run as the `postgres` user (initdb refuses root), stopped
//! immediately on drop. Binaries from Debian's postgresql-15 (`scripts/install-deps.sh`); a
//! test fails, never skips, when they are missing.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian installs the server binaries (not on PATH).
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A runtime for the PostgreSQL store's connections in tests that drive the store directly
/// (its pooled connections live on it, so keep it for as long as the store).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A running PostgreSQL server.
pub struct Postgres {
    data: PathBuf,
    /// Its loopback port.
    pub port: u16,
}

fn as_postgres(program: &str, args: &[&str]) -> Output {
    let binary = Path::new(BIN).join(program);
    assert!(
        binary.exists(),
        "{} is missing: install postgresql-15 (scripts/install-deps.sh)",
        binary.display()
    );
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(binary)
        .args(args)
        .output()
        .expect("runuser (the tests run as root, as CI does)")
}

impl Postgres {
    /// Initialises a cluster in `dir/postgres` and starts it on a free loopback port.
    /// `dir` is made traversable for the `postgres` user (mode 0711).
    pub fn start(dir: &Path) -> Postgres {
        std::fs::create_dir_all(dir).expect("test directory");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
            .expect("let postgres traverse the test directory");
        let data = dir.join("postgres");
        std::fs::create_dir_all(&data).expect("data directory");
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&data)
            .status()
            .expect("chown");
        assert!(chown.success(), "chown the data directory to postgres");
        let path = data.to_str().expect("utf-8 path");
        let init = as_postgres(
            "initdb",
            &["-D", path, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        Postgres::configure_and_start(data)
    }

    /// Appends this server's port and sockets to `data`'s configuration and starts it.
    fn configure_and_start(data: PathBuf) -> Postgres {
        let port = crate::free_port();
        let sockets = data.join("sock");
        std::fs::create_dir_all(&sockets).expect("socket directory");
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&sockets)
            .status();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).expect("conf");
        conf.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = on\n",
            sockets.display()
        ));
        std::fs::write(data.join("postgresql.conf"), conf).expect("write conf");
        let server = Postgres { data, port };
        server.pg_ctl(&["-w", "start"]);
        server
    }

    fn pg_ctl(&self, args: &[&str]) {
        let path = self.data.to_str().expect("utf-8 path");
        let log = self.data.join("server.log");
        let mut all = vec!["-D", path, "-l", log.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        let done = as_postgres("pg_ctl", &all);
        assert!(
            done.status.success(),
            "pg_ctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&done.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// A standby of this server in `dir/standby` (pg_basebackup -R: it streams from this
    /// one), started on its own port. Make it synchronous with [`Postgres::sql`] on the
    /// primary (`synchronous_standby_names`).
    pub fn start_standby(&self, dir: &Path) -> Postgres {
        let data = dir.join("standby");
        std::fs::create_dir_all(&data).expect("standby directory");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
            .expect("let postgres traverse the test directory");
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&data)
            .status()
            .expect("chown");
        assert!(chown.success());
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
            .expect("standby mode");
        let port = self.port.to_string();
        let copied = as_postgres(
            "pg_basebackup",
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-R",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "--no-sync",
                "--checkpoint=fast",
            ],
        );
        assert!(
            copied.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&copied.stderr)
        );
        // The copy carries the primary's port and sockets; the appended lines win.
        Postgres::configure_and_start(data)
    }

    /// Turns TLS on with this certificate and key (PEM; copied into the data directory, the key
    /// 0600 and owned by `postgres`, as the server demands) and restarts the server.
    pub fn enable_tls(&self, cert: &Path, key: &Path) {
        let (cert_in, key_in) = (self.data.join("server.crt"), self.data.join("server.key"));
        std::fs::copy(cert, &cert_in).expect("copy the certificate");
        std::fs::copy(key, &key_in).expect("copy the key");
        std::fs::set_permissions(&key_in, std::fs::Permissions::from_mode(0o600))
            .expect("key mode");
        let chown = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&cert_in)
            .arg(&key_in)
            .status()
            .expect("chown");
        assert!(chown.success());
        let mut conf = std::fs::read_to_string(self.data.join("postgresql.conf")).expect("conf");
        conf.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(self.data.join("postgresql.conf"), conf).expect("write conf");
        self.pg_ctl(&["-w", "restart"]);
    }

    /// Starts this server again after [`Postgres::stop_immediate`].
    pub fn start_again(&self) {
        self.pg_ctl(&["-w", "start"]);
    }

    /// Promotes this standby to primary (and waits until it is).
    pub fn promote(&self) {
        self.pg_ctl(&["-w", "promote"]);
    }

    /// Runs `sql` with psql on database `database`; returns what it printed (unaligned, tuples
    /// only).
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--", "psql", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The connection string of the `postgres` database as superuser `postgres`.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The connection string of database `name` as superuser `postgres`.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Holds the session advisory lock `key` in database `name` (from a psql session of its
    /// own) until the holder is released or dropped.
    pub fn hold_advisory_lock(&self, name: &str, key: i64) -> AdvisoryLockHolder {
        let mut session = Command::new("runuser")
            .args(["-u", "postgres", "--", "psql", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-d", name, "-v", "ON_ERROR_STOP=1", "-qAt"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("psql");
        let mut input = session.stdin.take().expect("stdin");
        writeln!(input, "SELECT pg_advisory_lock({key});\n\\echo locked").expect("send");
        let output = session.stdout.take().expect("stdout");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(output));
        assert!(
            lines.any(|line| line.is_ok_and(|line| line == "locked")),
            "psql did not take the lock"
        );
        AdvisoryLockHolder {
            session,
            input: Some(input),
        }
    }

    /// Creates an empty database `name` (with psql, as the `postgres` user).
    pub fn create_database(&self, name: &str) {
        let created = Command::new("runuser")
            .args(["-u", "postgres", "--", "psql", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output()
            .expect("psql");
        assert!(
            created.status.success(),
            "create database {name}: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }

    /// Stops the server at once, as a crash would (`pg_ctl -m immediate`).
    pub fn stop_immediate(&self) {
        let _ = as_postgres(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_immediate();
    }
}

/// A psql session holding an advisory lock ([`Postgres::hold_advisory_lock`]).
pub struct AdvisoryLockHolder {
    session: std::process::Child,
    input: Option<std::process::ChildStdin>,
}

impl AdvisoryLockHolder {
    /// Ends the session, and with it the lock.
    pub fn release(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if let Some(mut input) = self.input.take() {
            let _ = writeln!(input, "\\q");
        }
        let _ = self.session.wait();
    }
}

impl Drop for AdvisoryLockHolder {
    fn drop(&mut self) {
        self.end();
    }
}
