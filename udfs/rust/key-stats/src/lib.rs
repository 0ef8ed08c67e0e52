//! For each record, emits the key's largest `amount` so far and the running average, as `{max, count, avg}`:
//! Flink's reducing and aggregating state, kept per key by the host.

use eddy::{Context, Error, Event};
use serde_json::json;

fn amount(event: &Event) -> Result<i64, Error> {
    let record: serde_json::Value = event.json()?;
    record["amount"].as_i64().ok_or_else(|| Error::msg("a record needs an integer `amount`"))
}

/// Sum and count of `amount`; the result is `{count, avg}`.
#[derive(Default)]
struct Average;

impl eddy::Aggregate for Average {
    type Acc = (i64, u64);

    fn create(&mut self) -> (i64, u64) {
        (0, 0)
    }

    fn add(&mut self, acc: &mut (i64, u64), event: &Event) -> Result<(), Error> {
        acc.0 += amount(event)?;
        acc.1 += 1;
        Ok(())
    }

    fn merge(&mut self, acc: &mut (i64, u64), other: (i64, u64)) -> Result<(), Error> {
        acc.0 += other.0;
        acc.1 += other.1;
        Ok(())
    }

    fn result(&mut self, acc: &(i64, u64)) -> Result<Vec<u8>, Error> {
        Ok(serde_json::to_vec(&json!({ "count": acc.1, "avg": acc.0 as f64 / acc.1 as f64 }))?)
    }
}

#[derive(Default)]
struct KeyStats {
    average: Average,
}

#[eddy::process]
impl eddy::Process for KeyStats {
    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let max = ctx.reducing_state::<i64>("max", |max, next| *max = (*max).max(next))?;
        max.add(amount(&event)?)?;
        let mut average = ctx.aggregating_state("average", &mut self.average)?;
        average.add(&event)?;

        let mut stats: serde_json::Value =
            average.get()?.map(|r| serde_json::from_slice(&r)).transpose()?.unwrap_or_default();
        stats["max"] = json!(max.get()?);
        let mut out = Event::new(event.timestamp, serde_json::to_vec(&stats)?);
        if let Some(key) = ctx.key()? {
            out = out.with_key(key);
        }
        ctx.emit(out);
        Ok(())
    }
}
