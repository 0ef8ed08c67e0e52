//! Time-to-live stamps: a TTL-enabled entry starts with the processing time of its last update.

use crate::spec::{TtlSpec, TtlUpdate};

const STAMP: usize = 8;

/// Prefixes `payload` with the update time `now`.
pub(super) fn stamp(now: i64, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&now.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Splits a stamped entry into update time and payload (an entry too short to hold a stamp counts as expired).
pub(super) fn split(entry: &[u8]) -> (i64, &[u8]) {
    match entry.split_first_chunk::<STAMP>() {
        Some((time, payload)) => (i64::from_le_bytes(*time), payload),
        None => (i64::MIN, &[]),
    }
}

/// Whether an entry updated at `updated` has expired at `now` (Flink: `updated + ttl <= now`).
pub(super) fn expired(ttl: &TtlSpec, updated: i64, now: i64) -> bool {
    updated.saturating_add(ttl.time_to_live.0) <= now
}

/// Whether reading restarts the time-to-live.
pub(super) fn refresh_on_read(ttl: &TtlSpec) -> bool {
    ttl.update == TtlUpdate::OnReadAndWrite
}
