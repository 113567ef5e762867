//! The threads that share one model step: the stepping thread leads, helpers spin beside it.
//!
//! A continual step is a chain of ~200 operations of 5–100 µs each. Handing half of each to a rayon
//! worker costs a wake-up per operation, more than the half saves; so a step runs as a *session*
//! during which the helpers spin on one shared word, and an operation hands them work with a single
//! store. Work is split into chunks that every thread claims with a compare-and-swap, so the leader
//! never waits for a helper to start: a helper that sleeps, or is descheduled because the decoder
//! wants the core, simply claims nothing. Between sessions the helpers sleep on a condition variable.
//! Nothing here allocates after the team is created.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

/// Chunks an operation is cut into at most (the claim word holds 12 bits of each count).
const MAX_CHUNKS: usize = 4095;
/// Spins a helper waits for the next job before it goes to sleep even inside a session (so a leader
/// that stalls in a long serial stretch does not keep the other core busy for nothing).
const SPIN_LIMIT: u32 = 20_000;
/// Of those, spins with a pause instruction (tens of microseconds); the rest yield the core.
const PAUSE_SPINS: u32 = 1_000;

/// One job: `f(i)` for every chunk `i`, with the lifetime erased. It is only called between the
/// leader's post and its wait for `done == chunks`, while the closure is alive on the leader's stack.
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn(usize) + Sync));

struct Shared {
    /// Epoch and unclaimed chunks ([`pack`]), changed together by CAS.
    claim: AtomicU64,
    /// Chunks of the current epoch finished.
    done: AtomicU32,
    job: UnsafeCell<Option<Job>>,
    /// A session is running: helpers spin instead of sleeping.
    active: AtomicBool,
    /// A chunk panicked in the current epoch.
    poisoned: AtomicBool,
    sleepers: AtomicU32,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the leader while no chunk of the previous epoch is outstanding,
// and read by a helper only after a successful claim of the current epoch (acquire on `claim`, which
// the leader released after writing it); the closure it points to is `Sync`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// The claim word: epoch (40 bits) | front (12) | back (12). Chunks `front..back` are unclaimed:
/// the leader takes them from the front, helpers from the back, so that with the same split two
/// consecutive ops give each thread the same rows (their data is still in its own L2), while a late
/// helper simply leaves more to the leader.
fn unpack(word: u64) -> (u64, usize, usize) {
    (word >> 24, ((word >> 12) & 0xFFF) as usize, (word & 0xFFF) as usize)
}

fn pack(epoch: u64, front: usize, back: usize) -> u64 {
    (epoch << 24) | ((front as u64) << 12) | back as u64
}

impl Shared {
    /// Claim and run chunks of `epoch` until none are left. A panicking chunk still counts as done
    /// (so nobody waits forever, and the leader's closure outlives every call); the first payload
    /// caught is returned.
    fn work(&self, epoch: u64, from_back: bool) -> Option<Box<dyn std::any::Any + Send>> {
        let mut word = self.claim.load(Ordering::Acquire);
        let mut panicked = None;
        loop {
            let (e, front, back) = unpack(word);
            if e != epoch || front >= back {
                return panicked;
            }
            let (next, claimed) = if from_back { (back - 1, pack(e, front, back - 1)) } else { (front, pack(e, front + 1, back)) };
            match self.claim.compare_exchange_weak(word, claimed, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    // SAFETY: this chunk of the current epoch is claimed and not yet done, so the
                    // leader is waiting and the job it posted is alive.
                    let job = unsafe { (*self.job.get()).expect("a posted job") };
                    let run = std::panic::AssertUnwindSafe(|| unsafe { (*job.0)(next) });
                    if let Err(payload) = std::panic::catch_unwind(run) {
                        self.poisoned.store(true, Ordering::Relaxed);
                        panicked.get_or_insert(payload);
                    }
                    self.done.fetch_add(1, Ordering::Release);
                    word = self.claim.load(Ordering::Acquire);
                }
                Err(now) => word = now,
            }
        }
    }

