//! One error contract for the command line (README, "Exit codes"): every argument error is one line
//! `coinfer: error: …` on stderr with exit 2, label files fail alike in every form, and a missing
//! default weights file advises something that works.

use std::process::{Command, Output, Stdio};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/sports2d-demo.mp4");

fn coinfer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coinfer")).args(args).stdin(Stdio::null()).output().expect("the binary runs")
}

/// Exactly one line on stderr, `coinfer: error: …` naming `mentions`, nothing on stdout, the exit code.
fn assert_one_line(out: &Output, code: i32, mentions: &str, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert!(out.stdout.is_empty(), "{what} wrote to stdout");
    assert!(err.starts_with("coinfer: error: ") && err.ends_with('\n'), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
    assert!(err.contains(mentions), "{what}: '{mentions}' not in {err}");
    assert!(!err.contains('\x1b'), "no colours: {err:?}");
    err
}

#[test]
fn every_argument_error_is_one_line_with_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        // unknown options, with clap's suggestion kept
        (&["--no-such-flag", SAMPLE], "unexpected argument '--no-such-flag'"),
        (&["--fpss", "3", "-"], "a similar argument exists: '--fps'"),
        (&["models", "--bogus"], "see 'coinfer models --help'"),
        // bad values, our own range checks included
        (&["-k", "x", SAMPLE], "invalid value 'x' for '--top-k"),
        (&["--smooth", "mean:0", SAMPLE], "N out of range"),
        (&["weights", "pull", "x3d-s", "--layout", "caffe"], "possible values"),
        // missing values and arguments
        (&["--fps"], "a value is required for '--fps"),
        (&["batch", "--jobs"], "a value is required for '--jobs"),
        (&["run"], "required arguments were not provided: <INPUT>"),
        (&["weights", "pull"], "see 'coinfer weights pull --help'"),
        // negative numbers reach the option's range check
        (&["--fps", "-5", "-"], "invalid value '-5' for '--fps <FPS>'"),
        (&["--threshold", "-0.5", SAMPLE], "-0.5 is not between 0 and 1"),
        // conflicting options
        (&["--emit-transient", "--no-transient", SAMPLE], "cannot be used with '--no-transient'"),
    ];
    for (args, mentions) in cases {
        let err = assert_one_line(&coinfer(args), 2, mentions, &format!("{args:?}"));
        assert!(!err.contains("use '--"), "{args:?}: a tip that cannot work: {err}");
        assert!(!err.contains("Usage:") && !err.contains("For more information"), "{args:?}: {err}");
    }
}

#[test]
fn help_and_version_are_clap_s_own() {
    for args in [&["--help"][..], &["run", "--help"], &["weights", "pull", "--help"], &["--version"], &["help"]] {
        let out = coinfer(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).lines().count() >= 1, "{args:?}");
    }
    assert!(String::from_utf8_lossy(&coinfer(&["run", "--help"]).stdout).contains("Usage: coinfer run"));
    // A bare command prints its help on stderr (exit 2), as before.
    let out = coinfer(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: coinfer"));
}

#[test]
fn label_files_fail_alike_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    // A BOM and blank lines are accepted in every form, and give the same names.
    for path in [
        write("bom.txt", "\u{feff}run\n\njump\n\n"),
        write("bom.json", "\u{feff}{\"run\": 0,\n\n \"jump\": 1}\n"),
        write("bom.csv", "\u{feff}id,name\n\n0,run\n1,jump\n\n"),
    ] {
        let out = coinfer(&["labels", "--labels", &path]);
        assert_eq!(out.status.code(), Some(0), "{path}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "run\njump\n", "{path}");
    }
    // The range names the real N, in JSON and in CSV.
    let rule = "id 1 is missing: ids must be 0..2, one per name";
    for path in [write("gap.json", r#"{"a": 0, "b": 2, "c": 3}"#), write("gap.csv", "0,a\n2,b\n3,c\n")] {
        assert_one_line(&coinfer(&["labels", "--labels", &path]), 65, rule, &path);
    }
    let twice = "the name 'a' is used twice (ids 0 and 1)";
    for path in [write("twice.txt", "a\na\n"), write("twice.json", r#"{"a": 0, "a": 1}"#), write("twice.csv", "0,a\n1,a\n")] {
        assert_one_line(&coinfer(&["labels", "--labels", &path]), 65, twice, &path);
    }
}

/// The advice for a missing default weights file is a command that works: `weights pull NAME` with
/// a NAME that pull accepts (it parses, and names a published checkpoint), or the folder of the
/// bundled file, which makes the model find its weights.
#[test]
fn missing_default_weights_advise_a_command_that_works() {
    use coinfer::cli::{Command as Sub, parse};
    use coinfer::weights::cli::WeightsCommand;
    let empty = tempfile::tempdir().unwrap();
    for name in coinfer::models::names() {
        let out = Command::new(env!("CARGO_BIN_EXE_coinfer"))
            .args(["--model", name, SAMPLE])
            .env("XDG_CACHE_HOME", empty.path())
            .env("COINFER_WEIGHTS_DIR", empty.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = assert_one_line(&out, 66, &format!("no weights for {name}"), name);
        if let Some(advice) = err.split('`').nth(1) {
            let args: Vec<std::ffi::OsString> = advice.split_whitespace().map(Into::into).collect();
            let cli = parse(args).unwrap_or_else(|e| panic!("{name}: `{advice}` does not parse: {e}"));
            let Sub::Weights(w) = cli.command else { panic!("{name}: `{advice}` is not weights pull") };
            let WeightsCommand::Pull { model, layout, .. } = w.command;
            assert!(coinfer::weights::pull::official(&model, layout).is_some(), "{name}: pull refuses {model}");
        } else {
            // The bundled file: a folder holding it makes `models` find it.
            assert!(err.contains("set COINFER_WEIGHTS_DIR to the folder holding "), "{name}: {err}");
            let file = err.split("folder holding ").nth(1).unwrap().split(' ').next().unwrap();
            let bundled = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("weights").join(file);
            assert!(bundled.is_file(), "{name}: advice names {file}, not in weights/");
            let dir = tempfile::tempdir().unwrap();
            std::os::unix::fs::symlink(&bundled, dir.path().join(file)).unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_coinfer"))
                .args(["models", "--json"])
                .env("COINFER_WEIGHTS_DIR", dir.path())
                .output()
                .unwrap();
            let models: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let entry = models.as_array().unwrap().iter().find(|m| m["name"] == *name).unwrap();
            assert_eq!(entry["weights_present"], true, "{name}: {entry}");
        }
    }
}
