//! Records POSTed into a running job over HTTP, through a write-ahead log.
//!
//! A POST is acknowledged once its records are on disk ([`IngestLog::append_each`] writes its frames and syncs
//! them), so a crash loses no acknowledged record. The source reads the log behind the writers; its position is the
//! sequence number of the next record, which checkpoints record, so a restored job reads again exactly what came
//! after its checkpoint. Segments wholly before the newest completed checkpoint's position are deleted; a job
//! without checkpoints keeps its whole input, which it reads again when it starts again.
//!
//! A segment is a file `<first sequence number>.wal` of frames: `len:u32 crc32:u32` then a body of
//! `first_seq:u64 kind:u8` and, for records, the batch in its wire layout. A frame whose length or checksum does
//! not hold (a torn write at a crash) ends the log; the writer cuts it off when it opens the log again.

use super::{Source, SourcePoll, Wake};
use crate::checkpoint::{CheckpointId, SplitPosition};
use crate::error::TaskError;
use crossbeam_channel::{Receiver, Select, Sender};
use eddy_codec::Batch;
use parking_lot::Mutex;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Why records were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The job no longer reads this input.
    #[error("the job is not running, or its input was closed")]
    Closed,
    /// The job is stopping (with a savepoint): it takes nothing more.
    #[error("the job is stopping with a savepoint and takes no more records")]
    Sealed,
    /// The job did not take the records in time (it is backpressured).
    #[error("the job is busy; retry later")]
    Busy,
    /// The records could not be written to disk.
    #[error("cannot store the records: {0}")]
    Storage(String),
    /// The request's records could not be read; none of them was accepted.
    #[error("{0}")]
    Invalid(String),
}

/// Where records go as they are read: each call takes one record.
pub type RecordSink<'a> = dyn FnMut(eddy_codec::Record<'_>) -> Result<(), IngestError> + 'a;

/// Where a request's record values go as they are read: each call takes one value.
pub type ValueSink<'a> = dyn FnMut(&[u8]) -> Result<(), IngestError> + 'a;

const FRAME_RECORDS: u8 = 0;
const FRAME_CLOSE: u8 = 1;
/// A segment is closed for writing past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// A frame larger than this is corrupt: writers never write one (see `FRAME_BYTES`).
const MAX_FRAME: u32 = 1 << 30;
/// Records of one request go into frames of at most this many bytes of records (a larger single record gets a
/// frame of its own), so that a request of many small records neither builds one huge batch in memory nor writes a
/// frame too large to read back.
const FRAME_BYTES: usize = 4 << 20;
/// ... and of at most this many records.
const FRAME_RECORDS_MAX: usize = 16_384;
/// Records written but not yet read past which a POST waits (the job is behind).
const MAX_UNREAD_RECORDS: u64 = 1 << 20;
/// How long a POST waits for a job that is behind.
const INGEST_WAIT: Duration = Duration::from_secs(30);
/// The split id of an HTTP input.
const HTTP_SPLIT: &str = "http";

struct Writer {
    file: File,
    segment_start: u64,
    segment_len: u64,
}

/// The write-ahead log of one HTTP input of one job. It outlives the job's restarts.
pub struct IngestLog {
    dir: PathBuf,
    writer: Mutex<Writer>,
    /// Sequence number of the next record to be written; records below it are durable.
    next_seq: AtomicU64,
    /// Where the source has read to (for backpressure).
    read_seq: AtomicU64,
    closed: AtomicBool,
    /// Set while the job stops with a savepoint: appends are refused (checked under the writer's lock, so once
    /// sealing returns no append is in flight and every acknowledged record is below `written()`).
    sealed: AtomicBool,
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
}

