//! Events, the bytes they hold, errors and configuration.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Deref;

/// Bytes borrowed from the input batch, or owned. Small values (up to 14 bytes) are kept inline, so replacing a
/// value with a number or short string allocates nothing.
#[derive(Clone)]
pub enum Bytes<'a> {
    /// Borrowed from the batch being processed.
    Borrowed(&'a [u8]),
    /// Up to 14 bytes, stored in place (so that the whole value fits 16 bytes in WebAssembly).
    Inline {
        /// Number of bytes used.
        len: u8,
        /// The bytes.
        buf: [u8; INLINE],
    },
    /// Owned on the heap.
    Owned(Vec<u8>),
}

/// Bytes kept inline.
const INLINE: usize = 14;

impl Bytes<'_> {
    /// Copies `bytes`, inline when small.
    pub fn copy_from(bytes: &[u8]) -> Bytes<'static> {
        if bytes.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..bytes.len()].copy_from_slice(bytes);
            Bytes::Inline { len: bytes.len() as u8, buf }
        } else {
            Bytes::Owned(bytes.to_vec())
        }
    }

    /// An owned copy that borrows nothing.
    pub fn into_owned(self) -> Bytes<'static> {
        match self {
            Bytes::Borrowed(b) => Bytes::copy_from(b),
            Bytes::Inline { len, buf } => Bytes::Inline { len, buf },
            Bytes::Owned(v) => Bytes::Owned(v),
        }
    }
}

impl Deref for Bytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Inline { len, buf } => &buf[..*len as usize],
            Bytes::Owned(v) => v,
        }
    }
}

impl fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}

impl PartialEq for Bytes<'_> {
    fn eq(&self, other: &Bytes<'_>) -> bool {
        **self == **other
    }
}

impl<'a> From<&'a [u8]> for Bytes<'a> {
    fn from(b: &'a [u8]) -> Bytes<'a> {
        Bytes::Borrowed(b)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Bytes<'a> {
    fn from(b: &'a [u8; N]) -> Bytes<'a> {
        Bytes::Borrowed(b)
    }
}

impl<const N: usize> From<[u8; N]> for Bytes<'_> {
    fn from(b: [u8; N]) -> Bytes<'static> {
        if N <= INLINE {
            // A fixed-size copy compiles to plain stores (a variable one to a host call in WebAssembly).
            let mut buf = [0u8; INLINE];
            buf[..N].copy_from_slice(&b);
            Bytes::Inline { len: N as u8, buf }
        } else {
            Bytes::Owned(b.to_vec())
        }
    }
}

impl From<Vec<u8>> for Bytes<'_> {
    fn from(v: Vec<u8>) -> Bytes<'static> {
        Bytes::Owned(v)
    }
}

impl From<String> for Bytes<'_> {
    fn from(s: String) -> Bytes<'static> {
        Bytes::Owned(s.into_bytes())
    }
}

impl<'a> From<&'a str> for Bytes<'a> {
    fn from(s: &'a str) -> Bytes<'a> {
        Bytes::Borrowed(s.as_bytes())
    }
}

/// Headers: still encoded as they arrived (nothing parsed until asked for), or changed by user code.
#[derive(Debug, Clone, PartialEq)]
enum HeaderSet<'a> {
    Encoded(eddy_codec::Headers<'a>),
    Owned(Vec<(String, Vec<u8>)>),
}

/// A record: event time, optional key, value and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key, if any.
    pub key: Option<Bytes<'a>>,
    /// The payload.
    pub value: Bytes<'a>,
    headers: HeaderSet<'a>,
}

impl<'a> Event<'a> {
    /// A new event with no key and no headers.
    pub fn new(timestamp: i64, value: impl Into<Bytes<'a>>) -> Event<'a> {
        Event { timestamp, key: None, value: value.into(), headers: HeaderSet::Encoded(Default::default()) }
    }

    /// A new event whose value is `value` as JSON.
    pub fn from_json<T: Serialize>(timestamp: i64, value: &T) -> Result<Event<'static>, Error> {
        Ok(Event::new(timestamp, serde_json::to_vec(value)?))
    }

    /// This event with another value.
    pub fn with_value(mut self, value: impl Into<Bytes<'a>>) -> Event<'a> {
        self.value = value.into();
        self
    }

    /// This event with another key.
    pub fn with_key(mut self, key: impl Into<Bytes<'a>>) -> Event<'a> {
        self.key = Some(key.into());
        self
    }

    /// This event with its value replaced by `value` as JSON.
    pub fn with_json<T: Serialize>(self, value: &T) -> Result<Event<'a>, Error> {
        Ok(self.with_value(serde_json::to_vec(value)?))
    }

    /// The value parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.value).map_err(|e| Error::msg(format!("value is not the expected JSON: {e}")))
    }

