//! Window aggregation: accumulators that the host keeps as bytes between calls.

use crate::event::{Config, Error, Event};

/// How an accumulator is stored between calls.
pub trait Accumulator: Sized {
    /// Appends the accumulator's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads an accumulator written by `encode`.
    fn decode(bytes: &[u8]) -> Result<Self, Error>;
}

macro_rules! fixed {
    ($($t:ty),*) => {$(
        impl Accumulator for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn decode(bytes: &[u8]) -> Result<Self, Error> {
                bytes
                    .first_chunk::<{ std::mem::size_of::<$t>() }>()
                    .map(|b| <$t>::from_le_bytes(*b))
                    .ok_or_else(|| Error::msg("accumulator is too short"))
            }
        }
    )*};
}

fixed!(u64, i64, f64, u32, i32);

impl<A: Accumulator + FixedSize, B: Accumulator> Accumulator for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let (a, b) = bytes.split_at(A::SIZE.min(bytes.len()));
        Ok((A::decode(a)?, B::decode(b)?))
    }
}

impl Accumulator for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        Ok(bytes.to_vec())
    }
}

/// Accumulators with a fixed encoded size (the first element of a pair must have one).
pub trait FixedSize {
    /// Encoded bytes.
    const SIZE: usize;
}

impl FixedSize for u64 {
    const SIZE: usize = 8;
}
impl FixedSize for i64 {
    const SIZE: usize = 8;
}
impl FixedSize for f64 {
    const SIZE: usize = 8;
}
impl FixedSize for u32 {
    const SIZE: usize = 4;
}
impl FixedSize for i32 {
    const SIZE: usize = 4;
}

/// Any serde type, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize + serde::de::DeserializeOwned> Accumulator for Json<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        // Serializing plain data into a vector cannot fail; an error would only drop the value.
        let _ = serde_json::to_writer(out, &self.0);
    }
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map(Json).map_err(Error::from)
    }
}

/// An incremental window aggregation (Flink's `AggregateFunction`).
pub trait Aggregate: Default + 'static {
    /// The accumulator.
    type Acc: Accumulator;

    /// Called once with the operator's config.
    fn init(&mut self, _config: &Config) -> Result<(), Error> {
        Ok(())
    }

    /// A fresh accumulator.
    fn create(&mut self) -> Self::Acc;

    /// Adds an event.
    fn add(&mut self, acc: &mut Self::Acc, event: &Event<'_>) -> Result<(), Error>;

    /// Merges `other` into `acc` (session windows, sliding panes).
    fn merge(&mut self, acc: &mut Self::Acc, other: Self::Acc) -> Result<(), Error>;

    /// The window's result value.
    fn result(&mut self, acc: &Self::Acc) -> Result<Vec<u8>, Error>;
}
