//! A two-stage pipeline over a chain of layers ("units"): throughput on two cores.
//!
//! The split schedule shares every operation of a step between the threads: about a hundred
//! fork/joins per CoX3D step, each ending in a wait for the slower thread, with each thread reading
//! rows that the other wrote. A relay cuts the chain in two instead. On every step the leader runs
//! the first units on the new frame while a helper runs the rest on the frame that the first stage
//! finished one step earlier. That is one hand-over per step; each core keeps its own units' state in
//! its caches; and every unit runs on one thread, so the outputs are bit for bit those of a single
//! thread. The price: frame t's output comes out on step t + 1, and the last one needs a `drain`.
//!
//! The cut goes where the two stages take equal time, by measurement: each unit's step time is
//! averaged as it runs, and every few steps the cut moves if that shortens the slower stage by more
//! than a margin. The frame in flight always continues from where it stopped, so a move needs no
//! special step unless the first stage grows into units the frame in flight has not passed yet; then
//! that one step runs the second stage first.

use std::sync::Mutex;
use std::time::Instant;

use candle_core::Result;

use super::team;
use crate::engine::Layer;
use crate::engine::stream::{Frame, FrameRef};

/// Steps between two looks at the balance.
const REBALANCE_EVERY: usize = 16;
/// A move must shorten the slower stage by this fraction (noise is not worth chasing).
const MARGIN: f64 = 0.03;
/// Weight of the newest measurement in a unit's running mean.
const WEIGHT: f64 = 0.125;

/// What the second stage does with the chain's output (e.g. a classifier head), on its thread; true
/// when that makes an output of the model.
pub type Emit<'e> = dyn FnMut(FrameRef<'_>) -> Result<bool> + Send + 'e;

#[derive(Debug, Clone)]
pub struct Relay {
    /// The first stage runs `units[..cut]`.
    cut: usize,
    /// The frame in flight: the first stage's output, which enters `units[held_at]` next.
    held: Frame,
    held_at: Option<usize>,
    /// Where the first stage writes while the second reads `held`.
    next: Frame,
    /// Mean step time of each unit, then of `emit` (seconds; NaN until measured).
    cost: Vec<f64>,
    steps: usize,
}

/// The second stage's share of a step: its units, their running means, and the frame in flight.
struct Stage<'a, 'x> {
    units: &'a mut [Box<dyn Layer>],
    cost: &'a mut [f64],
    input: Option<FrameRef<'x>>,
}

impl Relay {
    /// A relay over `estimate.len() − 1` units, with relative costs of the units and, last, of the
    /// tail (`emit`) to place the first cut (only their ratios matter; measurements replace them).
    pub fn new(estimate: &[f64]) -> Self {
        assert!(estimate.len() >= 2, "a relay needs at least one unit and a tail");
        let cut = best_cut(estimate);
        Relay { cut, held: Frame::default(), held_at: None, next: Frame::default(), cost: vec![f64::NAN; estimate.len()], steps: 0 }
    }

    /// Make room for hand-over frames of `values` values (the largest unit output), so that no
    /// move of the cut allocates.
    pub fn reserve(&mut self, values: usize) {
        for f in [&mut self.held, &mut self.next] {
            f.data.reserve(values.saturating_sub(f.data.len()));
        }
    }

    /// Units of the first stage.
    pub fn cut(&self) -> usize {
        self.cut
    }

    /// A frame is in flight (its output comes with the next step or [`Relay::drain`]).
    pub fn in_flight(&self) -> bool {
        self.held_at.is_some()
    }

