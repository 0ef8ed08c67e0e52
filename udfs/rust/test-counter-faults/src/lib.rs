//! Declares the same state as `visit-counter`, so an upgrade to it passes every check, then misbehaves as each
//! record's `do` asks: `undeclared` opens a state it did not declare and `as-list` opens `visits` as a list (each
//! emits the error it got); anything else fails the call, so an upgrade to it must roll back.

use eddy::{Context, Error, Event, StateDeclaration};

#[derive(Default)]
struct Faults;

#[eddy::process]
impl eddy::Process for Faults {
    fn states() -> Option<Vec<StateDeclaration>> {
        Some(vec![StateDeclaration::value("visits")])
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let record: serde_json::Value = event.json()?;
        let refused = match record["do"].as_str() {
            Some("undeclared") => ctx.value_state("sneaky").err(),
            Some("as-list") => ctx.list_state("visits").err(),
            _ => panic!("this version is broken"),
        };
        let message = refused.map_or_else(|| "allowed".to_string(), |e| e.to_string());
        ctx.emit(Event::new(event.timestamp, message));
        Ok(())
    }
}
