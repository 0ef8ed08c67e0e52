//! The control plane in PostgreSQL (`[cluster] database = "postgres://…"`): what the servers of a cluster share.
//!
//! One connection per server, owned by a thread of its own: the client blocks, and the store is called from
//! async code as well as from plain threads, so calls are handed to that thread and waited for. A connection that
//! broke (the database restarted, the network dropped) is opened again on the next call; calls meanwhile fail
//! after the connect timeout, and the jobs that are running keep running.

use super::{Database, Fence, NodeLease, StoredJob};
use postgres::{Client, NoTls};
use std::io;
use std::sync::mpsc;
use std::time::Duration;

/// The schema, one step per version; applied in order, each in the transaction that records it in
/// `eddy_schema`, under an advisory lock so servers starting together migrate once.
const MIGRATIONS: &[&str] = &["CREATE TABLE modules (
        seq     BIGSERIAL, -- the order records were first saved in
        tenant  TEXT NOT NULL,
        name    TEXT NOT NULL,
        version TEXT NOT NULL,
        record  TEXT NOT NULL, -- ModuleRecord as JSON
        PRIMARY KEY (tenant, name, version)
    );
    CREATE TABLE jobs (
        seq    BIGSERIAL,
        tenant TEXT NOT NULL,
        id     TEXT NOT NULL,
        record TEXT NOT NULL, -- JobRecord as JSON
        owner  TEXT, -- the node that runs it
        epoch  BIGINT NOT NULL DEFAULT 0, -- bumped by every claim: writes of an older owner are fenced out
        PRIMARY KEY (tenant, id)
    );
    CREATE INDEX jobs_by_id ON jobs (id);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE quotas (
        tenant    TEXT PRIMARY KEY,
        overrides TEXT NOT NULL -- QuotaOverrides as JSON
    );
    CREATE TABLE nodes (
        node_id     TEXT PRIMARY KEY,
        record      TEXT NOT NULL, -- NodeRecord as JSON
        lease_until BIGINT NOT NULL -- milliseconds since the Unix epoch, by the database's clock
    );"];

/// The schema version this code writes.
#[cfg(test)]
pub(super) const MIGRATIONS_KNOWN: i32 = MIGRATIONS.len() as i32;

/// Key of the advisory lock migrations run under ("eddy" in ASCII).
const MIGRATION_LOCK: i64 = 0x6564_6479;

/// The database clock in milliseconds since the Unix epoch: leases are measured by one clock, whatever the servers'.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::BIGINT";

/// How long connecting, and any one statement, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

type Call = Box<dyn FnOnce(&mut Connection) + Send>;

/// A PostgreSQL control plane.
pub struct Postgres {
    calls: mpsc::Sender<Call>,
}

/// The connection thread's side.
struct Connection {
    config: postgres::Config,
    client: Option<Client>,
}

impl Connection {
    /// The client, connecting again if the last connection broke.
    fn client(&mut self) -> Result<&mut Client, postgres::Error> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.config.connect(NoTls)?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }
}

fn db(e: postgres::Error) -> io::Error {
    io::Error::other(format!("PostgreSQL: {}", e.as_db_error().map_or_else(|| e.to_string(), ToString::to_string)))
}

impl Postgres {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and brings the schema up to date.
    pub fn open(url: &str) -> io::Result<Postgres> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("the database URL: {e}")))?;
        config
            .connect_timeout(TIMEOUT)
            .options(&format!("-c statement_timeout={}", TIMEOUT.as_millis()))
            .application_name("eddy");
        let (calls, incoming) = mpsc::channel::<Call>();
        std::thread::Builder::new().name("eddy-postgres".into()).spawn(move || {
            let mut connection = Connection { config, client: None };
            for call in incoming {
                call(&mut connection);
            }
        })?;
        let postgres = Postgres { calls };
        postgres.call(migrate)?.map_err(io::Error::other)?;
        Ok(postgres)
    }

    /// Runs `f` on the connection thread and waits for its result.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> io::Result<T> {
        let (reply, result) = mpsc::sync_channel(1);
        let call: Call = Box::new(move |connection: &mut Connection| {
            let _ = reply.send(connection.client().and_then(f));
        });
        self.calls.send(call).map_err(|_| io::Error::other("the PostgreSQL connection thread has stopped"))?;
        result.recv().map_err(|_| io::Error::other("the PostgreSQL connection thread has stopped"))?.map_err(db)
    }

    fn execute(&self, sql: &'static str, args: Vec<String>) -> io::Result<u64> {
        self.call(move |client| {
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a as _).collect();
            client.execute(sql, &params)
        })
    }

    fn strings(&self, sql: &'static str, args: Vec<String>) -> io::Result<Vec<String>> {
        self.call(move |client| {
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a as _).collect();
            Ok(client.query(sql, &params)?.iter().map(|row| row.get(0)).collect())
        })
    }

    /// Sets the schema version, as a newer Eddy would have left it.
    #[cfg(test)]
    pub(super) fn set_schema_version(&self, version: i32) -> io::Result<()> {
        self.call(move |client| client.execute("UPDATE eddy_schema SET version = $1", &[&version])).map(drop)
    }
}

