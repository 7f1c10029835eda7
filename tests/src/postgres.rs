//! A real PostgreSQL 15 per test, as the cluster suites need it: its own directory and
//! loopback port, initialised and run as the `postgres` user (initdb refuses root), stopped
//! immediately on drop. Binaries from Debian's postgresql-15 (`scripts/install-deps.sh`); a
//! test fails, never skips, when they are missing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian installs the server binaries (not on PATH).
const BIN: &str = "/usr/lib/postgresql/15/bin";

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Postgres {
    /// Initialises a cluster in `dir/postgres` and starts it on a free loopback port.
    /// `dir` is made traversable for the `postgres` user (mode 0711).
    pub fn start(dir: &Path) -> Postgres {
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
        let port = free_port();
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
        let log = data.join("server.log");
        let start = as_postgres(
            "pg_ctl",
            &[
                "-D",
                path,
                "-l",
                log.to_str().expect("utf-8"),
                "-w",
                "start",
            ],
        );
        assert!(
            start.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Postgres { data, port }
    }

    /// The connection string of the `postgres` database as superuser `postgres`.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The connection string of database `name` as superuser `postgres`.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{name}", self.port)
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