    /// The value as UTF-8 text.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.value).map_err(|_| Error::msg("value is not UTF-8 text"))
    }

    /// The headers as `(name, value)` pairs.
    pub fn headers(&self) -> Vec<(&str, &[u8])> {
        match &self.headers {
            HeaderSet::Encoded(h) => h.iter().collect(),
            HeaderSet::Owned(list) => list.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect(),
        }
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        match &self.headers {
            HeaderSet::Encoded(h) => h.get(name),
            HeaderSet::Owned(list) => list.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice()),
        }
    }

    /// Adds a header (keeping others of the same name).
    pub fn add_header(&mut self, name: &str, value: &[u8]) {
        let mut list: Vec<(String, Vec<u8>)> =
            self.headers().into_iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect();
        list.push((name.to_string(), value.to_vec()));
        self.headers = HeaderSet::Owned(list);
    }

    /// This event with one more header.
    pub fn with_header(mut self, name: &str, value: &[u8]) -> Event<'a> {
        self.add_header(name, value);
        self
    }

    /// Removes every header.
    pub fn clear_headers(&mut self) {
        self.headers = HeaderSet::Encoded(Default::default());
    }

    /// An owned copy that borrows nothing (to keep beyond the current call).
    pub fn into_owned(self) -> Event<'static> {
        let headers = match self.headers {
            HeaderSet::Encoded(h) if h.is_empty() => HeaderSet::Encoded(Default::default()),
            HeaderSet::Encoded(h) => HeaderSet::Owned(h.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect()),
            HeaderSet::Owned(list) => HeaderSet::Owned(list),
        };
        Event {
            timestamp: self.timestamp,
            key: self.key.map(Bytes::into_owned),
            value: self.value.into_owned(),
            headers,
        }
    }

    pub(crate) fn from_record(record: &eddy_codec::Record<'a>) -> Event<'a> {
        Event {
            timestamp: record.timestamp,
            key: record.key.map(Bytes::Borrowed),
            value: Bytes::Borrowed(record.value),
            headers: HeaderSet::Encoded(record.headers),
        }
    }

    /// Drops the event. One that holds nothing on the heap (borrowed or short bytes, headers as they came) is let go
    /// without the out-of-line drop call, which in WebAssembly costs as much as a simple map's own work.
    #[inline(always)]
    pub(crate) fn release(self) {
        let owned = |bytes: &Bytes<'_>| matches!(bytes, Bytes::Owned(_));
        if owned(&self.value) || self.key.as_ref().is_some_and(owned) || matches!(self.headers, HeaderSet::Owned(_)) {
            drop(self);
        } else {
            std::mem::forget(self);
        }
    }

    pub(crate) fn push_to(&self, out: &mut eddy_codec::BatchWriter) {
        match &self.headers {
            HeaderSet::Encoded(h) => out.push_raw(self.timestamp, self.key.as_deref(), &self.value, h.raw()),
            HeaderSet::Owned(list) => {
                let pairs: Vec<(&str, &[u8])> = list.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
                let mut raw = Vec::new();
                eddy_codec::Headers::encode(&pairs, &mut raw);
                out.push_raw(self.timestamp, self.key.as_deref(), &self.value, &raw);
            }
        }
    }
}

/// An error from user code; its message reaches the job's owner.
pub struct Error(String);

impl Error {
    /// An error with `message`.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error(message.to_string())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Error {
        Error(e.to_string())
    }
}

/// The `config` an operator's spec gives its function.
#[derive(Debug, Clone, Default)]
pub struct Config(pub serde_json::Value);

impl Config {
    /// Field `name`, if present and of type `T`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.0.get(name).and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// The whole config as `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(self.0.clone()).map_err(|e| Error::msg(format!("invalid config: {e}")))
    }
}

/// A window a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// `start <= ts < end`, in milliseconds.
    Time {
        /// Inclusive start.
        start: i64,
        /// Exclusive end.
        end: i64,
    },
    /// The global window.
    Global,
}

impl Window {
    /// The largest timestamp in the window, which results carry by default.
    pub fn max_timestamp(&self) -> i64 {
        match self {
            Window::Time { end, .. } => end - 1,
            Window::Global => i64::MAX,
        }
    }
}

/// A timer that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its timestamp.
    pub timestamp: i64,
    /// Whether it is an event-time timer (else processing time).
    pub event_time: bool,
}
