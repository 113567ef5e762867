//! Any bytes as a y4m stream, opened as coinfer opens an input (`source::open`, libavformat's
//! `yuv4mpegpipe` demuxer, the rawvideo decoder, our colour conversion and torn-frame check): every
//! outcome is frames of the size the stream declares, in order, or one clean error line classified
//! as bad data; never a panic, an abort, a hang or an allocation the header alone asks for
//! (docs/testing.md, "Fuzzing").
#![no_main]

use coinfer::error::{ErrorKind, kind_of};
use coinfer::source::{Frame, OpenOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("coinfer-fuzz-y4m-{}.y4m", std::process::id()));
    std::fs::write(&path, data).expect("the fuzz temp file can be written");
    let opts = OpenOptions { format: Some("yuv4mpegpipe".into()), ..OpenOptions::default() };
    let mut source = match coinfer::source::open(&path, &opts) {
        Ok(s) => s,
        Err(e) => return check_error(&e),
    };
    let (w, h) = (source.info().width, source.info().height);
    assert!(w >= 1 && h >= 1, "an open stream has a size");
    let mut frame = Frame::default();
    let mut count = 0u64;
    loop {
        match source.next_frame(&mut frame) {
            Ok(true) => {
                assert_eq!((frame.width, frame.height), (w, h), "every frame has the declared size");
                assert_eq!(frame.rgb.len(), w as usize * h as usize * 3);
                assert!(frame.index >= count, "frames come in order");
                count = frame.index + 1;
            }
            Ok(false) => break,
            Err(e) => {
                check_error(&e);
                break;
            }
        }
    }
});

/// One line, and a data or usage error (a header that is not y4m is bad data; nothing here is a
/// runtime failure of ours).
fn check_error(e: &anyhow::Error) {
    let msg = format!("{e:#}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(matches!(kind_of(e), ErrorKind::Data | ErrorKind::Usage), "{:?}: {msg}", kind_of(e));
}
