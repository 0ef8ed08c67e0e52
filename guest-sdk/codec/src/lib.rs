//! Eddy's record batch and its flat encoding, shared by the host and the guest SDKs.
//!
//! Records move through Eddy in batches, and a batch crosses the WebAssembly boundary as one `list<u8>`: lifting a
//! typed list of records costs about twenty times more per record. The encoding (version 1, little-endian):
//!
//! ```text
//! batch   := count:u32  flags:u32(=0)  row{count}  data
//! row     := timestamp:i64  key_off:u32  key_len:u32  value_off:u32  value_len:u32  headers_off:u32  headers_len:u32
//! headers := n:u16  (name_len:u16  name:utf8  value_len:u32  value){n}
//! ```
//! Offsets are relative to the start of `data`. `key_len == u32::MAX` means the record has no key. A row is 32 bytes,
//! so a reader finds record `i` without scanning, and a writer appends keys and values to one data area.
//!
//! [`Batch`] is both the host's in-memory batch and the guest's output builder; [`BatchView`] reads an encoded batch
//! without copying.

use std::fmt;
use std::sync::Arc;

/// Bytes of the batch header.
pub const HEADER_LEN: usize = 8;
/// Bytes of one row.
pub const ROW_LEN: usize = 32;
const NO_KEY: u32 = u32::MAX;

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid record batch: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

fn invalid<T>(message: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(message.into()))
}

/// A range of the data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    off: u32,
    len: u32,
}

impl Span {
    const NONE: Span = Span { off: 0, len: NO_KEY };

    fn is_none(self) -> bool {
        self.len == NO_KEY
    }
}

/// One record's place in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    timestamp: i64,
    key: Span,
    value: Span,
    headers: Span,
}

impl Row {
    #[inline]
    fn read(bytes: &[u8; ROW_LEN]) -> Row {
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let ts = [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]];
        Row {
            timestamp: i64::from_le_bytes(ts),
            key: Span { off: u32_at(8), len: u32_at(12) },
            value: Span { off: u32_at(16), len: u32_at(20) },
            headers: Span { off: u32_at(24), len: u32_at(28) },
        }
    }

    #[inline]
    fn encode(&self) -> [u8; ROW_LEN] {
        let mut out = [0u8; ROW_LEN];
        out[..8].copy_from_slice(&self.timestamp.to_le_bytes());
        let parts = [self.key.off, self.key.len, self.value.off, self.value.len, self.headers.off, self.headers.len];
        for (i, part) in parts.iter().enumerate() {
            out[8 + 4 * i..12 + 4 * i].copy_from_slice(&part.to_le_bytes());
        }
        out
    }

    #[inline]
    fn check(&self, data_len: usize) -> Result<(), DecodeError> {
        let fits = |span: Span| span.off as usize + span.len as usize <= data_len;
        if !self.key.is_none() && !fits(self.key) {
            return invalid("a key lies outside the data area");
        }
        if !fits(self.value) {
            return invalid("a value lies outside the data area");
        }
        if !fits(self.headers) {
            return invalid("headers lie outside the data area");
        }
        Ok(())
    }
}

/// One record: event time, optional key, value and headers, borrowed from a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key, if the record has one.
    pub key: Option<&'a [u8]>,
    /// The payload.
    pub value: &'a [u8],
    /// Headers in their encoded form.
    pub headers: Headers<'a>,
}

/// A record's headers in their encoded form; iterate for `(name, value)` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Headers<'a> {
    raw: &'a [u8],
}

impl<'a> Headers<'a> {
    /// Headers from their encoded form, checked.
    pub fn from_raw(raw: &'a [u8]) -> Result<Headers<'a>, DecodeError> {
        Headers::validate(raw)?;
        Ok(Headers { raw })
    }

    /// The encoded bytes (empty when the record has no headers).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.raw.len() < 2 || self.raw[..2] == [0, 0]
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The `(name, value)` pairs. Stops at the first malformed entry (batches are checked when decoded).
    pub fn iter(&self) -> HeaderIter<'a> {
        let count = if self.raw.len() >= 2 { u16::from_le_bytes([self.raw[0], self.raw[1]]) } else { 0 };
        HeaderIter { rest: self.raw.get(2..).unwrap_or(&[]), left: count }
    }

