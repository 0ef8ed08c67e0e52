//! What a task's snapshot holds, and its encoding: a magic header and version, then the structs below in the
//! postcard encoding. Documented in `docs/state-format.md`; a savepoint is made of the same parts.

use super::chunks::StateChunk;
use crate::error::TaskError;
use crate::keys::KeyGroup;
use crate::state::{SnapshotEntry, StateFiles};
use crate::timers::TimeDomain;
use serde::{Deserialize, Serialize};

/// The first bytes of every task snapshot file.
const MAGIC: &[u8; 8] = b"EDDYSNP\0";
/// The version of the encoding below; a reader refuses versions it does not know. Version 1 had no state files,
/// version 2 held keyed state and timers inline instead of in chunks.
const VERSION: u32 = 3;

/// A registered timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerEntry {
    /// Its clock.
    pub domain: TimeDomain,
    /// When it fires.
    pub timestamp: i64,
    /// The key's group.
    pub group: KeyGroup,
    /// The key.
    pub key: Vec<u8>,
    /// The namespace (a window; empty for process functions).
    pub namespace: Vec<u8>,
}

/// What one operator keeps in a checkpoint, for one subtask.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// Which operator kind and state layout wrote it, such as `window/1`: a restore into an operator that would
    /// read the state differently fails with a clear error instead of misreading it.
    pub layout: String,
    /// Keyed state held inline: only snapshots of versions 1 and 2 have any (later ones keep it in `chunks`).
    pub entries: Vec<SnapshotEntry>,
    /// Timers held inline: only snapshots of versions 1 and 2 have any.
    pub timers: Vec<TimerEntry>,
    /// The operator's own bytes (a file sink's pending part files).
    pub extra: Vec<u8>,
    /// Keyed state held as a state backend's own files instead of `entries` (RocksDB in checkpoints), one set per
    /// store: one, or at another parallelism each old subtask's.
    pub files: Vec<StateFiles>,
    /// Keyed state entries and timers, in objects of their own beside the task's snapshot, by key-group range.
    pub chunks: Vec<StateChunk>,
}

impl OperatorSnapshot {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.timers.is_empty()
            && self.extra.is_empty()
            && self.files.is_empty()
            && self.chunks.is_empty()
    }

    /// Whether it holds keyed state entries (inline or in chunks).
    pub fn has_entries(&self) -> bool {
        !self.entries.is_empty() || self.chunks.iter().any(|c| c.kind == super::chunks::ChunkKind::Entries)
    }

    /// Fails unless the snapshot was written by an operator with state layout `layout` (or holds nothing); `kind`
    /// names the operator kind reading it (the caller adds the uid).
    pub fn expect_layout(&self, kind: &str, layout: &str) -> Result<(), TaskError> {
        if self.layout == layout || self.is_empty() {
            return Ok(());
        }
        Err(TaskError::user(format!(
            "the checkpoint holds state of layout `{}`, which this {kind} operator (layout `{layout}`) cannot read; \
             give the operator a new uid to start it without state",
            self.layout
        )))
    }
}

/// Where a source split had read to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPosition {
    /// The split's stable id (a file's path, `http`, a Kafka topic and partition).
    pub split: String,
    /// The position within it: the next record, line or offset to read.
    pub offset: u64,
}

/// A source task's part of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSnapshot {
    /// Per split, where to read on.
    pub positions: Vec<SplitPosition>,
    /// Per split, the largest event time seen (the watermark resumes from it).
    pub max_timestamps: Vec<i64>,
    /// The watermark the source had emitted.
    pub watermark: i64,
}

/// What one task acknowledges a checkpoint with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    /// The task's name, `<head uid>-<subtask>`.
    pub task: String,
    /// Each chained operator's snapshot, by uid and subtask.
    pub operators: Vec<(String, u32, OperatorSnapshot)>,
    /// For a source task, its position.
    pub source: Option<SourceSnapshot>,
    /// For a task with inputs, each input channel's watermark (`i64::MIN` before the first).
    pub input_watermarks: Vec<i64>,
    /// For a task with inputs, the combined watermark.
    pub watermark: i64,
    /// The task had finished (every input ended) before the checkpoint: on restore it has nothing left to do.
    pub finished: bool,
}

