//! Which windows a record belongs to, with Flink's arithmetic, and the panes that sliding windows share.

use super::Window;
use crate::spec::AssignerSpec;

/// Flink's `TimeWindow.getWindowStartWithOffset` without overflow: the exact start of the window of length `size`
/// containing `ts`, which may lie before `i64::MIN`.
fn exact_start(ts: i128, offset: i64, size: i64) -> i128 {
    ts - (ts - i128::from(offset)).rem_euclid(i128::from(size))
}

/// A time bound clamped to the time line.
fn clamp(t: i128) -> i64 {
    i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
}

/// The window `[start, start + size)` clamped to the time line: near its ends windows are cut short rather than
/// wrapping around, as Flink's cleanup time saturates at `Long.MAX_VALUE`.
fn clamped(start: i128, size: i64) -> Window {
    Window::time(clamp(start), clamp(start + i128::from(size)))
}

/// The exact start of a window or pane of length `len`, whose stored start may have been clamped to `i64::MIN`
/// (its end then is not clamped: no length spans the whole time line).
fn exact_start_of(window: &Window, len: i64) -> i128 {
    match window.bounds() {
        (i64::MIN, end) => i128::from(end) - i128::from(len),
        (start, _) => i128::from(start),
    }
}

/// The start of the window of length `size` containing `ts` (Flink's `TimeWindow.getWindowStartWithOffset`),
/// clamped to `i64::MIN`.
pub fn window_start(ts: i64, offset: i64, size: i64) -> i64 {
    clamp(exact_start(i128::from(ts), offset, size))
}

