//! Continual 3-D convolution: a temporal kernel of `k` spatial convolutions (taps) over the same weights
//! in clip and step form. In step form, the partial sums of pending outputs are accumulated tap by tap
//! (docs/continual.md, "Pending sums") and the (folded) bias is added once at emission.

use candle_core::{DType, Result, Tensor, bail};

use crate::engine::clip::{SpatialConv, pad_time, strided_frames};
use crate::engine::kernels::channels::add_rows;
use crate::engine::kernels::gemm::{self, Rows, Store, Weight};
use crate::engine::kernels::lanes::{B as BLOCK, blocked_len, to_blocked};
use crate::engine::kernels::{Activation, Pad2d, Window};
use crate::engine::stream::priming::fill_pending;
use crate::engine::stream::{
    Emission, Fill, Frame, FrameRef, InputSlot, Lender, PendingSums, PrimeSchedule, Scratch, ScratchOutput, StreamPosition, TemporalPad,
};
use crate::engine::threads::ops::{self, matmul, matmul_into};
use crate::engine::threads::split::{pass_work, split_rows};
use crate::engine::{Chw, Fusion, Layer, LayerReport, PadMode, Primed, Temporal, prime_by_stepping};

#[derive(Debug, Clone)]
pub struct TemporalConv {
    name: String,
    /// Tap `i` multiplies input `j·s − p_b + i` of output `j` (tap 0 = oldest frame).
    taps: Vec<SpatialConv>,
    /// `(1, C_out, 1, 1)`.
    bias: Option<Tensor>,
    stride: usize,
    pad: TemporalPad,
    fill: Fill,
    /// The bias is a folded BatchNorm (for FLOP conventions that count BN separately).
    folded_bn: bool,
    /// The step form, built on the first step (a network used only for clips never pays for it).
    step: Option<ConvStep>,
    /// Activation fused from the layer after (applied by the step form).
    act: Option<Activation>,
    /// A frame window's step outputs go to this thread's shared buffer (see [`ScratchOutput`]).
    scratch: Option<ScratchOutput>,
}

/// The step form: the same weights laid out for channels-last frames, the pending outputs' partial
/// sums and the scratch buffers, all reused from step to step.
#[derive(Debug, Clone)]
struct ConvStep {
    kind: StepKind,
    window: Window,
    c_in: usize,
    /// Per output channel (zeros when the conv has none), added once to each output.
    bias: Vec<f32>,
    emission: Emission,
    pending: PendingSums,
    position: StreamPosition,
    /// Spatial size of the last input (for the end padding of a flush).
    in_hw: (usize, usize),
    /// im2col scratch of the current frame.
    cols: Vec<f32>,
    /// Output scratch of a stateless (k = 1) conv.
    out: Vec<f32>,
    /// Applied to every output (fused from the layer after).
    act: Option<Activation>,
    /// Depthwise convs keep their last k input frames instead of partial sums (see [`FrameWindow`]).
    frames: Option<FrameWindow>,
}

/// Longest temporal kernel a depthwise conv keeps as a frame window.
const MAX_WINDOW: usize = 8;

/// The step form of a depthwise conv: the last `k` input frames. An output is computed once, when
/// its newest frame arrives, from all its frames in one pass (every tap of a channel block in
/// registers). Partial sums would cost `k` read-modify-write passes over pending outputs per step;
/// this writes each output once, and the frames kept double as the replicate fill's edge frame.
/// Same outputs on the same steps, the same multiply-adds per step.
///
/// Frames are kept with the conv's spatial zero padding around them (written once; a new frame
/// overwrites the interior only), so that every output pixel runs the kernel's fast interior path;
/// and, where the CPU has the kernel for it, in 16-channel blocks ([`Window::depthwise_blocked_rows`]).
#[derive(Debug, Clone, Default)]
struct FrameWindow {
    /// Input `t` lives in slot `t mod k`, padded.
    frames: Vec<Vec<f32>>,
    /// Frames are kept in 16-channel blocks.
    blocked: bool,
    seen: usize,
    /// Where outputs go, unless the conv lends them from a scratch slot.
    out: Vec<f32>,
}

