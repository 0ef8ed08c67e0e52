//! Windows: assigners, triggers, evictors, allowed lateness and window functions, with Flink's semantics.
//!
//! Window contents live in the operator's keyed state store under the window as namespace, so that checkpoints
//! and the RocksDB backend cover them like any other state. Sliding windows with an aggregate function store
//! *panes* (slices of `gcd(size, slide)`) that all windows covering them share, combined with the aggregate's
//! `merge`; a record costs the same as in a tumbling window. Reduce functions keep one value per window, so that
//! each window reduces its records in arrival order, as in Flink.

mod assigner;
pub mod builtin;
mod contents;
mod merging;
mod operator;
mod trigger;

pub use assigner::{Panes, assign, merge_sessions, window_start};
pub use operator::{Incremental, ResultFormat, WindowConfig, WindowFunctions, WindowOperator};
pub use trigger::{Trigger, TriggerResult};

/// A window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// Timestamps `start <= ts < end`.
    Time {
        /// Inclusive start, in milliseconds.
        start: i64,
        /// Exclusive end, in milliseconds.
        end: i64,
    },
    /// The one window of a global assigner.
    Global,
}

impl Window {
    /// A time window.
    pub fn time(start: i64, end: i64) -> Window {
        Window::Time { start, end }
    }

    /// Start and end (the whole time line for the global window).
    pub fn bounds(&self) -> (i64, i64) {
        match *self {
            Window::Time { start, end } => (start, end),
            Window::Global => (i64::MIN, i64::MAX),
        }
    }

    /// The largest timestamp inside the window (`end - 1`), which results carry.
    pub fn max_timestamp(&self) -> i64 {
        match *self {
            Window::Time { end, .. } => end.saturating_sub(1),
            Window::Global => i64::MAX,
        }
    }

    /// Whether two windows overlap or touch (Flink's `TimeWindow.intersects`).
    pub fn intersects(&self, other: &Window) -> bool {
        let ((a0, a1), (b0, b1)) = (self.bounds(), other.bounds());
        a0 <= b1 && a1 >= b0
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &Window) -> Window {
        let ((a0, a1), (b0, b1)) = (self.bounds(), other.bounds());
        Window::time(a0.min(b0), a1.max(b1))
    }

    /// The window as a state namespace: 16 bytes whose byte order is time order, or empty for the global window.
    pub fn namespace(&self) -> Namespace {
        match *self {
            Window::Time { start, end } => {
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
                bytes[8..].copy_from_slice(&((end as u64) ^ (1 << 63)).to_be_bytes());
                Namespace { bytes, len: 16 }
            }
            Window::Global => Namespace { bytes: [0; 16], len: 0 },
        }
    }

    /// Reads a namespace written by [`Window::namespace`].
    pub fn from_namespace(ns: &[u8]) -> Option<Window> {
        if ns.is_empty() {
            return Some(Window::Global);
        }
        let start = u64::from_be_bytes(*ns.first_chunk::<8>()?) ^ (1 << 63);
        let end = u64::from_be_bytes(*ns.get(8..16)?.first_chunk::<8>()?) ^ (1 << 63);
        Some(Window::time(start as i64, end as i64))
    }
}

/// A window's namespace bytes, without a heap allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace {
    bytes: [u8; 16],
    len: u8,
}

impl std::ops::Deref for Namespace {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_round_trip_and_sort_by_time() {
        let windows = [Window::time(-10, 0), Window::time(-1, 5), Window::time(0, 10), Window::time(7, 8)];
        let mut encoded: Vec<Vec<u8>> = windows.iter().map(|w| w.namespace().to_vec()).collect();
        for (w, ns) in windows.iter().zip(&encoded) {
            assert_eq!(Window::from_namespace(ns), Some(*w));
        }
        let before = encoded.clone();
        encoded.sort();
        assert_eq!(encoded, before, "byte order is time order");
        assert_eq!(Window::from_namespace(&[]), Some(Window::Global));
        assert_eq!(Window::Global.max_timestamp(), i64::MAX);
    }
}