    fn validate(raw: &[u8]) -> Result<(), DecodeError> {
        if raw.is_empty() {
            return Ok(());
        }
        if raw.len() < 2 {
            return invalid("headers are truncated");
        }
        let expected = u16::from_le_bytes([raw[0], raw[1]]) as usize;
        let mut iter = Headers { raw }.iter();
        let mut seen = 0;
        while iter.next().is_some() {
            seen += 1;
        }
        if seen != expected || !iter.rest.is_empty() {
            return invalid("headers are malformed");
        }
        Ok(())
    }

    /// Encodes `(name, value)` pairs.
    pub fn encode(pairs: &[(&str, &[u8])], out: &mut Vec<u8>) {
        if pairs.is_empty() {
            return;
        }
        out.extend_from_slice(&(pairs.len() as u16).to_le_bytes());
        for (name, value) in pairs {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
    }
}

/// Iterator over header pairs.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
    left: u16,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let rest = self.rest;
        let name_len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
        let name = std::str::from_utf8(rest.get(2..2 + name_len)?).ok()?;
        let at = 2 + name_len;
        let len_bytes = rest.get(at..at + 4)?;
        let value_len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        let value = rest.get(at + 4..at + 4 + value_len)?;
        self.rest = &rest[at + 4 + value_len..];
        self.left -= 1;
        Some((name, value))
    }
}

const TOO_LARGE: &str = "a batch holds at most 4 GiB of keys, values and headers";

/// An owned batch of records: rows plus one data area. Appending a record copies its bytes once; nothing is
/// allocated per record. Two batches are equal when they hold equal records in the same order.
#[derive(Clone, Default)]
pub struct Batch {
    rows: Vec<Row>,
    data: DataArea,
    /// Where the data area starts in `data` (non-zero after [`Batch::from_wire`], which keeps the wire buffer).
    base: usize,
    /// `data` is still the wire encoding this batch was decoded from, and no record has changed since: the batch
    /// can be handed on (say, from one Wasm function to the next) without encoding it again.
    intact: bool,
}

