//! Splits text into words, one record each.

use eddy::{Error, Event};

#[eddy::flat_map]
fn split_words(event: Event) -> Result<Vec<Event>, Error> {
    let text = match event.json::<serde_json::Value>() {
        Ok(doc) => doc["text"].as_str().unwrap_or_default().to_string(),
        Err(_) => event.text()?.to_string(),
    };
    let words = text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(|w| Event::new(event.timestamp, w.to_string()))
        .collect();
    Ok(words)
}
