//! Properties of the frame selection (`Resampler`, docs/models.md, "Preprocessing") over random
//! timestamp sequences: jittered, with gaps, duplicates, steps back and discontinuities.

use coinfer::preprocess::{MAX_JUMP, Resampler};
use proptest::prelude::*;

/// A timestamp sequence: a start, then per frame an interval drawn from a mix of the usual (a
/// jittered frame period), gaps, duplicates, steps back and jumps past `MAX_JUMP`.
fn timestamps() -> impl Strategy<Value = Vec<f64>> {
    let interval = prop_oneof![
        8 => 0.02f64..0.05,
        2 => 0.05f64..3.0,
        1 => Just(0.0),
        1 => -0.2f64..0.0,
        1 => (MAX_JUMP + 0.5..60.0).prop_map(|j| if j > 35.0 { -(j - 25.0) } else { j }),
    ];
    (-5.0f64..5.0, prop::collection::vec(interval, 1..200)).prop_map(|(start, steps)| {
        let mut t = start;
        std::iter::once(start)
            .chain(steps.into_iter().map(move |d| {
                t += d;
                t
            }))
            .collect()
    })
}

fn model_fps() -> impl Strategy<Value = f64> {
    prop_oneof![Just(25.0), Just(5.0), Just(30.0 / 8.0), Just(15.0), 0.5f64..60.0]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// The steps handed out are exactly the steps counted: each step goes to one frame, in order.
    #[test]
    fn every_step_is_handed_out_once(pts in timestamps(), fps in model_fps()) {
        let mut r = Resampler::new(fps);
        let mut total = 0u64;
        for &p in &pts {
            let before = r.steps();
            total += r.feed(p) as u64;
            prop_assert!(r.steps() >= before, "the timeline never goes back");
            prop_assert_eq!(r.steps(), total);
        }
        prop_assert_eq!(total >= 1, true, "the first frame feeds step 0");
    }

    /// A frame at the same time as the one before it, or earlier, feeds nothing.
    #[test]
    fn no_frame_is_used_twice_at_one_time(pts in timestamps(), fps in model_fps()) {
        let mut r = Resampler::new(fps);
        let mut newest = f64::NEG_INFINITY;
        for (i, &p) in pts.iter().enumerate() {
            let fed = r.feed(p);
            let jump = i > 0 && (p - pts[i - 1]).abs() > MAX_JUMP;
            if i > 0 && !jump && p <= newest && (newest - p) < MAX_JUMP / 2.0 {
                prop_assert_eq!(fed, 0, "frame {} at {} (newest so far {}) fed {}", i, p, newest, fed);
            }
            if !jump {
                newest = newest.max(p);
            } else {
                newest = f64::NEG_INFINITY;
            }
        }
    }

    /// On increasing timestamps with gaps below the discontinuity limit, every step up to the last
    /// frame's time has a frame: nothing of the timeline is left unfed.
    #[test]
    fn increasing_timestamps_feed_every_step_up_to_the_last_frame(
        start in -5.0f64..5.0,
        intervals in prop::collection::vec(0.001f64..4.0, 1..150),
        fps in model_fps(),
    ) {
        let mut r = Resampler::new(fps);
        let mut t = start;
        r.feed(t);
        for d in intervals {
            t += d;
            r.feed(t);
            // Steps at or before the newest frame's time are all fed (up to float noise).
            let due = ((t - start) * fps - 1e-6).floor() as u64 + 1;
            prop_assert!(r.steps() >= due, "at {}: {} steps fed, {} due", t, r.steps(), due);
        }
    }

    /// `may_feed` may say "maybe" wrongly, never "no" wrongly: a frame it rules out feeds nothing.
    #[test]
    fn may_feed_never_rules_out_a_frame_that_feeds(pts in timestamps(), fps in model_fps()) {
        let mut r = Resampler::new(fps);
        for (i, &p) in pts.iter().enumerate() {
            let ruled_out = i > 0 && !r.may_feed(p, pts[i - 1]);
            let fed = r.feed(p);
            prop_assert!(!(ruled_out && fed > 0), "frame {} at {} was ruled out but fed {}", i, p, fed);
        }
    }

    /// Constant rate: nearest frame in time (within float noise at ties), decided without look-ahead;
    /// the one exception is the first frame, which feeds step 0 only (steps before the second frame's
    /// window go to the second frame).
    #[test]
    fn constant_rate_takes_the_nearest_frame(src_fps in 1.0f64..120.0, fps in model_fps(), n in 2usize..300) {
        let mut r = Resampler::new(fps);
        for i in 0..n {
            let before = r.steps();
            let fed = r.feed(i as f64 / src_fps) as u64;
            for step in before..before + fed {
                let t = step as f64 / fps;
                let nearest = (t * src_fps).round() as usize;
                let off = (t - i as f64 / src_fps).abs() - (t - nearest as f64 / src_fps).abs();
                let first_frame_rule = i == 1 && nearest == 0;
                prop_assert!(off < 1e-6 || first_frame_rule,
                    "step {} at {:.6} s went to frame {} (nearest {})", step, t, i, nearest);
            }
        }
    }
}