/// A batch's keys, values and headers: its own, or shared by the copies [`Batch::share`] made until one of them
/// changes (a batch fanned out to many outputs is held once, however large).
#[derive(Clone)]
enum DataArea {
    Owned(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

impl Default for DataArea {
    fn default() -> DataArea {
        DataArea::Owned(Vec::new())
    }
}

impl std::ops::Deref for DataArea {
    type Target = Vec<u8>;

    #[inline]
    fn deref(&self) -> &Vec<u8> {
        match self {
            DataArea::Owned(data) => data,
            DataArea::Shared(data) => data,
        }
    }
}

impl DataArea {
    /// The area to change: a shared one becomes this batch's own first (copied unless no other holds it).
    #[inline]
    fn to_mut(&mut self) -> &mut Vec<u8> {
        if let DataArea::Shared(shared) = self {
            let shared = std::mem::take(shared);
            *self = DataArea::Owned(Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone()));
        }
        match self {
            DataArea::Owned(data) => data,
            DataArea::Shared(_) => unreachable!("made owned above"),
        }
    }
}

impl PartialEq for Batch {
    fn eq(&self, other: &Batch) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Batch {}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// An empty batch with room for `records` records and `bytes` bytes of keys and values.
    pub fn with_capacity(records: usize, bytes: usize) -> Batch {
        let data = DataArea::Owned(Vec::with_capacity(bytes));
        Batch { rows: Vec::with_capacity(records), data, base: 0, intact: false }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes held in the data area (keys, values, headers).
    pub fn data_len(&self) -> usize {
        self.data.len() - self.base
    }

    /// A copy that shares this batch's data area (no bytes are copied) until either changes it.
    pub fn share(&mut self) -> Batch {
        if let DataArea::Owned(data) = &mut self.data {
            self.data = DataArea::Shared(Arc::new(std::mem::take(data)));
        }
        self.clone()
    }

    /// Removes every record, keeping the allocations.
    pub fn clear(&mut self) {
        self.rows.clear();
        match &mut self.data {
            DataArea::Owned(data) => data.clear(),
            DataArea::Shared(_) => self.data = DataArea::default(),
        }
        self.base = 0;
        self.intact = false;
    }

    /// Offsets and lengths in the wire layout are `u32`: a batch holds at most 4 GiB of keys, values and headers,
    /// and pushing more panics rather than wrapping around (the engine's batches stay far below it).
    #[inline]
    fn append(&mut self, bytes: &[u8]) -> Span {
        self.intact = false;
        let off = u32::try_from(self.data.len() - self.base).expect(TOO_LARGE);
        let len = u32::try_from(bytes.len()).expect(TOO_LARGE);
        off.checked_add(len).expect(TOO_LARGE);
        self.data.to_mut().extend_from_slice(bytes);
        Span { off, len }
    }

    #[inline]
    fn slice(&self, span: Span) -> &[u8] {
        let start = self.base + span.off as usize;
        &self.data[start..start + span.len as usize]
    }

    /// Appends a record without headers.
    #[inline]
    pub fn push(&mut self, timestamp: i64, key: Option<&[u8]>, value: &[u8]) {
        let key = key.map_or(Span::NONE, |k| self.append(k));
        let value = self.append(value);
        self.rows.push(Row { timestamp, key, value, headers: Span::default() });
    }

    /// Appends a record with headers given as pairs.
    pub fn push_with_headers(&mut self, timestamp: i64, key: Option<&[u8]>, value: &[u8], headers: &[(&str, &[u8])]) {
        self.push(timestamp, key, value);
        if !headers.is_empty() {
            let mut encoded = Vec::new();
            Headers::encode(headers, &mut encoded);
            let Span { off, len } = self.append(&encoded);
            if let Some(row) = self.rows.last_mut() {
                row.headers = Span { off, len };
            }
        }
    }

    /// Appends a copy of `record`, headers included.
    pub fn push_record(&mut self, record: &Record<'_>) {
        self.push(record.timestamp, record.key, record.value);
        if !record.headers.raw.is_empty() {
            let headers = self.append(record.headers.raw);
            if let Some(row) = self.rows.last_mut() {
                row.headers = headers;
            }
        }
    }

    /// Appends a copy of `record` with another key.
    pub fn push_with_key(&mut self, record: &Record<'_>, key: Option<&[u8]>) {
        self.push_record(&Record { key, ..*record });
    }

    /// Record `index`. Panics when out of range, like slice indexing.
    #[inline]
    pub fn get(&self, index: usize) -> Record<'_> {
        let row = self.rows[index];
        Record {
            timestamp: row.timestamp,
            key: if row.key.is_none() { None } else { Some(self.slice(row.key)) },
            value: self.slice(row.value),
            headers: Headers { raw: self.slice(row.headers) },
        }
    }

    /// The records in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Record<'_>> + '_ {
        (0..self.rows.len()).map(|i| self.get(i))
    }

    /// Timestamp of record `index`.
    pub fn timestamp(&self, index: usize) -> i64 {
        self.rows[index].timestamp
    }

    /// Changes the timestamp of record `index`.
    pub fn set_timestamp(&mut self, index: usize, timestamp: i64) {
        self.intact = false;
        self.rows[index].timestamp = timestamp;
    }

    /// Changes the key of record `index` (the old key bytes stay in the data area until the batch is cleared).
    pub fn set_key(&mut self, index: usize, key: Option<&[u8]>) {
        self.intact = false;
        let span = key.map_or(Span::NONE, |k| self.append(k));
        self.rows[index].key = span;
    }

    /// Keeps the records whose flag is `true`. `keep` must have one flag per record.
    pub fn retain_by(&mut self, keep: &[bool]) {
        assert_eq!(keep.len(), self.rows.len(), "one flag per record");
        self.intact = false;
        let mut flags = keep.iter();
        self.rows.retain(|_| flags.next().copied().unwrap_or(false));
    }

