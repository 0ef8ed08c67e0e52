//! Keeps the first key's state handle and tries to read it while other keys are current.

use eddy::{Context, Error, Event, ValueState};

#[derive(Default)]
struct Escape {
    first: Option<(Vec<u8>, ValueState)>,
}

#[eddy::process]
impl eddy::Process for Escape {
    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let key = event.key.as_deref().unwrap_or_default().to_vec();
        let own = ctx.value_state("secret")?;
        own.set(format!("secret of {}", String::from_utf8_lossy(&key)).as_bytes())?;
        let report = match &self.first {
            None => {
                self.first = Some((key.clone(), own));
                "kept".to_string()
            }
            Some((first, _)) if *first == key => "same key".to_string(),
            Some((_, stolen)) => match stolen.get() {
                Ok(data) => format!("leaked: {}", String::from_utf8_lossy(&data.unwrap_or_default())),
                Err(e) => format!("denied: {e}"),
            },
        };
        ctx.emit(Event::new(event.timestamp, report).with_key(key));
        Ok(())
    }
}
