//! Any bytes as a stream of raw frames (`--raw WxH --pix-fmt F --fps R`), read through the public
//! `source::open` as coinfer reads a file: the first input byte picks one of a few geometries and
//! pixel formats, the rest is the stream. Every outcome is whole frames of exactly the declared
//! size, numbered and stamped in order, and a stream that is not a whole number of frames ends in
//! one clean "truncated" error naming that frame (docs/testing.md, "Fuzzing").
#![no_main]

use libfuzzer_sys::fuzz_target;

/// (width, height, pixel format, bytes per frame in that format).
const LAYOUTS: &[(u32, u32, &str, usize)] = &[
    (1, 1, "rgb24", 3),
    (3, 2, "rgb24", 18),
    (4, 4, "gray", 16),
    (2, 2, "yuv420p", 6),
    (5, 3, "yuv420p", 27), // odd sides: chroma planes round up
    (4, 2, "nv12", 12),
    (3, 3, "bgr24", 27),
    (2, 1, "rgba", 8),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else { return };
    let (w, h, pix_fmt, frame_bytes) = LAYOUTS[pick as usize % LAYOUTS.len()];
    let fps = 25.0;
    let path = std::env::temp_dir().join(format!("coinfer-fuzz-raw-{}", std::process::id()));
    std::fs::write(&path, stream).expect("the fuzz temp file can be written");
    let opts = coinfer::source::OpenOptions {
        raw: Some(coinfer::source::RawVideo { width: w, height: h, pix_fmt: pix_fmt.into() }),
        fps: Some(fps),
        format: None,
    };
    let mut source = coinfer::source::open(&path, &opts).expect("a valid raw geometry opens");
    let whole = (stream.len() / frame_bytes) as u64;
    assert_eq!(source.info().frames, Some(whole));
    let mut frame = coinfer::source::Frame::default();
    let mut count = 0u64;
    let end = loop {
        match source.next_frame(&mut frame) {
            Ok(true) => {
                assert_eq!((frame.width, frame.height), (w, h));
                assert_eq!(frame.rgb.len(), (w * h * 3) as usize);
                assert_eq!(frame.index, count);
                assert_eq!(frame.pts, count as f64 / fps);
                count += 1;
            }
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert_eq!(count, whole, "every whole frame is returned");
    match end {
        Ok(()) => assert_eq!(stream.len() % frame_bytes, 0, "a torn last frame must not end quietly"),
        Err(e) => {
            assert_ne!(stream.len() % frame_bytes, 0, "only a torn frame is an error: {e:#}");
            assert_eq!(coinfer::error::kind_of(&e), coinfer::error::ErrorKind::Data);
            let msg = format!("{e:#}");
            assert!(msg.contains(&format!("frame {whole} is truncated")) && !msg.contains('\n'), "{msg}");
            // The end stays the end.
            assert!(!source.next_frame(&mut frame).expect("after the error, the end"));
        }
    }
});