    /// Appends every record of `other`.
    pub fn extend_from(&mut self, other: &Batch) {
        self.intact = false;
        let shift = u32::try_from(self.data.len() - self.base).expect(TOO_LARGE);
        shift.checked_add(u32::try_from(other.data_len()).expect(TOO_LARGE)).expect(TOO_LARGE);
        self.data.to_mut().extend_from_slice(&other.data[other.base..]);
        self.rows.extend(other.rows.iter().map(|row| {
            let move_span = |s: Span| if s.is_none() { s } else { Span { off: s.off + shift, len: s.len } };
            Row {
                timestamp: row.timestamp,
                key: move_span(row.key),
                value: move_span(row.value),
                headers: move_span(row.headers),
            }
        }));
    }

    /// Size of this batch in the wire encoding.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + ROW_LEN * self.rows.len() + self.data_len()
    }

    /// Writes the wire encoding to `out` (which is cleared first).
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.wire_len());
        out.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for row in &self.rows {
            out.extend_from_slice(&row.encode());
        }
        out.extend_from_slice(&self.data[self.base..]);
    }

    /// The wire encoding: the buffer the batch was decoded from while no record has changed, else written into
    /// `scratch`.
    pub fn wire<'a>(&'a self, scratch: &'a mut Vec<u8>) -> &'a Vec<u8> {
        if self.intact {
            return &self.data;
        }
        self.write_wire(scratch);
        scratch
    }

    /// The wire encoding as a new vector.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_wire(&mut out);
        out
    }

    /// Decodes and checks a batch, keeping `wire` as the data area (no copy of keys and values).
    pub fn from_wire(wire: Vec<u8>) -> Result<Batch, DecodeError> {
        let (count, data_start) = BatchView::header(&wire)?;
        let mut rows = Vec::with_capacity(count);
        let data_len = wire.len() - data_start;
        for chunk in wire[HEADER_LEN..data_start].chunks_exact(ROW_LEN) {
            let row = Row::read(chunk.first_chunk::<ROW_LEN>().ok_or_else(|| DecodeError("row".into()))?);
            row.check(data_len)?;
            if row.headers.len > 0 {
                let start = data_start + row.headers.off as usize;
                Headers::validate(&wire[start..start + row.headers.len as usize])?;
            }
            rows.push(row);
        }
        Ok(Batch { rows, data: DataArea::Owned(wire), base: data_start, intact: true })
    }
}

impl<'a> FromIterator<Record<'a>> for Batch {
    fn from_iter<I: IntoIterator<Item = Record<'a>>>(iter: I) -> Batch {
        let mut batch = Batch::new();
        for record in iter {
            batch.push_record(&record);
        }
        batch
    }
}

/// Writes a batch straight into the wire encoding (guests use it for what they return). Rows and keys/values
/// collect apart and `finish` joins them. Every copy of a short value is a fixed-size one: in WebAssembly a
/// variable-length `memcpy` becomes `memory.copy`, a call into the host that costs more than the record's logic.
#[derive(Debug, Clone, Default)]
pub struct BatchWriter {
    rows: Vec<[u8; ROW_LEN]>,
    data: Vec<u8>,
}

impl BatchWriter {
    /// A writer with room for `records` records and `bytes` bytes of keys, values and headers.
    pub fn with_capacity(records: usize, bytes: usize) -> BatchWriter {
        BatchWriter { rows: Vec::with_capacity(records), data: Vec::with_capacity(bytes) }
    }

    #[inline(always)]
    fn append(&mut self, bytes: &[u8]) -> Span {
        let off = u32::try_from(self.data.len()).expect(TOO_LARGE);
        let len = u32::try_from(bytes.len()).expect(TOO_LARGE);
        match bytes.first_chunk::<8>() {
            Some(word) if bytes.len() == 8 => self.data.extend_from_slice(word),
            _ => self.data.extend_from_slice(bytes),
        }
        Span { off, len }
    }

    /// Appends a record whose headers are given in their encoded form (empty for none). Always inlined: as a call it
    /// takes more arguments than registers, and the spills cost more than the work in WebAssembly.
    #[inline(always)]
    pub fn push_raw(&mut self, timestamp: i64, key: Option<&[u8]>, value: &[u8], headers: &[u8]) {
        let key = key.map_or(Span::NONE, |k| self.append(k));
        let value = self.append(value);
        let headers = if headers.is_empty() { Span::default() } else { self.append(headers) };
        self.rows.push(Row { timestamp, key, value, headers }.encode());
    }

