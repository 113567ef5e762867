//! The command line: `cli::parse` on any argument vector (non-UTF-8 bytes included), and each value
//! parser on any value. A parse never panics; a failure is one line (what `report_parse_error`
//! prints) with clap's exit code 0 or 2; a success keeps every documented range, through the same
//! checks `main` applies after parsing (`check_threads`, `check_pool`) (docs/testing.md, "Fuzzing").
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use clap::error::ErrorKind as ClapErrorKind;
use coinfer::cli::{self, Cli, Command};
use coinfer::smooth::{MAX_MEAN, SmoothMode};
use libfuzzer_sys::fuzz_target;

/// An option and the arguments around its value: `coinfer SUB [BEFORE…] OPTION VALUE [AFTER…]`.
const OPTIONS: &[(&str, &[&str], &str, &[&str])] = &[
    ("run", &[], "--fps", &["-"]),
    ("run", &["--raw", "4x4"], "--fps", &["-"]),
    ("run", &[], "--max-lag", &["-"]),
    ("run", &[], "--threshold", &["-"]),
    ("run", &[], "--smooth", &["-"]),
    ("run", &[], "--raw", &["--fps", "25", "-"]),
    ("run", &[], "--pool", &["-"]),
    ("run", &[], "--threads", &["-"]),
    ("run", &[], "-k", &["-"]),
    ("run", &[], "--hold", &["-"]),
    ("run", &["--overlay", "o.mp4"], "--overlay-crf", &["-"]),
    ("batch", &[], "--shard", &["x"]),
    ("batch", &[], "--jobs", &["x"]),
    ("batch", &[], "--pool", &["x"]),
    ("bench", &[], "--steps", &[]),
    ("bench", &[], "--regular-runs", &[]),
    ("bench", &[], "--threads", &[]),
    ("flops", &[], "--pool", &[]),
];

fn os(s: &str) -> OsString {
    OsString::from(s)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut args = vec![os("coinfer")];
    match (mode as usize).checked_sub(1).and_then(|i| OPTIONS.get(i)) {
        // One option's value, any bytes.
        Some((sub, before, option, after)) => {
            args.push(os(sub));
            args.extend(before.iter().map(|a| os(a)));
            args.push(os(option));
            args.push(OsString::from_vec(rest.to_vec()));
            args.extend(after.iter().map(|a| os(a)));
        }
        // A whole argument vector, arguments separated by NUL bytes (which no argument can hold).
        None => args.extend(rest.split(|&b| b == 0).map(|a| OsString::from_vec(a.to_vec()))),
    }
    match cli::parse(args.clone()) {
        Ok(parsed) => check_ranges(&parsed),
        Err(err) => {
            let help = matches!(
                err.kind(),
                ClapErrorKind::DisplayHelp | ClapErrorKind::DisplayVersion | ClapErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            assert!(matches!(err.exit_code(), 0 | 2), "exit code {}", err.exit_code());
            if !help {
                let line = cli::argument_error_line(&err, &args);
                assert!(!line.contains(['\n', '\r']), "one line: {line:?}");
            }
        }
    }
});

/// Every numeric value a parse accepts is within the range the help states, or the check `main`
/// or the subcommand applies next refuses it cleanly (a usage error, never a panic).
fn check_ranges(parsed: &Cli) {
    let threads = |n: u64| {
        if let Ok(t) = cli::check_threads("--threads", n) {
            let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
            assert!((1..=4 * cores).contains(&t));
        }
    };
    let pool = |model: &str, n: usize| {
        if let Ok(p) = coinfer::models::check_pool(model, n) {
            assert!((1..=coinfer::models::MAX_POOL).contains(&p));
        }
    };
    match &parsed.command {
        Command::Run(a) => {
            assert!(a.top_k >= 1);
            assert!((0.0..=1.0).contains(&a.threshold), "threshold {}", a.threshold);
            match a.smooth {
                SmoothMode::None => {}
                SmoothMode::Ema(alpha) => assert!(alpha > 0.0 && alpha <= 1.0, "ema {alpha}"),
                SmoothMode::Mean(n) => assert!((1..=MAX_MEAN).contains(&n), "mean {n}"),
            }
            if let Some((w, h)) = a.raw {
                assert!((1..=16384).contains(&w) && (1..=16384).contains(&h), "raw {w}x{h}");
            }
            if let Some(f) = a.fps {
                assert!(f.is_finite() && f > 0.0 && f <= 10_000.0, "fps {f}");
            }
            if let Some(lag) = a.max_lag {
                assert!(lag.is_finite() && lag > 0.0, "max-lag {lag}");
            }
            if let Some(n) = a.pool {
                assert!(n >= 1);
                pool(&a.model, usize::try_from(n).unwrap_or(usize::MAX));
            }
            if let Some(n) = a.threads {
                threads(n);
            }
            if let Some(crf) = a.visual.overlay_crf {
                assert!(crf <= 63, "crf {crf}");
            }
        }
        Command::Batch(a) => {
            if let Some(s) = a.shard {
                assert!(s.index < s.count, "shard {}/{}", s.index, s.count);
            }
            if let Some(n) = a.jobs {
                if let Ok(j) = cli::check_threads("--jobs", n as u64) {
                    assert!(j >= 1);
                }
            }
            if let Some(n) = a.pool {
                pool(&a.model, n);
            }
        }
        Command::Bench(a) => {
            assert!((1..=1_000_000).contains(&a.steps) && (1..=10_000).contains(&a.regular_runs));
            if let Some(n) = a.threads {
                threads(n as u64);
            }
        }
        Command::Flops(a) => {
            if let Some(n) = a.pool {
                pool(a.model.as_deref().unwrap_or("x3d-s"), n);
            }
        }
        _ => {}
    }
}
