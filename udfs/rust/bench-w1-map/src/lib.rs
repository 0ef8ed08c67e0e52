//! W1 map: amount := amount * 107 / 100 on an 8-byte little-endian amount.

use eddy::{Error, Event};

#[eddy::map]
fn raise(event: Event) -> Result<Event, Error> {
    let amount = event
        .value
        .first_chunk::<8>()
        .map(|b| u64::from_le_bytes(*b))
        .ok_or_else(|| Error::msg("value is not a u64"))?;
    Ok(event.with_value((amount * 107 / 100).to_le_bytes()))
}
