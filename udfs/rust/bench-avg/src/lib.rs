//! W3: count and average amount (times 1000) per window.

use eddy::{Error, Event};

#[derive(Default)]
struct Average;

#[eddy::aggregate]
impl eddy::Aggregate for Average {
    type Acc = (u64, u64);
    fn create(&mut self) -> (u64, u64) {
        (0, 0)
    }
    fn add(&mut self, acc: &mut (u64, u64), event: &Event) -> Result<(), Error> {
        acc.0 += 1;
        acc.1 += event.value.first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b));
        Ok(())
    }
    fn merge(&mut self, acc: &mut (u64, u64), other: (u64, u64)) -> Result<(), Error> {
        acc.0 += other.0;
        acc.1 += other.1;
        Ok(())
    }
    fn result(&mut self, acc: &(u64, u64)) -> Result<Vec<u8>, Error> {
        let average = (acc.1 * 1000 / acc.0.max(1)) as i64;
        let mut out = acc.0.to_le_bytes().to_vec();
        out.extend_from_slice(&average.to_le_bytes());
        Ok(out)
    }
}
