//! Keys records by their lower-cased value.

use eddy::{Error, Event};

#[eddy::key_selector]
fn word(event: &Event) -> Result<String, Error> {
    Ok(event.text()?.to_lowercase())
}
