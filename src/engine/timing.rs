//! Per-layer step times for `coinfer bench --per-layer`. Containers time each child's step while
//! timing is on; off (the default), a child costs one relaxed load. The accumulators are allocated
//! with the container, so timing adds no allocation per step either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static ON: AtomicBool = AtomicBool::new(false);

/// Switch timing on or off for every model in the process.
pub fn set_enabled(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Time spent in one layer's steps, and how many there were.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTime {
    pub total: Duration,
    pub calls: u64,
}

/// One accumulator per child of a container.
#[derive(Debug, Clone, Default)]
pub struct Timings(Vec<StepTime>);

impl Timings {
    pub fn push(&mut self) {
        self.0.push(StepTime::default());
    }

    /// Start timing a child's step (`None` while timing is off).
    pub fn start(&self) -> Option<Instant> {
        ON.load(Ordering::Relaxed).then(Instant::now)
    }

    /// Count child `i`'s step that began at `start`.
    pub fn add(&mut self, i: usize, start: Option<Instant>) {
        if let Some(t) = start {
            let acc = &mut self.0[i];
            acc.total += t.elapsed();
            acc.calls += 1;
        }
    }

    /// Child `i`'s time, if it was timed at all.
    pub fn get(&self, i: usize) -> Option<StepTime> {
        self.0.get(i).copied().filter(|t| t.calls > 0)
    }
}
