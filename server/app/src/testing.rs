//! Real services for tests, started by the project's own scripts under `tests/services/`.

use std::process::Command;

/// A throwaway PostgreSQL server on a free loopback port (`tests/services/postgres.sh`), stopped when dropped.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    port: u16,
    url: String,
    running: bool,
}

/// A script of `tests/services/`, found from where cargo runs the tests (read when they run, not when they were
/// built, so a test binary built in another clone of the repository finds this clone's script).
pub fn service_script(name: &str) -> std::path::PathBuf {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let start = std::path::PathBuf::from(crate_dir);
    let found = start.ancestors().map(|dir| dir.join("tests/services").join(name)).find(|path| path.is_file());
    found.unwrap_or_else(|| panic!("no tests/services/{name} above {}", start.display()))
}

fn postgres_script(args: &[&str]) -> String {
    let out = Command::new(service_script("postgres.sh")).args(args).output().expect("run tests/services/postgres.sh");
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
            let _ = Command::new(service_script("postgres.sh")).args(["stop", &self.path()]).status();
        }
    }
}
