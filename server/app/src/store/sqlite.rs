//! The control plane in a SQLite file in the data folder: one server's embedded default.
//!
//! WAL with `synchronous=FULL`: a write is committed and synced before the call returns, so an acknowledged write
//! survives a kill or a power loss. One connection, shared behind a lock, so writes are serialized.

use super::{Database, Fence, LegacyRecords, NodeLease, StoredJob};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::io;
use std::path::Path;
use std::time::Duration;

/// The schema, one step per version: step `i` takes a database from version `i` to `i + 1`, the version kept in
/// `PRAGMA user_version`.
pub(super) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE modules (
        tenant  TEXT NOT NULL,
        name    TEXT NOT NULL,
        version TEXT NOT NULL,
        record  TEXT NOT NULL, -- ModuleRecord as JSON
        PRIMARY KEY (tenant, name, version)
    );
    CREATE TABLE jobs (
        tenant TEXT NOT NULL,
        id     TEXT NOT NULL,
        record TEXT NOT NULL, -- JobRecord as JSON
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    // Quotas an admin set over the API.
    "CREATE TABLE quotas (
        tenant     TEXT PRIMARY KEY,
        overrides  TEXT NOT NULL -- QuotaOverrides as JSON
    );",
    // Servers and their leases.
    "CREATE TABLE nodes (
        node_id     TEXT PRIMARY KEY,
        record      TEXT NOT NULL, -- NodeRecord as JSON
        lease_until INTEGER NOT NULL -- milliseconds since the Unix epoch, by the database's clock
    );",
    // Jobs' owners and fencing epochs.
    "ALTER TABLE jobs ADD COLUMN owner TEXT;
    ALTER TABLE jobs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_by_id ON jobs (id);",
];

/// The database clock in milliseconds since the Unix epoch: leases are measured by one clock, whatever the servers'.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// Set in `meta` in the transaction that imported the old JSON layout.
const LEGACY_IMPORTED: &str = "legacy_imported";

fn db(e: rusqlite::Error) -> io::Error {
    io::Error::other(e)
}

/// A SQLite control plane.
pub struct Sqlite {
    conn: Mutex<Connection>,
}

impl Sqlite {
    /// Opens (creating) the database, sets it up for durability and brings its schema up to date.
    pub fn open(path: &Path) -> io::Result<Sqlite> {
        let mut conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(io::Error::other(format!("{} cannot use write-ahead logging (mode {mode})", path.display())));
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
        // Read and set up under the write lock, so two servers opening one new folder cannot both create the schema.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(io::Error::other(format!(
                "{} has schema version {version}, written by a newer Eddy (this one knows {known})",
                path.display()
            )));
        }
        for step in &MIGRATIONS[version.max(0) as usize..] {
            tx.execute_batch(step).map_err(db)?;
        }
        tx.pragma_update(None, "user_version", known).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(Sqlite { conn: Mutex::new(conn) })
    }

    /// Imports records of the old JSON layout in one transaction, marked done in the same transaction so a crash
    /// before the old folder is moved aside does not import it twice. False if it was imported before.
    pub fn import_legacy(&self, records: impl FnOnce() -> io::Result<LegacyRecords>) -> io::Result<bool> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
        let done = tx
            .query_row("SELECT 1 FROM meta WHERE key = ?1", [LEGACY_IMPORTED], |_| Ok(()))
            .optional()
            .map_err(db)?
            .is_some();
        if done {
            return Ok(false);
        }
        let records = records()?;
        let (mut modules, mut jobs) = (0, 0);
        for (tenant, name, version, json) in &records.modules {
            modules += tx
                .execute(
                    "INSERT INTO modules (tenant, name, version, record) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    params![tenant, name, version, json],
                )
                .map_err(db)?;
        }
        for (tenant, id, json) in &records.jobs {
            jobs += tx
                .execute(
                    "INSERT INTO jobs (tenant, id, record) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![tenant, id, json],
                )
                .map_err(db)?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![LEGACY_IMPORTED, super::now_ms().to_string()],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        tracing::info!("imported {modules} module versions and {jobs} jobs");
        Ok(true)
    }

    /// The strings `sql` selects from one column, bound to `args`.
    fn strings(&self, sql: &str, args: impl rusqlite::Params) -> io::Result<Vec<String>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(sql).map_err(db)?;
        let rows = stmt.query_map(args, |r| r.get::<_, String>(0)).map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn execute(&self, sql: &str, args: impl rusqlite::Params) -> io::Result<usize> {
        self.conn.lock().execute(sql, args).map_err(db)
    }

    #[cfg(test)]
    pub(super) fn connection(&self) -> parking_lot::MutexGuard<'_, Connection> {
        self.conn.lock()
    }
}

impl Database for Sqlite {
    fn tenants(&self) -> io::Result<Vec<String>> {
        self.strings("SELECT tenant FROM modules UNION SELECT tenant FROM jobs ORDER BY tenant", [])
    }

    fn put_module(&self, tenant: &str, name: &str, version: &str, record: &str) -> io::Result<()> {
        self.execute(
            "INSERT INTO modules (tenant, name, version, record) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, name, version) DO UPDATE SET record = excluded.record",
            params![tenant, name, version, record],
        )
        .map(drop)
    }

    fn create_module(&self, tenant: &str, name: &str, version: &str, record: &str) -> io::Result<bool> {
        let inserted = self.execute(
            "INSERT INTO modules (tenant, name, version, record) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            params![tenant, name, version, record],
        )?;
        Ok(inserted == 1)
    }

