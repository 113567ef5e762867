//! The `coinfer` binary: parse, run, map the outcome to an exit code (README, "Exit codes").

use std::io::Write;

use coinfer::cli;
use coinfer::error::{ErrorKind, kind_of};

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::parse(args.clone()) {
        Ok(cli) => cli,
        // One line for an argument error (exit 2); --help and --version as clap prints them (exit 0).
        Err(e) => std::process::exit(cli::report_parse_error(&e, &args)),
    };
    let code = match cli::apply_threads(&cli).and_then(|()| cli::dispatch(cli)) {
        Ok(()) => 0,
        // The reader went away (`coinfer clip.mp4 | head -1`): not an error.
        Err(e) if cli::is_broken_pipe(&e) => 0,
        Err(e) => {
            let kind = kind_of(&e);
            let text = if kind == ErrorKind::Interrupted { "interrupted".to_string() } else { format!("error: {e:#}") };
            // One line, whatever the error chain holds.
            let _ = writeln!(std::io::stderr(), "coinfer: {}", text.replace('\n', " "));
            // 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP.
            if kind == ErrorKind::Interrupted { coinfer::signals::exit_code() } else { kind.exit_code() }
        }
    };
    std::process::exit(code);
}
