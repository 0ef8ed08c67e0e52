//! Value, list and map state for user functions, with Flink's time-to-live semantics.

use super::{KeyedStateStore, StateId, StateKey, ttl};
use crate::checkpoint::CheckpointId;
use crate::spec::{TtlCleanup, TtlSpec, TtlVisibility};

/// The shape of a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// One value per key.
    Value,
    /// A list of values per key.
    List,
    /// A map of user keys to values per key.
    Map,
}

impl StateKind {
    /// `value`, `list` or `map`.
    pub fn name(self) -> &'static str {
        match self {
            StateKind::Value => "value",
            StateKind::List => "list",
            StateKind::Map => "map",
        }
    }
}

/// What a function asks for when it opens a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDescriptor {
    /// The state's name (stable across module versions: savepoints address state by it).
    pub name: String,
    /// Its shape.
    pub kind: StateKind,
    /// The function's own time-to-live, if any (the job spec's wins).
    pub ttl: Option<TtlSpec>,
}

/// A state a module declares it opens (`eddy:udf/state-schema`): what an upgrade is checked against.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeclaredState {
    /// The name the state is opened under.
    pub name: String,
    /// Its shape.
    pub kind: StateKind,
    /// Its time-to-live in milliseconds, if it has one.
    pub ttl_ms: Option<u64>,
}

/// Why an operator's new module cannot take over its old module's state, or what could not be checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCompatibility {
    /// Changes that would misread or drop state: the upgrade is refused.
    pub refused: Vec<String>,
    /// What was not checked, or is dropped because the upgrade allows it.
    pub warnings: Vec<String>,
}

/// Compares the states an operator's running module declares with its new module's. `spec_ttl`: the job spec
/// sets one time-to-live for all of the operator's states (then a module's own does not change the format).
/// A state the new module no longer opens is refused unless `allow_dropped`; another kind, or a time-to-live
/// switched on or off (entries then carry a stamp, or not), is always refused.
pub fn check_state_upgrade(
    old: Option<&[DeclaredState]>,
    new: Option<&[DeclaredState]>,
    spec_ttl: bool,
    allow_dropped: bool,
) -> StateCompatibility {
    let mut result = StateCompatibility::default();
    let (old, new) = match (old, new) {
        (Some(old), Some(new)) => (old, new),
        (None, _) => {
            result.warnings.push("the running module does not declare its states, so they were not checked".into());
            return result;
        }
        (Some(_), None) => {
            result
                .warnings
                .push("the new module does not declare its states, so they were not checked against the old".into());
            return result;
        }
    };
    for before in old {
        match new.iter().find(|s| s.name == before.name) {
            None if allow_dropped => result.warnings.push(format!(
                "state `{}` is no longer opened; its entries stay in the job's state unused",
                before.name
            )),
            None => result.refused.push(format!(
                "state `{}` ({}) is not declared by the new module: its contents would be dropped (allow that with \
                 allow_non_restored_state)",
                before.name,
                before.kind.name()
            )),
            Some(after) if after.kind != before.kind => result.refused.push(format!(
                "state `{}` was a {} state and would be read as a {} state",
                before.name,
                before.kind.name(),
                after.kind.name()
            )),
            Some(after) if !spec_ttl && after.ttl_ms.is_some() != before.ttl_ms.is_some() => {
                let (was, now) = if before.ttl_ms.is_some() { ("has", "without") } else { ("has no", "with") };
                result.refused.push(format!(
                    "state `{}` {was} a time-to-live and would be read {now} one (its entries are stored differently)",
                    before.name
                ));
            }
            Some(_) => {}
        }
    }
    result
}

struct Registered {
    name: String,
    kind: StateKind,
    id: StateId,
    ttl: Option<TtlSpec>,
    cursor: usize,
    /// The store drops expired entries itself: no cleanup steps.
    background: bool,
}

/// The keyed state of one operator in one subtask, as user functions see it.
pub struct KeyedState {
    store: Box<dyn KeyedStateStore>,
    /// The first failure of the store since it was last taken: it fails the task whatever the guest does with the
    /// error it got, so that no guest can carry on past a lost write.
    failure: Option<super::StateError>,
    states: Vec<Registered>,
    spec_ttl: Option<TtlSpec>,
    buf: Vec<u8>,
    stamped: Vec<u8>,
}

