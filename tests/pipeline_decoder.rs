//! The decoder thread and its channel, with frame sources defined here: order and timestamps are
//! kept, errors arrive in place, and Ctrl-C ends the iteration even while the source blocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coinfer::models::{ModelSpec, Normalize};
use coinfer::pipeline::spawn_decoder;
use coinfer::source::{Frame, FrameSource, SourceInfo};

/// Grey 64x48 frames at 25 fps; after `count` frames it either ends, fails, or blocks.
struct Synthetic {
    info: SourceInfo,
    next: u64,
    count: u64,
    then: Then,
}

#[derive(Clone, Copy)]
enum Then {
    End,
    Fail,
    Block,
}

impl Synthetic {
    fn new(count: u64, then: Then) -> Box<Self> {
        let info = SourceInfo {
            width: 64,
            height: 48,
            fps: Some(25.0),
            frames: Some(count),
            duration: None,
            codec: "test".into(),
            container: "test".into(),
            is_stream: false,
        };
        Box::new(Synthetic { info, next: 0, count, then })
    }
}

impl FrameSource for Synthetic {
    fn info(&self) -> &SourceInfo {
        &self.info
    }
    fn next_frame(&mut self, frame: &mut Frame) -> anyhow::Result<bool> {
        if self.next == self.count {
            match self.then {
                Then::End => return Ok(false),
                Then::Fail => anyhow::bail!("frame {} is short", self.next),
                Then::Block => loop {
                    std::thread::sleep(Duration::from_secs(3600));
                },
            }
        }
        frame.index = self.next;
        frame.pts = self.next as f64 / 25.0;
        frame.width = 64;
        frame.height = 48;
        frame.rgb.clear();
        frame.rgb.resize(64 * 48 * 3, 128);
        self.next += 1;
        Ok(true)
    }
}

fn spec() -> ModelSpec {
    ModelSpec {
        name: "test".into(),
        fps: 25.0,
        resize_short: 48,
        crop: 32,
        normalize: Normalize::MeanStd { mean: [0.45; 3], std: [0.225; 3] },
        num_classes: 3,
    }
}

#[test]
fn frames_arrive_in_order_with_their_timestamps() {
    let stop = Arc::new(AtomicBool::new(false));
    let (packets, handle) = spawn_decoder(Synthetic::new(7, Then::End), &spec(), stop).unwrap();
    let got: Vec<_> = packets.map(|p| p.unwrap()).collect();
    assert_eq!(got.len(), 7);
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.frame, i as u64);
        assert!((p.pts - i as f64 / 25.0).abs() < 1e-12);
        assert_eq!(p.input.is_some(), p.steps > 0, "a tensor exactly when the frame feeds steps");
    }
    handle.join().unwrap();
}

#[test]
fn a_source_error_arrives_after_the_good_frames() {
    let stop = Arc::new(AtomicBool::new(false));
    let (packets, _handle) = spawn_decoder(Synthetic::new(3, Then::Fail), &spec(), stop).unwrap();
    let got: Vec<_> = packets.collect();
    assert_eq!(got.len(), 4);
    assert!(got[..3].iter().all(|p| p.is_ok()));
    assert!(got[3].as_ref().unwrap_err().to_string().contains("frame 3 is short"));
}

#[test]
fn stop_ends_the_packets_while_the_source_blocks() {
    let stop = Arc::new(AtomicBool::new(false));
    let (mut packets, _handle) = spawn_decoder(Synthetic::new(2, Then::Block), &spec(), stop.clone()).unwrap();
    assert!(packets.next().unwrap().is_ok());
    assert!(packets.next().unwrap().is_ok());
    // The source now blocks like a silent camera; Ctrl-C must still end the run promptly.
    let t0 = Instant::now();
    let s = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        s.store(true, Ordering::SeqCst);
    });
    assert!(packets.next().is_none());
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}
