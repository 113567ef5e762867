//! Batch building blocks without a model: input expansion, sharding, the resumable journal.

use std::io::Write;
use std::path::{Path, PathBuf};

use coinfer::batch::inputs::{Shard, expand, stable_hash};
use coinfer::batch::journal::{CSV_COLUMNS, ClipId, Format, Journal, LEGACY_CSV_COLUMNS, csv_complete_len, csv_line};
use coinfer::batch::keys::ClipKeys;

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
    assert_eq!(got.clips, vec![a.clone(), c, b]);
    // The default root holds every input: `sub`, the list's entries and the glob's directory.
    assert_eq!(got.root, d);
    // A whole directory takes videos only; a missing input is a no-input error.
    let whole = expand(&[d.display().to_string()]).unwrap();
    assert_eq!((whole.clips.len(), whole.root.as_path()), (3, d));
    assert_eq!(expand(&[d.join("sub/deeper/b.MKV")]).unwrap().root, d.join("sub/deeper"), "a file's parent");
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
    ClipId { key: PathBuf::from(path), absolute: Path::new("/data").join(path), size, mtime_ns: 1_700_000_000_123_456_789 }
}

/// Keys of relative paths under `/data`, journal entries as they are.
fn keys() -> ClipKeys {
    ClipKeys::with_cwd(Path::new("/data"), Path::new("."))
}

#[test]
fn journal_resumes_and_cuts_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    {
        let mut j = Journal::open(Some(&out), Format::Jsonl, false, &keys()).unwrap();
        for (p, s) in [("a.mp4", 1), ("b.mp4", 2)] {
            let line = format!("{{\"type\":\"clip\",\"path\":\"{p}\",\"size\":{s},\"mtime_ns\":1700000000123456789}}\n");
            j.append(id(p, s), line.as_bytes()).unwrap();
        }
    }
    // A kill in the middle of a write leaves a torn line.
    std::fs::OpenOptions::new().append(true).open(&out).unwrap().write_all(b"{\"type\":\"clip\",\"path\":\"c.m").unwrap();
    // Without --resume an existing journal is refused rather than mixed.
    assert!(Journal::open(Some(&out), Format::Jsonl, false, &keys()).is_err());
    let j = Journal::open(Some(&out), Format::Jsonl, true, &keys()).unwrap();
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
        let mut j = Journal::open(Some(&out), Format::Csv, false, &keys()).unwrap();
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
    let j = Journal::open(Some(&out), Format::Csv, true, &keys()).unwrap();
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
    let keys = keys();
    Journal::open(Some(&csv), Format::Csv, false, &keys).unwrap();
    let kind = |r: anyhow::Result<Journal>| coinfer::error::kind_of(&r.err().expect("refused")).exit_code();
    // Continuing a file in the other format would append mixed records and skip nothing.
    assert_eq!(kind(Journal::open(Some(&jsonl), Format::Csv, true, &keys)), 2);
    assert_eq!(kind(Journal::open(Some(&csv), Format::Jsonl, true, &keys)), 2);
    // Records are never mixed into without --resume.
    assert_eq!(kind(Journal::open(Some(&jsonl), Format::Jsonl, false, &keys)), 2);
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap().lines().count(), 1, "left as it was");
    // The same format continues; a CSV with only its header is an empty journal.
    assert_eq!(Journal::open(Some(&jsonl), Format::Jsonl, true, &keys).unwrap().recorded(), 1);
    assert_eq!(Journal::open(Some(&csv), Format::Csv, true, &keys).unwrap().recorded(), 0);
}

#[test]
fn csv_resume_cuts_a_record_torn_inside_a_quoted_multiline_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let row = |status: &str, path: &str, message: &str| {
        let mut fields = vec![String::new(); CSV_COLUMNS.len()];
        fields[0] = status.into();
        fields[1] = path.into();
        fields[2] = "1".into();
        fields[3] = "1700000000123456789".into();
        fields[16] = message.into();
        csv_line(fields).unwrap()
    };
    {
        let mut j = Journal::open(Some(&out), Format::Csv, false, &keys()).unwrap();
        j.append(id("a.mp4", 1), &row("error", "a.mp4", "first line,\nsecond \"line\"\n")).unwrap();
    }
    let complete = std::fs::read(&out).unwrap();
    // A kill in the middle of a record whose message holds newlines and commas: its last newline
    // is inside the quoted field, and cutting there would leave the field open.
    let whole = row("error", "b.mp4", "one, two\nthree, \"four\"\nfive");
    let torn = &whole[..whole.len() - 8];
    // Cutting at the last newline would keep `error,b.mp4,…,"one, two\n` and leave the quote open.
    assert!(torn.contains(&b'\n'), "{:?}", String::from_utf8_lossy(torn));
    std::fs::OpenOptions::new().append(true).open(&out).unwrap().write_all(torn).unwrap();
    assert_eq!(csv_complete_len(&std::fs::read(&out).unwrap()), complete.len());

    let mut j = Journal::open(Some(&out), Format::Csv, true, &keys()).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), complete, "cut back to the last complete record");
    assert!(j.is_done(&id("a.mp4", 1)) && !j.is_done(&id("b.mp4", 1)));
    j.append(id("b.mp4", 1), &whole).unwrap();
    drop(j);
    // The file reads back as exactly two records, the messages whole.
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((&rows[0][1], &rows[0][16]), ("a.mp4", "first line,\nsecond \"line\"\n"));
    assert_eq!((&rows[1][1], &rows[1][16]), ("b.mp4", "one, two\nthree, \"four\"\nfive"));
    assert!(rows.iter().all(|r| r.len() == CSV_COLUMNS.len()));
}

