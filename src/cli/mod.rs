//! The command line: argument structs and one module per subcommand.
//!
//! `run` is the default subcommand: `coinfer clip.mp4` is `coinfer run clip.mp4`.

pub mod batch;
pub mod bench;
pub mod flops;
pub mod labels;
pub mod models;
pub mod run;
pub mod values;

use std::ffi::OsString;

use clap::error::ErrorKind as ClapErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::models::Schedule;

const EXAMPLES: &str = "\
Examples:
  coinfer samples/sports2d-demo.mp4
  coinfer clip.mp4 | jq -c 'select(.type==\"step\") | [.pts, .current.label]'
  coinfer --model x3d-s --smooth ema:0.3 --hold 3 clip.mp4
  ffmpeg -f v4l2 -i /dev/video0 -f yuv4mpegpipe - | coinfer -
  ffmpeg -i rtsp://camera/stream -f yuv4mpegpipe - | coinfer --max-lag 1 -
  ffmpeg -i clip.mp4 -f rawvideo -pix_fmt rgb24 - |
    coinfer --raw 640x360 --fps 30 -
  coinfer models
  coinfer labels

Exit codes: 0 ok, 1 runtime error, 2 usage, 65 bad data, 66 no such input, 130 interrupted.";

#[derive(Debug, Parser)]
#[command(
    name = "coinfer",
    version,
    about = "Recognise human actions in video as it streams, with continual 3D CNNs",
    long_about = "Recognise human actions in video as it streams, with continual 3D CNNs.\n\n\
        coinfer decodes a file, a device or a pipe, steps a continual network one frame at a time \
        and writes JSON Lines to stdout: a `meta` record, one `step` record per output, a `summary`.\n\
        `run` is the default subcommand: `coinfer clip.mp4` is `coinfer run clip.mp4`.",
    after_help = EXAMPLES,
    arg_required_else_help = true,
    subcommand_required = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream a video through a model (the default subcommand)
    Run(Box<run::RunArgs>),
    /// List the built-in models
    Models(models::ModelsArgs),
    /// Print the class names, one per line
    Labels(labels::LabelsArgs),
    /// Label many clips: folders, globs, lists; resumable and shardable
    Batch(Box<batch::BatchArgs>),
    /// Regular versus continual cost, counted (FLOPs)
    Flops(flops::FlopsArgs),
    /// Regular versus continual time per new frame, measured on this machine
    Bench(bench::BenchArgs),
    /// Download official checkpoints
    Weights(crate::weights::cli::WeightsArgs),
}

/// Parse the process arguments, inserting `run` when the first argument is not a subcommand
/// (so `coinfer clip.mp4` and `coinfer -k 3 clip.mp4` work). A file named like a subcommand can be
/// given as `./models` or `coinfer run models`. Print a failure with [`report_parse_error`].
pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let matches = command().try_get_matches_from(with_default_subcommand(args))?;
    Cli::from_arg_matches(&matches)
}

/// The clap command, every option's value allowed to look like a negative number: `--fps -5` then
/// reaches the option's own range check instead of clap's advice to write `-- -5`, which cannot work.
fn command() -> clap::Command {
    negative_values(Cli::command())
}

fn negative_values(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|arg| if arg.is_positional() || !arg.get_action().takes_values() { arg } else { arg.allow_negative_numbers(true) })
        .mut_subcommands(negative_values)
}