impl std::fmt::Debug for IngestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestLog").field("dir", &self.dir).field("next_seq", &self.next_seq).finish()
    }
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// The segments in `dir`, by first sequence number.
fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(seq) = name.to_str().and_then(|n| n.strip_suffix(".wal")).and_then(|n| n.parse().ok()) {
            found.push(seq);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// One frame as read back.
struct Frame {
    first_seq: u64,
    kind: u8,
    payload: Vec<u8>,
}

/// Reads the next frame; none at the end or at a torn or corrupt frame.
fn read_frame(reader: &mut impl Read) -> Option<(Frame, u64)> {
    let mut header = [0u8; 8];
    reader.read_exact(&mut header).ok()?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(9..=MAX_FRAME).contains(&len) {
        return None;
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).ok()?;
    if crc32fast::hash(&body) != crc {
        return None;
    }
    let first_seq = u64::from_le_bytes(body[..8].try_into().ok()?);
    let kind = body[8];
    let payload = body.split_off(9);
    Some((Frame { first_seq, kind, payload }, 8 + u64::from(len)))
}

fn records_in(frame: &Frame) -> u64 {
    if frame.kind != FRAME_RECORDS {
        return 0;
    }
    Batch::from_wire(frame.payload.clone()).map_or(0, |b| b.len() as u64)
}

impl IngestLog {
    /// Opens (or creates) the log in `dir`, cutting off a torn last frame.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Arc<IngestLog>> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let existing = segments(&dir)?;
        let (segment_start, segment_len, next_seq, closed) = match existing.last() {
            None => (0, 0, 0, false),
            Some(&start) => {
                let path = dir.join(segment_name(start));
                let mut reader = BufReader::new(File::open(&path)?);
                let (mut valid, mut next, mut closed) = (0u64, start, false);
                while let Some((frame, size)) = read_frame(&mut reader) {
                    valid += size;
                    next = frame.first_seq + records_in(&frame);
                    closed |= frame.kind == FRAME_CLOSE;
                }
                let file = std::fs::OpenOptions::new().write(true).open(&path)?;
                file.set_len(valid)?;
                file.sync_all()?;
                (start, valid, next, closed)
            }
        };
        let path = dir.join(segment_name(segment_start));
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        file.seek(SeekFrom::End(0))?;
        sync_dir(&dir)?;
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        Ok(Arc::new(IngestLog {
            dir,
            writer: Mutex::new(Writer { file, segment_start, segment_len }),
            next_seq: AtomicU64::new(next_seq),
            read_seq: AtomicU64::new(0),
            closed: AtomicBool::new(closed),
            sealed: AtomicBool::new(false),
            wake_tx,
            wake_rx,
        }))
    }

    /// Where the log lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the records `records` hands over durably, as one unit: returns how many once all are on disk, or
    /// fails with none of them accepted (what was written is cut off again). Records go into frames of bounded
    /// size as they come, so a request costs memory for one frame, not for all its records.
    pub fn append_each(
        &self,
        records: impl FnOnce(&mut RecordSink<'_>) -> Result<(), IngestError>,
    ) -> Result<u64, IngestError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(IngestError::Closed);
        }
        // A job far behind its input makes writers wait, as a full channel would.
        let deadline = std::time::Instant::now() + INGEST_WAIT;
        while self.next_seq.load(Ordering::SeqCst).saturating_sub(self.read_seq.load(Ordering::SeqCst))
            > MAX_UNREAD_RECORDS
        {
            if std::time::Instant::now() >= deadline {
                return Err(IngestError::Busy);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut writer = self.writer.lock();
        if self.closed.load(Ordering::SeqCst) {
            return Err(IngestError::Closed);
        }
        if self.sealed.load(Ordering::SeqCst) {
            return Err(IngestError::Sealed);
        }
        let first_seq = self.next_seq.load(Ordering::SeqCst);
        self.rotate_if_full(&mut writer, first_seq)?;
        let start_len = writer.segment_len;
        let mut seq = first_seq;
        let mut batch = Batch::new();
        let written = || -> Result<(), IngestError> {
            records(&mut |record: eddy_codec::Record<'_>| {
                let size = record.value.len() + record.key.map_or(0, <[u8]>::len) + record.headers.raw().len();
                if !batch.is_empty() && (batch.len() >= FRAME_RECORDS_MAX || batch.data_len() + size > FRAME_BYTES) {
                    write_frame(&mut writer, FRAME_RECORDS, seq, &batch.to_wire())?;
                    seq += batch.len() as u64;
                    batch.clear();
                }
                batch.push_record(&record);
                Ok(())
            })?;
            if !batch.is_empty() {
                write_frame(&mut writer, FRAME_RECORDS, seq, &batch.to_wire())?;
                seq += batch.len() as u64;
            }
            writer.file.sync_data().map_err(storage)
        };
        if let Err(e) = written() {
            // Whatever reached the file is cut off again, so the next request starts where this one did.
            let _ = writer.file.set_len(start_len);
            writer.segment_len = start_len;
            return Err(e);
        }
        self.next_seq.store(seq, Ordering::SeqCst);
        drop(writer);
        let _ = self.wake_tx.try_send(());
        Ok(seq - first_seq)
    }

    /// Writes `batch`'s records durably (see [`IngestLog::append_each`]).
    pub fn append(&self, batch: &Batch) -> Result<u64, IngestError> {
        self.append_each(|sink| batch.iter().try_for_each(&mut *sink))
    }

    /// Ends the input: the source finishes once it has read everything before.
    pub fn close(&self) -> Result<(), IngestError> {
        let mut writer = self.writer.lock();
        if self.closed.swap(true, Ordering::SeqCst) {
            return Err(IngestError::Closed);
        }
        let seq = self.next_seq.load(Ordering::SeqCst);
        let start_len = writer.segment_len;
        let written =
            write_frame(&mut writer, FRAME_CLOSE, seq, &[]).and_then(|()| writer.file.sync_data().map_err(storage));
        if let Err(e) = written {
            let _ = writer.file.set_len(start_len);
            writer.segment_len = start_len;
            self.closed.store(false, Ordering::SeqCst);
            return Err(e);
        }
        drop(writer);
        let _ = self.wake_tx.try_send(());
        Ok(())
    }

    /// Refuses every later append; returns once no append is in flight, so every record acknowledged so far is
    /// below [`IngestLog::written`].
    pub fn seal(&self) {
        let _writer = self.writer.lock();
        self.sealed.store(true, Ordering::SeqCst);
    }

    /// Takes appends again after [`IngestLog::seal`].
    pub fn unseal(&self) {
        self.sealed.store(false, Ordering::SeqCst);
    }

    /// Whether the input was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Starts a new segment if the open one is full; `first_seq` is the next record's sequence number.
    fn rotate_if_full(&self, writer: &mut Writer, first_seq: u64) -> Result<(), IngestError> {
        if writer.segment_len < SEGMENT_BYTES {
            return Ok(());
        }
        let path = self.dir.join(segment_name(first_seq));
        writer.file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(storage)?;
        writer.segment_start = first_seq;
        writer.segment_len = 0;
        sync_dir(&self.dir).map_err(storage)
    }

    /// Makes the next record's sequence number at least `seq`: a job started from another job's savepoint reads
    /// its own log from the position that savepoint recorded.
    pub fn skip_to(&self, seq: u64) {
        let _writer = self.writer.lock();
        self.next_seq.fetch_max(seq, Ordering::SeqCst);
    }

    /// Deletes segments that hold only records before `seq`.
    pub fn truncate_before(&self, seq: u64) {
        let writer = self.writer.lock();
        let Ok(all) = segments(&self.dir) else { return };
        for pair in all.windows(2) {
            let (start, next_start) = (pair[0], pair[1]);
            if next_start <= seq && start != writer.segment_start {
                let _ = std::fs::remove_file(self.dir.join(segment_name(start)));
            }
        }
    }

    /// Records written but not yet read by the job.
    pub fn unread(&self) -> u64 {
        self.written().saturating_sub(self.read_seq.load(Ordering::SeqCst))
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst)
    }
}