/// The windows `ts` belongs to, latest start first (Flink's order). Window bounds beyond the time line are clamped to
/// it, so extreme timestamps neither overflow nor lose their windows.
pub fn assign(assigner: &AssignerSpec, ts: i64, out: &mut Vec<Window>) {
    out.clear();
    match *assigner {
        AssignerSpec::Tumbling { size, offset } => {
            out.push(clamped(exact_start(i128::from(ts), offset.0, size.0), size.0));
        }
        AssignerSpec::Sliding { size, slide, offset } => {
            let ts = i128::from(ts);
            let mut start = exact_start(ts, offset.0, slide.0);
            while start > ts - i128::from(size.0) {
                out.push(clamped(start, size.0));
                start -= i128::from(slide.0);
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
        clamped(exact_start(i128::from(ts), self.offset, self.len), self.len)
    }

    /// Whether `window` is the last window to need `pane` (the one with the latest start at or before the pane's).
    pub fn is_last_window_of(&self, pane: &Window, window: &Window) -> bool {
        exact_start(exact_start_of(pane, self.len), self.offset, self.slide) == exact_start_of(window, self.size)
    }

    /// Whether `window` was cut short at the end of the time line: then it also holds the pane starting at
    /// `i64::MAX`, which its clamped end excludes.
    pub fn is_cut_at_end(&self, window: &Window) -> bool {
        exact_start_of(window, self.size) + i128::from(self.size) > i128::from(i64::MAX)
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

    const MIN: i64 = i64::MIN;
    const MAX: i64 = i64::MAX;

    #[test]
    fn clamps_windows_at_the_ends_of_the_time_line() {
        let tumbling = AssignerSpec::Tumbling { size: Millis(10), offset: Millis(0) };
        // i64::MIN + 1 ends in 7: its window would start 2 ms before the time line does.
        assert_eq!(windows(tumbling, MIN + 1), vec![(MIN, MIN + 8)]);
        assert_eq!(windows(tumbling, MIN), vec![(MIN, MIN + 8)]);
        assert_eq!(windows(tumbling, MAX - 1), vec![(MAX - 7, MAX)]);
        assert_eq!(windows(tumbling, MAX), vec![(MAX - 7, MAX)]);
        let huge = AssignerSpec::Tumbling { size: Millis(MAX), offset: Millis(MAX - 1) };
        assert_eq!(windows(huge, MIN + 1), vec![(MIN, -1)]);
        assert_eq!(windows(huge, MAX), vec![(MAX - 1, MAX)]);
        let sliding = AssignerSpec::Sliding { size: Millis(10), slide: Millis(5), offset: Millis(0) };
        assert_eq!(windows(sliding, MIN + 1), vec![(MIN, MIN + 8), (MIN, MIN + 3)]);
        assert_eq!(windows(sliding, MAX - 1), vec![(MAX - 2, MAX), (MAX - 7, MAX)]);
        let session = AssignerSpec::Session { gap: Millis(30) };
        assert_eq!(windows(session, MIN), vec![(MIN, MIN + 30)]);
        assert_eq!(windows(session, MAX - 1), vec![(MAX - 1, MAX)]);
        assert_eq!(windows(AssignerSpec::Global, MIN), vec![(MIN, MAX)]);
        assert_eq!(window_start(MIN + 1, 0, 10), MIN);
        assert_eq!(Window::time(MIN, MIN).max_timestamp(), MIN, "no underflow");
    }

    #[test]
    fn panes_at_the_ends_of_the_time_line_belong_to_their_last_window() {
        let assigner = AssignerSpec::Sliding { size: Millis(10), slide: Millis(4), offset: Millis(0) };
        let panes = Panes::for_assigner(&assigner).expect("sliding");
        for ts in [MIN, MIN + 1, MIN + 5, MAX - 5, MAX - 1, MAX] {
            let pane = panes.pane_of(ts);
            let mut all = Vec::new();
            assign(&assigner, ts, &mut all);
            let last: Vec<&Window> = all.iter().filter(|w| panes.is_last_window_of(&pane, w)).collect();
            assert_eq!(last, vec![&all[0]], "ts {ts}: the latest window is the pane's last of {all:?}");
        }
    }

    /// Timestamps near either end of the time line, or anywhere.
    fn extreme() -> impl Strategy<Value = i64> {
        prop_oneof![MIN..MIN + 10_000, MAX - 10_000..=MAX, any::<i64>()]
    }

    /// Window lengths from one millisecond to the whole positive time line.
    fn length() -> impl Strategy<Value = i64> {
        prop_oneof![1i64..1000, 1i64..=MAX]
    }

    /// `(start, end)` clamped to the time line, from exact bounds.
    fn clamp_bounds(start: i128, end: i128) -> (i64, i64) {
        let clamp = |t: i128| t.clamp(MIN.into(), MAX.into()) as i64;
        (clamp(start), clamp(end))
    }

    proptest! {
        #[test]
        fn every_assigner_gives_extreme_timestamps_the_windows_around_them(
            ts in extreme(), size in length(), windows_per_slide in 1i64..6, offset in any::<i64>(), gap in length()
        ) {
            let slide = (size / windows_per_slide).max(1);
            // The model: windows start at `offset + k * slide` in exact arithmetic, latest first, then are clamped.
            let model = |size: i64, slide: i64, offset: i64| -> Vec<(i64, i64)> {
                let (ts, size) = (i128::from(ts), i128::from(size));
                let (slide, offset) = (i128::from(slide), i128::from(offset));
                let last = (ts - offset).div_euclid(slide) * slide + offset;
                (0..)
                    .map(|k| last - k * slide)
                    .take_while(|s| ts < s + size)
                    .map(|s| clamp_bounds(s, s + size))
                    .collect()
            };
            let tumbling_offset = offset.rem_euclid(size);
            let tumbling = AssignerSpec::Tumbling { size: Millis(size), offset: Millis(tumbling_offset) };
            prop_assert_eq!(windows(tumbling, ts), model(size, size, tumbling_offset));
            let offset = offset.rem_euclid(slide);
            let sliding = AssignerSpec::Sliding { size: Millis(size), slide: Millis(slide), offset: Millis(offset) };
            let got = windows(sliding, ts);
            prop_assert_eq!(&got, &model(size, slide, offset));
            for (start, end) in got {
                prop_assert!(start <= ts && (ts < end || end == MAX), "({start}, {end}) holds {ts}");
            }
            let session = AssignerSpec::Session { gap: Millis(gap) };
            prop_assert_eq!(windows(session, ts), vec![(ts, ts.saturating_add(gap))]);
            prop_assert_eq!(windows(AssignerSpec::Global, ts), vec![(MIN, MAX)]);
        }

        #[test]
        fn panes_of_extreme_timestamps_lie_in_their_windows(
            ts in extreme(),
            len in prop_oneof![1i64..100, 1i64..=MAX / 8],
            size_panes in 1i64..8,
            slide_panes in 1i64..8,
        ) {
            let (size, slide) = (size_panes * len, slide_panes * len);
            prop_assume!(size != slide);
            let assigner = AssignerSpec::Sliding { size: Millis(size), slide: Millis(slide), offset: Millis(0) };
            let panes = Panes::for_assigner(&assigner).expect("sliding");
            let pane = panes.pane_of(ts);
            let (pane_start, pane_end) = pane.bounds();
            prop_assert!(pane_start <= ts && (ts < pane_end || pane_end == MAX));
            let mut all = Vec::new();
            assign(&assigner, ts, &mut all);
            prop_assume!(!all.is_empty());
            for window in &all {
                // The operator finds a window's panes by their start.
                let (start, end) = window.bounds();
                let holds = start <= pane_start && (pane_start < end || panes.is_cut_at_end(window));
                prop_assert!(holds, "{:?} in {:?}", pane, window);
            }
            let last: Vec<&Window> = all.iter().filter(|w| panes.is_last_window_of(&pane, w)).collect();
            prop_assert_eq!(last, vec![&all[0]], "the latest window is the pane's last");
        }

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
                let (start, end) = window.bounds();
                let covering: Vec<Window> =
                    (start..end).step_by(panes.len as usize).map(|s| Window::time(s, s + panes.len)).collect();
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