    fn helper_loop(&self) {
        IS_HELPER.with(|h| h.set(true));
        let mut seen = 0u64;
        let mut spins = 0u32;
        loop {
            let (epoch, _, _) = unpack(self.claim.load(Ordering::Acquire));
            if epoch != seen {
                seen = epoch;
                spins = 0;
                // A panic is reported to the leader through `poisoned`.
                drop(self.work(epoch, true));
                continue;
            }
            if self.active.load(Ordering::Relaxed) && spins < SPIN_LIMIT {
                spins += 1;
                if spins < PAUSE_SPINS {
                    std::hint::spin_loop();
                } else {
                    // A longer serial stretch of the leader: let other runnable threads (the
                    // decoder's) have this core meanwhile.
                    std::thread::yield_now();
                }
                continue;
            }
            let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            // Re-check under the lock: a leader that posted or started a session after our check
            // either saw `sleepers` and will notify (after taking the lock), or we see its store here.
            let changed = unpack(self.claim.load(Ordering::SeqCst)).0 != seen;
            let woken = if changed || (self.active.load(Ordering::SeqCst) && spins < SPIN_LIMIT) {
                drop(guard);
                false
            } else {
                drop(self.wake.wait(guard).unwrap_or_else(|e| e.into_inner()));
                true
            };
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            if woken {
                spins = 0;
            }
        }
    }

    fn notify(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
    }
}

struct Team {
    shared: &'static Shared,
    helpers: usize,
    /// A leader holds the team (one session at a time; others run alone).
    taken: AtomicBool,
}

thread_local! {
    /// This thread leads the running session.
    static LEADING: Cell<bool> = const { Cell::new(false) };
    static IS_HELPER: Cell<bool> = const { Cell::new(false) };
}

/// Threads a step may use: `RAYON_NUM_THREADS` (what `--threads` sets), else the machine's cores.
/// Read once: `available_parallelism` reads cgroup files (and allocates) on every call.
pub fn configured_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            claim: AtomicU64::new(0),
            done: AtomicU32::new(0),
            job: UnsafeCell::new(None),
            active: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            sleepers: AtomicU32::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }));
        let wanted = configured_threads().saturating_sub(1);
        let mut helpers = 0;
        for i in 0..wanted {
            let spawned = std::thread::Builder::new().name(format!("coinfer-step-{}", i + 1)).spawn(move || shared.helper_loop());
            if spawned.is_ok() {
                helpers += 1;
            }
        }
        Team { shared, helpers, taken: AtomicBool::new(false) }
    })
}