    /// Feed the frame that `prepare` makes (e.g. converts; on the first stage's thread, its time
    /// counted with the first unit's): the first stage runs it through `units[..cut]` while the
    /// second takes the frame in flight through the rest and hands the result to `emit`; what
    /// `emit` returned (false without a call). Call it inside a [`team::session`] for the stages to
    /// run at once.
    pub fn step<'x>(
        &mut self,
        units: &mut [Box<dyn Layer>],
        prepare: impl FnOnce() -> Result<FrameRef<'x>> + Send,
        emit: &mut Emit<'_>,
    ) -> Result<bool> {
        assert_eq!(units.len() + 1, self.cost.len(), "a relay steps the units it was made for");
        let (cut, from) = (self.cut, self.held_at.unwrap_or(units.len()));
        if cut > from {
            // The first stage grew into units the frame in flight has yet to pass: it goes first.
            let emitted = self.drain(units, emit)?;
            let front = run_chain(&mut units[..cut], prepare()?, None, Instant::now())?;
            self.held_at = front.map(|y| {
                self.held.copy_from(y);
                cut
            });
            return Ok(emitted);
        }
        let (front_units, back_units) = units.split_at_mut(from);
        let (front_cost, back_cost) = self.cost.split_at_mut(from);
        let (tail_cost, back_cost) = back_cost.split_last_mut().expect("the tail's cost is last");
        let front = Mutex::new((&mut front_units[..cut], &mut front_cost[..cut], Some(prepare), &mut self.next, false));
        let held = self.held_at.map(|_| self.held.as_ref());
        let back = Mutex::new((Stage { units: back_units, cost: back_cost, input: held }, emit, tail_cost, false));
        let failed: Mutex<Option<candle_core::Error>> = Mutex::new(None);
        let fail = |e| *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        team::for_each_chunk(2, &|i| {
            if i == 0 {
                let mut guard = front.lock().unwrap_or_else(|p| p.into_inner());
                let (units, cost, prepare, next, staged) = &mut *guard;
                let start = Instant::now();
                let prepare = prepare.take().expect("chunk 0 runs once");
                match prepare().and_then(|x| run_chain(units, x, Some(cost), start)) {
                    Ok(Some(y)) => {
                        next.copy_from(y);
                        *staged = true;
                    }
                    Ok(None) => {}
                    Err(e) => fail(e),
                }
            } else {
                let mut guard = back.lock().unwrap_or_else(|p| p.into_inner());
                let (stage, emit, tail_cost, emitted) = &mut *guard;
                match stage.run() {
                    Ok(Some(y)) => {
                        let t = Instant::now();
                        match emit(y) {
                            Ok(out) => *emitted = out,
                            Err(e) => fail(e),
                        }
                        average(tail_cost, t);
                    }
                    Ok(None) => {}
                    Err(e) => fail(e),
                }
            }
        });
        let staged = front.into_inner().unwrap_or_else(|p| p.into_inner()).4;
        let emitted = back.into_inner().unwrap_or_else(|p| p.into_inner()).3;
        if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            // The stream's state is no longer consistent; the caller resets it.
            self.held_at = None;
            return Err(e);
        }
        std::mem::swap(&mut self.held, &mut self.next);
        self.held_at = staged.then_some(cut);
        self.steps += 1;
        if self.steps.is_multiple_of(REBALANCE_EVERY) {
            self.rebalance();
        }
        Ok(emitted)
    }

    /// Take the frame in flight through the second stage; what `emit` returned (false without a call).
    pub fn drain(&mut self, units: &mut [Box<dyn Layer>], emit: &mut Emit<'_>) -> Result<bool> {
        let Some(from) = self.held_at.take() else { return Ok(false) };
        match run_chain(&mut units[from..], self.held.as_ref(), None, Instant::now())? {
            Some(y) => emit(y),
            None => Ok(false),
        }
    }

    /// Forget the frame in flight (a new stream); the cut and the measurements stay.
    pub fn reset(&mut self) {
        self.held_at = None;
    }

    /// Move the cut to where the slower stage is shortest, when that gains more than the margin.
    fn rebalance(&mut self) {
        if self.cost.iter().any(|c| c.is_nan()) {
            return;
        }
        let best = best_cut(&self.cost);
        if slower_stage(&self.cost, best) < (1.0 - MARGIN) * slower_stage(&self.cost, self.cut) {
            self.cut = best;
        }
    }
}

impl Stage<'_, '_> {
    fn run(&mut self) -> Result<Option<FrameRef<'_>>> {
        match self.input {
            Some(x) => run_chain(self.units, x, Some(self.cost), Instant::now()),
            None => Ok(None),
        }
    }
}

/// Step `units` in order from `x`; the last output, or `None` when a unit emitted nothing (the rest
/// then see nothing this step). With `cost`, each unit's time goes into its running mean, the first
/// one's counted from `start`.
fn run_chain<'a>(
    units: &'a mut [Box<dyn Layer>],
    x: FrameRef<'a>,
    mut cost: Option<&mut [f64]>,
    start: Instant,
) -> Result<Option<FrameRef<'a>>> {
    let mut y = x;
    for (i, unit) in units.iter_mut().enumerate() {
        let t = if i == 0 { start } else { Instant::now() };
        let out = unit.step_frame(y)?;
        if let Some(cost) = cost.as_deref_mut() {
            average(&mut cost[i], t);
        }
        match out {
            Some(next) => y = next,
            None => return Ok(None),
        }
    }
    Ok(Some(y))
}

/// Fold the time since `start` into a running mean.
fn average(mean: &mut f64, start: Instant) {
    let t = start.elapsed().as_secs_f64();
    *mean = if mean.is_nan() { t } else { *mean + WEIGHT * (t - *mean) };
}

/// The longer of the two stages with the first `cut` units in the first (`cost`: units, then tail).
fn slower_stage(cost: &[f64], cut: usize) -> f64 {
    let front: f64 = cost[..cut].iter().sum();
    let back: f64 = cost[cut..].iter().sum();
    front.max(back)
}