    /// Appends a record without headers.
    #[inline]
    pub fn push(&mut self, timestamp: i64, key: Option<&[u8]>, value: &[u8]) {
        self.push_raw(timestamp, key, value, &[]);
    }

    /// Appends a copy of `record`.
    pub fn push_record(&mut self, record: &Record<'_>) {
        self.push_raw(record.timestamp, record.key, record.value, record.headers.raw);
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no record was written.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The encoded batch.
    pub fn finish(self) -> Vec<u8> {
        let rows = self.rows.as_flattened();
        let mut out = Vec::with_capacity(HEADER_LEN + rows.len() + self.data.len());
        out.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(rows);
        out.extend_from_slice(&self.data);
        out
    }
}

/// A checked, borrowed view of an encoded batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    wire: &'a [u8],
    count: usize,
    data_start: usize,
}

impl<'a> BatchView<'a> {
    /// Checks the header, every row's spans and every header block.
    pub fn parse(wire: &'a [u8]) -> Result<BatchView<'a>, DecodeError> {
        let (count, data_start) = BatchView::header(wire)?;
        let view = BatchView { wire, count, data_start };
        let data_len = wire.len() - data_start;
        for i in 0..count {
            let row = view.row(i);
            row.check(data_len)?;
            if row.headers.len > 0 {
                Headers::validate(view.slice(row.headers))?;
            }
        }
        Ok(view)
    }

    /// Checks the header only, for batches from a trusted writer (a guest reading what the host sent): a row whose
    /// spans lie outside the batch panics when it is read, like slice indexing.
    pub fn open(wire: &'a [u8]) -> Result<BatchView<'a>, DecodeError> {
        let (count, data_start) = BatchView::header(wire)?;
        Ok(BatchView { wire, count, data_start })
    }

    /// Reads and checks the header: the record count and where the data area starts.
    fn header(wire: &[u8]) -> Result<(usize, usize), DecodeError> {
        if wire.len() < HEADER_LEN {
            return invalid(format!("{} bytes is shorter than the {HEADER_LEN}-byte header", wire.len()));
        }
        let count = u32::from_le_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
        let flags = u32::from_le_bytes([wire[4], wire[5], wire[6], wire[7]]);
        if flags != 0 {
            return invalid(format!("unknown flags {flags:#x}"));
        }
        let data_start = count
            .checked_mul(ROW_LEN)
            .and_then(|rows| rows.checked_add(HEADER_LEN))
            .filter(|&start| start <= wire.len());
        let Some(data_start) = data_start else {
            return invalid(format!("{count} rows do not fit in {} bytes", wire.len()));
        };
        Ok((count, data_start))
    }

    #[inline]
    fn row(&self, index: usize) -> Row {
        let at = HEADER_LEN + index * ROW_LEN;
        match self.wire[at..].first_chunk::<ROW_LEN>() {
            Some(bytes) => Row::read(bytes),
            None => panic!("row {index} lies outside the batch"),
        }
    }

    #[inline]
    fn slice(&self, span: Span) -> &'a [u8] {
        let start = self.data_start + span.off as usize;
        &self.wire[start..start + span.len as usize]
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Record `index`. Panics when out of range.
    #[inline]
    pub fn get(&self, index: usize) -> Record<'a> {
        assert!(index < self.count, "record {index} of {}", self.count);
        let row = self.row(index);
        Record {
            timestamp: row.timestamp,
            key: if row.key.is_none() { None } else { Some(self.slice(row.key)) },
            value: self.slice(row.value),
            headers: Headers { raw: self.slice(row.headers) },
        }
    }

    /// The records in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Record<'a>> + '_ {
        (0..self.count).map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        let mut batch = Batch::new();
        batch.push(10, Some(b"k1"), b"hello");
        batch.push(-5, None, b"");
        batch.push_with_headers(7, Some(b""), b"v", &[("trace", b"abc"), ("n", b"")]);
        batch
    }

