//! W5: alert when a transaction of at least 9000 follows another of the same key less than 5 s apart.

use eddy::{Context, Error, Event, Timer};

const LARGE: u64 = 9000;
const WINDOW: i64 = 5000;

#[derive(Default)]
struct Fraud;

fn u64_at(bytes: &[u8]) -> u64 {
    bytes.first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b))
}

#[eddy::process]
impl eddy::Process for Fraud {
    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let amount = u64_at(&event.value);
        if amount < LARGE {
            return Ok(());
        }
        let last = ctx.value_state("last-large")?;
        if let Some(previous) = last.get_i64()?
            && (event.timestamp - previous).abs() < WINDOW
        {
            let mut alert = Vec::with_capacity(32);
            alert.extend_from_slice(&previous.to_le_bytes());
            alert.extend_from_slice(&event.timestamp.to_le_bytes());
            alert.extend_from_slice(&1u64.to_le_bytes());
            alert.extend_from_slice(&amount.to_le_bytes());
            let mut out = Event::new(event.timestamp, alert);
            out.key = event.key.clone();
            ctx.emit(out);
        }
        last.set_i64(event.timestamp)?;
        ctx.register_event_time_timer(event.timestamp + WINDOW)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context) -> Result<(), Error> {
        let last = ctx.value_state("last-large")?;
        if last.get_i64()?.is_some_and(|ts| ts + WINDOW <= timer.timestamp) {
            last.clear()?;
        }
        Ok(())
    }
}