impl std::fmt::Debug for KeyedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedState").field("states", &self.states.len()).finish()
    }
}

/// A handle to an opened state: an index into [`KeyedState`]'s registry.
pub type StateIndex = usize;

type StateResult<T> = Result<T, String>;

impl KeyedState {
    /// State over `store`; `spec_ttl` is the job spec's time-to-live, which overrides functions' own.
    pub fn new(store: Box<dyn KeyedStateStore>, spec_ttl: Option<TtlSpec>) -> KeyedState {
        KeyedState { store, failure: None, states: Vec::new(), spec_ttl, buf: Vec::new(), stamped: Vec::new() }
    }

    /// The store's first failure since the last call, if any.
    pub fn take_failure(&mut self) -> Option<super::StateError> {
        self.failure.take()
    }

    /// The underlying store.
    pub fn store(&mut self) -> &mut dyn KeyedStateStore {
        self.store.as_mut()
    }

    /// Opens (or re-opens) a state. Re-opening with another shape is an error.
    pub fn open(&mut self, descriptor: &StateDescriptor) -> StateResult<StateIndex> {
        if descriptor.name.is_empty() || descriptor.name.len() > 200 {
            return Err("a state name must have 1 to 200 characters".into());
        }
        if let Some(i) = self.states.iter().position(|s| s.name == descriptor.name) {
            let existing = &self.states[i];
            if existing.kind != descriptor.kind {
                return Err(format!(
                    "state `{}` is a {} state; it cannot be opened as a {} state",
                    descriptor.name,
                    existing.kind.name(),
                    descriptor.kind.name()
                ));
            }
            return Ok(i);
        }
        let id = self.store.register(&descriptor.name);
        let ttl = self.spec_ttl.or(descriptor.ttl);
        let background = ttl.is_some_and(|ttl| {
            ttl.cleanup != TtlCleanup::FullSnapshot
                && self.store.expire_in_background(id, Expiry { kind: descriptor.kind, ttl })
        });
        self.states.push(Registered {
            name: descriptor.name.clone(),
            kind: descriptor.kind,
            id,
            ttl,
            cursor: 0,
            background,
        });
        Ok(self.states.len() - 1)
    }

    fn registered(&self, index: StateIndex, kind: StateKind) -> StateResult<(StateId, Option<TtlSpec>)> {
        match self.states.get(index) {
            Some(s) if s.kind == kind => Ok((s.id, s.ttl)),
            Some(s) => Err(format!("state `{}` is a {} state, not a {} state", s.name, s.kind.name(), kind.name())),
            None => Err(format!("no state with index {index}")),
        }
    }

    /// Runs a step of incremental time-to-live cleanup on a state.
    fn clean(&mut self, index: StateIndex, now: i64) -> StateResult<()> {
        let state = &mut self.states[index];
        let (Some(ttl), kind) = (state.ttl, state.kind) else { return Ok(()) };
        if state.background {
            return Ok(());
        }
        let TtlCleanup::Incremental { entries } = ttl.cleanup else { return Ok(()) };
        let mut is_expired = |entry: &[u8]| entry_expired(kind, &ttl, entry, now);
        state.cursor = self
            .store
            .cleanup_step(state.id, state.cursor, entries, &mut is_expired)
            .map_err(|e| backend_failed(&mut self.failure, e))?;
        Ok(())
    }

    /// Reads a stamped entry, applying visibility, cleanup on read and refresh on read.
    fn read_stamped(
        &mut self,
        id: StateId,
        ttl: Option<TtlSpec>,
        key: StateKey<'_>,
        ns: &[u8],
        now: i64,
    ) -> StateResult<Option<Vec<u8>>> {
        let mut buf = std::mem::take(&mut self.buf);
        let found = self.store.get_into(id, key, ns, &mut buf).map_err(|e| backend_failed(&mut self.failure, e))?;
        let result = match (found, ttl) {
            (false, _) => None,
            (true, None) => Some(buf.clone()),
            (true, Some(ttl)) => {
                let (updated, payload) = ttl::split(&buf);
                if ttl::expired(&ttl, updated, now) {
                    let payload = payload.to_vec();
                    self.store.remove(id, key, ns).map_err(|e| backend_failed(&mut self.failure, e))?;
                    (ttl.visibility == TtlVisibility::ReturnExpiredIfNotCleanedUp).then_some(payload)
                } else {
                    let payload = payload.to_vec();
                    if ttl::refresh_on_read(&ttl) {
                        ttl::stamp(now, &payload, &mut self.stamped);
                        self.store.put(id, key, ns, &self.stamped).map_err(|e| backend_failed(&mut self.failure, e))?;
                    }
                    Some(payload)
                }
            }
        };
        self.buf = buf;
        Ok(result)
    }