#[test]
fn csv_complete_len_follows_quotes() {
    assert_eq!(csv_complete_len(b""), 0);
    assert_eq!(csv_complete_len(b"a,b\nc,d"), 4);
    assert_eq!(csv_complete_len(b"a,b\n\"c\nd\",e\n"), 12);
    assert_eq!(csv_complete_len(b"a,b\n\"c\nd"), 4);
    // A doubled quote inside a quoted field does not end it.
    assert_eq!(csv_complete_len(b"a\n\"x\"\"\ny\"\n\"z\"\"\n"), 10);
}

#[test]
fn resume_recognises_every_spelling_of_a_recorded_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    // Written by runs that spelled the data directory three ways, from /data.
    let records = [("clips/a.mp4", 1), ("./clips/sub/b.mp4", 2), ("/data/clips/c.mp4", 3), ("clips//d.mp4", 4)];
    let text: String = records
        .iter()
        .map(|(p, s)| format!("{{\"type\":\"clip\",\"path\":\"{p}\",\"size\":{s},\"mtime_ns\":1700000000123456789}}\n"))
        .collect();
    std::fs::write(&out, text).unwrap();
    let done = ["a.mp4", "sub/b.mp4", "c.mp4", "d.mp4"];
    // Resumed from /data with the root spelled in each way (relative paths in a journal are read
    // against the working directory, docs/records.md, "Clip keys").
    for root in ["clips", "./clips/", "/data/clips", "clips/sub/..", "../data//clips"] {
        let cwd = "/data";
        let keys = ClipKeys::with_cwd(Path::new(cwd), Path::new(root));
        let j = Journal::open(Some(&out), Format::Jsonl, true, &keys).unwrap();
        for (key, size) in done.iter().zip(1..) {
            assert!(j.is_done(&id(key, size)), "{key} from {cwd} with root {root}");
            assert_eq!(keys.key(&Path::new("/data/clips").join(key)), Path::new(key));
        }
        assert!(!j.is_done(&id("e.mp4", 5)));
    }
}

#[cfg(unix)]
#[test]
fn names_that_are_not_utf8_round_trip_through_both_journals() {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let dir = tempfile::tempdir().unwrap();
    let name = PathBuf::from(std::ffi::OsString::from_vec(b"caf\xe9, \"\xff\"\n.mp4".to_vec()));
    let keys = ClipKeys::with_cwd(dir.path(), Path::new("."));
    assert!(name.to_str().is_none());
    let clip = ClipId { key: name.clone(), absolute: dir.path().join(&name), size: 7, mtime_ns: 1_700_000_000_123_456_789 };
    // JSON: the text, and the exact bytes in hex beside it.
    let jsonl = dir.path().join("out.jsonl");
    let hex: String = name.as_os_str().as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let line = serde_json::json!({"type": "clip", "path": name.to_string_lossy(), "path_bytes": hex, "size": 7,
                                  "mtime_ns": 1_700_000_000_123_456_789i64});
    std::fs::write(&jsonl, format!("{line}\n")).unwrap();
    assert!(Journal::open(Some(&jsonl), Format::Jsonl, true, &keys).unwrap().is_done(&clip));
    // The text alone is not the name: without path_bytes the clip is another one.
    let lossy = serde_json::json!({"type": "clip", "path": name.to_string_lossy(), "size": 7, "mtime_ns": 1_700_000_000_123_456_789i64});
    std::fs::write(&jsonl, format!("{lossy}\n")).unwrap();
    assert!(!Journal::open(Some(&jsonl), Format::Jsonl, true, &keys).unwrap().is_done(&clip));
    // CSV: the path field is the name's bytes, quoted as CSV quotes anything.
    let csv_file = dir.path().join("out.csv");
    {
        let mut j = Journal::open(Some(&csv_file), Format::Csv, false, &keys).unwrap();
        let mut fields: Vec<Vec<u8>> = vec![Vec::new(); CSV_COLUMNS.len()];
        fields[0] = b"ok".to_vec();
        fields[1] = name.as_os_str().as_bytes().to_vec();
        fields[2] = b"7".to_vec();
        fields[3] = b"1700000000123456789".to_vec();
        j.append(clip.clone(), &csv_line(fields).unwrap()).unwrap();
    }
    let mut reader = csv::Reader::from_path(&csv_file).unwrap();
    let rows: Vec<csv::ByteRecord> = reader.byte_records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][1], name.as_os_str().as_bytes());
    assert!(Journal::open(Some(&csv_file), Format::Csv, true, &keys).unwrap().is_done(&clip));
}