    #[test]
    fn round_trips_through_the_wire_encoding() {
        let batch = sample();
        let wire = batch.to_wire();
        assert_eq!(wire.len(), batch.wire_len());
        let decoded = Batch::from_wire(wire.clone()).expect("valid");
        assert_eq!(decoded.iter().collect::<Vec<_>>(), batch.iter().collect::<Vec<_>>());
        assert_eq!(decoded.to_wire(), wire, "re-encoding a decoded batch gives the same bytes");
        let third = decoded.get(2);
        assert_eq!(third.key, Some(&b""[..]), "an empty key is not a missing key");
        assert_eq!(third.headers.iter().collect::<Vec<_>>(), vec![("trace", &b"abc"[..]), ("n", &b""[..])]);
        assert_eq!(third.headers.get("trace"), Some(&b"abc"[..]));
    }

    #[test]
    fn a_decoded_batch_hands_on_its_wire_until_a_record_changes() {
        let wire = sample().to_wire();
        let mut scratch = Vec::new();
        let changes: [fn(&mut Batch); 6] = [
            |b| b.set_timestamp(0, 99),
            |b| b.set_key(1, Some(b"new")),
            |b| b.set_key(0, None),
            |b| b.retain_by(&[true, false, true]),
            |b| b.push(1, None, b"more"),
            |b| b.extend_from(&sample()),
        ];
        for change in changes {
            let mut batch = Batch::from_wire(wire.clone()).expect("valid");
            assert!(std::ptr::eq(batch.wire(&mut scratch), &*batch.data), "intact: the decoded buffer itself");
            let mut expected = batch.clone();
            change(&mut batch);
            change(&mut expected);
            let handed_on = batch.wire(&mut scratch).clone();
            assert_ne!(handed_on, wire, "a changed batch is encoded again");
            assert_eq!(Batch::from_wire(handed_on).expect("valid"), expected);
        }
        let mut cleared = Batch::from_wire(wire).expect("valid");
        cleared.clear();
        assert_eq!(*cleared.wire(&mut scratch), Batch::new().to_wire());
    }

