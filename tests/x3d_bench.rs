//! CoX3D-S step time with random weights at 160×160 (run by hand, release):
//! `cargo test --release --test x3d_bench -- --ignored --nocapture`

use std::time::Instant;

use coinfer::models::x3d;
use coinfer::models::{ModelOptions, RandomWeights, WeightSource};

#[test]
#[ignore = "a measurement, not a check; run in release"]
fn cox3d_s_step_time() {
    let mut m = x3d::build("x3d-s", &ModelOptions::default(), &mut RandomWeights::new(1)).unwrap();
    let frames = RandomWeights::new(2).take("frames", &[8, 3, 160, 160]).unwrap();
    let (warmup, n) = (10, 50);
    let mut times = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let f = frames.get(i % 8).unwrap();
        let t0 = Instant::now();
        let out = m.step(&f).unwrap();
        let dt = t0.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            times.push(dt);
        }
        std::hint::black_box(out);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "CoX3D-S step at 160x160, {n} steps after {warmup} warm-up: median {:.2} ms, min {:.2} ms, max {:.2} ms \
         ({} rayon threads)",
        times[n / 2],
        times[0],
        times[n - 1],
        rayon::current_num_threads()
    );
}
