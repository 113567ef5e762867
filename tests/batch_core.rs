//! Batch building blocks without a model: input expansion, sharding, the resumable journal.

use std::io::Write;
use std::path::{Path, PathBuf};

use coinfer::batch::inputs::{Shard, expand, stable_hash};
use coinfer::batch::journal::{CSV_COLUMNS, ClipId, Format, Journal, csv_line};

fn touch(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn inputs_expand_dirs_globs_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = touch(d, "a.mp4", b"1");
    let b = touch(d, "sub/deeper/b.MKV", b"2");
    touch(d, "notes.txt", b"3");
    let c = touch(d, "other/c.webm", b"4");
    let list = touch(d, "list.txt", format!("# clips\n{}\n\n{}\n", c.display(), a.display()).as_bytes());
    let got = expand(&[d.join("sub").display().to_string(), format!("@{}", list.display()), format!("{}/*.mp4", d.display())]).unwrap();
    assert_eq!(got, vec![a.clone(), c, b]);
    // A whole directory takes videos only; a missing input is a no-input error.
    assert_eq!(expand(&[d.display().to_string()]).unwrap().len(), 3);
    let err = expand(&[d.join("missing.mp4").display().to_string()]).unwrap_err();
    assert_eq!(coinfer::error::kind_of(&err).exit_code(), 66);
}

#[test]
fn shards_partition_the_clips() {
    // FNV-1a 64 reference values (published test vectors).
    assert_eq!(stable_hash(b""), 0xcbf29ce484222325);
    assert_eq!(stable_hash(b"a"), 0xaf63dc4c8601ec8c);
    assert_eq!(stable_hash(b"foobar"), 0x85944171f73967e8);
    let paths: Vec<PathBuf> = (0..200).map(|i| PathBuf::from(format!("/data/clips/{i:04}.mp4"))).collect();
    let n = 4;
    let shards: Vec<Shard> = (0..n).map(|i| format!("{i}/{n}").parse().unwrap()).collect();
    for p in &paths {
        assert_eq!(shards.iter().filter(|s| s.contains(p)).count(), 1, "{p:?} in exactly one shard");
    }
    for s in &shards {
        let k = paths.iter().filter(|p| s.contains(p)).count();
        assert!(k > 25, "shard {s:?} got only {k} of 200");
    }
    assert!("4/4".parse::<Shard>().is_err());
    assert!("1-4".parse::<Shard>().is_err());
    assert!("0/0".parse::<Shard>().is_err());
}

fn id(path: &str, size: u64) -> ClipId {
    ClipId { path: path.to_string(), size, mtime_ns: 1_700_000_000_123_456_789 }
}

#[test]
fn journal_resumes_and_cuts_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    {
        let mut j = Journal::open(Some(&out), Format::Jsonl, false).unwrap();
        for (p, s) in [("a.mp4", 1), ("b.mp4", 2)] {
            let line = format!("{{\"type\":\"clip\",\"path\":\"{p}\",\"size\":{s},\"mtime_ns\":1700000000123456789}}\n");
            j.append(id(p, s), &line).unwrap();
        }
    }
    // A kill in the middle of a write leaves a torn line.
    std::fs::OpenOptions::new().append(true).open(&out).unwrap().write_all(b"{\"type\":\"clip\",\"path\":\"c.m").unwrap();
    // Without --resume an existing journal is refused rather than mixed.
    assert!(Journal::open(Some(&out), Format::Jsonl, false).is_err());
    let j = Journal::open(Some(&out), Format::Jsonl, true).unwrap();
    assert_eq!(j.recorded(), 2);
    assert!(j.is_done(&id("a.mp4", 1)) && j.is_done(&id("b.mp4", 2)));
    assert!(!j.is_done(&id("c.mp4", 3)));
    // Same path but another size is another clip (the file changed).
    assert!(!j.is_done(&id("a.mp4", 9)));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with("}\n") && text.lines().count() == 2, "torn tail cut: {text:?}");
}

#[test]
fn csv_quotes_awkward_paths_and_resumes_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let awkward = ["with space.mp4", "comma,name.mp4", "quote\"d.mp4", "ünïcödé 動画.mp4", "new\nline.mp4"];
    {
        let mut j = Journal::open(Some(&out), Format::Csv, false).unwrap();
        for (i, p) in awkward.iter().enumerate() {
            let mut fields = vec![String::new(); CSV_COLUMNS.len()];
            fields[0] = "ok".into();
            fields[1] = p.to_string();
            fields[2] = i.to_string();
            fields[3] = "1700000000123456789".into();
            j.append(id(p, i as u64), &csv_line(fields).unwrap()).unwrap();
        }
    }
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("status,path,size,mtime_ns,"));
    assert!(text.contains("\"comma,name.mp4\"") && text.contains("\"quote\"\"d.mp4\""), "{text}");
    let j = Journal::open(Some(&out), Format::Csv, true).unwrap();
    assert_eq!(j.recorded(), awkward.len());
    for (i, p) in awkward.iter().enumerate() {
        assert!(j.is_done(&id(p, i as u64)), "{p}");
    }
}

#[test]
fn journal_refuses_the_other_format_and_existing_records() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("out.jsonl");
    std::fs::write(&jsonl, "{\"type\":\"clip\",\"path\":\"a.mp4\",\"size\":1,\"mtime_ns\":2}\n").unwrap();
    let csv = dir.path().join("out.csv");
    Journal::open(Some(&csv), Format::Csv, false).unwrap();
    let kind = |r: anyhow::Result<Journal>| coinfer::error::kind_of(&r.err().expect("refused")).exit_code();
    // Continuing a file in the other format would append mixed records and skip nothing.
    assert_eq!(kind(Journal::open(Some(&jsonl), Format::Csv, true)), 2);
    assert_eq!(kind(Journal::open(Some(&csv), Format::Jsonl, true)), 2);
    // Records are never mixed into without --resume.
    assert_eq!(kind(Journal::open(Some(&jsonl), Format::Jsonl, false)), 2);
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap().lines().count(), 1, "left as it was");
    // The same format continues; a CSV with only its header is an empty journal.
    assert_eq!(Journal::open(Some(&jsonl), Format::Jsonl, true).unwrap().recorded(), 1);
    assert_eq!(Journal::open(Some(&csv), Format::Csv, true).unwrap().recorded(), 0);
}