/// Run `f` as one session: the calling thread leads and the helpers spin beside it, ready for the
/// [`for_each_chunk`] calls `f` makes. A session started while another runs (another thread's
/// model) runs alone; so does a nested one.
pub fn session<R>(f: impl FnOnce() -> R) -> R {
    if LEADING.with(Cell::get) || IS_HELPER.with(Cell::get) || configured_threads() < 2 {
        return f();
    }
    let team = team();
    if team.helpers == 0 || team.taken.swap(true, Ordering::Acquire) {
        return f();
    }
    struct End(&'static Team);
    impl Drop for End {
        fn drop(&mut self) {
            self.0.shared.active.store(false, Ordering::SeqCst);
            LEADING.with(|l| l.set(false));
            self.0.taken.store(false, Ordering::Release);
        }
    }
    let _end = End(team);
    LEADING.with(|l| l.set(true));
    team.shared.active.store(true, Ordering::SeqCst);
    team.shared.notify();
    f()
}

/// Threads available to the current thread's operations: the team's size inside a session, else 1.
pub fn width() -> usize {
    if LEADING.with(Cell::get) { team().helpers + 1 } else { 1 }
}

/// Run `f(i)` for every `i` in `0..chunks`, on the session's threads when called by its leader
/// (each chunk exactly once; returns when all are done), else in order on this thread.
pub fn for_each_chunk(chunks: usize, f: &(dyn Fn(usize) + Sync)) {
    if chunks <= 1 || !LEADING.with(Cell::get) {
        (0..chunks).for_each(f);
        return;
    }
    // The claim word has 12 bits per count: more chunks would wrap it (and a silent clamp would
    // skip chunks). Callers cut by work per chunk and by the team's width, far below this.
    assert!(chunks <= MAX_CHUNKS, "for_each_chunk: {chunks} chunks, at most {MAX_CHUNKS}");
    let shared = team().shared;
    // SAFETY: the previous epoch is complete (we waited for it), so no helper reads `job` now; the
    // lifetime is erased because every call through it happens before this function returns.
    unsafe {
        let f: &'static (dyn Fn(usize) + Sync) = std::mem::transmute(f);
        *shared.job.get() = Some(Job(f));
    }
    shared.done.store(0, Ordering::Relaxed);
    let epoch = unpack(shared.claim.load(Ordering::Relaxed)).0 + 1;
    shared.claim.store(pack(epoch, 0, chunks), Ordering::SeqCst);
    shared.notify();
    // Chunks run with `LEADING` off, so that an operation inside one runs inline.
    LEADING.with(|l| l.set(false));
    let panicked = shared.work(epoch, false);
    while (shared.done.load(Ordering::Acquire) as usize) < chunks {
        std::hint::spin_loop();
    }
    LEADING.with(|l| l.set(true));
    // Cleared whoever panicked, so that the next operation starts clean.
    let any_panicked = shared.poisoned.swap(false, Ordering::Relaxed);
    if let Some(payload) = panicked {
        std::panic::resume_unwind(payload);
    }
    if any_panicked {
        panic!("a step operation panicked on a helper thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_chunk_runs_exactly_once_inside_and_outside_a_session() {
        for in_session in [false, true] {
            for chunks in [0, 1, 2, 3, 7, 64, 1000, MAX_CHUNKS] {
                let counts: Vec<AtomicUsize> = (0..chunks).map(|_| AtomicUsize::new(0)).collect();
                let run = || {
                    for _ in 0..50 {
                        for_each_chunk(chunks, &|i| {
                            counts[i].fetch_add(1, Ordering::Relaxed);
                        });
                    }
                };
                if in_session {
                    session(run)
                } else {
                    run()
                }
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 50), "{chunks} chunks, session {in_session}");
            }
        }
    }

    #[test]
    fn too_many_chunks_panic_instead_of_skipping_some() {
        session(|| {
            // Only a session's leader packs the counts into the claim word (another test may hold
            // the team, or there may be one thread: the chunks then run inline).
            let leading = width() > 1;
            let caught = std::panic::catch_unwind(|| for_each_chunk(MAX_CHUNKS + 1, &|_| {}));
            assert_eq!(caught.is_err(), leading);
        });
    }

    #[test]
    fn a_panicking_chunk_panics_the_caller_and_the_next_operation_runs_clean() {
        session(|| {
            for bad in [0, 3] {
                let caught = std::panic::catch_unwind(|| {
                    for_each_chunk(4, &|i| {
                        if i == bad {
                            panic!("chunk {i}");
                        }
                    })
                });
                assert!(caught.is_err(), "chunk {bad} panicked");
                let count = AtomicUsize::new(0);
                for_each_chunk(4, &|_| {
                    count.fetch_add(1, Ordering::Relaxed);
                });
                assert_eq!(count.load(Ordering::Relaxed), 4);
            }
        });
    }

    #[test]
    fn nested_sessions_and_calls_from_chunks_run_inline() {
        let total = AtomicUsize::new(0);
        session(|| {
            session(|| {
                for_each_chunk(4, &|_| {
                    for_each_chunk(3, &|_| {
                        total.fetch_add(1, Ordering::Relaxed);
                    });
                });
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 12);
    }
}