fn storage(e: std::io::Error) -> IngestError {
    IngestError::Storage(e.to_string())
}

/// Appends one frame to the open segment, unsynced. A body too large to be read back is refused, never written.
fn write_frame(writer: &mut Writer, kind: u8, first_seq: u64, payload: &[u8]) -> Result<(), IngestError> {
    let body_len = 9 + payload.len();
    if body_len > MAX_FRAME as usize {
        return Err(IngestError::Invalid(format!("a record of {} bytes is larger than an input takes", payload.len())));
    }
    let mut frame = Vec::with_capacity(8 + body_len);
    frame.extend_from_slice(&(body_len as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&first_seq.to_le_bytes());
    frame.push(kind);
    frame.extend_from_slice(payload);
    let crc = crc32fast::hash(&frame[8..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    writer.file.write_all(&frame).map_err(storage)?;
    writer.segment_len += frame.len() as u64;
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn arrival_time() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The writing end of an HTTP source, held by the API.
#[derive(Debug, Clone)]
pub struct IngestHandle {
    log: Arc<IngestLog>,
}

impl IngestHandle {
    /// A handle on `log`.
    pub fn new(log: Arc<IngestLog>) -> IngestHandle {
        IngestHandle { log }
    }

    /// Hands records to the job: they are on disk when this returns `Ok` (with how many). Each record gets its
    /// arrival time as timestamp here, so that a job reading them again after a restore sees the same times.
    pub fn push(&self, batch: &Batch) -> Result<u64, IngestError> {
        let now = arrival_time();
        self.log.append_each(|sink| {
            batch.iter().try_for_each(|record| sink(eddy_codec::Record { timestamp: now, ..record }))
        })
    }

    /// Hands over the record values `values` produces as it reads a request, as one unit (see
    /// [`IngestLog::append_each`]); each becomes a record with its arrival time as timestamp.
    pub fn push_values(
        &self,
        values: impl FnOnce(&mut ValueSink<'_>) -> Result<(), IngestError>,
    ) -> Result<u64, IngestError> {
        let now = arrival_time();
        self.log.append_each(|sink| {
            values(&mut |value: &[u8]| {
                sink(eddy_codec::Record { timestamp: now, key: None, value, headers: Default::default() })
            })
        })
    }

    /// Ends the input: the source finishes once earlier records are read, and event time reaches its end.
    pub fn close(&self) -> Result<(), IngestError> {
        self.log.close()
    }

    /// The log behind the handle.
    pub fn log(&self) -> &Arc<IngestLog> {
        &self.log
    }
}

/// The reading end, run by the source task.
pub struct IngestSource {
    log: Arc<IngestLog>,
    /// The sequence number of the next record to hand out.
    position: u64,
    /// The open segment and the sequence number of its next frame.
    reader: Option<(BufReader<File>, u64)>,
}

impl IngestSource {
    /// A source reading `log` from the start (or from a restored position). The log keeps its records until a
    /// completed checkpoint is past them: a job without checkpoints reads its whole input again when it starts
    /// again.
    pub fn new(log: Arc<IngestLog>) -> IngestSource {
        log.read_seq.store(0, Ordering::SeqCst);
        IngestSource { log, position: 0, reader: None }
    }

    /// Opens the segment holding `self.position`.
    fn open_reader(&mut self) -> Result<(), TaskError> {
        let fail = |e: std::io::Error| TaskError::external(format!("cannot read the HTTP input log: {e}"));
        let all = segments(&self.log.dir).map_err(fail)?;
        let Some(&start) = all.iter().rev().find(|&&s| s <= self.position) else {
            return Err(TaskError::external(format!(
                "the HTTP input log no longer holds record {} (it starts at {})",
                self.position,
                all.first().copied().unwrap_or(0)
            )));
        };
        let file = File::open(self.log.dir.join(segment_name(start))).map_err(fail)?;
        self.reader = Some((BufReader::with_capacity(1 << 16, file), start));
        Ok(())
    }
}

impl Source for IngestSource {
    fn position(&self) -> Vec<SplitPosition> {
        vec![SplitPosition { split: HTTP_SPLIT.into(), offset: self.position }]
    }

    fn restore(&mut self, positions: &[SplitPosition]) -> Result<(), TaskError> {
        if let Some(p) = positions.iter().find(|p| p.split == HTTP_SPLIT) {
            self.position = p.offset;
            self.reader = None;
            self.log.skip_to(p.offset);
            // Writers wait while the job is far behind: it is behind only from here.
            self.log.read_seq.store(p.offset, Ordering::SeqCst);
        }
        Ok(())
    }

    fn checkpoint_complete(&mut self, _: CheckpointId, positions: &[SplitPosition]) {
        if let Some(p) = positions.iter().find(|p| p.split == HTTP_SPLIT) {
            self.log.truncate_before(p.offset);
        }
    }

    fn poll(&mut self, batch: &mut Batch, _max: usize) -> Result<SourcePoll, TaskError> {
        loop {
            if self.reader.is_none() {
                if self.position >= self.log.written() && !self.log.is_closed() {
                    return Ok(SourcePoll::Pending);
                }
                self.open_reader()?;
            }
            let Some((reader, next_frame)) = &mut self.reader else { return Ok(SourcePoll::Pending) };
            // Only frames below the durable end are complete; a reader never sees one being written.
            if *next_frame >= self.log.written() {
                if self.log.is_closed() {
                    // The close frame follows the last records.
                    if let Some((frame, _)) = read_frame(reader)
                        && frame.kind == FRAME_CLOSE
                    {
                        return Ok(SourcePoll::Finished);
                    }
                    self.reader = None;
                    if self.position >= self.log.written() {
                        return Ok(SourcePoll::Finished);
                    }
                    continue;
                }
                return Ok(SourcePoll::Pending);
            }
            let Some((frame, _)) = read_frame(reader) else {
                // The end of a segment: the next one starts at this position.
                self.reader = None;
                continue;
            };
            if frame.kind == FRAME_CLOSE {
                return Ok(SourcePoll::Finished);
            }
            let records = Batch::from_wire(frame.payload)
                .map_err(|e| TaskError::external(format!("the HTTP input log is damaged: {e:?}")))?;
            let end = frame.first_seq + records.len() as u64;
            *next_frame = end;
            if end <= self.position {
                continue; // before the restored position
            }
            let skip = self.position.saturating_sub(frame.first_seq) as usize;
            for record in records.iter().skip(skip) {
                batch.push_record(&record);
            }
            self.position = end;
            self.log.read_seq.store(end, Ordering::SeqCst);
            return Ok(SourcePoll::Records { split: 0 });
        }
    }

    fn wait(&mut self, wake: &Receiver<Wake>, timeout: Option<Duration>) {
        // Sleeps until a POST arrives (or the task is woken): an idle HTTP source costs nothing.
        let mut select = Select::new();
        select.recv(&self.log.wake_rx);
        select.recv(wake);
        let ready = match timeout {
            Some(timeout) => select.ready_timeout(timeout).ok(),
            None => Some(select.ready()),
        };
        if ready == Some(0) {
            let _ = self.log.wake_rx.try_recv();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(values: &[&str]) -> Batch {
        let mut batch = Batch::new();
        for (i, v) in values.iter().enumerate() {
            batch.push(i as i64, None, v.as_bytes());
        }
        batch
    }

    fn drain(source: &mut IngestSource) -> (Vec<String>, SourcePoll) {
        let mut out = Batch::new();
        let last = loop {
            match source.poll(&mut out, 100).expect("poll") {
                SourcePoll::Records { .. } => continue,
                other => break other,
            }
        };
        (out.iter().map(|r| String::from_utf8_lossy(r.value).to_string()).collect(), last)
    }

    #[test]
    fn acknowledged_records_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = IngestLog::open(dir.path()).expect("open");
        log.append(&records(&["a", "b"])).expect("append");
        log.append(&records(&["c"])).expect("append");
        drop(log);
        // A crash in the middle of a write leaves part of a frame.
        let segment = dir.path().join(segment_name(0));
        let mut file = std::fs::OpenOptions::new().append(true).open(&segment).expect("open");
        file.write_all(&[40, 0, 0, 0, 1, 2]).expect("torn");
        drop(file);
        let log = IngestLog::open(dir.path()).expect("reopen");
        assert_eq!(log.written(), 3);
        log.append(&records(&["d"])).expect("append after the cut");
        let mut source = IngestSource::new(Arc::clone(&log));
        assert_eq!(drain(&mut source), (vec!["a".into(), "b".into(), "c".into(), "d".into()], SourcePoll::Pending));
        log.close().expect("close");
        assert_eq!(drain(&mut source), (vec![], SourcePoll::Finished));
        assert_eq!(log.append(&records(&["e"])), Err(IngestError::Closed));
    }

    #[test]
    fn a_restored_source_reads_on_from_its_position_and_old_segments_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = IngestLog::open(dir.path()).expect("open");
        log.append(&records(&["a", "b"])).expect("append");
        let mut source = IngestSource::new(Arc::clone(&log));
        assert_eq!(drain(&mut source).0, ["a", "b"]);
        let position = source.position();
        log.append(&records(&["c"])).expect("append");
        let mut restored = IngestSource::new(Arc::clone(&log));
        restored.restore(&position).expect("restore");
        assert_eq!(drain(&mut restored).0, ["c"]);
        // A second segment, then a checkpoint past the first: the first is deleted.
        log.writer.lock().segment_len = SEGMENT_BYTES;
        log.append(&records(&["d"])).expect("append");
        assert_eq!(segments(dir.path()).expect("list"), [0, 3]);
        restored.checkpoint_complete(1, &[SplitPosition { split: HTTP_SPLIT.into(), offset: 3 }]);
        assert_eq!(segments(dir.path()).expect("list"), [3]);
        assert_eq!(drain(&mut restored).0, ["d"]);
        let mut too_old = IngestSource::new(log);
        let error = too_old.poll(&mut Batch::new(), 10).expect_err("record 0 is gone");
        assert!(error.message.contains("no longer holds record 0"), "{}", error.message);
    }

    /// Counts the records a source reads until it has nothing more.
    fn count_all(source: &mut IngestSource) -> u64 {
        let mut total = 0;
        loop {
            let mut out = Batch::new();
            match source.poll(&mut out, 10_000).expect("poll") {
                SourcePoll::Records { .. } => total += out.len() as u64,
                _ => return total,
            }
        }
    }

    #[test]
    fn a_request_of_many_small_records_goes_into_bounded_frames_that_all_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = IngestLog::open(dir.path()).expect("open");
        let records = 3 * FRAME_RECORDS_MAX as u64 + 5;
        let accepted = log
            .append_each(|sink| {
                (0..records).try_for_each(|_| {
                    sink(eddy_codec::Record { timestamp: 7, key: None, value: b"0", headers: Default::default() })
                })
            })
            .expect("append");
        assert_eq!(accepted, records);
        // Every frame is small enough to read back, before and after the log is opened again.
        let mut reader = BufReader::new(File::open(dir.path().join(segment_name(0))).expect("segment"));
        let mut frames = 0;
        while let Some((frame, size)) = read_frame(&mut reader) {
            assert!(size <= (FRAME_BYTES + FRAME_RECORDS_MAX * 64) as u64, "frame of {size} bytes");
            assert_eq!(frame.kind, FRAME_RECORDS);
            frames += 1;
        }
        assert_eq!(frames, 4);
        assert_eq!(count_all(&mut IngestSource::new(Arc::clone(&log))), records);
        drop(log);
        let log = IngestLog::open(dir.path()).expect("reopen");
        assert_eq!(log.written(), records, "nothing acknowledged is cut off when the log opens again");
        assert_eq!(count_all(&mut IngestSource::new(log)), records);
    }

    #[test]
    fn a_request_that_fails_midway_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = IngestLog::open(dir.path()).expect("open");
        log.append(&records(&["a"])).expect("append");
        let before = std::fs::metadata(dir.path().join(segment_name(0))).expect("segment").len();
        let failed = log.append_each(|sink| {
            for _ in 0..2 * FRAME_RECORDS_MAX {
                sink(eddy_codec::Record { timestamp: 0, key: None, value: b"x", headers: Default::default() })?;
            }
            Err(IngestError::Invalid("line 32769 is not JSON".into()))
        });
        assert_eq!(failed, Err(IngestError::Invalid("line 32769 is not JSON".into())));
        assert_eq!(log.written(), 1, "none of the failed request's records counts");
        let after = std::fs::metadata(dir.path().join(segment_name(0))).expect("segment").len();
        assert_eq!(after, before, "the frames it wrote were cut off");
        log.append(&records(&["b"])).expect("append");
        let mut source = IngestSource::new(log);
        assert_eq!(drain(&mut source).0, ["a", "b"]);
    }
}