/// The cut (1 ..= units) with the shortest slower stage; the earliest of equals.
fn best_cut(cost: &[f64]) -> usize {
    let units = cost.len() - 1;
    (1..=units).min_by(|&a, &b| slower_stage(cost, a).total_cmp(&slower_stage(cost, b))).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::engine::{Fill, Pointwise, TemporalConv, TemporalPad};

    fn tensor(shape: &[usize], seed: u32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> =
            (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 9) % 997) as f32 / 498.0 - 1.0).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Five units with delays (a k=3 conv emits from its second input, a k=3 depthwise conv without
    /// padding from its third: the chain from its fourth), so that stages see steps with no input.
    fn chain() -> Vec<Box<dyn Layer>> {
        let conv = |name: &str, c_in: usize, c_out: usize, k: usize, pad: usize, groups: usize, seed: u32| -> Box<dyn Layer> {
            let w = tensor(&[c_out, c_in / groups, k, 3, 3], seed);
            let b = tensor(&[c_out], seed + 1);
            Box::new(TemporalConv::new(name, &w, Some(&b), 1, TemporalPad::symmetric(pad), 1, [1; 4], groups, Fill::Zeros).unwrap())
        };
        vec![
            conv("a", 3, 8, 3, 1, 1, 1),
            Box::new(Pointwise::swish()),
            conv("b", 8, 8, 3, 0, 8, 3),
            conv("c", 8, 6, 1, 0, 1, 5),
            Box::new(Pointwise::relu()),
        ]
    }

    fn frames() -> Vec<Frame> {
        (0..14).map(|i| Frame::from_tensor(&tensor(&[1, 3, 7, 6], 100 + i)).unwrap()).collect()
    }

    /// The chain stepped plainly: the output of every step (None when it emitted nothing).
    fn reference() -> Vec<Option<Vec<f32>>> {
        let mut units = chain();
        frames().iter().map(|f| run_chain(&mut units, f.as_ref(), None, Instant::now()).unwrap().map(|y| y.data.to_vec())).collect()
    }

    /// The chain through a relay whose cut is set to `cuts[t]` before step t; the outputs of every
    /// step, then of the drain.
    fn relayed(cuts: &[usize]) -> Vec<Option<Vec<f32>>> {
        let mut units = chain();
        let mut relay = Relay::new(&[1.0; 6]);
        let mut emitted: Vec<Vec<f32>> = Vec::new();
        let mut emit = |y: FrameRef<'_>| -> Result<bool> {
            emitted.push(y.data.to_vec());
            Ok(true)
        };
        let mut flags = Vec::new();
        for (f, &cut) in frames().iter().zip(cuts) {
            relay.cut = cut;
            flags.push(relay.step(&mut units, || Ok(f.as_ref()), &mut emit).unwrap());
        }
        flags.push(relay.drain(&mut units, &mut emit).unwrap());
        assert!(!relay.in_flight());
        let mut emitted = emitted.into_iter();
        flags.into_iter().map(|f| f.then(|| emitted.next().unwrap())).collect()
    }

    #[test]
    fn relayed_outputs_are_the_plain_ones_one_step_later_whatever_the_cuts() {
        let plain = reference();
        assert!(plain[..3].iter().all(Option::is_none) && plain[3..].iter().all(Option::is_some));
        let fixed: Vec<Vec<usize>> = (1..=5).map(|c| vec![c; 14]).collect();
        // Cuts moving both ways, by one and by several units (moving later runs that step in turn).
        let moving = vec![vec![1, 2, 3, 4, 5, 4, 3, 2, 1, 5, 1, 3, 3, 2], vec![5, 1, 5, 1, 2, 4, 2, 4, 3, 1, 5, 2, 5, 5]];
        for in_session in [false, true] {
            for cuts in fixed.iter().chain(&moving) {
                let got = if in_session { team::session(|| relayed(cuts)) } else { relayed(cuts) };
                assert_eq!(got[0], None, "cuts {cuts:?}: nothing comes out of the first step");
                assert_eq!(got[1..], plain[..], "cuts {cuts:?}, session {in_session}");
            }
        }
    }

    #[test]
    fn the_cut_follows_the_measured_times() {
        let mut relay = Relay::new(&[1.0, 1.0, 1.0, 1.0, 0.0]);
        assert_eq!(relay.cut(), 2);
        // Unmeasured units: no move.
        relay.rebalance();
        assert_eq!(relay.cut(), 2);
        // The first unit turns out slow: the first stage shrinks to it.
        relay.cost = vec![3.0, 1.0, 1.0, 1.0, 0.0];
        relay.rebalance();
        assert_eq!(relay.cut(), 1);
        // Less than the margin to gain: the cut stays.
        relay.cost = vec![3.0, 1.0, 1.0, 1.04, 0.0];
        relay.cut = 1;
        relay.rebalance();
        assert_eq!(relay.cut(), 1);
    }

    #[test]
    fn the_cut_evens_out_the_stages() {
        // Units 1 2 3 4, tail 2: cut 3 gives 6 | 6.
        assert_eq!(best_cut(&[1.0, 2.0, 3.0, 4.0, 2.0]), 3);
        // A heavy tail leaves the second stage only the tail.
        assert_eq!(best_cut(&[1.0, 1.0, 50.0]), 2);
        // A heavy first unit stands alone.
        assert_eq!(best_cut(&[50.0, 1.0, 1.0, 0.0]), 1);
        assert_eq!(slower_stage(&[1.0, 2.0, 3.0, 4.0, 2.0], 2), 9.0);
    }
}