/// A labeler that answers without a model: every clip gets one segment and `dropped` left out.
struct Fixed {
    dropped: u64,
}

impl coinfer::batch::ClipLabeler for Fixed {
    fn label(&mut self, _path: &Path) -> anyhow::Result<coinfer::batch::ClipResult> {
        Ok(coinfer::batch::ClipResult {
            duration_s: Some(1.0),
            frames: 30,
            steps: 3,
            outputs: 3,
            aggregation: "steady-mean",
            top: vec![(0, "abseiling".into(), 0.5)],
            segments: vec![serde_json::json!({"start": 0.0, "end": 1.0, "label": "abseiling", "id": 0, "mean_score": 0.5})],
            segments_dropped: self.dropped,
        })
    }
}

fn run_fixed(clips: Vec<PathBuf>, out: &Path, format: Format, dropped: u64, root: &Path) -> coinfer::batch::BatchSummary {
    let opts = coinfer::batch::BatchOptions {
        out: Some(out.to_path_buf()),
        format,
        jobs: 1,
        shard: None,
        keys: ClipKeys::with_cwd(Path::new("/"), root),
        resume: true,
        fail_fast: false,
        progress: false,
    };
    let make = move || -> anyhow::Result<Box<dyn coinfer::batch::ClipLabeler>> { Ok(Box::new(Fixed { dropped })) };
    coinfer::batch::run(clips, &opts, &make).unwrap()
}

#[test]
fn clip_records_say_how_many_segments_were_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let a = touch(dir.path(), "a.mp4", b"1");
    let b = touch(dir.path(), "b.mp4", b"22");
    let jsonl = dir.path().join("out.jsonl");
    run_fixed(vec![a.clone()], &jsonl, Format::Jsonl, 0, dir.path());
    run_fixed(vec![b.clone()], &jsonl, Format::Jsonl, 7, dir.path());
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Absent when none were dropped, as in `run`'s summary.
    assert!(recs[0].get("segments_dropped").is_none(), "{}", recs[0]);
    assert_eq!(recs[1]["segments_dropped"], 7, "{}", recs[1]);
    assert_eq!((recs[1]["key"].as_str(), recs[1]["root"].as_str()), (Some("b.mp4"), dir.path().to_str()));
    // CSV has the column, always filled.
    let csv_file = dir.path().join("out.csv");
    run_fixed(vec![a, b], &csv_file, Format::Csv, 7, dir.path());
    let mut reader = csv::Reader::from_path(&csv_file).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (dropped, key) = (column("segments_dropped"), column("key"));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.iter().map(|r| (&r[dropped], &r[key])).collect::<Vec<_>>(), [("7", "a.mp4"), ("7", "b.mp4")]);
}

/// A CSV journal begun before records carried their key goes on with its own columns (one table),
/// and its rows are recognised by their paths as before.
#[test]
fn a_csv_journal_without_the_key_column_goes_on_with_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let a = touch(dir.path(), "a.mp4", b"1");
    let b = touch(dir.path(), "b.mp4", b"22");
    let csv_file = dir.path().join("old.csv");
    let keys = ClipKeys::with_cwd(Path::new("/"), dir.path());
    let id_a = ClipId::of(&a, &keys).unwrap();
    let mut old = csv_line(&CSV_COLUMNS[..LEGACY_CSV_COLUMNS]).unwrap();
    let mut row = vec![String::new(); LEGACY_CSV_COLUMNS];
    row[0] = "ok".into();
    row[1] = a.to_str().unwrap().into();
    row[2] = id_a.size.to_string();
    row[3] = id_a.mtime_ns.to_string();
    old.extend(csv_line(row).unwrap());
    std::fs::write(&csv_file, &old).unwrap();
    let summary = run_fixed(vec![a, b], &csv_file, Format::Csv, 0, dir.path());
    assert_eq!((summary.skipped, summary.labelled), (1, 1));
    let mut reader = csv::Reader::from_path(&csv_file).unwrap();
    assert_eq!(reader.headers().unwrap().len(), LEGACY_CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.len() == LEGACY_CSV_COLUMNS), "{rows:?}");
}

