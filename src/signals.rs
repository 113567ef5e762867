//! Ctrl-C, SIGTERM and SIGHUP (what a terminal, `docker stop`, systemd and Kubernetes send) end a run
//! the same way: once the run is streaming, the first signal stops reading, the summary is written, and
//! the process exits with 128 + the signal's number (130, 143, 129); a second signal exits at once.
//! Before that (the input still opening: a camera that stalls, a FIFO without a writer, an idle pipe;
//! the model loading) there is nothing to summarise and the first signal exits at once
//! (README, "Exit codes").

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals handled, in the order their handlers are installed.
const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The first signal received (0: none yet).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether the run writes records yet (a signal then stops it gracefully).
static STREAMING: AtomicBool = AtomicBool::new(false);
/// Install the handlers (once per process) and return the flag the first signal raises, which the
/// run's loops poll (later calls return the same flag). The run is "starting" until [`streaming`].
pub fn install() -> anyhow::Result<Arc<AtomicBool>> {
    static INSTALLED: OnceLock<Result<Arc<AtomicBool>, String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let stop = Arc::new(AtomicBool::new(false));
            for sig in SIGNALS {
                let stop = stop.clone();
                // SAFETY: the action only touches atomics and calls async-signal-safe functions
                // (`write` and `_exit`), as a signal handler must; `stop` lives as long as the handler.
                unsafe { signal_hook::low_level::register(sig, move || on_signal(sig, &stop)) }
                    .map_err(|e| format!("cannot install the handler of signal {sig}: {e}"))?;
            }
            Ok(stop)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// From now on the first signal stops the run gracefully (the summary still to be written).
pub fn streaming() {
    STREAMING.store(true, Ordering::SeqCst);
}

/// Whether a signal was received.
pub fn received() -> bool {
    RECEIVED.load(Ordering::SeqCst) != 0
}

/// The exit status of an interrupted run: 128 + the first signal's number, 130 (Ctrl-C) if none was
/// received (an interruption reported otherwise).
pub fn exit_code() -> i32 {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => 128 + SIGINT,
        sig => 128 + sig,
    }
}

fn on_signal(sig: i32, stop: &AtomicBool) {
    let first = RECEIVED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_ok();
    stop.store(true, Ordering::SeqCst);
    // Blocking reads of the input (libavformat's interrupt callback, the raw reader) return now.
    crate::source::request_interrupt();
    if !first || !STREAMING.load(Ordering::SeqCst) {
        let code = if first { 128 + sig } else { 128 + RECEIVED.load(Ordering::SeqCst) };
        let msg = b"coinfer: interrupted\n";
        // SAFETY: `write` on the standard error descriptor with a valid buffer is async-signal-safe.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
        signal_hook::low_level::exit(code);
    }
}