impl FrameWindow {
    fn new(k: usize, window: &Window) -> Self {
        let blocked = Window { pad: [0; 4], ..*window }.has_blocked_kernel();
        FrameWindow { frames: vec![Vec::new(); k], blocked, ..Default::default() }
    }

    /// The slot of input `t` (`in_hw`, `c` channels), padding included and zero: the interior
    /// starts at `offset`, rows `row_stride` apart (channels-last: `(top · pw + left) · c` and
    /// `pw · c`; in blocks, the same with 16 for `c`, and blocks a padded frame apart).
    fn slot(&mut self, t: usize, (h, w): (usize, usize), c: usize, window: &Window) -> InputSlot<'_> {
        let [top, bottom, left, right] = window.pad;
        let (ph, pw) = (h + top + bottom, w + left + right);
        let k = self.frames.len();
        let slot = &mut self.frames[t % k];
        let (len, px, plane) = if self.blocked { (blocked_len(ph, pw, c), BLOCK, ph * pw * BLOCK) } else { (ph * pw * c, c, 0) };
        if slot.len() != len {
            slot.clear();
            slot.resize(len, 0.0);
        }
        InputSlot { data: slot, offset: (top * pw + left) * px, row_stride: pw * px, plane, shape: Chw::new(c, h, w) }
    }

    /// Keep input `t` (`in_hw`, `c` channels, channels-last) in its slot, inside the padding of
    /// `window`.
    fn store(&mut self, t: usize, x: &[f32], (h, w): (usize, usize), c: usize, window: &Window) {
        let slot = self.slot(t, (h, w), c, window);
        let (offset, row_stride, plane) = (slot.offset, slot.row_stride, slot.plane);
        if plane > 0 {
            return to_blocked(x, (h, w), c, &mut slot.data[offset..], plane, row_stride);
        }
        // Row by row into the interior, the rows shared by the step's threads.
        let [top, _, left, _] = window.pad;
        let interior = &mut slot.data[top * row_stride..(top + h) * row_stride];
        split_rows(interior, row_stride, h, pass_work(h * w * c, None), |rows_out, rows| {
            for (dst, src) in rows_out.chunks_exact_mut(row_stride).zip(x[rows.start * w * c..rows.end * w * c].chunks_exact(w * c)) {
                dst[left * c..][..w * c].copy_from_slice(src);
            }
        });
    }

    /// Compute output `j`: the bias plus every tap whose input is a frame (`frame_of` maps an input
    /// index to a kept frame, or `None` for zero padding), then `act`; the `len` values written, in
    /// `out` or lent from `scratch`.
    ///
    /// # Safety
    /// The result must not outlive the caller's mutable borrow of the conv that owns `scratch`
    /// ([`ScratchOutput::lend`]).
    #[allow(clippy::too_many_arguments)]
    unsafe fn output(
        &mut self,
        scratch: Option<&ScratchOutput>,
        j: usize,
        st_kind: &StepKind,
        window: &Window,
        bias: &[f32],
        act: Option<Activation>,
        (k, s, p_b): (usize, usize, usize),
        (h, w): (usize, usize),
        c: usize,
        len: usize,
        frame_of: impl Fn(i64) -> Option<usize>,
    ) -> Result<&[f32]> {
        let StepKind::Depthwise { taps } = st_kind else { unreachable!("frame windows are depthwise") };
        let mut terms: [(&[f32], &[f32]); MAX_WINDOW] = [(&[], &[]); MAX_WINDOW];
        let mut n = 0;
        for (tap, weight) in taps.iter().enumerate().take(k) {
            let t = (j * s + tap) as i64 - p_b as i64;
            if let Some(slot) = frame_of(t) {
                terms[n] = (&self.frames[slot], weight);
                n += 1;
            }
        }
        let out: &mut [f32] = match scratch {
            // SAFETY: the caller ties the result to its borrow of the conv.
            Some(scratch) => unsafe { scratch.lend(len)? },
            None => {
                self.out.resize(len, 0.0);
                &mut self.out
            }
        };
        let [top, bottom, left, right] = window.pad;
        let valid = Window { pad: [0; 4], ..*window };
        let (ph, pw) = (h + top + bottom, w + left + right);
        if self.blocked {
            ops::depthwise_sum_blocked(&valid, &terms[..n], Some(bias), act, ph, pw, c, out);
        } else {
            ops::depthwise_sum(&valid, &terms[..n], Some(bias), act, ph, pw, c, out);
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
enum StepKind {
    /// Per tap the weight as `(kh·kw·C_in, C_out)`, rows tap-major like [`Window::im2col`]; `direct`:
    /// a 1×1 stride-1 conv, whose matrix is the frame itself.
    Matmul { taps: Vec<Weight>, direct: bool },
    /// Per tap the weight as `(kh, kw, C)`.
    Depthwise { taps: Vec<Vec<f32>> },
}

impl ConvStep {
    fn new(taps: &[SpatialConv], bias: Option<&Tensor>, k: usize, stride: usize, p_b: usize) -> Result<Self> {
        let first = &taps[0];
        let (c_in, c_out) = (first.c_in(), first.c_out());
        let (kh, kw) = first.kernel();
        let window = Window { kh, kw, stride: first.stride(), pad: first.pad() };
        let weights = taps.iter().map(|t| t.weight().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()).collect::<Result<Vec<_>>>()?;
        let kind = if first.groups() == 1 {
            // (C_out, C_in, kh, kw) → ((ky·kw + kx)·C_in + ci, co)
            let taps = weights
                .iter()
                .map(|w| {
                    let mut m = vec![0f32; kh * kw * c_in * c_out];
                    for co in 0..c_out {
                        for ci in 0..c_in {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    m[((ky * kw + kx) * c_in + ci) * c_out + co] = w[((co * c_in + ci) * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                    Weight::new(kh * kw * c_in, c_out, &m)
                })
                .collect();
            let direct = kh == 1 && kw == 1 && window.stride == 1 && window.pad == [0; 4];
            StepKind::Matmul { taps, direct }
        } else if first.groups() == c_out && c_in == c_out {
            // (C, 1, kh, kw) → ((ky·kw + kx)·C + c)
            let taps = weights
                .iter()
                .map(|w| {
                    let mut m = vec![0f32; kh * kw * c_out];
                    for c in 0..c_out {
                        for i in 0..kh * kw {
                            m[i * c_out + c] = w[c * kh * kw + i];
                        }
                    }
                    m
                })
                .collect();
            StepKind::Depthwise { taps }
        } else {
            bail!("grouped convolutions other than depthwise have no step form");
        };
        let bias = match bias {
            Some(b) => b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0.0; c_out],
        };
        Ok(ConvStep {
            kind,
            window,
            c_in,
            bias,
            emission: Emission::new(k, stride, p_b),
            pending: PendingSums::default(),
            position: StreamPosition::default(),
            in_hw: (0, 0),
            cols: Vec::new(),
            out: Vec::new(),
            act: None,
            frames: None,
        })
    }

    /// Finish the output collected in slot `i` (zeros if it received no term) and lend it out.
    fn complete(&mut self, i: usize) -> &mut [f32] {
        if !self.pending.started(i) {
            self.pending.term(i).0.fill(0.0);
        }
        let y = self.pending.release(i);
        Self::finish(&self.bias, self.act, y);
        y
    }

    /// Work shared by all taps of a frame: its im2col matrix.
    fn prepare(&mut self, x: &[f32], (h, w): (usize, usize)) {
        if let StepKind::Matmul { direct: false, .. } = self.kind {
            ops::im2col(&self.window, x, h, w, self.c_in, &mut self.cols);
        }
    }

    /// A stateless product (`StepKind::Matmul`) of the prepared input `x`: `act(x·W + bias +
    /// residual)` for the `m` output pixels, finished in the GEMM's store, into `out` laid out as
    /// `layout`.
    fn product(&self, x: &[f32], m: usize, residual: Option<&[f32]>, act: Option<Activation>, out: &mut [f32], layout: Rows) {
        let StepKind::Matmul { taps, direct } = &self.kind else { unreachable!("products are dense convs") };
        let lhs = if *direct { x } else { &self.cols };
        matmul_into(m, lhs, &taps[0], out, layout, Store::Finish { bias: &self.bias, residual, act });
    }

    /// [`Self::product`] into the step's own output buffer.
    fn product_out(&mut self, x: &[f32], shape: Chw, residual: Option<&[f32]>, act: Option<Activation>) {
        let mut out = std::mem::take(&mut self.out);
        out.resize(shape.numel(), 0.0);
        self.product(x, shape.h * shape.w, residual, act, &mut out, Rows::DENSE);
        self.out = out;
    }

    /// Complete an output: the bias, then the fused activation, in one pass over the frame.
    fn finish(bias: &[f32], act: Option<Activation>, out: &mut [f32]) {
        let c = bias.len().max(1);
        let pixels = out.len() / c;
        split_rows(out, c, pixels, pass_work(out.len(), act), |out, _| {
            add_rows(out, bias);
            if let Some(act) = act {
                act.apply(out);
            }
        });
    }
}

/// Tap `tap`'s term of frame `x` (`h × w`) added into `out`, or written over it when not
/// `accumulate`; `cols` is the frame's im2col (if used).
#[allow(clippy::too_many_arguments)]
fn add_term(
    kind: &StepKind,
    window: &Window,
    cols: &[f32],
    x: &[f32],
    (h, w): (usize, usize),
    c_in: usize,
    tap: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    let (oh, ow) = window.output_hw(h, w);
    match kind {
        StepKind::Matmul { taps, direct } => {
            let lhs = if *direct { x } else { cols };
            matmul(oh * ow, lhs, &taps[tap], out, if accumulate { Store::Accumulate } else { Store::Overwrite });
        }
        StepKind::Depthwise { taps } => {
            if !accumulate {
                out.fill(0.0);
            }
            ops::depthwise_acc(window, x, h, w, c_in, &taps[tap], out)
        }
    }
}

impl TemporalConv {
    /// `weight`: `(C_out, C_in/groups, k_t, k_h, k_w)`; `bias`: `(C_out,)`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: impl Into<String>,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        pad: TemporalPad,
        spatial_stride: usize,
        spatial_pad: Pad2d,
        groups: usize,
        fill: Fill,
    ) -> Result<Self> {
        let (c_out, _, k, _, _) = weight.dims5()?;
        if stride == 0 || k == 0 {
            bail!("temporal kernel and stride must be positive");
        }
        let taps = (0..k)
            .map(|i| {
                let w = weight.narrow(2, i, 1)?.squeeze(2)?;
                SpatialConv::new(w, spatial_stride, spatial_pad, groups)
            })
            .collect::<Result<Vec<_>>>()?;
        let (c_in, c_out_g) = (taps[0].c_in(), taps[0].c_out());
        if groups != 1 && !(groups == c_out_g && c_in == c_out_g) {
            bail!("grouped convolutions other than depthwise have no step form");
        }
        let bias = bias.map(|b| b.reshape((1, c_out, 1, 1))).transpose()?;
        Ok(TemporalConv { name: name.into(), taps, bias, stride, pad, fill, folded_bn: false, step: None, act: None, scratch: None })
    }

    /// A temporally pointwise (k = 1) convolution.
    pub fn pointwise(name: impl Into<String>, weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let w = if weight.rank() == 2 {
            let (o, i) = weight.dims2()?;
            weight.reshape((o, i, 1, 1, 1))?
        } else {
            weight.clone()
        };
        Self::new(name, &w, bias, 1, TemporalPad::symmetric(0), 1, [0; 4], 1, Fill::Zeros)
    }

    /// Mark the bias as a BatchNorm folded in at load time.
    pub fn with_folded_bn(mut self) -> Self {
        self.folded_bn = true;
        self
    }

    /// A depthwise conv's step outputs go to this thread's `slot` buffer instead of its own: only
    /// for a conv whose output the next layer of a `Sequential` consumes at once (see
    /// [`ScratchOutput`]; any other use makes a step fail).
    pub fn with_scratch_output(mut self, slot: Scratch) -> Self {
        self.scratch = Some(ScratchOutput::new(slot));
        self
    }

    fn k(&self) -> usize {
        self.taps.len()
    }

    fn is_stateless(&self) -> bool {
        self.k() == 1 && self.stride == 1 && self.pad.stream_before() == 0
    }

    /// Feed input `t` (`x`: its frame, `None` for zero padding); the slot of the output it completes.
    fn absorb(st: &mut ConvStep, t: i64, x: Option<&[f32]>, out_len: usize) -> Option<usize> {
        let mut done = None;
        for (j, tap) in st.emission.targets(t) {
            let i = st.pending.open(j, out_len, |_| {});
            if let Some(x) = x {
                let (buf, started) = st.pending.term(i);
                add_term(&st.kind, &st.window, &st.cols, x, st.in_hw, st.c_in, tap, buf, started);
            }
            if st.emission.completes(tap) {
                done = Some(i);
            }
        }
        done
    }

    fn output_shape(&self, (h, w): (usize, usize)) -> Chw {
        let (oh, ow) = self.taps[0].output_hw(h, w);
        Chw::new(self.taps[0].c_out(), oh, ow)
    }

    /// Depthwise convs with a short kernel step through a [`FrameWindow`].
    fn uses_frame_window(&self) -> bool {
        self.taps[0].groups() > 1 && self.k() > 1 && self.k() <= MAX_WINDOW
    }

    /// The frame-window step once the new input is in its slot: count it, and compute the output
    /// it completes, if any (`shape`: the output's).
    fn window_step(&mut self, shape: Chw) -> Result<Option<FrameRef<'_>>> {
        let (k, s, p_b) = (self.taps.len(), self.stride, self.pad.stream_before());
        let st = self.step.as_mut().expect("a frame-window step state");
        let fw = st.frames.as_mut().expect("a frame window");
        let t = fw.seen;
        fw.seen += 1;
        // Output j's newest input is t = j·s − p_b + k − 1.
        let Some(js) = (t + p_b).checked_sub(k - 1).filter(|js| js % s == 0) else { return Ok(None) };
        self.window_output(js / s, shape).map(Some)
    }

    /// Output `j` of a frame window from the frames it keeps (`shape`: the output's).
    fn window_output(&mut self, j: usize, shape: Chw) -> Result<FrameRef<'_>> {
        let (k, s, p_b, fill) = (self.taps.len(), self.stride, self.pad.stream_before(), self.fill);
        let scratch = self.scratch.as_ref();
        let st = self.step.as_mut().expect("a frame-window step state");
        let fw = st.frames.as_mut().expect("a frame window");
        // Inputs before the stream are padding: zeros, or (replicate) the first frame, which is
        // still kept while such outputs are due.
        // SAFETY: the output is returned tied to this call's borrow of the conv.
        let data = unsafe {
            fw.output(scratch, j, &st.kind, &st.window, &st.bias, st.act, (k, s, p_b), st.in_hw, st.c_in, shape.numel(), |i| match i {
                i if i >= 0 => Some(i as usize % k),
                _ if fill == Fill::Replicate => Some(0),
                _ => None,
            })
        }?;
        Ok(FrameRef { data, shape })
    }

    /// The step form, built on first use.
    fn step_state(&mut self) -> Result<&mut ConvStep> {
        if self.step.is_none() {
            let bias = self.bias.as_ref().map(|b| b.flatten_all()).transpose()?;
            let mut st = ConvStep::new(&self.taps, bias.as_ref(), self.k(), self.stride, self.pad.stream_before())?;
            if self.uses_frame_window() {
                st.frames = Some(FrameWindow::new(self.k(), &st.window));
            }
            st.act = self.act;
            self.step = Some(st);
        }
        Ok(self.step.as_mut().expect("built above"))
    }
}

impl Layer for TemporalConv {
    fn forward(&self, x: &Tensor, mode: PadMode) -> Result<Tensor> {
        let (k, s) = (self.k(), self.stride);
        let n = x.dim(0)?;
        let (before, after) = self.pad.clip_pads(n, k, s, mode);
        let padded = pad_time(x, before, after, self.fill)?;
        let len = n + before + after;
        if len < k {
            bail!("{}: clip of {n} frames is shorter than the temporal kernel {k}", self.name);
        }
        let count = (len - k) / s + 1;
        // One im2col of every padded frame serves all taps.
        let col = self.taps[0].columns(&padded)?;
        let out_hw = self.taps[0].output_hw(x.dim(2)?, x.dim(3)?);
        let mut y: Option<Tensor> = None;
        for (i, tap) in self.taps.iter().enumerate() {
            let term = match &col {
                Some(col) => tap.apply_columns(&strided_frames(col, i, s, count)?, out_hw)?,
                None => tap.apply(&strided_frames(&padded, i, s, count)?)?,
            };
            y = Some(match y {
                Some(y) => (y + term)?,
                None => term,
            });
        }
        let y = y.expect("k >= 1");
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    fn step_frame<'a>(&'a mut self, x: FrameRef<'a>) -> Result<Option<FrameRef<'a>>> {
        if x.shape.c != self.taps[0].c_in() {
            bail!("{}: expected {} input channels, got {}", self.name, self.taps[0].c_in(), x.shape.c);
        }
        self.step_state()?;
        let in_hw = (x.shape.h, x.shape.w);
        let shape = self.output_shape(in_hw);
        let stateless = self.is_stateless();
        if self.uses_frame_window() {
            let st = self.step.as_mut().expect("built above");
            st.in_hw = in_hw;
            let fw = st.frames.as_mut().expect("a frame window");
            fw.store(fw.seen, x.data, in_hw, st.c_in, &st.window);
            return self.window_step(shape);
        }
        let st = self.step.as_mut().expect("built above");
        st.in_hw = in_hw;
        st.prepare(x.data, in_hw);
        if stateless {
            if matches!(st.kind, StepKind::Matmul { .. }) {
                // One pass: the product's store adds the bias and applies the activation.
                st.product_out(x.data, shape, None, st.act);
            } else {
                st.out.resize(shape.numel(), 0.0);
                add_term(&st.kind, &st.window, &st.cols, x.data, in_hw, st.c_in, 0, &mut st.out, false);
                ConvStep::finish(&st.bias, st.act, &mut st.out);
            }
            return Ok(Some(FrameRef { data: &st.out, shape }));
        }
        let p_b = self.pad.stream_before();
        // With a replicate fill the first frame also stands for the virtual past (it cannot emit).
        let mut done = None;
        for t in st.position.next_indices(self.fill, p_b) {
            done = Self::absorb(st, t, Some(x.data), shape.numel()).or(done);
        }
        st.position.advance(x.data, self.fill);
        Ok(done.map(|i| FrameRef { data: &*st.complete(i), shape }))
    }

    fn flush_frames(&mut self) -> Result<Vec<Frame>> {
        let Some(step) = self.step.as_mut() else { return Ok(Vec::new()) };
        if let Some(fw) = step.frames.as_mut() {
            let (k, s, p_b, seen) = (self.taps.len(), self.stride, self.pad.stream_before(), fw.seen);
            if seen == 0 {
                return Ok(Vec::new());
            }
            let in_hw = step.in_hw;
            let shape = self.output_shape(in_hw);
            let after = self.pad.flush_after(seen, k, s);
            let fill = self.fill;
            let mut outs = Vec::new();
            for t in seen..seen + after {
                let Some(js) = (t + p_b).checked_sub(k - 1).filter(|js| js % s == 0) else { continue };
                let st = self.step.as_mut().expect("checked above");
                let fw = st.frames.as_mut().expect("checked above");
                // Inputs past the end are padding: zeros, or (replicate) the last frame.
                // SAFETY: the output is copied at once.
                let data = unsafe {
                    fw.output(
                        self.scratch.as_ref(),
                        js / s,
                        &st.kind,
                        &st.window,
                        &st.bias,
                        st.act,
                        (k, s, p_b),
                        st.in_hw,
                        st.c_in,
                        shape.numel(),
                        |i| match i {
                            i if i >= seen as i64 => (fill == Fill::Replicate).then_some((seen - 1) % k),
                            i if i >= 0 => Some(i as usize % k),
                            _ if fill == Fill::Replicate => Some(0),
                            _ => None,
                        },
                    )
                }?;
                outs.push(Frame { data: data.to_vec(), shape });
            }
            fw_reset(self.step.as_mut().expect("checked above"));
            return Ok(outs);
        }
        let (in_hw, seen) = (step.in_hw, step.position.seen());
        if self.is_stateless() || seen == 0 {
            return Ok(Vec::new());
        }
        let shape = self.output_shape(in_hw);
        let after = self.pad.flush_after(seen, self.k(), self.stride);
        let st = self.step.as_mut().expect("checked above");
        let (indices, frame) = st.position.end_padding(after, self.fill);
        if let Some(f) = &frame {
            st.prepare(f, st.in_hw);
        }
        let mut outs = Vec::new();
        for t in indices {
            if let Some(i) = Self::absorb(st, t, frame.as_deref(), shape.numel()) {
                outs.push(Frame { data: st.complete(i).to_vec(), shape });
            }
        }
        Ok(outs)
    }

    fn preserves_constant(&self) -> bool {
        // At the start of a stream every output covers copies of the first frame: its start padding
        // is a copy too, or absent.
        let start = match &self.step {
            None => true,
            Some(st) => st.frames.as_ref().map_or(st.position.seen(), |fw| fw.seen) == 0,
        };
        self.is_stateless() || (start && (self.fill == Fill::Replicate || self.pad.stream_before() == 0))
    }

    /// In closed form (docs/continual.md, "Warm-up in closed form"): a stateless conv computes its
    /// one output once; a frame window keeps copies of the frame and computes the last output
    /// emitted; pending sums are laid out from one chain of partial sums, a product per tap.
    fn prime<'a>(&'a mut self, x: FrameRef<'a>, n: usize) -> Result<Primed<'a>> {
        if n == 0 {
            return Ok(Primed::NONE);
        }
        if x.shape.c != self.taps[0].c_in() {
            bail!("{}: expected {} input channels, got {}", self.name, self.taps[0].c_in(), x.shape.c);
        }
        if self.is_stateless() {
            return Ok(Primed::every_step(n, self.step_frame(x)?));
        }
        let (k, s, p_b, fill) = (self.k(), self.stride, self.pad.stream_before(), self.fill);
        let frame_window = self.uses_frame_window();
        let st = self.step_state()?;
        let seen = if frame_window { st.frames.as_ref().expect("a frame window").seen } else { st.position.seen() };
        let schedule = PrimeSchedule::new((k, s, p_b), fill, seen, n);
        // Pending sums start at the first tap (a zero-filled start skips the padding's taps).
        if !schedule.closed_form() || (!frame_window && !schedule.from_first_tap()) {
            return prime_by_stepping(self, x, n);
        }
        let in_hw = (x.shape.h, x.shape.w);
        let shape = self.output_shape(in_hw);
        let (emitted, last_step) = (schedule.emitted(), schedule.last_step());
        if frame_window {
            let st = self.step.as_mut().expect("built above");
            st.in_hw = in_hw;
            // The frames the next outputs read: the last k inputs, all copies.
            let fw = st.frames.as_mut().expect("a frame window");
            for t in (seen + n).saturating_sub(k).max(seen)..seen + n {
                fw.store(t, x.data, in_hw, st.c_in, &st.window);
            }
            fw.seen = seen + n;
            let Some((j, _, _)) = schedule.outputs().next().filter(|&(_, _, last)| last) else { return Ok(Primed::NONE) };
            let y = self.window_output(j as usize, shape)?;
            return Ok(Primed { emitted, last_step, output: Some(y) });
        }
        let st = self.step.as_mut().expect("built above");
        st.in_hw = in_hw;
        st.prepare(x.data, in_hw);
        if seen > 0 {
            // Every output pending before completed during the warm-up.
            st.pending.clear();
        }
        let ConvStep { kind, window, cols, c_in, pending, .. } = &mut *st;
        let last = fill_pending(&schedule, pending, shape.numel(), |tap, buf| {
            add_term(kind, window, cols, x.data, in_hw, *c_in, tap, buf, tap > 0);
        });
        st.position.advance_by(x.data, n, fill);
        Ok(Primed { emitted, last_step, output: last.map(|i| FrameRef { data: &*st.complete(i), shape }) })
    }

    fn reset(&mut self) {
        if let Some(st) = self.step.as_mut() {
            fw_reset(st);
            st.pending.clear();
            st.position.reset();
        }
    }

    fn temporal(&self) -> Temporal {
        Temporal { receptive_field: self.k(), padding: self.pad.stream_before(), stride: self.stride }
    }

    fn report(&self, input: Chw) -> LayerReport {
        let (h, w) = self.taps[0].output_hw(input.h, input.w);
        LayerReport {
            name: self.name.clone(),
            kind: if self.k() == 1 { "conv 1-tap" } else { "conv" },
            input,
            output: Chw::new(self.taps[0].c_out(), h, w),
            macs_per_output: self.k() as u64 * self.taps[0].macs(input.h, input.w),
            temporal: self.temporal(),
            pad: Some(self.pad),
            bn: self.folded_bn,
            bias: self.bias.is_some() && !self.folded_bn,
            ..Default::default()
        }
    }
}

impl Fusion for TemporalConv {
    fn scratch_lender(&self) -> Option<Lender> {
        self.scratch.as_ref().map(ScratchOutput::lender)
    }

    /// A frame window lends the slot of the next input.
    fn input_slot(&mut self, shape: Chw) -> Option<InputSlot<'_>> {
        if !self.uses_frame_window() || shape.c != self.taps[0].c_in() {
            return None;
        }
        let st = self.step_state().ok()?;
        let fw = st.frames.as_mut()?;
        Some(fw.slot(fw.seen, (shape.h, shape.w), shape.c, &st.window))
    }

    fn step_frame_in_slot<'a>(&'a mut self, shape: Chw) -> Result<Option<FrameRef<'a>>> {
        if !self.uses_frame_window() || self.step.is_none() {
            bail!("{}: no input slot was lent", self.name);
        }
        let out = self.output_shape((shape.h, shape.w));
        self.step.as_mut().expect("checked").in_hw = (shape.h, shape.w);
        self.window_step(out)
    }

    /// Stateless products write their output wherever the next layer wants it (AVX2 and AVX-512, where
    /// the weights are packed and the product takes a row layout).
    fn slot_output(&self, input: Chw) -> Option<Chw> {
        let product = self.taps[0].groups() == 1 && self.is_stateless() && gemm::packs_weights();
        (product && input.c == self.taps[0].c_in()).then(|| self.output_shape((input.h, input.w)))
    }

    fn step_frame_into_slot(&mut self, x: FrameRef<'_>, slot: InputSlot<'_>) -> Result<()> {
        let Some(shape) = self.slot_output(x.shape) else { bail!("{}: cannot write into a slot", self.name) };
        if slot.shape != shape {
            bail!("{}: slot for {:?}, output {:?}", self.name, slot.shape, shape);
        }
        self.step_state()?;
        let in_hw = (x.shape.h, x.shape.w);
        let st = self.step.as_mut().expect("built above");
        st.in_hw = in_hw;
        st.prepare(x.data, in_hw);
        let layout = Rows::segments(shape.w, slot.row_stride).in_blocks(slot.plane);
        st.product(x.data, shape.h * shape.w, None, st.act, &mut slot.data[slot.offset..], layout);
        Ok(())
    }

    /// Stateless products (1×1 and other single-tap convs) add the residual in the GEMM's store.
    fn accepts_residual(&self) -> bool {
        self.taps[0].groups() == 1 && self.is_stateless() && self.act.is_none()
    }

    fn step_frame_residual<'a>(
        &'a mut self,
        x: FrameRef<'a>,
        residual: FrameRef<'_>,
        act: Option<Activation>,
    ) -> Result<Option<FrameRef<'a>>> {
        if !self.accepts_residual() {
            bail!("{}: no residual form", self.name);
        }
        if x.shape.c != self.taps[0].c_in() {
            bail!("{}: expected {} input channels, got {}", self.name, self.taps[0].c_in(), x.shape.c);
        }
        let in_hw = (x.shape.h, x.shape.w);
        let shape = self.output_shape(in_hw);
        if residual.shape != shape {
            bail!("{}: residual of shape {:?} for an output of {:?}", self.name, residual.shape, shape);
        }
        self.step_state()?;
        let st = self.step.as_mut().expect("built above");
        st.in_hw = in_hw;
        st.prepare(x.data, in_hw);
        st.product_out(x.data, shape, Some(residual.data), act);
        Ok(Some(FrameRef { data: &st.out, shape }))
    }

    fn fuse_activation(&mut self, act: Activation) -> bool {
        self.act = Some(act);
        if let Some(st) = self.step.as_mut() {
            st.act = Some(act);
        }
        true
    }
}

fn fw_reset(st: &mut ConvStep) {
    if let Some(fw) = st.frames.as_mut() {
        fw.seen = 0;
    }
}
