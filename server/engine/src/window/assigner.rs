//! Which windows a record belongs to, with Flink's arithmetic, and the panes that sliding windows share.

use super::Window;
use crate::spec::AssignerSpec;

/// Flink's `TimeWindow.getWindowStartWithOffset`: the start of the window of length `size` containing `ts`.
pub fn window_start(ts: i64, offset: i64, size: i64) -> i64 {
    let remainder = (ts - offset + size).rem_euclid(size);
    ts - remainder
}

/// The windows `ts` belongs to, latest start first (Flink's order).
pub fn assign(assigner: &AssignerSpec, ts: i64, out: &mut Vec<Window>) {
    out.clear();
    match *assigner {
        AssignerSpec::Tumbling { size, offset } => {
            let start = window_start(ts, offset.0, size.0);
            out.push(Window::time(start, start.saturating_add(size.0)));
        }
        AssignerSpec::Sliding { size, slide, offset } => {
            let last_start = window_start(ts, offset.0, slide.0);
            let mut start = last_start;
            while start > ts - size.0 {
                out.push(Window::time(start, start.saturating_add(size.0)));
                start -= slide.0;
            }
        }
        AssignerSpec::Session { gap } => out.push(Window::time(ts, ts.saturating_add(gap.0))),
        AssignerSpec::Global => out.push(Window::Global),
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Slices of a sliding window assigner: windows are stored as panes of `gcd(size, slide)` that every window
/// covering them shares, so a record is stored once instead of `size / slide` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panes {
    /// Pane length.
    pub len: i64,
    size: i64,
    slide: i64,
    offset: i64,
}

impl Panes {
    /// Panes for a sliding assigner, if it has more than one window per pane.
    pub fn for_assigner(assigner: &AssignerSpec) -> Option<Panes> {
        match *assigner {
            AssignerSpec::Sliding { size, slide, offset } if size.0 != slide.0 => {
                Some(Panes { len: gcd(size.0, slide.0), size: size.0, slide: slide.0, offset: offset.0 })
            }
            _ => None,
        }
    }

    /// The pane holding `ts`.
    pub fn pane_of(&self, ts: i64) -> Window {
        let start = window_start(ts, self.offset, self.len);
        Window::time(start, start + self.len)
    }

    /// The panes a window covers, earliest first.
    pub fn panes_of(&self, window: &Window) -> impl Iterator<Item = Window> + '_ {
        let (start, end) = window.bounds();
        (0..)
            .map(move |i| start + i * self.len)
            .take_while(move |s| *s < end)
            .map(move |s| Window::time(s, s + self.len))
    }

    /// Whether `window` is the last window to need `pane` (the one with the latest start at or before the pane's).
    pub fn is_last_window_of(&self, pane: &Window, window: &Window) -> bool {
        window_start(pane.bounds().0, self.offset, self.slide) == window.bounds().0
    }

    /// Window length.
    pub fn size(&self) -> i64 {
        self.size
    }
}

