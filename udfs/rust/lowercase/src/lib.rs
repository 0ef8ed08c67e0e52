//! Lower-cases values.

use eddy::{Error, Event};

#[eddy::map]
fn lowercase(event: Event) -> Result<Event, Error> {
    let lower = event.text()?.to_lowercase();
    Ok(event.with_value(lower))
}
