//! Keeps the reading with the largest `value` of each window.

use eddy::{Error, Event};

fn value(event: &Event) -> Result<f64, Error> {
    let reading: serde_json::Value = event.json()?;
    reading["value"].as_f64().ok_or_else(|| Error::msg("a reading needs a numeric `value`"))
}

#[eddy::reduce]
fn max_reading(max: &mut Event<'static>, next: &Event) -> Result<(), Error> {
    if value(next)? > value(max)? {
        *max = next.clone().into_owned();
    }
    Ok(())
}
