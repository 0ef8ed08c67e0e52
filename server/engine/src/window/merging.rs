//! Session windows: which merged window each live window has become, and where its contents are stored (Flink's
//! `MergingWindowSet`). Contents stay in the namespace of the first window of a merge, so extending a session
//! moves no data; only a record that bridges two sessions merges their contents.

use super::{Window, merge_sessions};

/// One merge: `result` replaces `merged`; contents of `merged_state_windows` move into `state_window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub result: Window,
    pub merged: Vec<Window>,
    pub state_window: Window,
    pub merged_state_windows: Vec<Window>,
}

/// Live session windows of one key, each with the window its contents are stored under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergingSet {
    mapping: Vec<(Window, Window)>,
}

impl MergingSet {
    pub fn decode(bytes: &[u8]) -> MergingSet {
        let mapping = bytes
            .chunks_exact(32)
            .filter_map(|pair| Some((Window::from_namespace(&pair[..16])?, Window::from_namespace(&pair[16..])?)))
            .collect();
        MergingSet { mapping }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.mapping.len() * 32);
        for (window, state) in &self.mapping {
            out.extend_from_slice(&window.namespace());
            out.extend_from_slice(&state.namespace());
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.mapping.is_empty()
    }

    /// Where `window`'s contents are stored, if it is live.
    pub fn state_window(&self, window: &Window) -> Option<Window> {
        self.mapping.iter().find(|(w, _)| w == window).map(|(_, s)| *s)
    }

    /// Forgets a window that was cleaned up or turned out late.
    pub fn retire(&mut self, window: &Window) {
        self.mapping.retain(|(w, _)| w != window);
    }

    /// Adds a new window, merging it with overlapping live windows; returns the window it ended up in and the
    /// merges whose contents and trigger state the caller must combine.
    pub fn add(&mut self, new: Window) -> (Window, Vec<Merge>) {
        let mut candidates: Vec<Window> = self.mapping.iter().map(|(w, _)| *w).collect();
        candidates.push(new);
        let mut result = new;
        let mut merged_new = false;
        let mut merges = Vec::new();
        for (cover, mut members) in merge_sessions(&candidates) {
            if let Some(i) = members.iter().position(|w| *w == new) {
                members.remove(i);
                merged_new = true;
                result = cover;
            }
            if members.is_empty() {
                continue;
            }
            let state_window = self.state_window(&members[0]).unwrap_or(members[0]);
            let merged_state_windows: Vec<Window> =
                members[1..].iter().filter_map(|m| self.state_window(m)).filter(|s| *s != state_window).collect();
            self.mapping.retain(|(w, _)| !members.contains(w));
            self.mapping.push((cover, state_window));
            if !(members.len() == 1 && members[0] == cover) {
                merges.push(Merge { result: cover, merged: members, state_window, merged_state_windows });
            }
        }
        if !merged_new {
            self.mapping.push((new, new));
        }
        (result, merges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_sessions_without_moving_contents() {
        let mut set = MergingSet::default();
        let (first, merges) = set.add(Window::time(0, 10));
        assert_eq!((first, merges.len()), (Window::time(0, 10), 0));
        let (grown, merges) = set.add(Window::time(5, 15));
        assert_eq!(grown, Window::time(0, 15));
        assert_eq!(merges.len(), 1);
        assert_eq!(merges[0].state_window, Window::time(0, 10), "contents stay where they were");
        assert!(merges[0].merged_state_windows.is_empty());
        assert_eq!(set.state_window(&Window::time(0, 15)), Some(Window::time(0, 10)));
        assert_eq!(set.state_window(&Window::time(0, 10)), None, "the old window is gone");
    }

    #[test]
    fn bridging_two_sessions_merges_their_contents() {
        let mut set = MergingSet::default();
        set.add(Window::time(0, 10));
        set.add(Window::time(20, 30));
        let (bridged, merges) = set.add(Window::time(9, 21));
        assert_eq!(bridged, Window::time(0, 30));
        assert_eq!(merges.len(), 1);
        assert_eq!(merges[0].state_window, Window::time(0, 10));
        assert_eq!(merges[0].merged_state_windows, vec![Window::time(20, 30)]);
        assert_eq!(MergingSet::decode(&set.encode()), set);
    }

    #[test]
    fn a_window_inside_a_session_keeps_it() {
        let mut set = MergingSet::default();
        set.add(Window::time(0, 100));
        let (result, merges) = set.add(Window::time(10, 20));
        assert_eq!(result, Window::time(0, 100));
        assert!(merges.is_empty(), "the session itself did not change");
    }
}
