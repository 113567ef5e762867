//! This machine's fp32 multiply-add peak: independent AVX2 FMA chains (no memory traffic), on one
//! thread and then on every core at once, timed in each thread's own CPU time. The ceiling any step
//! can reach; docs/performance.md compares the models' rates with it ("What the host allows").
//!
//! `cargo run --release --example fma_peak`

/// This thread's CPU time in seconds.
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Multiply-adds per second of this thread, in GMAC/s, and its wall seconds.
#[cfg(target_arch = "x86_64")]
const ROUNDS: usize = 100_000_000;

#[cfg(target_arch = "x86_64")]
fn chains() -> (f64, f64) {
    #[target_feature(enable = "avx2,fma")]
    fn run() -> f32 {
        use std::arch::x86_64::*;
        let mut acc: [__m256; 12] = std::array::from_fn(|i| _mm256_set1_ps(i as f32 * 1e-3));
        let (b, c) = (_mm256_set1_ps(0.9999), _mm256_set1_ps(1e-4));
        for _ in 0..ROUNDS {
            // Twelve independent chains hide the FMA latency (4-5 cycles × 2 units).
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, b, c);
            }
        }
        acc.iter().map(|&a| _mm256_cvtss_f32(a)).sum()
    }
    let (t0, w0) = (thread_cpu_s(), std::time::Instant::now());
    // SAFETY: AVX2 and FMA were detected by the caller.
    let sum = unsafe { run() };
    let (cpu, wall) = (thread_cpu_s() - t0, w0.elapsed().as_secs_f64());
    std::hint::black_box(sum);
    ((ROUNDS * 12 * 8) as f64 / cpu * 1e-9, wall)
}

#[cfg(target_arch = "x86_64")]
fn main() {
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        eprintln!("fma_peak: this CPU has no AVX2/FMA");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (one, _) = chains();
    println!("1 thread:  {one:.1} GMAC/s ({:.1} GFLOP/s)", 2.0 * one);
    let all: Vec<(f64, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cores).map(|_| s.spawn(chains)).collect();
        handles.into_iter().map(|h| h.join().expect("a peak thread panicked")).collect()
    });
    // Together: all the work over the wall time of the slowest thread (CPU time would count a thread
    // that waited for a core as if it had run alongside the others).
    let wall = all.iter().map(|&(_, wall)| wall).fold(0.0, f64::max);
    let work = (cores * ROUNDS * 12 * 8) as f64 * 1e-9;
    let total = work / wall;
    println!(
        "{cores} threads: {total:.1} GMAC/s ({:.1} GFLOP/s), {:.2}x one thread (wall time; other load lowers it)",
        2.0 * total,
        total / one
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("fma_peak: x86-64 only");
}
