//! Summarises a session window of clicks: `{user, start, end, clicks, pages}`, pages distinct in the order first
//! visited.

use eddy::{Error, Event, Output, Window, WindowInfo};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Click {
    page: String,
}

#[eddy::process_window]
fn summarise(info: &WindowInfo, clicks: &[Event], out: &mut Output) -> Result<(), Error> {
    let Window::Time { start, end } = info.window else { return Err(Error::msg("sessions are time windows")) };
    let mut in_time_order: Vec<&Event> = clicks.iter().collect();
    in_time_order.sort_by_key(|c| c.timestamp);
    let mut pages: Vec<String> = Vec::new();
    for click in in_time_order {
        let Click { page } = click.json()?;
        if !pages.contains(&page) {
            pages.push(page);
        }
    }
    let user = String::from_utf8_lossy(info.key.as_deref().unwrap_or_default()).into_owned();
    let summary = json!({ "user": user, "start": start, "end": end, "clicks": clicks.len(), "pages": pages });
    let mut event = Event::from_json(info.window.max_timestamp(), &summary)?;
    if let Some(key) = &info.key {
        event = event.with_key(key.clone());
    }
    out.emit(event);
    Ok(())
}