/// Brings the schema up to date; the inner error refuses a database a newer Eddy migrated.
fn migrate(client: &mut Client) -> Result<Result<(), String>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS eddy_schema (version INTEGER NOT NULL)")?;
    let version: i32 = match tx.query_opt("SELECT version FROM eddy_schema", &[])? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO eddy_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    let known = MIGRATIONS.len() as i32;
    if version > known {
        return Ok(Err(format!(
            "the database has schema version {version}, written by a newer Eddy (this one knows {known})"
        )));
    }
    for step in &MIGRATIONS[version.max(0) as usize..] {
        tx.batch_execute(step)?;
    }
    tx.execute("UPDATE eddy_schema SET version = $1", &[&known])?;
    tx.commit().map(Ok)
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

impl Database for Postgres {
    fn tenants(&self) -> io::Result<Vec<String>> {
        self.strings("SELECT tenant FROM modules UNION SELECT tenant FROM jobs ORDER BY tenant", Vec::new())
    }

    fn put_module(&self, tenant: &str, name: &str, version: &str, record: &str) -> io::Result<()> {
        self.execute(
            "INSERT INTO modules (tenant, name, version, record) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant, name, version) DO UPDATE SET record = excluded.record",
            owned(&[tenant, name, version, record]),
        )
        .map(drop)
    }

    fn create_module(&self, tenant: &str, name: &str, version: &str, record: &str) -> io::Result<bool> {
        let inserted = self.execute(
            "INSERT INTO modules (tenant, name, version, record) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            owned(&[tenant, name, version, record]),
        )?;
        Ok(inserted == 1)
    }

    fn modules(&self, tenant: &str) -> io::Result<Vec<String>> {
        self.strings("SELECT record FROM modules WHERE tenant = $1 ORDER BY seq", owned(&[tenant]))
    }

    fn remove_module(&self, tenant: &str, name: &str, version: &str) -> io::Result<bool> {
        let removed = self.execute(
            "DELETE FROM modules WHERE tenant = $1 AND name = $2 AND version = $3",
            owned(&[tenant, name, version]),
        )?;
        Ok(removed > 0)
    }

    fn put_job(&self, tenant: &str, id: &str, record: &str, fence: Option<&Fence>) -> io::Result<bool> {
        let (tenant, id, record) = (tenant.to_string(), id.to_string(), record.to_string());
        let fence = fence.map(|f| (f.node.clone(), f.epoch as i64));
        let saved = self.call(move |client| match &fence {
            None => client.execute(
                "INSERT INTO jobs (tenant, id, record) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, id) DO UPDATE SET record = excluded.record",
                &[&tenant, &id, &record],
            ),
            Some((node, epoch)) => client.execute(
                "INSERT INTO jobs (tenant, id, record, owner, epoch) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant, id) DO UPDATE SET record = excluded.record
                 WHERE jobs.owner = excluded.owner AND jobs.epoch = excluded.epoch",
                &[&tenant, &id, &record, node, epoch],
            ),
        })?;
        Ok(saved == 1)
    }

    fn release_job(&self, tenant: &str, id: &str, record: &str, fence: &Fence) -> io::Result<bool> {
        let (tenant, id, record) = (tenant.to_string(), id.to_string(), record.to_string());
        let (node, epoch) = (fence.node.clone(), fence.epoch as i64);
        let released = self.call(move |client| {
            client.execute(
                "UPDATE jobs SET record = $3, owner = NULL, epoch = epoch + 1
                 WHERE tenant = $1 AND id = $2 AND owner = $4 AND epoch = $5",
                &[&tenant, &id, &record, &node, &epoch],
            )
        })?;
        Ok(released == 1)
    }

