//! Drops common words. `config: {"words": ["a", "the"]}` replaces the built-in list.

use eddy::{Config, Error, Event};
use std::sync::OnceLock;

static WORDS: OnceLock<Vec<String>> = OnceLock::new();
const DEFAULT: &[&str] = &["a", "an", "and", "the", "of", "to", "in", "is", "it", "on", "for"];

fn setup(config: &Config) -> Result<(), Error> {
    let words: Vec<String> = match config.0.get("words") {
        None => DEFAULT.iter().map(|w| w.to_string()).collect(),
        Some(words) => {
            serde_json::from_value(words.clone()).map_err(|_| Error::msg("config.words must be a list of strings"))?
        }
    };
    let _ = WORDS.set(words.into_iter().map(|w| w.to_lowercase()).collect());
    Ok(())
}

#[eddy::filter(init = setup)]
fn keep(event: &Event) -> Result<bool, Error> {
    let word = event.text()?.to_lowercase();
    Ok(!WORDS.get().is_some_and(|stop| stop.contains(&word)))
}
