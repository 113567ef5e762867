//! The step GEMM's rate on the products of a CoSlow step, one thread, timed in the thread's own CPU
//! time (so that other work on a shared host, which takes the core away, does not count; its cache
//! traffic still does). Compare kernel levels by running it under `COINFER_ISA=scalar` (the `gemm`
//! crate) and the default level (docs/performance.md, "The ResNet-3D step on AVX2").
//!
//! `cargo run --release --example gemm_rate [REPS]`

use coinfer::engine::kernels::gemm::{Store, Weight};

/// This thread's CPU time in seconds.
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|r| r.parse().ok()).unwrap_or(10);
    // (what, m output pixels, k, n) of the convs of a CoSlow step at 256² (im2col width for k×k convs).
    let shapes = [
        ("stem 1x7x7 3->64 @128²", 128 * 128, 7 * 7 * 3, 64),
        ("res2 1x1 64->64 @64²", 64 * 64, 64, 64),
        ("res2 3x3 64->64 @64²", 64 * 64, 9 * 64, 64),
        ("res2 1x1 64->256 @64²", 64 * 64, 64, 256),
        ("res3 3x3 128->128 @32²", 32 * 32, 9 * 128, 128),
        ("res3 1x1 512->128 @32²", 32 * 32, 512, 128),
        ("res4 tap 1024->256 @16²", 16 * 16, 1024, 256),
        ("res4 3x3 256->256 @16²", 16 * 16, 9 * 256, 256),
        ("res5 tap 2048->512 @8²", 8 * 8, 2048, 512),
        ("res5 3x3 512->512 @8²", 8 * 8, 9 * 512, 512),
    ];
    let mut seed = 1u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    println!("{:<26} {:>10} {:>10} {:>9}", "product", "min ms", "median ms", "GMAC/s");
    let mut total = 0.0;
    for (what, m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
        let bias: Vec<f32> = (0..n).map(|_| next()).collect();
        let w = Weight::new(k, n, &b);
        let mut out = vec![0f32; m * n];
        let store = Store::Finish { bias: &bias, residual: None, act: Some(coinfer::engine::kernels::Activation::Relu) };
        w.matmul(m, &a, &mut out, store);
        let mut times: Vec<f64> = (0..reps)
            .map(|_| {
                let t0 = thread_cpu_s();
                w.matmul(m, &a, &mut out, store);
                thread_cpu_s() - t0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let (min, median) = (times[0], times[reps / 2]);
        total += median;
        let macs = (m * k * n) as f64;
        println!("{what:<26} {:>10.3} {:>10.3} {:>9.1}", min * 1e3, median * 1e3, macs / median * 1e-9);
        std::hint::black_box(&out);
    }
    println!("sum of medians {:.2} ms", total * 1e3);
}