    fn write_stamped(
        &mut self,
        id: StateId,
        ttl: Option<TtlSpec>,
        key: StateKey<'_>,
        ns: &[u8],
        value: &[u8],
        now: i64,
    ) -> StateResult<()> {
        match ttl {
            None => self.store.put(id, key, ns, value),
            Some(_) => {
                ttl::stamp(now, value, &mut self.stamped);
                self.store.put(id, key, ns, &self.stamped)
            }
        }
        .map_err(|e| backend_failed(&mut self.failure, e))
    }

    /// A value state's value.
    pub fn value_get(&mut self, index: StateIndex, key: StateKey<'_>, now: i64) -> StateResult<Option<Vec<u8>>> {
        let (id, ttl) = self.registered(index, StateKind::Value)?;
        self.clean(index, now)?;
        self.read_stamped(id, ttl, key, b"", now)
    }

    /// Sets a value state.
    pub fn value_set(&mut self, index: StateIndex, key: StateKey<'_>, value: &[u8], now: i64) -> StateResult<()> {
        let (id, ttl) = self.registered(index, StateKind::Value)?;
        self.clean(index, now)?;
        self.write_stamped(id, ttl, key, b"", value, now)
    }

    /// Clears a state of any shape for `key`.
    pub fn clear(&mut self, index: StateIndex, key: StateKey<'_>, now: i64) -> StateResult<()> {
        let state = self.states.get(index).ok_or_else(|| format!("no state with index {index}"))?;
        let (id, kind) = (state.id, state.kind);
        self.clean(index, now)?;
        let removed = match kind {
            // One entry, under the empty namespace: a point delete, not a scan of the key's entries.
            StateKind::Value | StateKind::List => self.store.remove(id, key, b""),
            StateKind::Map => self.store.remove_key(id, key),
        };
        removed.map_err(|e| backend_failed(&mut self.failure, e))
    }

    /// A list state's elements, oldest first (expired elements hidden or returned per visibility).
    pub fn list_get(&mut self, index: StateIndex, key: StateKey<'_>, now: i64) -> StateResult<Vec<Vec<u8>>> {
        let (id, ttl) = self.registered(index, StateKind::List)?;
        self.clean(index, now)?;
        let mut buf = std::mem::take(&mut self.buf);
        let found = self.store.get_into(id, key, b"", &mut buf).map_err(|e| backend_failed(&mut self.failure, e))?;
        if !found {
            self.buf = buf;
            return Ok(Vec::new());
        }
        let mut visible = Vec::new();
        let mut alive = Vec::new();
        let mut changed = false;
        for element in frames(&buf) {
            match ttl {
                None => visible.push(element.to_vec()),
                Some(ttl) => {
                    let (updated, payload) = ttl::split(element);
                    if ttl::expired(&ttl, updated, now) {
                        changed = true;
                        if ttl.visibility == TtlVisibility::ReturnExpiredIfNotCleanedUp {
                            visible.push(payload.to_vec());
                        }
                    } else {
                        visible.push(payload.to_vec());
                        if ttl::refresh_on_read(&ttl) {
                            changed = true;
                            alive.push((now, payload.to_vec()));
                        } else {
                            alive.push((updated, payload.to_vec()));
                        }
                    }
                }
            }
        }
        if changed {
            let mut rewritten = Vec::new();
            for (updated, payload) in &alive {
                push_frame(&mut rewritten, Some(*updated), payload);
            }
            if rewritten.is_empty() {
                self.store.remove(id, key, b"").map_err(|e| backend_failed(&mut self.failure, e))?;
            } else {
                self.store.put(id, key, b"", &rewritten).map_err(|e| backend_failed(&mut self.failure, e))?;
            }
        }
        self.buf = buf;
        Ok(visible)
    }

