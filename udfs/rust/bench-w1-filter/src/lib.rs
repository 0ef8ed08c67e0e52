//! W1 filter: keep amounts of at least 5350.

use eddy::Event;

#[eddy::filter]
fn large(event: &Event) -> bool {
    event.value.first_chunk::<8>().is_some_and(|b| u64::from_le_bytes(*b) >= 5350)
}