    #[test]
    fn matches_the_documented_layout() {
        let mut batch = Batch::new();
        batch.push(1, Some(b"k"), b"vv");
        let expected: Vec<u8> = [
            &1u32.to_le_bytes()[..],
            &0u32.to_le_bytes(),
            &1i64.to_le_bytes(),
            &[0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            b"kvv",
        ]
        .concat();
        assert_eq!(batch.to_wire(), expected);
    }

    #[test]
    fn the_writer_encodes_like_a_batch() {
        let batch = sample();
        let mut writer = BatchWriter::with_capacity(1, 0);
        for record in batch.iter() {
            writer.push_record(&record);
        }
        assert_eq!(writer.len(), 3);
        assert_eq!(writer.finish(), batch.to_wire());
        assert_eq!(BatchWriter::default().finish(), Batch::new().to_wire());
        let wire = batch.to_wire();
        let opened = BatchView::open(&wire).expect("header");
        assert_eq!(opened.iter().collect::<Vec<_>>(), batch.iter().collect::<Vec<_>>());
    }

    #[test]
    fn rejects_spans_outside_the_data_area() {
        let mut wire = sample().to_wire();
        // Point the first value past the end of the data area.
        wire[HEADER_LEN + 16..HEADER_LEN + 20].copy_from_slice(&1000u32.to_le_bytes());
        let err = Batch::from_wire(wire).expect_err("must fail");
        assert!(err.to_string().contains("outside the data area"), "{err}");
    }

    #[test]
    fn rejects_truncated_and_oversized_counts() {
        assert!(BatchView::parse(&[1, 0, 0]).is_err());
        let mut wire = sample().to_wire();
        wire[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(BatchView::parse(&wire).is_err());
        let mut flags = sample().to_wire();
        flags[4] = 1;
        assert!(BatchView::parse(&flags).is_err());
    }

    #[test]
    fn rejects_malformed_headers() {
        let mut batch = Batch::new();
        batch.push_with_headers(0, None, b"", &[("a", b"b")]);
        let mut wire = batch.to_wire();
        let last = wire.len() - 1;
        wire[HEADER_LEN + ROW_LEN] = 5; // claim five headers
        wire[last] = b'b';
        assert!(Batch::from_wire(wire).is_err());
    }

    #[test]
    fn editing_keeps_other_records_intact() {
        let mut batch = sample();
        batch.set_key(1, Some(b"new"));
        batch.set_timestamp(0, 99);
        batch.retain_by(&[true, true, false]);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.get(1).key, Some(&b"new"[..]));
        assert_eq!(batch.get(0).timestamp, 99);
        let decoded = Batch::from_wire(batch.to_wire()).expect("valid");
        let mut joined = decoded.clone();
        joined.extend_from(&sample());
        assert_eq!(joined.len(), 5);
        assert_eq!(joined.get(2).value, b"hello");
        assert_eq!(joined.get(1).key, Some(&b"new"[..]));
        joined.push(3, None, b"tail");
        assert_eq!(Batch::from_wire(joined.to_wire()).expect("valid").get(5).value, b"tail");
    }
}

#[cfg(test)]
mod vectors {
    //! Shared test vectors: the Python and JavaScript SDKs decode and encode the same bytes. Regenerate with
    //! `EDDY_WRITE_VECTORS=1 cargo test -p eddy-codec`.
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn cases() -> Vec<(&'static str, Batch)> {
        let mut empty = Batch::new();
        empty.clear();
        let mut one = Batch::new();
        one.push(1_700_000_000_000, Some(b"user-1"), br#"{"amount":42}"#);
        let mut mixed = Batch::new();
        mixed.push(-1, None, b"");
        mixed.push(5, Some(b""), b"\x00\xff");
        mixed.push_with_headers(i64::MAX, Some(b"k"), "h\u{e9}llo".as_bytes(), &[("trace-id", b"abc"), ("empty", b"")]);
        vec![("empty", empty), ("one", one), ("mixed", mixed)]
    }

    fn render() -> String {
        let mut out = String::from("[\n");
        let cases = cases();
        for (n, (name, batch)) in cases.iter().enumerate() {
            let records: Vec<String> = batch
                .iter()
                .map(|r| {
                    let key = r.key.map_or("null".to_string(), |k| format!("\"{}\"", hex(k)));
                    let headers: Vec<String> =
                        r.headers.iter().map(|(n, v)| format!("[\"{n}\", \"{}\"]", hex(v))).collect();
                    format!(
                        "{{\"timestamp\": {}, \"key\": {key}, \"value\": \"{}\", \"headers\": [{}]}}",
                        r.timestamp,
                        hex(r.value),
                        headers.join(", ")
                    )
                })
                .collect();
            out.push_str(&format!(
                "  {{\"name\": \"{name}\", \"records\": [{}], \"wire\": \"{}\"}}{}\n",
                records.join(", "),
                hex(&batch.to_wire()),
                if n + 1 < cases.len() { "," } else { "" }
            ));
        }
        out.push_str("]\n");
        out
    }

    #[test]
    fn vectors_file_is_current() {
        // The manifest folder cargo gives at run time: a build shared with another checkout has that one's
        // compiled in.
        let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let path = format!("{manifest}/testdata/vectors.json");
        let rendered = render();
        if std::env::var_os("EDDY_WRITE_VECTORS").is_some() {
            std::fs::write(&path, &rendered).expect("write vectors");
        }
        let stored = std::fs::read_to_string(&path).expect("testdata/vectors.json exists");
        assert_eq!(stored, rendered, "regenerate with EDDY_WRITE_VECTORS=1 cargo test -p eddy-codec");
    }

    #[test]
    fn shared_copies_hold_one_data_area_until_one_changes() {
        let mut batch = Batch::with_capacity(2, 4096);
        batch.push(1, Some(b"k"), &[7u8; 1024]);
        let copy = batch.share();
        assert!(std::ptr::eq(batch.get(0).value, copy.get(0).value), "no bytes copied");
        let mut changed = copy.clone();
        changed.push(2, None, b"more");
        assert_eq!((batch.len(), copy.len(), changed.len()), (1, 1, 2));
        assert!(!std::ptr::eq(changed.get(0).value, batch.get(0).value), "a change copies first");
        assert_eq!(changed.get(0), batch.get(0));
        drop(copy);
        // The last holder takes the area over without a copy.
        let before = batch.get(0).value.as_ptr();
        batch.set_timestamp(0, 5);
        batch.push(3, None, b"x");
        assert_eq!(batch.get(0).value.as_ptr(), before);
        batch.clear();
        assert!(batch.is_empty());
    }
}