impl TaskSnapshot {
    /// The encoded snapshot.
    pub fn encode(&self) -> Result<Vec<u8>, TaskError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        postcard::to_io(self, &mut out)
            .map_err(|e| TaskError::internal(format!("cannot encode the snapshot of {}: {e}", self.task)))?;
        Ok(out)
    }

    /// Decodes a snapshot written by [`TaskSnapshot::encode`].
    pub fn decode(bytes: &[u8]) -> Result<TaskSnapshot, TaskError> {
        let corrupt = |why: String| TaskError::external(format!("a checkpoint file is unreadable: {why}"));
        let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| corrupt("not a task snapshot".into()))?;
        let (version, body) = body.split_at_checked(4).ok_or_else(|| corrupt("truncated".into()))?;
        let version = u32::from_le_bytes([version[0], version[1], version[2], version[3]]);
        match version {
            VERSION => postcard::from_bytes(body).map_err(|e| corrupt(e.to_string())),
            2 => postcard::from_bytes::<older::TaskSnapshot<older::OperatorV2>>(body)
                .map(TaskSnapshot::from)
                .map_err(|e| corrupt(e.to_string())),
            1 => postcard::from_bytes::<older::TaskSnapshot<older::OperatorV1>>(body)
                .map(TaskSnapshot::from)
                .map_err(|e| corrupt(e.to_string())),
            _ => Err(corrupt(format!("format version {version}; this Eddy reads versions 1 to {VERSION}"))),
        }
    }
}

/// Versions 1 and 2 of the encoding, read still: version 2 without chunks, version 1 without state files either.
mod older {
    use super::{SourceSnapshot, TimerEntry};
    use crate::state::{SnapshotEntry, StateFiles};
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct OperatorV1 {
        layout: String,
        entries: Vec<SnapshotEntry>,
        timers: Vec<TimerEntry>,
        extra: Vec<u8>,
    }

    #[derive(Deserialize)]
    pub struct OperatorV2 {
        layout: String,
        entries: Vec<SnapshotEntry>,
        timers: Vec<TimerEntry>,
        extra: Vec<u8>,
        files: Vec<StateFiles>,
    }

    impl From<OperatorV1> for super::OperatorSnapshot {
        fn from(o: OperatorV1) -> super::OperatorSnapshot {
            super::OperatorSnapshot {
                layout: o.layout,
                entries: o.entries,
                timers: o.timers,
                extra: o.extra,
                ..super::OperatorSnapshot::default()
            }
        }
    }

    impl From<OperatorV2> for super::OperatorSnapshot {
        fn from(o: OperatorV2) -> super::OperatorSnapshot {
            super::OperatorSnapshot {
                layout: o.layout,
                entries: o.entries,
                timers: o.timers,
                extra: o.extra,
                files: o.files,
                chunks: Vec::new(),
            }
        }
    }

    #[derive(Deserialize)]
    pub struct TaskSnapshot<O> {
        task: String,
        operators: Vec<(String, u32, O)>,
        source: Option<SourceSnapshot>,
        input_watermarks: Vec<i64>,
        watermark: i64,
        finished: bool,
    }