    /// Appends to a list state.
    pub fn list_add(&mut self, index: StateIndex, key: StateKey<'_>, value: &[u8], now: i64) -> StateResult<()> {
        let (id, ttl) = self.registered(index, StateKind::List)?;
        self.clean(index, now)?;
        let mut frame = Vec::with_capacity(value.len() + 12);
        push_frame(&mut frame, ttl.map(|_| now), value);
        self.store.append(id, key, b"", &frame).map_err(|e| backend_failed(&mut self.failure, e))
    }

    /// Replaces a list state's elements.
    pub fn list_update(
        &mut self,
        index: StateIndex,
        key: StateKey<'_>,
        values: &[Vec<u8>],
        now: i64,
    ) -> StateResult<()> {
        let (id, ttl) = self.registered(index, StateKind::List)?;
        self.clean(index, now)?;
        if values.is_empty() {
            return self.store.remove(id, key, b"").map_err(|e| backend_failed(&mut self.failure, e));
        }
        let mut encoded = Vec::new();
        for value in values {
            push_frame(&mut encoded, ttl.map(|_| now), value);
        }
        self.store.put(id, key, b"", &encoded).map_err(|e| backend_failed(&mut self.failure, e))
    }

    /// A map state's value under `user_key`.
    pub fn map_get(
        &mut self,
        index: StateIndex,
        key: StateKey<'_>,
        user_key: &[u8],
        now: i64,
    ) -> StateResult<Option<Vec<u8>>> {
        let (id, ttl) = self.registered(index, StateKind::Map)?;
        self.clean(index, now)?;
        self.read_stamped(id, ttl, key, user_key, now)
    }

    /// Stores a map state entry.
    pub fn map_put(
        &mut self,
        index: StateIndex,
        key: StateKey<'_>,
        user_key: &[u8],
        value: &[u8],
        now: i64,
    ) -> StateResult<()> {
        let (id, ttl) = self.registered(index, StateKind::Map)?;
        self.clean(index, now)?;
        self.write_stamped(id, ttl, key, user_key, value, now)
    }

    /// Removes a map state entry.
    pub fn map_remove(&mut self, index: StateIndex, key: StateKey<'_>, user_key: &[u8], now: i64) -> StateResult<()> {
        let (id, _) = self.registered(index, StateKind::Map)?;
        self.clean(index, now)?;
        self.store.remove(id, key, user_key).map_err(|e| backend_failed(&mut self.failure, e))
    }

    /// A map state's visible entries in user-key byte order.
    pub fn map_entries(
        &mut self,
        index: StateIndex,
        key: StateKey<'_>,
        now: i64,
    ) -> StateResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let (id, ttl) = self.registered(index, StateKind::Map)?;
        self.clean(index, now)?;
        let entries = self.store.entries(id, key).map_err(|e| backend_failed(&mut self.failure, e))?;
        let Some(ttl) = ttl else { return Ok(entries) };
        let mut visible = Vec::with_capacity(entries.len());
        for (user_key, _) in entries {
            if let Some(value) = self.read_stamped(id, Some(ttl), key, &user_key, now)? {
                visible.push((user_key, value));
            }
        }
        Ok(visible)
    }

    /// Hands every entry to `out` in canonical order, without entries whose time-to-live has passed (Flink's
    /// cleanup in full snapshots).
    pub fn snapshot_each(&mut self, now: i64, out: &mut dyn FnMut(crate::checkpoint::EntryRef<'_>)) -> StateResult<()> {
        let ttls: Vec<(StateId, StateKind, Option<TtlSpec>)> =
            self.states.iter().map(|s| (s.id, s.kind, s.ttl)).collect();
        let mut keep = |id: StateId, value: &[u8]| match ttls.iter().find(|(i, _, _)| *i == id) {
            Some((_, kind, Some(ttl))) => !entry_expired(*kind, ttl, value, now),
            _ => true,
        };
        self.store.snapshot_each(&mut keep, out).map_err(|e| backend_failed(&mut self.failure, e))
    }

    /// [`KeyedState::snapshot_each`]'s entries, collected (tests).
    pub fn snapshot(&mut self, now: i64) -> StateResult<Vec<super::SnapshotEntry>> {
        let mut entries = Vec::new();
        self.snapshot_each(now, &mut |e| entries.push(e.to_owned()))?;
        Ok(entries)
    }

    /// The store's own files for checkpoint `checkpoint`, if it keeps state in files (see
    /// [`super::KeyedStateStore::checkpoint_files`]). Expired entries are in them until compactions drop them;
    /// reads hide them either way.
    pub fn checkpoint_files(&mut self, checkpoint: CheckpointId) -> StateResult<Option<super::StateFiles>> {
        self.store.checkpoint_files(checkpoint).map_err(|e| backend_failed(&mut self.failure, e))
    }

    /// Tells the store that checkpoint `checkpoint` completed.
    pub fn checkpoint_complete(&mut self, checkpoint: CheckpointId) {
        self.store.checkpoint_complete(checkpoint);
    }

    /// Tells the store that checkpoint `checkpoint` was given up.
    pub fn checkpoint_aborted(&mut self, checkpoint: CheckpointId) {
        self.store.checkpoint_aborted(checkpoint);
    }

    /// Loads a snapshot's entries, before any state is opened.
    pub fn restore(&mut self, entries: &[super::SnapshotEntry]) -> StateResult<()> {
        self.store.restore(entries).map_err(|e| backend_failed(&mut self.failure, e))
    }
}