/// Merges overlapping session windows, as Flink's `TimeWindow.mergeWindows`: returns each merged window with the
/// windows it replaces, only for groups of two or more.
pub fn merge_sessions(windows: &[Window]) -> Vec<(Window, Vec<Window>)> {
    let mut sorted: Vec<Window> = windows.to_vec();
    sorted.sort_by_key(|w| w.bounds());
    let mut groups: Vec<(Window, Vec<Window>)> = Vec::new();
    for window in sorted {
        match groups.last_mut() {
            Some((cover, members)) if cover.intersects(&window) => {
                *cover = cover.cover(&window);
                members.push(window);
            }
            _ => groups.push((window, vec![window])),
        }
    }
    groups.into_iter().filter(|(_, members)| members.len() > 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Millis;
    use proptest::prelude::*;

    fn windows(assigner: AssignerSpec, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        assign(&assigner, ts, &mut out);
        out.iter().map(Window::bounds).collect()
    }

    #[test]
    fn assigns_like_flink() {
        let tumbling = AssignerSpec::Tumbling { size: Millis(5), offset: Millis(0) };
        assert_eq!(windows(tumbling, 7), vec![(5, 10)]);
        assert_eq!(windows(tumbling, -1), vec![(-5, 0)], "negative timestamps floor down");
        let offset = AssignerSpec::Tumbling { size: Millis(10), offset: Millis(3) };
        assert_eq!(windows(offset, 2), vec![(-7, 3)]);
        let sliding = AssignerSpec::Sliding { size: Millis(10), slide: Millis(5), offset: Millis(0) };
        assert_eq!(windows(sliding, 12), vec![(10, 20), (5, 15)]);
        let session = AssignerSpec::Session { gap: Millis(30) };
        assert_eq!(windows(session, 100), vec![(100, 130)]);
    }

    #[test]
    fn merges_overlapping_sessions_only() {
        let merged = merge_sessions(&[Window::time(0, 10), Window::time(20, 30), Window::time(8, 15)]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].0, Window::time(0, 15));
        let touching = merge_sessions(&[Window::time(0, 10), Window::time(10, 20)]);
        assert_eq!(touching[0].0, Window::time(0, 20), "windows that touch merge, as in Flink");
    }

    proptest! {
        #[test]
        fn assigns_exactly_the_windows_containing_the_timestamp(
            ts in -1_000_000i64..1_000_000, size in 1i64..300, slide in 1i64..300, offset in 0i64..300
        ) {
            let offset = offset % slide;
            let assigner = AssignerSpec::Sliding { size: Millis(size), slide: Millis(slide), offset: Millis(offset) };
            let all = windows(assigner, ts);
            let expected: Vec<(i64, i64)> = (ts - size - slide..=ts)
                .rev()
                .filter(|s| (s - offset).rem_euclid(slide) == 0 && *s <= ts && ts < s + size)
                .map(|s| (s, s + size))
                .collect();
            prop_assert_eq!(all, expected);
        }

        #[test]
        fn panes_tile_each_window(ts in -100_000i64..100_000, size_panes in 1i64..8, slide_panes in 1i64..8, len in 1i64..50) {
            let (size, slide) = (size_panes * len, slide_panes * len);
            prop_assume!(size != slide);
            let assigner = AssignerSpec::Sliding { size: Millis(size), slide: Millis(slide), offset: Millis(0) };
            let panes = Panes::for_assigner(&assigner).expect("sliding");
            let pane = panes.pane_of(ts);
            let mut all = Vec::new();
            assign(&assigner, ts, &mut all);
            // With size < slide, timestamps between windows belong to none.
            prop_assume!(!all.is_empty());
            for window in &all {
                let covering: Vec<Window> = panes.panes_of(window).collect();
                prop_assert!(covering.contains(&pane), "each window of ts covers ts's pane");
                prop_assert_eq!(covering.iter().map(|p| p.bounds().1 - p.bounds().0).sum::<i64>(), size);
            }
            let last: Vec<&Window> = all.iter().filter(|w| panes.is_last_window_of(&pane, w)).collect();
            prop_assert_eq!(last.len(), 1, "exactly one window is the pane's last");
            prop_assert!(all.iter().all(|w| w.bounds().1 <= last[0].bounds().1), "and it ends last");
        }

        #[test]
        fn merged_sessions_cover_their_members_and_do_not_overlap(
            starts in proptest::collection::vec(0i64..1000, 1..30), gap in 1i64..100
        ) {
            let windows: Vec<Window> = starts.iter().map(|&s| Window::time(s, s + gap)).collect();
            let merged = merge_sessions(&windows);
            for (cover, members) in &merged {
                prop_assert!(members.len() > 1);
                for m in members {
                    prop_assert!(cover.bounds().0 <= m.bounds().0 && m.bounds().1 <= cover.bounds().1);
                }
            }
            for (i, (a, _)) in merged.iter().enumerate() {
                for (b, _) in &merged[i + 1..] {
                    prop_assert!(!a.intersects(b), "merged windows never overlap");
                }
            }
            // A window left out of every group overlaps no other window.
            for w in &windows {
                if !merged.iter().any(|(_, m)| m.contains(w)) {
                    prop_assert_eq!(windows.iter().filter(|o| o.intersects(w)).count(), windows.iter().filter(|o| *o == w).count());
                }
            }
        }
    }
}
