//! Process-window functions.

use crate::event::{Event, Window};
use eddy_codec::BatchWriter;

/// What a process-window function sees of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowInfo {
    /// The window's key (none for a window over the whole stream).
    pub key: Option<Vec<u8>>,
    /// The window.
    pub window: Window,
}

/// Where a process-window function emits records.
#[derive(Default)]
pub struct Output {
    pub(crate) main: BatchWriter,
    pub(crate) side: Vec<(String, BatchWriter)>,
}

impl Output {
    /// Emits an event to the main output.
    pub fn emit(&mut self, event: Event<'_>) {
        event.push_to(&mut self.main);
    }

    /// Emits an event to side output `tag`.
    pub fn emit_side(&mut self, tag: &str, event: Event<'_>) {
        let index = match self.side.iter().position(|(t, _)| t == tag) {
            Some(i) => i,
            None => {
                self.side.push((tag.to_string(), BatchWriter::default()));
                self.side.len() - 1
            }
        };
        event.push_to(&mut self.side[index].1);
    }
}
