//! Reading what a checkpoint or savepoint holds for one key of one operator, for people: namespaces as windows or
//! map keys, values as text when they are printable text and as hex when they are not.

use super::Restore;
use crate::error::TaskError;
use crate::keys::{KeyGroup, key_group};
use crate::timers::TimeDomain;
use crate::window::Window;
use serde::Serialize;

/// Bytes shown as text when they are printable UTF-8, else as hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    /// UTF-8 text.
    Text(String),
    /// Anything else, in lowercase hex.
    Hex(String),
}

impl Shown {
    fn of(bytes: &[u8]) -> Shown {
        // Binary numbers are often valid UTF-8 too (`01 00 00 00`): only printable text is shown as text.
        match std::str::from_utf8(bytes) {
            Ok(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) => {
                Shown::Text(text.to_string())
            }
            _ => Shown::Hex(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }
}

/// What an entry's namespace means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceView {
    /// A value or list state (no namespace).
    None,
    /// A window's contents or trigger state.
    Window {
        /// Its first millisecond.
        start: i64,
        /// One past its last millisecond.
        end: i64,
    },
    /// The global window.
    GlobalWindow,
    /// A map state's user key.
    MapKey(Shown),
}

/// One stored entry of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryView {
    /// The state's name.
    pub state: String,
    /// Its namespace.
    pub namespace: NamespaceView,
    /// The stored bytes (with a time-to-live stamp first, for states that have one).
    pub value: Shown,
}

/// One timer of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimerView {
    /// Its clock.
    pub domain: TimeDomain,
    /// When it fires.
    pub timestamp: i64,
    /// Its namespace.
    pub namespace: NamespaceView,
}

/// What a snapshot holds for one key of one operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyStateView {
    /// The operator.
    pub operator: String,
    /// Its state layout.
    pub layout: String,
    /// The key's group.
    pub key_group: KeyGroup,
    /// The key's entries, in canonical order.
    pub entries: Vec<EntryView>,
    /// The key's timers.
    pub timers: Vec<TimerView>,
}

/// What `restore` holds for `key` of operator `uid`; none when the operator has no state in it. Reads only the
/// chunks of the key's group, one at a time.
pub fn key_state(restore: &Restore, uid: &str, key: &[u8]) -> Result<Option<KeyStateView>, TaskError> {
    let max_parallelism = restore.max_parallelism.unwrap_or(128);
    let group = key_group(key, max_parallelism);
    let snapshots = restore.snapshots_of(uid);
    let Some(layout) = snapshots.iter().map(|s| s.layout.clone()).find(|l| !l.is_empty()) else { return Ok(None) };
    let windows = layout.starts_with("window/");
    let namespace = |ns: &[u8]| match (ns.is_empty(), windows) {
        (true, true) => NamespaceView::GlobalWindow,
        (true, false) => NamespaceView::None,
        (false, true) => match Window::from_namespace(ns) {
            Some(window) => {
                let (start, end) = window.bounds();
                NamespaceView::Window { start, end }
            }
            None => NamespaceView::MapKey(Shown::of(ns)),
        },
        (false, false) => NamespaceView::MapKey(Shown::of(ns)),
    };
    let mut view = KeyStateView {
        operator: uid.to_string(),
        layout: layout.clone(),
        key_group: group,
        entries: Vec::new(),
        timers: Vec::new(),
    };
    let chunks = restore.chunk_reader().only(group..=group);
    for snapshot in snapshots {
        chunks.entries(snapshot, &mut |entries| {
            for entry in entries.iter().filter(|e| e.group == group && e.key == key) {
                view.entries.push(EntryView {
                    state: entry.state.clone(),
                    namespace: namespace(&entry.namespace),
                    value: Shown::of(&entry.value),
                });
            }
            Ok(())
        })?;
        chunks.timers(snapshot, &mut |timers| {
            for timer in timers.iter().filter(|t| t.group == group && t.key == key) {
                view.timers.push(TimerView {
                    domain: timer.domain,
                    timestamp: timer.timestamp,
                    namespace: namespace(&timer.namespace),
                });
            }
            Ok(())
        })?;
    }
    Ok(Some(view))
}