/// A record's key and root name the clip, whatever its path says: a relative path written from
/// another working directory no longer decides.
#[test]
fn recorded_keys_and_roots_identify_clips() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    let out = dir.path().join("out.jsonl");
    let line = |path: &str, key: &str, root: &Path, size: u64| {
        let root = root.display();
        format!(
            "{{\"type\":\"clip\",\"path\":\"{path}\",\"key\":\"{key}\",\"root\":\"{root}\",\"size\":{size},\"mtime_ns\":1700000000123456789}}\n"
        )
    };
    let mounted_elsewhere = Path::new("/nowhere/nfs/data");
    let records =
        [line("../../x/a.mp4", "a.mp4", &data, 1), line("x.mp4", "sub/b.mp4", &data, 2), line("c.mp4", "c.mp4", mounted_elsewhere, 3)];
    std::fs::write(&out, records.concat()).unwrap();
    let clip = |keys: &ClipKeys, path: &Path, size| ClipId { size, mtime_ns: 1_700_000_000_123_456_789, ..ClipId::named(path, keys) };
    // The same root, from another working directory: the keys.
    let same = ClipKeys::with_cwd(Path::new("/tmp"), &data);
    let j = Journal::open(Some(&out), Format::Jsonl, true, &same).unwrap();
    assert!(j.is_done(&clip(&same, &data.join("a.mp4"), 1)) && j.is_done(&clip(&same, &data.join("sub/b.mp4"), 2)));
    assert!(!j.is_done(&clip(&same, &data.join("a.mp4"), 2)), "another size is another clip");
    // Data mounted here that was mounted elsewhere when recorded: the key, from the same level.
    assert!(j.is_done(&clip(&same, &data.join("c.mp4"), 3)));
    // Another root on this machine: the absolute paths (root joined with key), not the keys.
    let sub = ClipKeys::with_cwd(Path::new("/"), &data.join("sub"));
    let j = Journal::open(Some(&out), Format::Jsonl, true, &sub).unwrap();
    assert_eq!(clip(&sub, &data.join("sub/b.mp4"), 2).key, Path::new("b.mp4"));
    assert!(j.is_done(&clip(&sub, &data.join("sub/b.mp4"), 2)));
    assert!(!j.is_done(&clip(&sub, &data.join("sub/a.mp4"), 1)), "its key is a.mp4, but data/a.mp4 is another file");
}

/// A glob finds a name that is not UTF-8 as a directory walk does (docs/records.md, "File names"),
/// at any depth of `**` and under folders so named.
#[cfg(unix)]
#[test]
fn globs_find_names_that_are_not_utf8() {
    use std::os::unix::ffi::OsStringExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let latin1 = |b: &[u8]| PathBuf::from(std::ffi::OsString::from_vec(b.to_vec()));
    let odd = d.join(latin1(b"caf\xe9 \xff.mp4"));
    std::fs::write(&odd, b"1").unwrap();
    touch(d, "a.mp4", b"2");
    let folder = d.join(latin1(b"vid\xe9os"));
    std::fs::create_dir_all(folder.join("deeper")).unwrap();
    std::fs::write(folder.join("deeper").join(latin1(b"\xfe.mkv")), b"3").unwrap();
    std::fs::write(folder.join("b.mp4"), b"4").unwrap();
    let walked = expand(&[d.display().to_string()]).unwrap().clips;
    assert_eq!(walked.len(), 4, "{walked:?}");
    let globbed = |pattern: &str| expand(&[format!("{}/{pattern}", d.display())]).unwrap().clips;
    // One level: the two files directly in the folder, the odd one included.
    assert_eq!(globbed("*.mp4"), vec![d.join("a.mp4"), odd.clone()]);
    // Any depth, and a pattern that matches folders (then walked): every clip, as the walk finds them.
    assert_eq!(globbed("**/*.m[pk][4v]"), walked);
    assert_eq!(globbed("vid*"), walked.iter().filter(|p| p.starts_with(&folder)).cloned().collect::<Vec<_>>());
    // `?` takes one character; a byte that is not UTF-8 reads as one (U+FFFD).
    assert_eq!(globbed("caf? ?.mp4"), vec![odd]);
}
