//! Count, sum, min and max of the `amount` field, as `{count, sum, min, max}`.

use eddy::{Error, Event, Json};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Stats {
    count: u64,
    sum: f64,
    // None while empty: JSON has no infinities to start from.
    min: Option<f64>,
    max: Option<f64>,
}

fn combine(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

#[derive(Default)]
struct RunningStats;

#[eddy::aggregate]
impl eddy::Aggregate for RunningStats {
    type Acc = Json<Stats>;

    fn create(&mut self) -> Json<Stats> {
        Json(Stats::default())
    }

    fn add(&mut self, acc: &mut Json<Stats>, event: &Event) -> Result<(), Error> {
        let record: serde_json::Value = event.json()?;
        let amount = record["amount"].as_f64().ok_or_else(|| Error::msg("a record needs a numeric `amount`"))?;
        self.merge(acc, Json(Stats { count: 1, sum: amount, min: Some(amount), max: Some(amount) }))
    }

    fn merge(&mut self, acc: &mut Json<Stats>, other: Json<Stats>) -> Result<(), Error> {
        let (a, b) = (&mut acc.0, other.0);
        a.count += b.count;
        a.sum += b.sum;
        a.min = combine(a.min, b.min, f64::min);
        a.max = combine(a.max, b.max, f64::max);
        Ok(())
    }

    fn result(&mut self, acc: &Json<Stats>) -> Result<Vec<u8>, Error> {
        Ok(serde_json::to_vec(&acc.0)?)
    }
}