    impl<O: Into<super::OperatorSnapshot>> From<TaskSnapshot<O>> for super::TaskSnapshot {
        fn from(old: TaskSnapshot<O>) -> super::TaskSnapshot {
            super::TaskSnapshot {
                task: old.task,
                operators: old.operators.into_iter().map(|(uid, subtask, o)| (uid, subtask, o.into())).collect(),
                source: old.source,
                input_watermarks: old.input_watermarks,
                watermark: old.watermark,
                finished: old.finished,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_damage_is_reported() {
        let snapshot = TaskSnapshot {
            task: "w-0".into(),
            operators: vec![(
                "w".into(),
                0,
                OperatorSnapshot {
                    layout: "window/1".into(),
                    entries: vec![SnapshotEntry {
                        state: "s".into(),
                        group: 7,
                        key: b"k".to_vec(),
                        namespace: vec![1, 2],
                        value: vec![3],
                    }],
                    timers: vec![TimerEntry {
                        domain: TimeDomain::EventTime,
                        timestamp: -5,
                        group: 7,
                        key: b"k".to_vec(),
                        namespace: vec![],
                    }],
                    extra: vec![9],
                    files: vec![StateFiles {
                        format: "rocksdb/1".into(),
                        checkpoint: 4,
                        key_groups: (0, 63),
                        files: vec![crate::state::StateFile {
                            name: "000012.sst".into(),
                            size: 1024,
                            object: "shared/w-0/x-000012.sst".into(),
                            upload: false,
                        }],
                        local: None,
                    }],
                    chunks: vec![StateChunk {
                        kind: super::super::chunks::ChunkKind::Entries,
                        object: "state/w-0-000000".into(),
                        key_groups: (3, 9),
                        records: 12,
                        bytes: 300,
                    }],
                },
            )],
            source: Some(SourceSnapshot {
                positions: vec![SplitPosition { split: "http".into(), offset: 42 }],
                max_timestamps: vec![i64::MIN],
                watermark: 7,
            }),
            input_watermarks: vec![10, i64::MIN],
            watermark: i64::MIN,
            finished: false,
        };
        let bytes = snapshot.encode().expect("encode");
        assert_eq!(TaskSnapshot::decode(&bytes).expect("decode"), snapshot);
        let truncated = TaskSnapshot::decode(&bytes[..bytes.len() - 3]).expect_err("truncated");
        assert!(truncated.message.contains("unreadable"), "{}", truncated.message);
        let mut newer = bytes.clone();
        newer[8] = 9;
        assert!(TaskSnapshot::decode(&newer).expect_err("version").message.contains("version 9"));
    }

    #[test]
    fn snapshots_of_versions_1_and_2_are_still_read() {
        // Written by hand in the older field orders: version 1 has no state files, neither has chunks.
        let entry =
            SnapshotEntry { state: "s".into(), group: 3, key: b"k".to_vec(), namespace: vec![], value: vec![1] };
        let operator = OperatorSnapshot {
            layout: "process/1".into(),
            entries: vec![entry],
            files: vec![StateFiles { format: "rocksdb/1".into(), checkpoint: 2, ..StateFiles::default() }],
            ..OperatorSnapshot::default()
        };
        let today =
            TaskSnapshot { task: "p-0".into(), operators: vec![("p".into(), 0, operator)], ..TaskSnapshot::default() };
        let encoded = today.encode().expect("encode");
        for version in [1u32, 2] {
            let mut older = Vec::from(&encoded[..8]);
            older.extend_from_slice(&version.to_le_bytes());
            older.extend_from_slice(&older_body(&today, version));
            let mut expected = today.clone();
            if version == 1 {
                expected.operators[0].2.files.clear();
            }
            assert_eq!(TaskSnapshot::decode(&older).expect("decode"), expected, "version {version}");
        }
    }

    /// `snapshot` in version 1's or 2's encoding.
    fn older_body(snapshot: &TaskSnapshot, version: u32) -> Vec<u8> {
        #[derive(Serialize)]
        struct OperatorV1<'a>(&'a str, &'a [SnapshotEntry], &'a [TimerEntry], &'a [u8]);
        #[derive(Serialize)]
        struct OperatorV2<'a>(&'a str, &'a [SnapshotEntry], &'a [TimerEntry], &'a [u8], &'a [StateFiles]);
        #[derive(Serialize)]
        struct Task<'a, O>(&'a str, Vec<(&'a str, u32, O)>, &'a Option<SourceSnapshot>, &'a [i64], i64, bool);
        fn task<'a, O>(snapshot: &'a TaskSnapshot, operator: impl Fn(&'a OperatorSnapshot) -> O) -> Task<'a, O> {
            let operators = snapshot.operators.iter().map(|(uid, subtask, o)| (uid.as_str(), *subtask, operator(o)));
            Task(
                &snapshot.task,
                operators.collect(),
                &snapshot.source,
                &snapshot.input_watermarks,
                snapshot.watermark,
                snapshot.finished,
            )
        }
        let encoded = if version == 1 {
            postcard::to_stdvec(&task(snapshot, |o| OperatorV1(&o.layout, &o.entries, &o.timers, &o.extra)))
        } else {
            postcard::to_stdvec(&task(snapshot, |o| OperatorV2(&o.layout, &o.entries, &o.timers, &o.extra, &o.files)))
        };
        encoded.expect("encode an older version")
    }
}
