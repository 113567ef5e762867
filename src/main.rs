//! The `coinfer` binary: parse, run, map the outcome to an exit code (README, "Exit codes").

use std::io::Write;

use coinfer::cli;
use coinfer::error::{ErrorKind, kind_of};

fn main() {
    let cli = match cli::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints usage errors to stderr (exit 2) and --help/--version to stdout (exit 0).
            let _ = e.print();
            std::process::exit(e.exit_code());
        }
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
