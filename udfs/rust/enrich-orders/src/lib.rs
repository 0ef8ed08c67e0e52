//! Enriches orders with their customer's profile (a co-process function: customers on input 0, orders on input 1,
//! both keyed by customer id, so the two inputs share the keyed state of each customer). An order that comes before
//! its customer waits in list state; if the customer has not arrived when the order's timer fires (order time +
//! 1 minute of event time), the order goes to side output `unmatched`.

use eddy::{Context, Error, Event, Timer};

const WAIT: i64 = 60_000;

#[derive(Default)]
struct EnrichOrders;

/// The order with the customer's profile added as `profile`.
fn enriched<'a>(order: Event<'a>, profile: &serde_json::Value) -> Result<Event<'a>, Error> {
    let mut value: serde_json::Value = order.json()?;
    value["profile"] = profile.clone();
    order.with_json(&value)
}

/// A waiting order as list-state bytes: its event time, then its value.
fn encode(order: &Event) -> Vec<u8> {
    [&order.timestamp.to_le_bytes()[..], &order.value].concat()
}

fn decode(bytes: &[u8], key: &[u8]) -> Result<Event<'static>, Error> {
    let (time, value) = bytes.split_first_chunk::<8>().ok_or_else(|| Error::msg("a waiting order is corrupt"))?;
    Ok(Event::new(i64::from_le_bytes(*time), value.to_vec()).with_key(key.to_vec()))
}

#[eddy::process]
impl eddy::Process for EnrichOrders {
    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let key = event.key.as_deref().unwrap_or_default().to_vec();
        let waiting = ctx.list_state("waiting-orders")?;
        if ctx.input() == 0 {
            let profile: serde_json::Value = event.json()?;
            ctx.value_state("profile")?.set_json(&profile)?;
            for bytes in waiting.get()? {
                let order = decode(&bytes, &key)?;
                ctx.delete_event_time_timer(order.timestamp + WAIT)?;
                ctx.emit(enriched(order, &profile)?);
            }
            return waiting.clear();
        }
        match ctx.value_state("profile")?.get_json::<serde_json::Value>()? {
            Some(profile) => ctx.emit(enriched(event, &profile)?),
            None => {
                ctx.register_event_time_timer(event.timestamp + WAIT)?;
                waiting.add(&encode(&event))?;
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context) -> Result<(), Error> {
        let key = timer.key.unwrap_or_default();
        let waiting = ctx.list_state("waiting-orders")?;
        let mut still_waiting = Vec::new();
        for bytes in waiting.get()? {
            let order = decode(&bytes, &key)?;
            if order.timestamp + WAIT <= timer.timestamp {
                ctx.emit_side("unmatched", order);
            } else {
                still_waiting.push(bytes);
            }
        }
        waiting.update(&still_waiting)
    }
}