    fn holds_job(&self, tenant: &str, id: &str, fence: &Fence) -> io::Result<bool> {
        let (tenant, id, node, epoch) = (tenant.to_string(), id.to_string(), fence.node.clone(), fence.epoch as i64);
        self.call(move |client| {
            let row = client.query_opt(
                "SELECT 1 FROM jobs WHERE tenant = $1 AND id = $2 AND owner = $3 AND epoch = $4",
                &[&tenant, &id, &node, &epoch],
            )?;
            Ok(row.is_some())
        })
    }

    fn job_owner(&self, id: &str) -> io::Result<Option<String>> {
        let id = id.to_string();
        self.call(move |client| {
            Ok(client.query_opt("SELECT owner FROM jobs WHERE id = $1", &[&id])?.and_then(|row| row.get(0)))
        })
    }

    fn claim_job(&self, tenant: &str, id: &str, node: &str, seen: u64) -> io::Result<bool> {
        let (tenant, id, node, seen) = (tenant.to_string(), id.to_string(), node.to_string(), seen as i64);
        let claimed = self.call(move |client| {
            client.execute(
                "UPDATE jobs SET owner = $3, epoch = $4 + 1 WHERE tenant = $1 AND id = $2 AND epoch = $4",
                &[&tenant, &id, &node, &seen],
            )
        })?;
        Ok(claimed == 1)
    }

    fn remove_job(&self, tenant: &str, id: &str) -> io::Result<()> {
        self.execute("DELETE FROM jobs WHERE tenant = $1 AND id = $2", owned(&[tenant, id])).map(drop)
    }

    fn jobs(&self, tenant: &str) -> io::Result<Vec<StoredJob>> {
        let tenant = tenant.to_string();
        self.call(move |client| {
            let rows =
                client.query("SELECT record, owner, epoch FROM jobs WHERE tenant = $1 ORDER BY seq", &[&tenant])?;
            Ok(rows
                .iter()
                .map(|row| StoredJob { record: row.get(0), owner: row.get(1), epoch: row.get::<_, i64>(2) as u64 })
                .collect())
        })
    }

    fn put_quota(&self, tenant: &str, overrides: &str) -> io::Result<()> {
        self.execute(
            "INSERT INTO quotas (tenant, overrides) VALUES ($1, $2)
             ON CONFLICT (tenant) DO UPDATE SET overrides = excluded.overrides",
            owned(&[tenant, overrides]),
        )
        .map(drop)
    }

    fn quotas(&self) -> io::Result<Vec<(String, String)>> {
        self.call(|client| {
            let rows = client.query("SELECT tenant, overrides FROM quotas ORDER BY tenant", &[])?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    fn put_meta(&self, key: &str, value: &str) -> io::Result<()> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            owned(&[key, value]),
        )
        .map(drop)
    }

    fn meta(&self, key: &str) -> io::Result<Option<String>> {
        Ok(self.strings("SELECT value FROM meta WHERE key = $1", owned(&[key]))?.pop())
    }

    fn renew_node(&self, node_id: &str, record: &str, lease: Duration) -> io::Result<()> {
        let (node_id, record, lease_ms) = (node_id.to_string(), record.to_string(), lease.as_millis() as i64);
        self.call(move |client| {
            client.execute(
                &format!(
                    "INSERT INTO nodes (node_id, record, lease_until) VALUES ($1, $2, {NOW_MS} + $3)
                     ON CONFLICT (node_id) DO UPDATE SET record = excluded.record, lease_until = excluded.lease_until"
                ),
                &[&node_id, &record, &lease_ms],
            )
        })
        .map(drop)
    }

    fn nodes(&self) -> io::Result<Vec<NodeLease>> {
        self.call(|client| {
            let rows =
                client.query(&format!("SELECT record, lease_until - {NOW_MS} FROM nodes ORDER BY node_id"), &[])?;
            Ok(rows.iter().map(|row| NodeLease { record: row.get(0), expires_in_ms: row.get(1) }).collect())
        })
    }

    fn remove_node(&self, node_id: &str) -> io::Result<()> {
        self.execute("DELETE FROM nodes WHERE node_id = $1", owned(&[node_id])).map(drop)
    }
}
