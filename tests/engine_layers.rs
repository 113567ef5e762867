//! Layer-level equivalence of the continual engine against a naive direct 3-D convolution / pooling
//! written here from the definition (loops over every index), randomised over shapes, kernels,
//! paddings, strides, groups and fills (docs/continual.md, "Equivalence"). The whole file runs again
//! under each lower kernel level the CPU has (`COINFER_ISA`), so that every kernel path is checked.

use candle_core::{Device, Tensor};
use coinfer::engine::{
    Delay, Fill, Frame, Layer, PadMode, Parallel, PoolKind, Reduce, Scratch, Sequential, TemporalConv, TemporalPad, TemporalPool,
    forward_steps,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

mod common;

/// A clip as nested Vec, index [t][c][h][w].
type Clip = Vec<Vec<Vec<Vec<f32>>>>;

fn random_clip(rng: &mut StdRng, t: usize, c: usize, h: usize, w: usize) -> Clip {
    (0..t).map(|_| (0..c).map(|_| (0..h).map(|_| (0..w).map(|_| rng.random_range(-1.0..1.0)).collect()).collect()).collect()).collect()
}

fn to_tensor(x: &Clip) -> Tensor {
    let (t, c, h, w) = (x.len(), x[0].len(), x[0][0].len(), x[0][0][0].len());
    let flat: Vec<f32> = x.iter().flatten().flatten().flatten().copied().collect();
    Tensor::from_vec(flat, (t, c, h, w), &Device::Cpu).unwrap()
}

fn from_tensor(x: &Tensor) -> Clip {
    let (t, c, h, w) = x.dims4().unwrap();
    let v: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    (0..t).map(|a| (0..c).map(|b| (0..h).map(|y| (0..w).map(|z| v[((a * c + b) * h + y) * w + z]).collect()).collect()).collect()).collect()
}

/// Pad time with `before`/`after` frames: zeros or edge copies (`None` = −∞ for max pooling).
fn pad_clip(x: &Clip, before: usize, after: usize, fill: Option<Fill>) -> Vec<Option<Vec<Vec<Vec<f32>>>>> {
    let n = x.len();
    let mut out = Vec::new();
    for t in -(before as i64)..(n + after) as i64 {
        let frame = if t >= 0 && (t as usize) < n {
            Some(x[t as usize].clone())
        } else {
            match fill {
                Some(Fill::Zeros) => Some(x[0].iter().map(|p| p.iter().map(|r| vec![0.0; r.len()]).collect()).collect()),
                Some(Fill::Replicate) => Some(x[if t < 0 { 0 } else { n - 1 }].clone()),
                None => None,
            }
        };
        out.push(frame);
    }
    out
}

struct ConvCase {
    c_in: usize,
    c_out: usize,
    groups: usize,
    k: usize,
    s: usize,
    kh: usize,
    sh: usize,
    ph: [usize; 4],
}

/// Direct 3-D convolution of an already time-padded sequence (zero spatial padding).
fn naive_conv(xp: &[Option<Vec<Vec<Vec<f32>>>>], wt: &[f32], bias: &[f32], cs: &ConvCase) -> Clip {
    let (c_in, c_out, g, k, s, kh, sh) = (cs.c_in, cs.c_out, cs.groups, cs.k, cs.s, cs.kh, cs.sh);
    let [pt, pb, pl, pr] = cs.ph;
    let first = xp[0].as_ref().unwrap();
    let (h, w) = (first[0].len(), first[0][0].len());
    let (oh, ow) = ((h + pt + pb - kh) / sh + 1, (w + pl + pr - kh) / sh + 1);
    let n_out = (xp.len() - k) / s + 1;
    let cig = c_in / g;
    let cog = c_out / g;
    (0..n_out)
        .map(|j| {
            (0..c_out)
                .map(|o| {
                    let grp = o / cog;
                    (0..oh)
                        .map(|y| {
                            (0..ow)
                                .map(|x| {
                                    let mut acc = bias[o] as f64;
                                    for i in 0..k {
                                        let frame = xp[j * s + i].as_ref().unwrap();
                                        for ci in 0..cig {
                                            for a in 0..kh {
                                                for b in 0..kh {
                                                    let iy = (y * sh + a) as i64 - pt as i64;
                                                    let ix = (x * sh + b) as i64 - pl as i64;
                                                    if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                                        continue;
                                                    }
                                                    let wv = wt[(((o * cig + ci) * k + i) * kh + a) * kh + b];
                                                    acc += wv as f64 * frame[grp * cig + ci][iy as usize][ix as usize] as f64;
                                                }
                                            }
                                        }
                                    }
                                    acc as f32
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn assert_close(a: &Clip, b: &Clip, tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: frame count");
    let mut worst = 0f32;
    for (fa, fb) in a.iter().zip(b) {
        for (pa, pb) in fa.iter().zip(fb) {
            assert_eq!(pa.len(), pb.len(), "{what}: height");
            for (ra, rb) in pa.iter().zip(pb) {
                assert_eq!(ra.len(), rb.len(), "{what}: width");
                for (va, vb) in ra.iter().zip(rb) {
                    worst = worst.max((va - vb).abs());
                }
            }
        }
    }
    assert!(worst <= tol, "{what}: max |diff| {worst} > {tol}");
}

fn steps(layer: &mut dyn Layer, x: &Tensor) -> (Vec<usize>, Vec<Tensor>) {
    let mut at = Vec::new();
    let mut outs = Vec::new();
    for t in 0..x.dim(0).unwrap() {
        if let Some(y) = layer.step(&x.narrow(0, t, 1).unwrap()).unwrap() {
            at.push(t);
            outs.push(y);
        }
    }
    (at, outs)
}

fn cat(outs: &[Tensor]) -> Clip {
    from_tensor(&Tensor::cat(outs, 0).unwrap())
}

#[test]
fn continual_conv_matches_direct_convolution() {
    let mut rng = StdRng::seed_from_u64(7);
    // (k, p_b, p_a, s) from the specs' test lists, plus random ones.
    let mut cases =
        vec![(5, 2, 2, 1), (3, 1, 1, 1), (7, 3, 3, 4), (3, 0, 0, 1), (1, 0, 0, 1), (7, 2, 3, 2), (3, 0, 1, 2), (2, 0, 0, 2), (2, 0, 0, 1)];
    for _ in 0..6 {
        let k = rng.random_range(1..6);
        let s = rng.random_range(1..4);
        let pb = rng.random_range(0..k);
        cases.push((k, pb, rng.random_range(0..k), s));
    }
    for (case_no, &(k, pb, pa, s)) in cases.iter().enumerate() {
        for fill in [Fill::Zeros, Fill::Replicate] {
            let depthwise = case_no % 2 == 0;
            // Some cases wide enough for the 16-channel blocks of the channels-last kernels.
            let c_in = if case_no % 4 >= 2 { rng.random_range(16..24) } else { rng.random_range(2..5) };
            let (c_out, groups) = if depthwise { (c_in, c_in) } else { (rng.random_range(1..5), 1) };
            let kh = [3, 1, 3][case_no % 3];
            let sh = if kh == 3 && case_no % 3 == 0 { 2 } else { 1 };
            let ph = if kh == 3 { [1, case_no % 2, case_no % 2, 1] } else { [0; 4] };
            let cs = ConvCase { c_in, c_out, groups, k, s, kh, sh, ph };
            let n = rng.random_range(k.max(6)..14);
            let (h, w) = (rng.random_range(3..7), rng.random_range(3..7));
            let x = random_clip(&mut rng, n, c_in, h, w);
            let wt: Vec<f32> = (0..c_out * (c_in / groups) * k * kh * kh).map(|_| rng.random_range(-1.0..1.0)).collect();
            let bias: Vec<f32> = (0..c_out).map(|_| rng.random_range(-1.0..1.0)).collect();
            let wt_t = Tensor::from_vec(wt.clone(), (c_out, c_in / groups, k, kh, kh), &Device::Cpu).unwrap();
            let b_t = Tensor::from_vec(bias.clone(), c_out, &Device::Cpu).unwrap();
            let pad = TemporalPad::Fixed { before: pb, after: pa };
            let mut conv = TemporalConv::new("c", &wt_t, Some(&b_t), s, pad, sh, ph, groups, fill).unwrap();
            let what = format!("k={k} pb={pb} pa={pa} s={s} dw={depthwise} {fill:?}");
            let xt = to_tensor(&x);

            // Clip path = direct conv over the padded clip.
            let full = naive_conv(&pad_clip(&x, pb, pa, Some(fill)), &wt, &bias, &cs);
            assert_close(&from_tensor(&conv.forward(&xt, PadMode::Full).unwrap()), &full, 1e-4, &what);

            // Step path = direct conv over the start-padded stream, emitted at steps d, d+s, ...
            let (at, outs) = steps(&mut conv, &xt);
            let d = k - 1 - pb;
            let expect_at: Vec<usize> = (0..).map(|j| d + j * s).take_while(|&t| t < n).collect();
            assert_eq!(at, expect_at, "{what}: emission steps");
            let prefix = naive_conv(&pad_clip(&x, pb, 0, Some(fill)), &wt, &bias, &cs);
            assert_close(&cat(&outs), &prefix, 1e-4, &what);

            // One-clip flush = the clip path.
            let mut all = outs.clone();
            all.extend(conv.flush().unwrap());
            assert_close(&cat(&all), &full, 1e-4, &format!("{what} flush"));

            // reset starts a new stream.
            conv.reset();
            let (at2, outs2) = steps(&mut conv, &xt);
            assert_eq!(at2, at);
            assert_close(&cat(&outs2), &prefix, 1e-4, &format!("{what} after reset"));
            assert_eq!(conv.temporal().delay(), d);
        }
    }
}

/// Direct temporal pool (after the identity spatial pool) of a padded sequence; `None` frames are −∞.
fn naive_pool(xp: &[Option<Vec<Vec<Vec<f32>>>>], k: usize, s: usize, kind: PoolKind) -> Clip {
    let first = xp.iter().flatten().next().unwrap();
    let (c, h, w) = (first.len(), first[0].len(), first[0][0].len());
    let n_out = (xp.len() - k) / s + 1;
    (0..n_out)
        .map(|j| {
            (0..c)
                .map(|ch| {
                    (0..h)
                        .map(|y| {
                            (0..w)
                                .map(|x| {
                                    let vals = (0..k).filter_map(|i| xp[j * s + i].as_ref().map(|f| f[ch][y][x]));
                                    match kind {
                                        PoolKind::Max => vals.fold(f32::NEG_INFINITY, f32::max),
                                        PoolKind::Avg => vals.sum::<f32>() / k as f32,
                                    }
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

#[test]
fn continual_pool_matches_direct_pooling() {
    let mut rng = StdRng::seed_from_u64(11);
    for &(k, pb, pa, s) in &[(3, 1, 1, 1), (3, 0, 1, 2), (2, 0, 0, 2), (2, 0, 0, 1), (3, 1, 1, 2), (4, 0, 0, 1), (5, 2, 2, 3)] {
        for kind in [PoolKind::Max, PoolKind::Avg] {
            for fill in [Fill::Zeros, Fill::Replicate] {
                let what = format!("{kind:?} k={k} pb={pb} pa={pa} s={s} {fill:?}");
                let n = rng.random_range(6..13);
                let x = random_clip(&mut rng, n, 3, 2, 3);
                let xt = to_tensor(&x);
                let pad = TemporalPad::Fixed { before: pb, after: pa };
                let mut pool = TemporalPool::new("p", kind, k, s, pad, None, fill).unwrap();
                // Max pools pad with −∞ in both fills' clip path; replicate only changes the stream start.
                let clip_fill = match (kind, fill) {
                    (PoolKind::Max, _) => None,
                    (PoolKind::Avg, f) => Some(f),
                };
                let full = naive_pool(&pad_clip(&x, pb, pa, clip_fill), k, s, kind);
                assert_close(&from_tensor(&pool.forward(&xt, PadMode::Full).unwrap()), &full, 1e-5, &what);
                let (at, outs) = steps(&mut pool, &xt);
                let d = k - 1 - pb;
                let expect_at: Vec<usize> = (0..).map(|j| d + j * s).take_while(|&t| t < n).collect();
                assert_eq!(at, expect_at, "{what}: emission steps");
                let stream_fill = match (kind, fill) {
                    (PoolKind::Max, Fill::Zeros) => None,
                    (_, f) => Some(f),
                };
                let prefix = naive_pool(&pad_clip(&x, pb, 0, stream_fill), k, s, kind);
                assert_close(&cat(&outs), &prefix, 1e-5, &what);
                let mut all = outs;
                all.extend(pool.flush().unwrap());
                if fill == Fill::Zeros || kind == PoolKind::Max {
                    assert_close(&cat(&all), &full, 1e-5, &format!("{what} flush"));
                }
            }
        }
    }
}

#[test]
fn delay_emits_past_frames_and_drains_on_flush() {
    let mut rng = StdRng::seed_from_u64(3);
    let x = random_clip(&mut rng, 6, 2, 2, 2);
    let xt = to_tensor(&x);
    let mut d = Delay::new(2);
    let (at, outs) = steps(&mut d, &xt);
    assert_eq!(at, vec![2, 3, 4, 5]);
    assert_close(&cat(&outs), &x[0..4].to_vec(), 0.0, "delay");
    let rest = d.flush().unwrap();
    assert_close(&cat(&rest), &x[4..6].to_vec(), 0.0, "delay flush");
}

/// A residual block (k=3 conv main branch, identity shortcut) and a strided two-branch concat:
/// the parallel container aligns delays itself, streams equal the clip path, and the valid path equals
/// the steady state.
#[test]
fn parallel_branches_are_aligned_by_delay() {
    let mut rng = StdRng::seed_from_u64(5);
    let c = 3;
    let w3 = Tensor::randn(0f32, 1.0, (c, c, 3, 3, 3), &Device::Cpu).unwrap();
    let w1 = Tensor::randn(0f32, 1.0, (c, c, 1, 1, 1), &Device::Cpu).unwrap();
    let main = TemporalConv::new("main", &w3, None, 1, TemporalPad::symmetric(1), 1, [1; 4], 1, Fill::Zeros).unwrap();
    let short = TemporalConv::pointwise("short", &w1, None).unwrap();
    let mut block = Parallel::new("res", vec![Box::new(short), Box::new(main)], Reduce::Sum).unwrap();
    assert_eq!(block.temporal().delay(), 1);
    assert_eq!(block.temporal().receptive_field, 3);

    let n = 10;
    let x = random_clip(&mut rng, n, c, 4, 4);
    let xt = to_tensor(&x);
    let full = block.forward(&xt, PadMode::Full).unwrap();
    let flushed = forward_steps(&mut block, &xt, true).unwrap().unwrap();
    assert_close(&from_tensor(&flushed), &from_tensor(&full), 1e-4, "residual flush");

    block.reset();
    let (at, outs) = steps(&mut block, &xt);
    assert_eq!(at, (1..n).collect::<Vec<_>>());
    let start = block.forward(&xt, PadMode::StartOnly).unwrap();
    assert_close(&cat(&outs), &from_tensor(&start), 1e-4, "residual prefix");
    // Steady state: every output from step R-1 = 2 on equals the valid path.
    let valid = block.forward(&xt, PadMode::Valid).unwrap();
    assert_eq!(valid.dim(0).unwrap(), n - 2);
    assert_close(&cat(&outs[1..]), &from_tensor(&valid), 1e-4, "residual valid");

    // Strided sequence: conv k=3 s=2 p=(1,1) then a concat of a pointwise branch and a k=3 pool.
    let down = TemporalConv::new("down", &w3, None, 2, TemporalPad::symmetric(1), 1, [1; 4], 1, Fill::Zeros).unwrap();
    let pool = TemporalPool::new("pool", PoolKind::Max, 3, 1, TemporalPad::symmetric(1), None, Fill::Zeros).unwrap();
    let branch = TemporalConv::pointwise("b0", &w1, None).unwrap();
    let mixed = Parallel::new("mixed", vec![Box::new(branch), Box::new(pool)], Reduce::Concat).unwrap();
    let mut net = Sequential::new("net", vec![Box::new(down), Box::new(mixed)]);
    let t = net.temporal();
    assert_eq!((t.receptive_field, t.padding, t.stride, t.delay()), (7, 3, 2, 3));
    let n = 12;
    let x = random_clip(&mut rng, n, c, 3, 3);
    let xt = to_tensor(&x);
    let full = net.forward(&xt, PadMode::Full).unwrap();
    let flushed = forward_steps(&mut net, &xt, true).unwrap().unwrap();
    assert_close(&from_tensor(&flushed), &from_tensor(&full), 1e-4, "strided flush");
    net.reset();
    let (at, _) = steps(&mut net, &xt);
    assert_eq!(at, vec![3, 5, 7, 9, 11]);
}

/// Priming (a warm-up on a still frame) leaves layers exactly where stepping that frame `n` times
/// does: the same number of outputs, the same last output, bit-identical outputs afterwards. Dense
/// (partial sums, strided) and depthwise (frame window) convs, a strided pool, a delayed residual.
#[test]
fn priming_equals_stepping_for_every_window_layer() {
    use coinfer::engine::{Frame, Pointwise};
    let mut rng = StdRng::seed_from_u64(23);
    let c = 18;
    let mut rand_t = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        Tensor::from_vec((0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
    };
    let (wd, bd, ww, bw) = (rand_t(&[c, c, 3, 3, 3]), rand_t(&[c]), rand_t(&[c, 1, 3, 3, 3]), rand_t(&[c]));
    let frames: Vec<Frame> = (0..6).map(|_| Frame::from_tensor(&rand_t(&[1, c, 6, 5])).unwrap()).collect();
    let build = |with_pool: bool| -> Sequential {
        let dense =
            TemporalConv::new("dense", &wd, Some(&bd), 2, TemporalPad::Fixed { before: 1, after: 1 }, 1, [1; 4], 1, Fill::Replicate)
                .unwrap();
        let dw =
            TemporalConv::new("dw", &ww, Some(&bw), 1, TemporalPad::Fixed { before: 1, after: 1 }, 1, [1; 4], c, Fill::Replicate).unwrap();
        let block = Sequential::new("block", vec![Box::new(dw), Box::new(Pointwise::relu())]);
        let residual = Parallel::new("res", vec![Box::new(Sequential::new("id", vec![])), Box::new(block)], Reduce::Sum).unwrap();
        let pool =
            TemporalPool::new("pool", PoolKind::Avg, 2, 2, TemporalPad::Fixed { before: 0, after: 0 }, None, Fill::Replicate).unwrap();
        let mut layers: Vec<Box<dyn Layer>> = vec![Box::new(dense), Box::new(Pointwise::relu()), Box::new(residual)];
        if with_pool {
            layers.push(Box::new(pool));
        }
        Sequential::new("net", layers)
    };
    for (n, with_pool) in [1, 3, 9, 20, 41].into_iter().flat_map(|n| [(n, false), (n, true)]) {
        let (mut stepped, mut primed) = (build(with_pool), build(with_pool));
        let mut count = 0;
        let (mut last, mut last_emitted) = (None, None);
        for _ in 0..n {
            last = stepped.step_frame(frames[0].as_ref()).unwrap().map(|y| y.to_frame().data);
            count += last.is_some() as usize;
            last_emitted = last.clone().or(last_emitted);
        }
        let p = primed.prime(frames[0].as_ref(), n).unwrap();
        let py = p.output.map(|y| y.to_frame().data);
        assert_eq!(p.emitted, count, "n={n}: outputs while priming");
        assert_eq!(p.last_step, last.is_some(), "n={n}: whether the last step emitted");
        // The primed result is the last output emitted (the last step's, when that step emitted;
        // every output is the same on a replicate-filled start).
        assert_eq!(py, last_emitted, "n={n}: the primed result is the last output emitted");
        let stepped_again = stepped.step_frame(frames[0].as_ref()).unwrap().map(|y| y.to_frame().data);
        let primed_again = primed.step_frame(frames[0].as_ref()).unwrap().map(|y| y.to_frame().data);
        assert_eq!(stepped_again, primed_again, "n={n}: one more copy");
        for t in 1..14 {
            let a = stepped.step_frame(frames[t % 6].as_ref()).unwrap().map(|y| y.to_frame().data);
            let b = primed.step_frame(frames[t % 6].as_ref()).unwrap().map(|y| y.to_frame().data);
            assert_eq!(a, b, "n={n}, step {t} after priming");
        }
    }
}

/// Depthwise convs lending their outputs from a scratch slot give the same outputs as with their own
/// buffers when the next layer consumes them; two consecutive layers on one slot, an output passed
/// on by the next layer, or a lent output that nobody released are refused (a step error), not a
/// use-after-free.
#[test]
fn scratch_outputs_are_checked() {
    let mut rng = StdRng::seed_from_u64(29);
    let c = 20;
    let mut rand_t = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        Tensor::from_vec((0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
    };
    let (ww, bw, wp) = (rand_t(&[c, 1, 3, 3, 3]), rand_t(&[c]), rand_t(&[c, c, 1, 1, 1]));
    let frames: Vec<Frame> = (0..5).map(|_| Frame::from_tensor(&rand_t(&[1, c, 7, 6])).unwrap()).collect();
    let dw = |slot: Option<Scratch>| {
        let conv = TemporalConv::new("dw", &ww, Some(&bw), 1, TemporalPad::symmetric(1), 1, [1; 4], c, Fill::Replicate).unwrap();
        match slot {
            Some(slot) => conv.with_scratch_output(slot),
            None => conv,
        }
    };
    let pw = || TemporalConv::pointwise("pw", &wp, None).unwrap();
    let run = |net: &mut Sequential| -> Result<Vec<Option<Vec<f32>>>, String> {
        (0..12).map(|t| net.step_frame(frames[t % 5].as_ref()).map(|y| y.map(|y| y.data.to_vec())).map_err(|e| e.to_string())).collect()
    };

    let mut own = Sequential::new("own", vec![Box::new(dw(None)), Box::new(pw())]);
    let mut lent = Sequential::new("lent", vec![Box::new(dw(Some(Scratch::Depthwise))), Box::new(pw())]);
    let want = run(&mut own).unwrap();
    assert_eq!(run(&mut lent).unwrap(), want, "scratch outputs consumed by the next layer");
    // Two such chains one after the other share the slot, each releasing it.
    let mut twice = Sequential::new(
        "twice",
        vec![
            Box::new(Sequential::new("a", vec![Box::new(dw(Some(Scratch::Depthwise))), Box::new(pw())])),
            Box::new(Sequential::new("b", vec![Box::new(dw(Some(Scratch::Depthwise))), Box::new(pw())])),
        ],
    );
    assert!(run(&mut twice).is_ok());

    let mut consecutive =
        Sequential::new("consecutive", vec![Box::new(dw(Some(Scratch::Depthwise))), Box::new(dw(Some(Scratch::Depthwise)))]);
    let e = run(&mut consecutive).unwrap_err();
    assert!(e.contains("still in use"), "{e}");
    drop(consecutive);

    let mut passed_on = Sequential::new("passed on", vec![Box::new(dw(Some(Scratch::Depthwise))), Box::new(Sequential::new("id", vec![]))]);
    let e = run(&mut passed_on).unwrap_err();
    assert!(e.contains("passed"), "{e}");
    drop(passed_on);

    // A lent output nobody released (the conv stepped on its own) keeps the slot from others, until
    // the conv goes away.
    let mut alone = dw(Some(Scratch::Depthwise));
    for frame in &frames[..3] {
        alone.step_frame(frame.as_ref()).unwrap();
    }
    assert!(run(&mut Sequential::new("other", vec![Box::new(dw(Some(Scratch::Depthwise))), Box::new(pw())])).is_err());
    drop(alone);
    assert_eq!(run(&mut Sequential::new("other", vec![Box::new(dw(Some(Scratch::Depthwise))), Box::new(pw())])).unwrap(), want);
}

/// This file's tests again under every kernel level below the one this process runs.
#[test]
fn every_test_passes_on_every_lower_kernel_level() {
    common::levels::rerun_on_lower_kernel_levels(&["--skip", "every_test_passes_on_every_lower_kernel_level", "--test-threads", "2"], 6);
}
