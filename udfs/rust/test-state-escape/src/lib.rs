//! Keeps the first key's state handle and tries to read it while other keys are current; on a record that says
//! `hoard`,
//! opens state handles without ever dropping one, to find where the host stops it.

use eddy::{Context, Error, Event, ValueState};

#[derive(Default)]
struct Escape {
    first: Option<(Vec<u8>, ValueState)>,
}

#[eddy::process]
impl eddy::Process for Escape {
    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let key = event.key.as_deref().unwrap_or_default().to_vec();
        if event.value.windows(5).any(|w| w == b"hoard") {
            let mut hoard = Vec::new();
            let report = loop {
                match ctx.value_state("hoarded") {
                    Ok(handle) => hoard.push(handle),
                    Err(e) => break format!("refused after {}: {e}", hoard.len()),
                }
                if hoard.len() > 1_000_000 {
                    break "never refused".to_string();
                }
            };
            ctx.emit(Event::new(event.timestamp, report).with_key(key));
            return Ok(());
        }
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
