//! Step latency quantiles in constant memory: a fixed log-bucket histogram, so the summary's
//! `p50_ms` and `p95_ms` cost the same after ten steps or ten days of them (docs/records.md,
//! "Latency quantiles").

/// Lower edge of the first bucket, milliseconds (1 µs); shorter steps count into it.
const LOWEST_MS: f64 = 1e-3;
/// Buckets per doubling: each bucket spans a factor of 2^(1/64) ≈ 1.0109.
const PER_DOUBLING: f64 = 64.0;
/// 30 doublings above 1 µs reach 2^30 µs ≈ 18 minutes; longer steps count into the last bucket.
const BUCKETS: usize = 30 * 64;

/// Largest relative error of a quantile estimate for steps between 1 µs and 18 minutes: half a
/// bucket, 2^(1/128) - 1 = 0.543 % (the geometric middle of a bucket against anything in it),
/// rounded up to 0.55 %.
pub const RELATIVE_ERROR: f64 = 0.0055;

/// Counts of step latencies in log-spaced buckets, with the exact smallest and largest.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    min: f64,
    max: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram; its one allocation is made here, none per `record`.
    pub fn new() -> Self {
        LatencyHistogram { counts: Box::new([0; BUCKETS]), total: 0, min: f64::INFINITY, max: f64::NEG_INFINITY }
    }

    /// Count one latency in milliseconds (a NaN is not counted).
    pub fn record(&mut self, ms: f64) {
        if ms.is_nan() {
            return;
        }
        self.counts[bucket_of(ms)] += 1;
        self.total += 1;
        self.min = self.min.min(ms);
        self.max = self.max.max(ms);
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The buckets held: a constant, however many latencies were counted.
    pub fn buckets(&self) -> usize {
        self.counts.len()
    }

    /// The nearest-rank `p` quantile (0 < p <= 1), within [`RELATIVE_ERROR`] of the exact one for
    /// latencies between 1 µs and 18 minutes, and never outside the smallest and largest counted;
    /// `None` before the first latency.
    pub fn quantile(&self, p: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        let bucket = self.counts.iter().position(|&c| {
            seen += c;
            seen >= rank
        })?;
        // The geometric middle of the bucket; the exact extremes bound it (one latency is exact).
        let middle = LOWEST_MS * ((bucket as f64 + 0.5) / PER_DOUBLING).exp2();
        Some(middle.clamp(self.min, self.max))
    }
}

/// The bucket a latency falls into, the first and the last taking everything beyond them.
fn bucket_of(ms: f64) -> usize {
    let position = (ms / LOWEST_MS).log2() * PER_DOUBLING;
    // `as` saturates: below 1 µs (and 0, whose log is -inf) is bucket 0.
    (position.floor() as usize).min(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact nearest-rank quantile of sorted values, the reference the estimate is held to.
    fn exact(sorted: &[f64], p: f64) -> f64 {
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// A deterministic spread of latencies: log-uniform from 5 µs to 50 s, with a slow tail.
    fn latencies(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..n)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (state >> 11) as f64 / (1u64 << 53) as f64;
                let base = 5e-3 * 1e7f64.powf(u);
                if i % 50 == 0 { base * 20.0 } else { base }
            })
            .collect()
    }

    #[test]
    fn estimates_stay_within_the_stated_error_of_exact_quantiles() {
        assert!((1.0f64 / 128.0).exp2() - 1.0 < RELATIVE_ERROR);
        for (n, seed) in [(1, 1), (2, 2), (19, 3), (1000, 4), (100_000, 5)] {
            let values = latencies(n, seed);
            let mut h = LatencyHistogram::new();
            values.iter().for_each(|&v| h.record(v));
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            for p in [0.01, 0.5, 0.9, 0.95, 0.99, 1.0] {
                let (want, got) = (exact(&sorted, p), h.quantile(p).unwrap());
                assert!((got / want - 1.0).abs() <= RELATIVE_ERROR, "n {n} p {p}: {got} vs exact {want}");
            }
        }
    }

    #[test]
    fn extremes_are_exact_and_bound_the_estimate() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), None);
        h.record(3.7);
        assert_eq!((h.quantile(0.5), h.quantile(0.95)), (Some(3.7), Some(3.7)));
        // Beyond the buckets' range, the exact extremes still answer.
        let mut h = LatencyHistogram::new();
        [0.0, 0.0, 1e-7, 5e7, f64::NAN].iter().for_each(|&v| h.record(v));
        assert_eq!(h.count(), 4);
        let (p50, p100) = (h.quantile(0.5).unwrap(), h.quantile(1.0).unwrap());
        assert!((0.0..=5e7).contains(&p50) && (0.0..=5e7).contains(&p100) && p50 <= p100, "{p50} {p100}");
    }

    #[test]
    fn memory_does_not_grow_with_steps() {
        let mut h = LatencyHistogram::new();
        let before = h.buckets();
        for v in latencies(1_000_000, 9) {
            h.record(v);
        }
        assert_eq!((h.count(), h.buckets()), (1_000_000, before));
        assert_eq!(std::mem::size_of::<LatencyHistogram>(), std::mem::size_of::<usize>() + 3 * 8);
    }
}
