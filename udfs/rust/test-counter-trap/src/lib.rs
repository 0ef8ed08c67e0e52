//! Declares the same state as `visit-counter`, so an upgrade to it passes every check, then fails on its first
//! record: the upgrade must roll back to the old module.

use eddy::{Context, Error, Event, StateDeclaration};

#[derive(Default)]
struct Broken;

#[eddy::process]
impl eddy::Process for Broken {
    fn states() -> Option<Vec<StateDeclaration>> {
        Some(vec![StateDeclaration::value("visits")])
    }

    fn process(&mut self, _event: Event, _ctx: &mut Context) -> Result<(), Error> {
        panic!("this version is broken")
    }
}