/// Print a failed parse the way every error is printed (README, "Exit codes"): one line
/// `coinfer: error: …` on stderr, and return the exit code (2). Help and version keep clap's own
/// output (on stdout, exit 0; a bare `coinfer` prints the help on stderr, exit 2).
pub fn report_parse_error(err: &clap::Error, args: &[OsString]) -> i32 {
    use std::io::Write;
    let is_help = matches!(
        err.kind(),
        ClapErrorKind::DisplayHelp | ClapErrorKind::DisplayVersion | ClapErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if is_help {
        let _ = err.print();
    } else {
        let _ = writeln!(std::io::stderr(), "coinfer: error: {}", argument_error_line(err, args));
    }
    err.exit_code()
}

/// One line for an argument error: clap's message, its tips but the `-- VALUE` one, and where the
/// help is (`see 'coinfer run --help'`), without clap's usage block.
pub fn argument_error_line(err: &clap::Error, args: &[OsString]) -> String {
    // Plain text (StyledStr's Display writes no colours), in paragraphs: the message (an indented
    // list may follow it, as for missing arguments), tips, the usage, the help hint.
    let text = err.render().to_string();
    let mut paragraphs = text.split("\n\n");
    let first = paragraphs.next().unwrap_or_default();
    let message: Vec<&str> = first.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let message = message.join(" ");
    let mut line = message.strip_prefix("error: ").unwrap_or(&message).to_string();
    let tips = paragraphs
        .flat_map(str::lines)
        .filter_map(|l| l.trim().strip_prefix("tip: "))
        // "to pass '-x' as a value, use '-- -x'": negative numbers already pass, and `--` only helps
        // an input file named like an option, which the help explains.
        .filter(|tip| !tip.contains("as a value, use '--"));
    for tip in tips {
        line.push_str("; ");
        line.push_str(tip);
    }
    line.push_str(&format!("; see '{} --help'", command_path(&with_default_subcommand(args.to_vec()))));
    line.replace(['\n', '\r'], " ")
}

/// `coinfer` and the subcommands the arguments name (`coinfer weights pull`), for the help hint.
fn command_path(args: &[OsString]) -> String {
    let mut cmd = Cli::command();
    let mut path = vec!["coinfer".to_string()];
    for arg in args.iter().skip(1) {
        let Some(sub) = cmd.find_subcommand(arg).cloned() else { break };
        path.push(sub.get_name().to_string());
        cmd = sub;
    }
    path.join(" ")
}

fn with_default_subcommand(mut args: Vec<OsString>) -> Vec<OsString> {
    let Some(first) = args.get(1).map(|a| a.to_string_lossy().into_owned()) else { return args };
    let cmd = Cli::command();
    let is_subcommand = first == "help" || cmd.get_subcommands().any(|s| s.get_name() == first || s.get_all_aliases().any(|a| a == first));
    let is_top_flag = matches!(first.as_str(), "-h" | "--help" | "-V" | "--version");
    if !is_subcommand && !is_top_flag {
        args.insert(1, OsString::from("run"));
    }
    args
}

/// The subcommand a word that is not one most likely meant (`model` → `models`): one within two
/// edits of its name. Used to explain a missing input named like one.
pub fn similar_subcommand(word: &str) -> Option<String> {
    if word.len() < 3 || word.contains(['/', '.', '\\']) {
        return None;
    }
    Cli::command()
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .filter(|name| name != "help")
        .map(|name| (edit_distance(word, &name), name))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, name)| name)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Run a parsed command.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run::execute(&args),
        Command::Models(args) => models::execute(&args),
        Command::Labels(args) => labels::execute(&args),
        Command::Batch(args) => batch::execute(&args),
        Command::Flops(args) => flops::execute(&args),
        Command::Bench(args) => bench::execute(&args),
        Command::Weights(args) => crate::weights::cli::run(&args),
    }
}

/// `--threads N` or `--jobs N` checked against 1 ..= 4 × the cores available: more threads only
/// contend for the cores, and thousands cannot all be spawned (README, "Options"). A usage error
/// that states the cap otherwise.
pub fn check_threads(option: &str, n: u64) -> anyhow::Result<usize> {
    values::threads(option, &n.to_string()).map_err(|line| crate::error::classified(crate::error::ErrorKind::Usage, line))
}

/// Apply a `--threads` option to the process environment (candle and rayon read it once, at their
/// first use). Call from `main` before any other thread exists.
pub fn apply_threads(cli: &Cli) -> anyhow::Result<()> {
    let n = match &cli.command {
        Command::Run(args) => args.threads,
        Command::Bench(args) => args.threads.map(|n| n as u64),
        _ => None,
    };
    if let Some(n) = n {
        let n = check_threads("--threads", n)?;
        // SAFETY: called before any other thread exists, so nothing reads the environment concurrently.
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
    }
    Ok(())
}

