//! A version of `visit-counter` that keeps `visits` as a list of visit times instead of a count. The running
//! job's `visits` holds counts, which this version would misread, so Eddy refuses an upgrade to it.

use eddy::{Context, Error, Event, StateDeclaration};
use serde_json::json;

#[derive(Default)]
struct VisitCounter;

#[eddy::process]
impl eddy::Process for VisitCounter {
    fn states() -> Option<Vec<StateDeclaration>> {
        Some(vec![StateDeclaration::list("visits")])
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let visits = ctx.list_state("visits")?;
        visits.add(&event.timestamp.to_le_bytes())?;
        let count = visits.get()?.len();
        let user = String::from_utf8_lossy(&ctx.key()?.unwrap_or_default()).into_owned();
        ctx.emit(Event::from_json(event.timestamp, &json!({ "user": user, "visits": count, "logic": "list" }))?);
        Ok(())
    }
}
