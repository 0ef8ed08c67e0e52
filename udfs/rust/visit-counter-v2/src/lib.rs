//! The next version of `visit-counter`: it keeps counting in the same `visits` state, and also remembers each
//! user's last page in a new state. For each record it emits `{"user", "visits", "last_page", "logic": "v2"}`.

use eddy::{Context, Error, Event, StateDeclaration};
use serde_json::json;

#[derive(Default)]
struct VisitCounter;

#[eddy::process]
impl eddy::Process for VisitCounter {
    fn states() -> Option<Vec<StateDeclaration>> {
        Some(vec![StateDeclaration::value("visits"), StateDeclaration::value("last-page")])
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let record: serde_json::Value = event.json()?;
        let page = record["page"].as_str().unwrap_or_default();
        let visits = ctx.value_state("visits")?;
        let count = visits.get_i64()?.unwrap_or(0) + 1;
        visits.set_i64(count)?;
        let last_page = ctx.value_state("last-page")?;
        last_page.set(page.as_bytes())?;
        let user = String::from_utf8_lossy(&ctx.key()?.unwrap_or_default()).into_owned();
        let out = json!({ "user": user, "visits": count, "last_page": page, "logic": "v2" });
        ctx.emit(Event::from_json(event.timestamp, &out)?);
        Ok(())
    }
}
