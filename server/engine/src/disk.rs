//! What a tenant may still write to disk and storage (checkpoints, savepoints, file-sink output, input logs,
//! RocksDB files). The server measures each tenant's use now and then; writers ask before they write, and stop
//! with the reason once the budget is used up.

/// A tenant's storage budget, as writers see it.
pub trait DiskBudget: Send + Sync {
    /// Why nothing more may be written, if the budget is used up.
    fn exhausted(&self) -> Option<String>;
}
