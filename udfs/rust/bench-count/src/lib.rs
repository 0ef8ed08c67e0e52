//! W2/W4: count per window.

use eddy::{Error, Event};

#[derive(Default)]
struct Count;

#[eddy::aggregate]
impl eddy::Aggregate for Count {
    type Acc = u64;
    fn create(&mut self) -> u64 {
        0
    }
    fn add(&mut self, acc: &mut u64, _: &Event) -> Result<(), Error> {
        *acc += 1;
        Ok(())
    }
    fn merge(&mut self, acc: &mut u64, other: u64) -> Result<(), Error> {
        *acc += other;
        Ok(())
    }
    fn result(&mut self, acc: &u64) -> Result<Vec<u8>, Error> {
        let mut out = acc.to_le_bytes().to_vec();
        out.extend_from_slice(&0i64.to_le_bytes());
        Ok(out)
    }
}