/// Notes a failure of the store and words it for the caller.
fn backend_failed(slot: &mut Option<super::StateError>, error: super::StateError) -> String {
    let message = error.to_string();
    slot.get_or_insert(error);
    message
}

/// How a store tells an expired entry of a state with a time-to-live, for stores that drop them themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    kind: StateKind,
    ttl: TtlSpec,
}

impl Expiry {
    /// How entries of a `kind` state with time-to-live `ttl` expire.
    pub fn new(kind: StateKind, ttl: TtlSpec) -> Expiry {
        Expiry { kind, ttl }
    }

    /// Whether `entry`, as the store holds it, has expired at processing time `now` (a list only when every
    /// element has).
    pub fn expired(&self, entry: &[u8], now: i64) -> bool {
        entry_expired(self.kind, &self.ttl, entry, now)
    }
}

/// Whether a stored entry is entirely expired (a list only when all its elements are).
fn entry_expired(kind: StateKind, ttl: &TtlSpec, entry: &[u8], now: i64) -> bool {
    match kind {
        StateKind::Value | StateKind::Map => ttl::expired(ttl, ttl::split(entry).0, now),
        StateKind::List => frames(entry).all(|element| ttl::expired(ttl, ttl::split(element).0, now)),
    }
}

/// Appends one list element: `len:u32` then (stamp and) payload.
fn push_frame(out: &mut Vec<u8>, stamp: Option<i64>, payload: &[u8]) {
    let len = payload.len() + if stamp.is_some() { 8 } else { 0 };
    out.extend_from_slice(&(len as u32).to_le_bytes());
    if let Some(time) = stamp {
        out.extend_from_slice(&time.to_le_bytes());
    }
    out.extend_from_slice(payload);
}

