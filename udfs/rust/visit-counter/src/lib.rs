//! Counts each user's visits. Records are `{"user": ..., "page": ...}`, keyed by user; for each one it emits
//! `{"user", "visits", "logic": "v1"}`. Its one state is declared, so an upgrade to another version is checked
//! against it (see `visit-counter-v2` and `visit-counter-retyped`).

use eddy::{Context, Error, Event, StateDeclaration};
use serde_json::json;

#[derive(Default)]
struct VisitCounter;

#[eddy::process]
impl eddy::Process for VisitCounter {
    fn states() -> Option<Vec<StateDeclaration>> {
        Some(vec![StateDeclaration::value("visits")])
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let visits = ctx.value_state("visits")?;
        let count = visits.get_i64()?.unwrap_or(0) + 1;
        visits.set_i64(count)?;
        let user = String::from_utf8_lossy(&ctx.key()?.unwrap_or_default()).into_owned();
        ctx.emit(Event::from_json(event.timestamp, &json!({ "user": user, "visits": count, "logic": "v1" }))?);
        Ok(())
    }
}
