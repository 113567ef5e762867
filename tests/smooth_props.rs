//! Properties of the smoother, the hysteresis and the segments (src/smooth.rs, docs/records.md,
//! "Segments") over random output sequences.

use coinfer::smooth::{Hysteresis, MAX_SEGMENTS, Segment, Segments, SmoothMode, Smoother};
use proptest::prelude::*;

/// Rounding of a sum of a few dozen f32 probabilities.
const TOLERANCE: f32 = 1e-5;

/// `n` probability distributions over `classes` classes (each sums to 1).
fn distributions() -> impl Strategy<Value = (usize, Vec<Vec<f32>>)> {
    (1usize..12).prop_flat_map(|classes| {
        let row = prop::collection::vec(0.0f32..1.0, classes).prop_map(|mut r| {
            let (sum, n): (f32, f32) = (r.iter().sum(), r.len() as f32);
            match sum > 0.0 {
                true => r.iter_mut().for_each(|p| *p /= sum),
                false => r.iter_mut().for_each(|p| *p = 1.0 / n),
            }
            r
        });
        (Just(classes), prop::collection::vec(row, 1..120))
    })
}

fn modes() -> impl Strategy<Value = SmoothMode> {
    prop_oneof![Just(SmoothMode::None), (0.01f32..=1.0).prop_map(SmoothMode::Ema), (1usize..20).prop_map(SmoothMode::Mean)]
}

/// The inputs an output at index `i` averages: all before it for EMA, the last N for a mean.
fn window(mode: SmoothMode, i: usize) -> std::ops::RangeInclusive<usize> {
    match mode {
        SmoothMode::None => i..=i,
        SmoothMode::Ema(_) => 0..=i,
        SmoothMode::Mean(n) => (i + 1).saturating_sub(n)..=i,
    }
}

/// A reported-label track: leaders from a few classes, runs of varied length.
fn leaders() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec((0usize..4, 1usize..6), 1..80)
        .prop_map(|runs| runs.into_iter().flat_map(|(id, n)| std::iter::repeat_n(id, n)).collect())
}

/// Windows of outputs one `stride` apart, each `span` long and starting no earlier than 0.
fn windows(n: usize, stride: f64, span: f64) -> Vec<[f64; 2]> {
    (0..n).map(|i| (i as f64 + 1.0) * stride).map(|end| [(end - span).max(0.0), end]).collect()
}