/// The elements of an encoded list.
fn frames(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let element = rest.get(..len)?;
        bytes = &rest[len..];
        Some(element)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Millis, TtlUpdate};
    use crate::state::MemoryStateStore;

    const K: StateKey<'static> = StateKey { group: 0, key: b"k" };

    fn ttl(update: TtlUpdate, visibility: TtlVisibility, cleanup: TtlCleanup) -> TtlSpec {
        TtlSpec { time_to_live: Millis(100), update, visibility, cleanup }
    }

    fn state_with(ttl: Option<TtlSpec>, kind: StateKind) -> (KeyedState, StateIndex) {
        let mut state = KeyedState::new(Box::new(MemoryStateStore::default()), None);
        let index = state.open(&StateDescriptor { name: "s".into(), kind, ttl }).expect("open");
        (state, index)
    }

    fn declared(name: &str, kind: StateKind, ttl_ms: Option<u64>) -> DeclaredState {
        DeclaredState { name: name.into(), kind, ttl_ms }
    }

    #[test]
    fn upgrades_keep_added_and_unchanged_states_and_refuse_misreads() {
        let old = [declared("count", StateKind::Value, None), declared("seen", StateKind::Map, Some(60_000))];
        let same_plus_one = [
            declared("count", StateKind::Value, None),
            declared("seen", StateKind::Map, Some(5_000)),
            declared("new", StateKind::List, None),
        ];
        assert_eq!(check_state_upgrade(Some(&old), Some(&same_plus_one), false, false), StateCompatibility::default());

        let retyped = [declared("count", StateKind::List, None), declared("seen", StateKind::Map, None)];
        let verdict = check_state_upgrade(Some(&old), Some(&retyped), false, true);
        assert_eq!(verdict.refused.len(), 2, "{verdict:?}");
        assert!(verdict.refused[0].contains("was a value state and would be read as a list state"), "{verdict:?}");
        assert!(verdict.refused[1].contains("has a time-to-live and would be read without one"), "{verdict:?}");
        // A time-to-live for every state from the job spec keeps the stored format whatever the module says.
        let verdict = check_state_upgrade(Some(&old), Some(&retyped), true, true);
        assert_eq!(verdict.refused.len(), 1, "{verdict:?}");
    }

    #[test]
    fn a_dropped_state_needs_allow_non_restored_state_and_undeclared_modules_are_not_checked() {
        let old = [declared("count", StateKind::Value, None), declared("gone", StateKind::List, None)];
        let new = [declared("count", StateKind::Value, None)];
        let refused = check_state_upgrade(Some(&old), Some(&new), false, false);
        assert_eq!(refused.refused.len(), 1);
        assert!(refused.refused[0].contains("`gone` (list) is not declared by the new module"), "{refused:?}");
        let allowed = check_state_upgrade(Some(&old), Some(&new), false, true);
        assert!(allowed.refused.is_empty() && allowed.warnings.len() == 1, "{allowed:?}");
        for (old, new) in [(None, Some(&new[..])), (Some(&old[..]), None)] {
            let unchecked = check_state_upgrade(old, new, false, false);
            assert!(unchecked.refused.is_empty(), "{unchecked:?}");
            assert!(unchecked.warnings[0].contains("not checked"), "{unchecked:?}");
        }
    }

    #[test]
    fn value_state_without_ttl_keeps_values() {
        let (mut s, v) = state_with(None, StateKind::Value);
        assert_eq!(s.value_get(v, K, 0).expect("get"), None);
        s.value_set(v, K, b"x", 0).expect("set");
        assert_eq!(s.value_get(v, K, i64::MAX).expect("get"), Some(b"x".to_vec()));
        s.clear(v, K, 0).expect("clear");
        assert_eq!(s.value_get(v, K, 0).expect("get"), None);
    }

    #[test]
    fn never_return_expired_hides_and_removes() {
        let never = ttl(TtlUpdate::OnCreateAndWrite, TtlVisibility::NeverReturnExpired, TtlCleanup::FullSnapshot);
        let (mut s, v) = state_with(Some(never), StateKind::Value);
        s.value_set(v, K, b"x", 1_000).expect("set");
        assert_eq!(s.value_get(v, K, 1_099).expect("get"), Some(b"x".to_vec()), "alive just before expiry");
        assert_eq!(s.value_get(v, K, 1_100).expect("get"), None, "expired at set time + ttl");
        assert_eq!(s.store().len(0), 0, "reading an expired entry removes it");
    }

    #[test]
    fn return_expired_if_not_cleaned_up_returns_once() {
        let lax =
            ttl(TtlUpdate::OnCreateAndWrite, TtlVisibility::ReturnExpiredIfNotCleanedUp, TtlCleanup::FullSnapshot);
        let (mut s, v) = state_with(Some(lax), StateKind::Value);
        s.value_set(v, K, b"x", 0).expect("set");
        assert_eq!(s.value_get(v, K, 500).expect("get"), Some(b"x".to_vec()), "expired but not cleaned up yet");
        assert_eq!(s.value_get(v, K, 500).expect("get"), None, "the read cleaned it up");
    }

    #[test]
    fn update_type_decides_whether_reads_extend_life() {
        for (update, alive_at_150) in [(TtlUpdate::OnReadAndWrite, true), (TtlUpdate::OnCreateAndWrite, false)] {
            let config = ttl(update, TtlVisibility::NeverReturnExpired, TtlCleanup::FullSnapshot);
            let (mut s, v) = state_with(Some(config), StateKind::Value);
            s.value_set(v, K, b"x", 0).expect("set");
            assert!(s.value_get(v, K, 60).expect("get").is_some());
            assert_eq!(s.value_get(v, K, 150).expect("get").is_some(), alive_at_150, "{update:?}");
        }
    }

    #[test]
    fn list_and_map_elements_expire_one_by_one() {
        let config = ttl(TtlUpdate::OnCreateAndWrite, TtlVisibility::NeverReturnExpired, TtlCleanup::FullSnapshot);
        let (mut s, l) = state_with(Some(config), StateKind::List);
        s.list_add(l, K, b"old", 0).expect("add");
        s.list_add(l, K, b"new", 50).expect("add");
        assert_eq!(s.list_get(l, K, 120).expect("get"), vec![b"new".to_vec()]);
        assert_eq!(s.list_get(l, K, 200).expect("get"), Vec::<Vec<u8>>::new());

        let m = s.open(&StateDescriptor { name: "m".into(), kind: StateKind::Map, ttl: Some(config) }).expect("open");
        s.map_put(m, K, b"a", b"1", 0).expect("put");
        s.map_put(m, K, b"b", b"2", 60).expect("put");
        let entries = s.map_entries(m, K, 120).expect("entries");
        assert_eq!(entries, vec![(b"b".to_vec(), b"2".to_vec())]);
        assert_eq!(s.map_get(m, K, b"a", 120).expect("get"), None);
    }

    #[test]
    fn incremental_cleanup_removes_untouched_keys() {
        let config =
            ttl(TtlUpdate::OnCreateAndWrite, TtlVisibility::NeverReturnExpired, TtlCleanup::Incremental { entries: 3 });
        let (mut s, v) = state_with(Some(config), StateKind::Value);
        for i in 0..30u32 {
            s.value_set(v, StateKey { group: 0, key: &i.to_be_bytes() }, b"x", 0).expect("set");
        }
        assert_eq!(s.store().len(0), 30);
        // Accesses to one live key after expiry clean up the others, a few per access.
        for _ in 0..12 {
            s.value_set(v, StateKey { group: 0, key: b"live" }, b"y", 1_000).expect("set");
        }
        assert_eq!(s.store().len(0), 1, "only the live key is left");
    }

    #[test]
    fn full_snapshot_cleanup_drops_expired_entries() {
        let config = ttl(TtlUpdate::OnCreateAndWrite, TtlVisibility::NeverReturnExpired, TtlCleanup::FullSnapshot);
        let (mut s, v) = state_with(Some(config), StateKind::Value);
        s.value_set(v, StateKey { group: 0, key: b"old" }, b"x", 0).expect("set");
        s.value_set(v, StateKey { group: 0, key: b"new" }, b"y", 90).expect("set");
        let snapshot = s.snapshot(150).expect("snapshot");
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot[0].key, b"new");
        assert_eq!(s.store().len(0), 2, "the store itself keeps them until read");
    }

    #[test]
    fn the_job_spec_ttl_wins_and_shapes_are_checked() {
        let spec = ttl(TtlUpdate::OnCreateAndWrite, TtlVisibility::NeverReturnExpired, TtlCleanup::FullSnapshot);
        let mut s = KeyedState::new(Box::new(MemoryStateStore::default()), Some(spec));
        let v = s.open(&StateDescriptor { name: "v".into(), kind: StateKind::Value, ttl: None }).expect("open");
        s.value_set(v, K, b"x", 0).expect("set");
        assert_eq!(s.value_get(v, K, 100).expect("get"), None, "the spec's ttl applies");
        let err = s.open(&StateDescriptor { name: "v".into(), kind: StateKind::List, ttl: None }).expect_err("shape");
        assert!(err.contains("is a value state"), "{err}");
        assert!(s.list_add(v, K, b"x", 0).is_err());
    }
}
