//! A job's journal: its functions' log lines and what happened to it (started, restarting and why, failed,
//! stopped), newest kept, bounded in bytes and charged to its tenant's memory, followed with `eddy job logs -f`
//! (`GET /v1/jobs/{id}/logs`, server-sent events). It lives as long as the job is on this server, across runs.

use eddy_engine::io::{OutputStream, Retention};
use eddy_engine::memory::MemoryBudget;
use std::sync::Arc;

/// Lines kept per job.
const KEPT: Retention = Retention { records: 2_000, bytes: 512 << 10 };

/// A job's journal.
#[derive(Debug)]
pub(crate) struct Journal {
    stream: Arc<OutputStream>,
}

impl Journal {
    /// An empty journal whose lines are charged to `memory` (the tenant's).
    pub(crate) fn new(memory: &Arc<MemoryBudget>) -> Journal {
        Journal { stream: Arc::new(OutputStream::new(KEPT).charged_to(Some(memory))) }
    }

    /// A follower's view: the kept lines, then new ones.
    pub(crate) fn subscribe(&self) -> eddy_engine::io::Subscription {
        self.stream.subscribe()
    }

    /// Something that happened to the job.
    pub(crate) fn event(&self, event: &str, text: &str) {
        self.keep(serde_json::json!({ "event": event, "text": text }));
    }

    fn keep(&self, mut entry: serde_json::Value) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        entry["ts"] = serde_json::json!(now as i64);
        let mut batch = eddy_codec::Batch::new();
        batch.push(now as i64, None, entry.to_string().as_bytes());
        // A line past the tenant's memory is dropped; followers are told how many they missed.
        let _ = self.stream.publish(&batch);
    }
}

impl eddy_wasm_host::GuestJournal for Journal {
    fn line(&self, udf: &str, level: &str, text: &str) {
        self.keep(serde_json::json!({ "udf": udf, "level": level, "text": text }));
    }
}