    fn modules(&self, tenant: &str) -> io::Result<Vec<String>> {
        self.strings("SELECT record FROM modules WHERE tenant = ?1 ORDER BY rowid", [tenant])
    }

    fn remove_module(&self, tenant: &str, name: &str, version: &str) -> io::Result<bool> {
        let removed = self.execute(
            "DELETE FROM modules WHERE tenant = ?1 AND name = ?2 AND version = ?3",
            params![tenant, name, version],
        )?;
        Ok(removed > 0)
    }

    fn put_job(&self, tenant: &str, id: &str, record: &str, fence: Option<&Fence>) -> io::Result<bool> {
        let saved = match fence {
            None => self.execute(
                "INSERT INTO jobs (tenant, id, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, id) DO UPDATE SET record = excluded.record",
                params![tenant, id, record],
            )?,
            Some(fence) => self.execute(
                "INSERT INTO jobs (tenant, id, record, owner, epoch) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, id) DO UPDATE SET record = excluded.record
                 WHERE jobs.owner = excluded.owner AND jobs.epoch = excluded.epoch",
                params![tenant, id, record, fence.node, fence.epoch as i64],
            )?,
        };
        Ok(saved == 1)
    }

    fn release_job(&self, tenant: &str, id: &str, record: &str, fence: &Fence) -> io::Result<bool> {
        let released = self.execute(
            "UPDATE jobs SET record = ?3, owner = NULL, epoch = epoch + 1
             WHERE tenant = ?1 AND id = ?2 AND owner = ?4 AND epoch = ?5",
            params![tenant, id, record, fence.node, fence.epoch as i64],
        )?;
        Ok(released == 1)
    }

    fn holds_job(&self, tenant: &str, id: &str, fence: &Fence) -> io::Result<bool> {
        let conn = self.conn.lock();
        let held = conn
            .query_row(
                "SELECT 1 FROM jobs WHERE tenant = ?1 AND id = ?2 AND owner = ?3 AND epoch = ?4",
                params![tenant, id, fence.node, fence.epoch as i64],
                |_| Ok(()),
            )
            .optional()
            .map_err(db)?;
        Ok(held.is_some())
    }

    fn job_owner(&self, id: &str) -> io::Result<Option<String>> {
        let conn = self.conn.lock();
        let owner = conn
            .query_row("SELECT owner FROM jobs WHERE id = ?1", [id], |r| r.get::<_, Option<String>>(0))
            .optional()
            .map_err(db)?;
        Ok(owner.flatten())
    }

    fn claim_job(&self, tenant: &str, id: &str, node: &str, seen: u64) -> io::Result<bool> {
        let claimed = self.execute(
            "UPDATE jobs SET owner = ?3, epoch = ?4 + 1 WHERE tenant = ?1 AND id = ?2 AND epoch = ?4",
            params![tenant, id, node, seen as i64],
        )?;
        Ok(claimed == 1)
    }

    fn remove_job(&self, tenant: &str, id: &str) -> io::Result<()> {
        self.execute("DELETE FROM jobs WHERE tenant = ?1 AND id = ?2", params![tenant, id]).map(drop)
    }

    fn jobs(&self, tenant: &str) -> io::Result<Vec<StoredJob>> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached("SELECT record, owner, epoch FROM jobs WHERE tenant = ?1 ORDER BY rowid")
            .map_err(db)?;
        let rows = stmt
            .query_map([tenant], |r| {
                Ok(StoredJob { record: r.get(0)?, owner: r.get(1)?, epoch: r.get::<_, i64>(2)? as u64 })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn put_quota(&self, tenant: &str, overrides: &str) -> io::Result<()> {
        self.execute(
            "INSERT INTO quotas (tenant, overrides) VALUES (?1, ?2)
             ON CONFLICT (tenant) DO UPDATE SET overrides = excluded.overrides",
            params![tenant, overrides],
        )
        .map(drop)
    }

    fn quotas(&self) -> io::Result<Vec<(String, String)>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("SELECT tenant, overrides FROM quotas ORDER BY tenant").map_err(db)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn put_meta(&self, key: &str, value: &str) -> io::Result<()> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )
        .map(drop)
    }

    fn meta(&self, key: &str) -> io::Result<Option<String>> {
        Ok(self.strings("SELECT value FROM meta WHERE key = ?1", [key])?.pop())
    }

    fn renew_node(&self, node_id: &str, record: &str, lease: Duration) -> io::Result<()> {
        self.execute(
            &format!(
                "INSERT INTO nodes (node_id, record, lease_until) VALUES (?1, ?2, {NOW_MS} + ?3)
                 ON CONFLICT (node_id) DO UPDATE SET record = excluded.record, lease_until = excluded.lease_until"
            ),
            params![node_id, record, lease.as_millis() as i64],
        )
        .map(drop)
    }

    fn nodes(&self) -> io::Result<Vec<NodeLease>> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT record, lease_until - {NOW_MS} FROM nodes ORDER BY node_id"))
            .map_err(db)?;
        let rows = stmt.query_map([], |r| Ok(NodeLease { record: r.get(0)?, expires_in_ms: r.get(1)? })).map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn remove_node(&self, node_id: &str) -> io::Result<()> {
        self.execute("DELETE FROM nodes WHERE node_id = ?1", [node_id]).map(drop)
    }
}
