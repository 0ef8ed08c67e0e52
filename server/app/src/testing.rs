//! Real services for tests, started by the project's own scripts under `tests/services/`.

use std::process::Command;

/// A throwaway PostgreSQL server on a free loopback port (`tests/services/postgres.sh`), stopped when dropped.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    port: u16,
    url: String,
    running: bool,
}

const POSTGRES_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/services/postgres.sh");

fn postgres_script(args: &[&str]) -> String {
    let out = Command::new(POSTGRES_SCRIPT).args(args).output().expect("run tests/services/postgres.sh");
    assert!(
        out.status.success(),
        "tests/services/postgres.sh {args:?} failed (install PostgreSQL with `tests/services/postgres.sh install`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl TestPostgres {
    /// Starts a new server with an empty cluster.
    pub fn start() -> TestPostgres {
        let dir = tempfile::Builder::new().prefix("eddy-postgres-").tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let path = dir.path().to_str().expect("utf-8 path").to_string();
        let url = postgres_script(&["start", &path, &port.to_string()]);
        TestPostgres { dir, port, url, running: true }
    }

    fn path(&self) -> String {
        self.dir.path().to_str().expect("utf-8 path").to_string()
    }

    /// Stops the server (its files stay, for `start_again`).
    pub fn stop(&mut self) {
        postgres_script(&["stop", &self.path()]);
        self.running = false;
    }

    /// Starts the stopped server again on the same port and files.
    pub fn start_again(&mut self) {
        postgres_script(&["start", &self.path(), &self.port.to_string()]);
        self.running = true;
    }

    /// A new, empty database on the server: its URL.
    pub fn new_database(&self, name: &str) -> String {
        // On a thread of its own: the client blocks, and async tests call this too.
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut client = postgres::Client::connect(&self.url, postgres::NoTls).expect("connect");
                client.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
            })
            .join()
            .expect("create database");
        });
        self.url.replace("/postgres", &format!("/{name}"))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = Command::new(POSTGRES_SCRIPT).args(["stop", &self.path()]).status();
        }
    }
}
