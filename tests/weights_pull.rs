//! `weights pull` against a tiny HTTP server on 127.0.0.1 started by the test (no internet).

use coinfer::error::{ErrorKind, kind_of};
use coinfer::weights::pull;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

const LEN: usize = 200_000;

fn content() -> Vec<u8> {
    (0..LEN).map(|i| (i * 7 % 251) as u8).collect()
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Serves `content()` at `/…/file.bin`. `/norange/…` ignores Range; `/drop/…` announces the full length
/// but closes after half the body; anything else is 404. Returns the base URL and the request log
/// (path and Range header of each request).
/// Path and Range header of each request the server saw.
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn serve() -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        let body = content();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("range")
                {
                    range = Some(v.trim().to_string());
                }
            }
            log2.lock().unwrap().push((path.clone(), range.clone()));
            let from = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok());
            let _ = if !path.ends_with("/file.bin") {
                stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            } else if path.starts_with("/drop/") {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\nConnection: close\r\n\r\n");
                stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body[..LEN / 2]))
            } else {
                match from {
                    Some(n) if n >= LEN => stream.write_all(
                        format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{LEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .as_bytes(),
                    ),
                    Some(n) if !path.starts_with("/norange/") => {
                        let head = format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {n}-{}/{LEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            LEN - 1,
                            LEN - n
                        );
                        stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body[n..]))
                    }
                    _ => {
                        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\nConnection: close\r\n\r\n");
                        stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body))
                    }
                }
            };
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    (base, log)
}

fn sidecar(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("file.bin.sha256")).unwrap()
}

#[test]
fn full_download_records_the_hash() {
    let (base, log) = serve();
    let dir = tempfile::tempdir().unwrap();
    let path = pull(&format!("{base}/m/file.bin"), dir.path(), None, true).unwrap();
    assert_eq!(path, dir.path().join("file.bin"));
    assert_eq!(std::fs::read(&path).unwrap(), content());
    assert_eq!(sidecar(dir.path()), format!("{}  file.bin\n", sha(&content())));
    assert!(!dir.path().join("file.bin.part").exists());
    assert_eq!(log.lock().unwrap().as_slice(), [("/m/file.bin".to_string(), None)]);

    // A second pull reuses the file without asking the server.
    pull(&format!("{base}/m/file.bin"), dir.path(), Some(&sha(&content())), false).unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn resumes_a_partial_download_with_a_range_request() {
    let (base, log) = serve();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file.bin.part"), &content()[..70_000]).unwrap();
    let path = pull(&format!("{base}/m/file.bin"), dir.path(), Some(&sha(&content())), false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), content());
    assert_eq!(log.lock().unwrap().as_slice(), [("/m/file.bin".to_string(), Some("bytes=70000-".to_string()))]);
    assert_eq!(sidecar(dir.path()), format!("{}  file.bin\n", sha(&content())));
}

#[test]
fn interrupted_download_keeps_the_part_and_resumes() {
    let (base, log) = serve();
    let dir = tempfile::tempdir().unwrap();
    let e = pull(&format!("{base}/drop/file.bin"), dir.path(), None, false).unwrap_err();
    assert!(format!("{e:#}").contains("resume"), "{e:#}");
    assert!(!dir.path().join("file.bin").exists());
    let part = std::fs::read(dir.path().join("file.bin.part")).unwrap();
    assert!(!part.is_empty() && part.len() <= LEN / 2 && part[..] == content()[..part.len()]);

    let path = pull(&format!("{base}/m/file.bin"), dir.path(), None, false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), content());
    assert_eq!(log.lock().unwrap()[1].1, Some(format!("bytes={}-", part.len())));
}

#[test]
fn server_ignoring_range_restarts_cleanly() {
    let (base, _log) = serve();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file.bin.part"), b"garbage that is not a prefix").unwrap();
    let path = pull(&format!("{base}/norange/file.bin"), dir.path(), None, false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), content());
}

#[test]
fn oversized_part_is_restarted_after_416() {
    let (base, _log) = serve();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file.bin.part"), vec![0u8; LEN + 10]).unwrap();
    let path = pull(&format!("{base}/m/file.bin"), dir.path(), Some(&sha(&content())), false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), content());
}

#[test]
fn hash_mismatch_deletes_the_download() {
    let (base, _log) = serve();
    let dir = tempfile::tempdir().unwrap();
    let wrong = sha(b"something else");
    let e = pull(&format!("{base}/m/file.bin"), dir.path(), Some(&wrong), false).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("mismatch") && msg.contains(&wrong) && msg.contains(&sha(&content())), "{msg}");
    assert_eq!(kind_of(&e), ErrorKind::Data);
    assert!(!dir.path().join("file.bin").exists());
    assert!(!dir.path().join("file.bin.part").exists());
}

#[test]
fn stale_cached_file_is_replaced_when_pinned() {
    let (base, log) = serve();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file.bin"), b"old").unwrap();
    let path = pull(&format!("{base}/m/file.bin"), dir.path(), Some(&sha(&content())), false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), content());
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn not_found_is_a_clear_error() {
    let (base, _log) = serve();
    let dir = tempfile::tempdir().unwrap();
    let e = pull(&format!("{base}/nothing/here.pyth"), dir.path(), None, false).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("404") && msg.contains("/nothing/here.pyth"), "{msg}");
    assert_eq!(kind_of(&e), ErrorKind::NoInput);
    assert!(!dir.path().join("here.pyth").exists());
}

#[test]
fn bad_pin_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = pull("http://127.0.0.1:9/file.bin", dir.path(), Some("abc"), false).unwrap_err();
    assert_eq!(kind_of(&e), ErrorKind::Usage);
}

#[test]
fn cli_arguments_parse() {
    use clap::Parser;
    use coinfer::weights::Layout;
    use coinfer::weights::cli::{WeightsArgs, WeightsCommand};
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        w: WeightsArgs,
    }
    let c = Cli::try_parse_from(["coinfer", "pull", "x3d-s", "--layout", "hub", "--dir", "/tmp/x", "--sha256", "ab"]).unwrap();
    let WeightsCommand::Pull { model, layout, dir, sha256 } = c.w.command;
    assert_eq!((model.as_str(), layout, sha256.as_deref()), ("x3d-s", Some(Layout::Hub), Some("ab")));
    assert_eq!(dir.unwrap(), Path::new("/tmp/x"));
    assert!(Cli::try_parse_from(["coinfer", "pull", "x3d-s", "--layout", "caffe"]).is_err());
}

/// `weights pull` offers only what a model can run: every published checkpoint belongs to a
/// registered model that builds (laid out over zero weights), and its default checkpoint is the file
/// that model reads by default.
#[test]
fn every_pullable_checkpoint_names_a_runnable_model() {
    use coinfer::models::{self, ModelOptions, registry};
    use coinfer::weights::pull::{official, pullable};
    let all = pullable();
    assert!(!all.is_empty());
    for (name, checkpoint) in &all {
        assert!(models::names().contains(name), "{name}");
        let desc = models::describe(name, &ModelOptions::default()).unwrap();
        assert_eq!(desc.spec.name, *name);
        let (_, default) = official(name, None).unwrap();
        let file = checkpoint.url.rsplit('/').next().unwrap();
        if std::ptr::eq(default, *checkpoint) {
            assert_eq!(desc.weights.file_name().unwrap().to_str().unwrap(), file, "{name}");
        }
    }
    // Each model's checkpoints, and only those, are offered.
    let offered: usize = registry::MODELS.iter().map(|m| m.checkpoints.len()).sum();
    assert_eq!(all.len(), offered);
}