/// `--schedule`: how the network shares a step between its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// The pipeline for files on two threads; split for live streams (no lag), one thread, and three or
    /// more (the pipeline has two stages)
    Auto,
    /// Every operation split between the threads; each output on its frame's step
    Split,
    /// A two-stage pipeline of layers, one stage per thread: more frames/s, each output one step
    /// later (CoX3D; other models split)
    Pipeline,
}

impl ScheduleArg {
    /// The schedule for a file (`live` false) or a live stream.
    pub fn resolve(self, live: bool) -> Schedule {
        match self {
            ScheduleArg::Split => Schedule::Split,
            ScheduleArg::Pipeline => Schedule::Pipeline,
            ScheduleArg::Auto if !live && crate::engine::configured_threads() == 2 => Schedule::Pipeline,
            ScheduleArg::Auto => Schedule::Split,
        }
    }
}

/// True when the error is a closed output (`coinfer … | head`), which ends the program quietly.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    // serde_json wraps the write error of `--json` output in its own type.
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == BrokenPipe)
            || e.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind) == Some(BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Vec<String> {
        let v = with_default_subcommand(args.iter().map(OsString::from).collect());
        v.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn run_is_the_default_subcommand() {
        assert_eq!(parsed(&["coinfer", "clip.mp4"]), ["coinfer", "run", "clip.mp4"]);
        assert_eq!(parsed(&["coinfer", "-k", "3", "-"]), ["coinfer", "run", "-k", "3", "-"]);
        assert_eq!(parsed(&["coinfer", "models"]), ["coinfer", "models"]);
        assert_eq!(parsed(&["coinfer", "run", "x"]), ["coinfer", "run", "x"]);
        assert_eq!(parsed(&["coinfer", "--help"]), ["coinfer", "--help"]);
        assert_eq!(parsed(&["coinfer"]), ["coinfer"]);
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    /// Letting option values look like negative numbers changes no help text.
    #[test]
    fn negative_values_leave_every_help_unchanged() {
        fn helps(mut cmd: clap::Command) -> Vec<String> {
            let mut all = vec![cmd.render_long_help().to_string()];
            for sub in cmd.get_subcommands_mut() {
                all.extend(helps(sub.clone()));
            }
            all
        }
        assert_eq!(helps(command()), helps(Cli::command()));
    }

    #[test]
    fn a_negative_value_reaches_the_option_check() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let a = args(&["coinfer", "--fps", "-5", "-"]);
        let err = parse(a.clone()).unwrap_err();
        let line = argument_error_line(&err, &a);
        assert!(line.starts_with("invalid value '-5' for '--fps <FPS>'"), "{line}");
        assert!(!line.contains("'-- -5'") && line.ends_with("; see 'coinfer run --help'"), "{line}");
        // Still an error for a word that is not a number, and the path to the help is the subcommand's.
        let a = args(&["coinfer", "weights", "pull", "--layout", "-x"]);
        let line = argument_error_line(&parse(a.clone()).unwrap_err(), &a);
        assert!(line.ends_with("; see 'coinfer weights pull --help'"), "{line}");
    }

    /// Example lines (indented) fit an 80-column terminal, so none wraps mid-command and each can be
    /// copied as it stands; and every option of every subcommand says what it does.
    #[test]
    fn help_examples_fit_and_every_option_is_explained() {
        let cli = Cli::command();
        let mut commands: Vec<&clap::Command> = vec![&cli];
        commands.extend(cli.get_subcommands());
        for cmd in commands {
            let after = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            for line in after.lines().filter(|l| l.starts_with("  ")) {
                assert!(line.chars().count() <= 80, "{}: example line of {} columns: {line}", cmd.get_name(), line.chars().count());
            }
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{} --{id} has no help text", cmd.get_name());
            }
        }
    }

    #[test]
    fn a_missing_input_named_like_a_subcommand_is_explained() {
        assert_eq!(similar_subcommand("model").as_deref(), Some("models"));
        assert_eq!(similar_subcommand("lables").as_deref(), Some("labels"));
        assert_eq!(similar_subcommand("flop").as_deref(), Some("flops"));
        assert_eq!(similar_subcommand("clip.mp4"), None);
        assert_eq!(similar_subcommand("holiday"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
