//! Every numeric option of every subcommand, given a negative, an out-of-range or a huge value:
//! one line that says the range the option takes, exit 2 (a usage error), before any work.

use std::process::{Command, Stdio};

fn coinfer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coinfer")).args(args).stdin(Stdio::null()).output().expect("the binary runs")
}

/// The subcommand with what it needs besides the option, the option, and text its range names.
const OPTIONS: &[(&[&str], &str, &str)] = &[
    (&["run", "x.mp4"], "-k", "1.."),
    (&["run", "x.mp4"], "--top-k", "1.."),
    (&["run", "x.mp4"], "--hold", "0.."),
    (&["run", "x.mp4"], "--pool", "1.."),
    (&["run", "x.mp4"], "--threads", "out of range: 1 to"),
    (&["run", "x.mp4", "--overlay", "o.mkv"], "--overlay-crf", "0..=63"),
    (&["run", "-", "--fps", "30"], "--raw", "1..=16384"),
    (&["run", "-", "--raw", "64x48"], "--fps", "0 < FPS <= 10000"),
    (&["run", "x.mp4"], "--threshold", "between 0 and 1"),
    (&["run", "x.mp4"], "--max-lag", "(> 0)"),
    (&["run", "x.mp4"], "--smooth", "mean:N with 1<=N<=1024"),
    (&["bench"], "--steps", "1..=1000000"),
    (&["bench"], "--regular-runs", "1..=10000"),
    (&["bench"], "--threads", "out of range: 1 to"),
    (&["flops"], "--pool", "1.."),
    (&["batch", "x.mp4"], "--jobs", "out of range: 1 to"),
    (&["batch", "x.mp4"], "-k", "1.."),
    (&["batch", "x.mp4"], "--pool", "1.."),
    (&["batch", "x.mp4"], "--shard", "0 <= I < N"),
];

#[test]
fn numeric_options_say_their_range() {
    for (base, option, range) in OPTIONS {
        let values: &[&str] = match *option {
            "--raw" => &["-3x4", "64x-1", "99999999999999999999999x2"],
            "--shard" => &["-1/4", "1/-4", "4/4", "1/99999999999999999999999"],
            // Any lag above 0 is a bound; a huge one never skips.
            "--max-lag" => &["-3", "0", "-99999999999999999999999"],
            "--smooth" => &["mean:-3", "ema:-1", "mean:99999999999999999999999", "mean:0"],
            _ => &["-3", "99999999999999999999999", "-99999999999999999999999"],
        };
        for value in values {
            let args = [&base[..1], &[*option, *value], &base[1..]].concat();
            let out = coinfer(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
            assert!(err.starts_with("coinfer: error: ") && err.contains(range), "{args:?} names the range {range:?}: {err}");
            for parser_talk in ["invalid digit", "too large to fit", "unexpected argument"] {
                assert!(!err.contains(parser_talk), "{args:?}: {err}");
            }
        }
    }
}