/// Check that segments tile the windows of the outputs they hold, in order and without overlap.
fn assert_tiles(segs: &[Segment], ids: &[usize], windows: &[[f64; 2]], scores: &[f32]) {
    let mut next = 0;
    for (k, seg) in segs.iter().enumerate() {
        let outputs = next..next + seg.outputs;
        assert!(seg.outputs >= 1);
        assert!(ids[outputs.clone()].iter().all(|&id| id == seg.id), "segment {k} holds one label");
        let start = if next == 0 { windows[0][0] } else { windows[next - 1][1] };
        assert_eq!((seg.start, seg.end), (start, windows[outputs.end - 1][1]), "segment {k}");
        assert!(seg.start <= seg.end);
        if k > 0 {
            assert_eq!(segs[k - 1].end, seg.start, "segments {k} meets the one before");
            assert_ne!(segs[k - 1].id, seg.id, "a new segment has a new label");
        }
        let (lo, hi) = scores[outputs.clone()].iter().fold((f32::MAX, f32::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        assert!(seg.mean_score >= lo as f64 - 1e-6 && seg.mean_score <= hi as f64 + 1e-6, "segment {k} mean score");
        next = outputs.end;
    }
    assert_eq!(next, ids.len(), "every output is in a segment");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Each smoothed score stays within the smallest and largest input it averages, and a smoothed
    /// distribution still sums to 1.
    #[test]
    fn smoothing_stays_within_its_inputs_and_keeps_distributions((classes, rows) in distributions(), mode in modes()) {
        let mut s = Smoother::new(mode, classes);
        for i in 0..rows.len() {
            let out = s.push(&rows[i]).to_vec();
            for c in 0..classes {
                let inputs = window(mode, i).map(|j| rows[j][c]);
                let (lo, hi) = inputs.fold((f32::MAX, f32::MIN), |(lo, hi), p| (lo.min(p), hi.max(p)));
                prop_assert!(out[c] >= lo - TOLERANCE && out[c] <= hi + TOLERANCE, "{mode} output {i} class {c}: {} not in [{lo}, {hi}]", out[c]);
            }
            let sum: f32 = out.iter().sum();
            prop_assert!((sum - 1.0).abs() <= TOLERANCE * classes as f32, "{mode} output {i} sums to {sum}");
        }
    }

    /// After a reset the smoother answers as a new one.
    #[test]
    fn reset_forgets((classes, rows) in distributions(), mode in modes()) {
        let mut used = Smoother::new(mode, classes);
        rows.iter().for_each(|r| { used.push(r); });
        used.reset();
        let mut fresh = Smoother::new(mode, classes);
        for r in &rows {
            prop_assert_eq!(used.push(r).to_vec(), fresh.push(r).to_vec());
        }
    }

    /// With hold h, a switch to a label needs it to lead the h outputs up to the switch; so two
    /// switches are at least h outputs apart, and the first output is reported as it leads.
    #[test]
    fn hold_switches_only_after_h_leads(track in leaders(), hold in 0usize..6) {
        let mut h = Hysteresis::new(hold);
        let reported: Vec<usize> = track.iter().map(|&l| h.update(l)).collect();
        prop_assert_eq!(reported[0], track[0]);
        let need = hold.max(1);
        let mut last_switch = 0;
        for i in 1..track.len() {
            if reported[i] == reported[i - 1] {
                continue;
            }
            prop_assert!(i + 1 >= need && track[i + 1 - need..=i].iter().all(|&l| l == reported[i]), "switch at {} without {} leads", i, need);
            prop_assert!(last_switch == 0 || i - last_switch >= need, "switches at {} and {}", last_switch, i);
            last_switch = i;
        }
        // A label that leads h outputs running is reported by then.
        for i in need - 1..track.len() {
            if track[i + 1 - need..=i].iter().all(|&l| l == track[i]) {
                prop_assert_eq!(reported[i], track[i], "{} led {} outputs up to {}", track[i], need, i);
            }
        }
        prop_assert_eq!(h.current(), reported.last().copied());
    }

    /// The segments tile the outputs' windows in order, meet without overlap, and each holds one label.
    #[test]
    fn segments_tile_the_windows(track in leaders(), stride in 0.04f64..1.0, span in 0.0f64..5.0, scores in prop::collection::vec(0.0f32..=1.0, 400)) {
        let windows = windows(track.len(), stride, span);
        let scores = &scores[..track.len()];
        let mut segs = Segments::new();
        for i in 0..track.len() {
            segs.push(track[i], windows[i], scores[i]);
        }
        prop_assert_eq!(segs.dropped(), 0);
        assert_tiles(&segs.snapshot(), &track, &windows, scores);
    }

    /// Over the limit, the segments kept are the latest ones of the whole track, and the dropped
    /// ones are counted.
    #[test]
    fn a_limit_keeps_the_latest_segments(track in leaders(), limit in 1usize..6) {
        let windows = windows(track.len(), 0.5, 2.0);
        let (mut all, mut kept) = (Segments::new(), Segments::with_limit(limit));
        for i in 0..track.len() {
            all.push(track[i], windows[i], 0.5);
            kept.push(track[i], windows[i], 0.5);
            prop_assert!(kept.len() <= limit);
        }
        let all = all.snapshot();
        let tail = &all[all.len().saturating_sub(limit)..];
        prop_assert_eq!(kept.snapshot(), tail.to_vec());
        prop_assert_eq!(kept.dropped() as usize, all.len() - tail.len());
    }
}

/// A days-long flickering stream holds at most `MAX_SEGMENTS` segments: memory does not grow with
/// the outputs, and the summary says how many were dropped.
#[test]
fn segments_stay_bounded_over_a_million_outputs() {
    let mut segs = Segments::new();
    for i in 0..1_000_000u64 {
        let end = i as f64 * 0.04;
        segs.push((i % 3) as usize, [end - 2.0, end], 0.5);
        assert!(segs.len() <= MAX_SEGMENTS);
    }
    assert_eq!(segs.len(), MAX_SEGMENTS);
    assert_eq!(segs.dropped(), 1_000_000 - MAX_SEGMENTS as u64);
    let s = segs.snapshot();
    // The latest are kept, still meeting end to start.
    assert_eq!(s.last().unwrap().end, 999_999.0 * 0.04);
    assert!(s.windows(2).all(|w| w[0].end == w[1].start));
}
