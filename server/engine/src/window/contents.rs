//! How window contents are stored: either one accumulator per window slice (aggregate and reduce functions), or the
//! list of records (process-window functions without pre-aggregation, and evictors).
//!
//! Adding records to accumulators is batched: a batch's additions collect in [`PendingAdds`] and reach the user
//! function in one call, unless a trigger needs the contents in between.

use crate::error::TaskError;
use crate::keys::KeyGroup;
use crate::state::{KeyedStateStore, StateId, StateKey};
use eddy_codec::{Batch, Headers, Record};
use std::collections::HashMap;

/// Appends a record (without its key, which the state key holds) to an element list.
pub fn push_element(out: &mut Vec<u8>, record: &Record<'_>) {
    let headers = record.headers.raw();
    let len = 8 + 4 + record.value.len() + headers.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&record.timestamp.to_le_bytes());
    out.extend_from_slice(&(record.value.len() as u32).to_le_bytes());
    out.extend_from_slice(record.value);
    out.extend_from_slice(headers);
}

/// Decodes an element list into `out`, with `key` on every record.
pub fn read_elements(mut bytes: &[u8], key: Option<&[u8]>, out: &mut Batch) {
    while let Some((len, rest)) = bytes.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let Some(frame) = rest.get(..len) else { return };
        bytes = &rest[len..];
        if let Some(record) = decode_element(frame, key) {
            out.push_record(&record);
        }
    }
}

/// Decodes one stored element (also used for reduce accumulators, which are stored as a single element).
pub fn decode_element<'a>(frame: &'a [u8], key: Option<&'a [u8]>) -> Option<Record<'a>> {
    let (ts, rest) = frame.split_first_chunk::<8>()?;
    let (value_len, rest) = rest.split_first_chunk::<4>()?;
    let value_len = u32::from_le_bytes(*value_len) as usize;
    let value = rest.get(..value_len)?;
    let headers = Headers::from_raw(&rest[value_len..]).ok()?;
    Some(Record { timestamp: i64::from_le_bytes(*ts), key, value, headers })
}

/// One accumulator being updated: its key group, and where its key and slice namespace are in `PendingAdds::ids`.
#[derive(Debug, Clone, Copy)]
struct Slot {
    group: KeyGroup,
    at: u32,
    key_len: u32,
    ns_len: u32,
}

/// Accumulators touched by the current batch, with the inputs still to be added to them.
#[derive(Debug, Default)]
pub struct PendingAdds {
    slots: Vec<Slot>,
    /// Every slot's key and namespace, back to back (one buffer instead of two allocations per slot).
    ids: Vec<u8>,
    /// Slot by hash of key and namespace; a collision falls back to comparing bytes.
    index: HashMap<u64, u32, foldhash::fast::RandomState>,
    /// Current accumulators (aggregate) or accumulated records (reduce), one per slot.
    pub accumulators: Batch,
    /// Inputs not yet added.
    pub inputs: Batch,
    /// For each input, its slot.
    pub targets: Vec<u32>,
    buf: Vec<u8>,
}

/// What [`PendingAdds::slot`] found.
pub enum SlotState {
    /// The slice had contents before (in state or earlier in this batch).
    Existing(usize),
    /// The slice is new; the caller must push its first accumulator.
    New,
}

fn id_hash(key: &[u8], ns: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // A fixed seed: the map lives for one batch, and equal ids must hash equally within it.
    let mut hasher = foldhash::fast::FixedState::with_seed(0x5eed).build_hasher();
    hasher.write(key);
    hasher.write_u8(0xff);
    hasher.write(ns);
    hasher.finish()
}

impl PendingAdds {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot_id(&self, slot: &Slot) -> (&[u8], &[u8]) {
        let at = slot.at as usize;
        let key_end = at + slot.key_len as usize;
        (&self.ids[at..key_end], &self.ids[key_end..key_end + slot.ns_len as usize])
    }

    fn find(&self, key: &[u8], ns: &[u8]) -> Option<usize> {
        let hash = id_hash(key, ns);
        let candidate = *self.index.get(&hash)? as usize;
        if self.slot_id(&self.slots[candidate]) == (key, ns) {
            return Some(candidate);
        }
        self.slots.iter().position(|s| self.slot_id(s) == (key, ns))
    }

    /// Finds the slot of `(key, ns)`, loading its accumulator from state on first use.
    pub fn slot(
        &mut self,
        store: &mut dyn KeyedStateStore,
        state: StateId,
        key: StateKey<'_>,
        ns: &[u8],
        reduce: bool,
    ) -> Result<SlotState, TaskError> {
        if let Some(i) = self.find(key.key, ns) {
            return Ok(SlotState::Existing(i));
        }
        let found = store.get_into(state, key, ns, &mut self.buf).map_err(|e| TaskError::internal(e.0))?;
        if !found {
            return Ok(SlotState::New);
        }
        let i = self.register(key, ns);
        if reduce {
            let buf = std::mem::take(&mut self.buf);
            match decode_element(&buf, Some(key.key)) {
                Some(record) => self.accumulators.push_record(&record),
                None => return Err(TaskError::internal("a stored window element is corrupt")),
            }
            self.buf = buf;
        } else {
            self.accumulators.push(0, None, &self.buf);
        }
        Ok(SlotState::Existing(i))
    }

    /// Registers a new slot; the caller pushes its accumulator right after.
    pub fn register(&mut self, key: StateKey<'_>, ns: &[u8]) -> usize {
        let i = self.slots.len();
        let at = self.ids.len() as u32;
        self.ids.extend_from_slice(key.key);
        self.ids.extend_from_slice(ns);
        self.slots.push(Slot { group: key.group, at, key_len: key.key.len() as u32, ns_len: ns.len() as u32 });
        // On a hash collision the first slot keeps the entry; `find` scans for the others.
        self.index.entry(id_hash(key.key, ns)).or_insert(i as u32);
        i
    }

    /// Queues `record` for slot `i`.
    pub fn add_input(&mut self, i: usize, record: &Record<'_>) {
        self.inputs.push_record(record);
        self.targets.push(i as u32);
    }

    /// Writes every accumulator back to state and forgets them. `accumulators` must be up to date.
    pub fn write_back(
        &mut self,
        store: &mut dyn KeyedStateStore,
        state: StateId,
        reduce: bool,
    ) -> Result<(), TaskError> {
        let mut buf = std::mem::take(&mut self.buf);
        for (slot, acc) in self.slots.iter().zip(self.accumulators.iter()) {
            let (key, ns) = self.slot_id(slot);
            let key = StateKey { group: slot.group, key };
            let result = if reduce {
                buf.clear();
                push_element(&mut buf, &acc);
                // Reduce accumulators are stored as one element without the list frame.
                store.put(state, key, ns, &buf[4..])
            } else {
                store.put(state, key, ns, acc.value)
            };
            result.map_err(|e| TaskError::internal(e.0))?;
        }
        self.buf = buf;
        self.slots.clear();
        self.ids.clear();
        self.index.clear();
        self.accumulators.clear();
        self.inputs.clear();
        self.targets.clear();
        Ok(())
    }
}
