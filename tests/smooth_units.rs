//! Smoother, hysteresis and segments against sequences worked out by hand.

use coinfer::smooth::{Hysteresis, Segments, SmoothMode, Smoother};

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

#[test]
fn none_passes_outputs_through() {
    let mut s = Smoother::new(SmoothMode::None, 2);
    assert_eq!(s.push(&[0.2, 0.8]), &[0.2, 0.8]);
    assert_eq!(s.push(&[0.9, 0.1]), &[0.9, 0.1]);
}

#[test]
fn ema_starts_at_the_first_output() {
    // alpha 0.25: s1 = p1; s2 = .25*p2 + .75*s1; s3 = .25*p3 + .75*s2.
    let mut s = Smoother::new(SmoothMode::Ema(0.25), 2);
    assert!(close(s.push(&[1.0, 0.0]), &[1.0, 0.0]));
    assert!(close(s.push(&[0.0, 1.0]), &[0.75, 0.25]));
    assert!(close(s.push(&[0.0, 1.0]), &[0.5625, 0.4375]));
    // alpha 1 is no smoothing.
    let mut s = Smoother::new(SmoothMode::Ema(1.0), 1);
    s.push(&[0.3]);
    assert!(close(s.push(&[0.7]), &[0.7]));
}

#[test]
fn mean_over_the_last_n() {
    let mut s = Smoother::new(SmoothMode::Mean(3), 2);
    assert!(close(s.push(&[0.9, 0.1]), &[0.9, 0.1]));
    assert!(close(s.push(&[0.3, 0.7]), &[0.6, 0.4]));
    assert!(close(s.push(&[0.6, 0.4]), &[0.6, 0.4]));
    // The first output leaves the window: (0.3 + 0.6 + 0.0) / 3.
    assert!(close(s.push(&[0.0, 1.0]), &[0.3, 0.7]));
    assert!(close(s.push(&[0.0, 1.0]), &[0.2, 0.8]));
    s.reset();
    assert!(close(s.push(&[0.5, 0.5]), &[0.5, 0.5]));
}

#[test]
fn mean_stays_exact_over_a_long_stream() {
    // A running sum would drift over a million outputs; the window mean of identical values must not.
    let mut s = Smoother::new(SmoothMode::Mean(4), 1);
    for i in 0..1_000_000 {
        s.push(&[if i % 2 == 0 { 0.1 } else { 0.7 }]);
    }
    assert!(close(s.push(&[0.1]), &[0.4]));
}

#[test]
fn hold_waits_for_k_consecutive_leads() {
    let mut h = Hysteresis::new(3);
    let leaders = [4, 4, 7, 7, 4, 7, 7, 7, 7, 2];
    let reported: Vec<usize> = leaders.iter().map(|&l| h.update(l)).collect();
    // 7 leads twice, is interrupted by 4, then leads three times: the switch happens on the third.
    assert_eq!(reported, [4, 4, 4, 4, 4, 4, 4, 7, 7, 7]);
}

#[test]
fn hold_resets_when_a_different_challenger_appears() {
    let mut h = Hysteresis::new(2);
    let reported: Vec<usize> = [1, 2, 3, 3, 2].iter().map(|&l| h.update(l)).collect();
    assert_eq!(reported, [1, 1, 1, 3, 3]);
}

#[test]
fn hold_zero_and_one_switch_at_once() {
    for k in [0, 1] {
        let mut h = Hysteresis::new(k);
        let reported: Vec<usize> = [5, 6, 5].iter().map(|&l| h.update(l)).collect();
        assert_eq!(reported, [5, 6, 5], "hold {k}");
    }
}

#[test]
fn segments_of_a_track() {
    let mut seg = Segments::new();
    // (id, window [start, end], score): windows of 2 s, one output every 0.5 s.
    let track = [(0, 0.0, 0.5), (0, 0.5, 0.7), (3, 1.0, 0.4), (3, 1.5, 0.6), (3, 2.0, 0.8), (0, 2.5, 0.9)];
    for (id, end, score) in track {
        seg.push(id, [(end - 2.0f64).max(0.0), end], score);
    }
    let s = seg.snapshot();
    assert_eq!(s.len(), 3);
    // The first segment starts where its first window does; each later one where the window of the
    // output before it ended (the frames after that turned the label); each ends with its last window.
    assert_eq!((s[0].id, s[0].start, s[0].end, s[0].outputs), (0, 0.0, 0.5, 2));
    assert!((s[0].mean_score - 0.6).abs() < 1e-6);
    assert_eq!((s[1].id, s[1].start, s[1].end, s[1].outputs), (3, 0.5, 2.0, 3));
    assert!((s[1].mean_score - 0.6).abs() < 1e-6);
    assert_eq!((s[2].id, s[2].start, s[2].end, s[2].outputs), (0, 2.0, 2.5, 1));
    // A snapshot does not close the open segment.
    seg.push(0, [1.0, 3.0], 0.7);
    let s = seg.snapshot();
    assert_eq!((s.len(), s[2].outputs, s[2].start, s[2].end), (3, 2, 2.0, 3.0));
    assert!((s[2].mean_score - 0.8).abs() < 1e-6);
    assert!(Segments::new().snapshot().is_empty());
}

#[test]
fn modes_print_as_they_parse() {
    for text in ["none", "ema:0.3", "mean:8"] {
        assert_eq!(text.parse::<SmoothMode>().unwrap().to_string(), text);
    }
}
