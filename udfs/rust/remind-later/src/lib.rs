//! Emits each record again 200 ms (processing time) after it arrived, from a processing-time timer. Needs a keyed
//! stream; the reminder carries the time it was due as its timestamp.

use eddy::{Context, Error, Event, Timer};

const DELAY_MS: i64 = 200;

#[derive(Default)]
struct RemindLater;

#[eddy::process]
impl eddy::Process for RemindLater {
    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let due = ctx.processing_time() + DELAY_MS;
        // A pending reminder: when it is due, then the record's value.
        ctx.list_state("reminders")?.add(&[&due.to_le_bytes()[..], &event.value].concat())?;
        ctx.register_processing_time_timer(due)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context) -> Result<(), Error> {
        let reminders = ctx.list_state("reminders")?;
        let mut pending = Vec::new();
        for bytes in reminders.get()? {
            let Some((due, value)) = bytes.split_first_chunk::<8>() else { continue };
            let due = i64::from_le_bytes(*due);
            if due > timer.timestamp {
                pending.push(bytes);
                continue;
            }
            let mut event = Event::new(due, value.to_vec());
            if let Some(key) = &timer.key {
                event = event.with_key(key.clone());
            }
            ctx.emit(event);
        }
        reminders.update(&pending)
    }
}
