//! Flink's fraud-detection walkthrough: per account, a transaction under 1.00 followed within one minute of event
//! time by one over 500.00 raises an alert. The small transaction opens a suspicion window that an event-time timer
//! closes; meanwhile value state holds the small transaction, map state counts merchants and list state keeps the
//! amounts, which the alert reports.

use eddy::{Context, Error, Event, StateDeclaration, Timer};
use serde::{Deserialize, Serialize};
use serde_json::json;

const SMALL: f64 = 1.00;
const LARGE: f64 = 500.00;
const MINUTE: i64 = 60_000;
/// Amounts an alert reports at most.
const RECENT: usize = 10;

#[derive(Deserialize)]
struct Transaction {
    account: String,
    merchant: String,
    amount: f64,
}

/// The small transaction that opened the suspicion window (the latest one, when there were several).
#[derive(Serialize, Deserialize)]
struct Small {
    time: i64,
    amount: f64,
}

#[derive(Default)]
struct FraudDetector;

/// Forgets the suspicion window of the current account.
fn clear(ctx: &mut Context) -> Result<(), Error> {
    ctx.value_state("small")?.clear()?;
    ctx.map_state("merchants")?.clear()?;
    ctx.list_state("amounts")?.clear()
}

fn count(bytes: &[u8]) -> u64 {
    bytes.first_chunk().map_or(0, |b| u64::from_le_bytes(*b))
}

/// Counts the transaction's merchant and keeps its amount.
fn remember(ctx: &mut Context, tx: &Transaction) -> Result<(), Error> {
    let merchants = ctx.map_state("merchants")?;
    let seen = merchants.get(tx.merchant.as_bytes())?.map_or(0, |v| count(&v));
    merchants.put(tx.merchant.as_bytes(), &(seen + 1).to_le_bytes())?;
    let amounts = ctx.list_state("amounts")?;
    amounts.add(&tx.amount.to_le_bytes())?;
    let all = amounts.get()?;
    if all.len() > RECENT {
        amounts.update(&all[all.len() - RECENT..])?;
    }
    Ok(())
}

#[eddy::process]
impl eddy::Process for FraudDetector {
    fn states() -> Option<Vec<StateDeclaration>> {
        Some(vec![
            StateDeclaration::value("small"),
            StateDeclaration::map("merchants"),
            StateDeclaration::list("amounts"),
        ])
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let tx: Transaction = event.json()?;
        let state = ctx.value_state("small")?;
        let mut small: Option<Small> = state.get_json()?;
        if let Some(s) = &small
            && event.timestamp >= s.time + MINUTE
        {
            // The window is over in event time, but the watermark has not reached its timer yet.
            ctx.delete_event_time_timer(s.time + MINUTE)?;
            clear(ctx)?;
            small = None;
        }
        if tx.amount < SMALL {
            if let Some(s) = &small {
                ctx.delete_event_time_timer(s.time + MINUTE)?;
            }
            state.set_json(&Small { time: event.timestamp, amount: tx.amount })?;
            ctx.register_event_time_timer(event.timestamp + MINUTE)?;
            return remember(ctx, &tx);
        }
        // Only what follows a small transaction is suspicious.
        let Some(small) = small.filter(|s| event.timestamp >= s.time) else { return Ok(()) };
        remember(ctx, &tx)?;
        if tx.amount > LARGE {
            let amounts: Vec<f64> = ctx
                .list_state("amounts")?
                .get()?
                .iter()
                .filter_map(|v| v.first_chunk().map(|b| f64::from_le_bytes(*b)))
                .collect();
            let merchants: serde_json::Map<String, serde_json::Value> = ctx
                .map_state("merchants")?
                .entries()?
                .into_iter()
                .map(|(merchant, n)| (String::from_utf8_lossy(&merchant).into_owned(), count(&n).into()))
                .collect();
            let alert = json!({
                "account": tx.account,
                "small_time": small.time,
                "small_amount": small.amount,
                "large_time": event.timestamp,
                "large_amount": tx.amount,
                "recent_amounts": amounts,
                "merchants": merchants,
            });
            ctx.emit(event.with_json(&alert)?);
            ctx.delete_event_time_timer(small.time + MINUTE)?;
            clear(ctx)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, _timer: Timer, ctx: &mut Context) -> Result<(), Error> {
        // A minute passed since the small transaction: a large one no longer alerts.
        clear(ctx)
    }
}
