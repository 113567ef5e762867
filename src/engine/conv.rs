//! Continual 3-D convolution: a temporal kernel of `k` spatial convolutions (taps) over the same weights
//! in clip and step form. In step form, the partial sums of pending outputs are accumulated tap by tap
//! (the accumulator form of models-x3d-slowfast.md §2.1) and the (folded) bias is added once at emission.

use std::collections::VecDeque;

use candle_core::{CpuStorage, Device, Result, Storage, Tensor, bail};

use super::kernels::DepthwiseConv2d;
use super::schedule::{Accumulators, StreamPosition, TemporalPad};
use super::spatial::{Pad2d, SpatialConv};
use super::{Chw, Fill, Layer, LayerReport, PadMode, Temporal};

/// Pad a clip `(T, C, H, W)` along time with `before`/`after` frames: zeros, or copies of the edge frames.
pub fn pad_time(x: &Tensor, before: usize, after: usize, fill: Fill) -> Result<Tensor> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    match fill {
        Fill::Zeros => x.pad_with_zeros(0, before, after),
        Fill::Replicate => x.pad_with_same(0, before, after),
    }
}

/// Frames `offset, offset + stride, …` (`count` of them) of a clip.
pub fn strided_frames(x: &Tensor, offset: usize, stride: usize, count: usize) -> Result<Tensor> {
    if stride == 1 {
        return x.narrow(0, offset, count);
    }
    let idx: Vec<u32> = (0..count).map(|j| (offset + j * stride) as u32).collect();
    x.index_select(&Tensor::new(idx, x.device())?, 0)
}

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
    acc: Accumulators,
    position: StreamPosition,
    out_hw: (usize, usize),
    /// The bias is a folded BatchNorm (for FLOP conventions that count BN separately).
    folded_bn: bool,
    /// Stride-1 convs with a matrix form: every tap's weight stacked `(k·C_out, C_in·kh·kw)`, so that a
    /// step computes all its taps' terms in one matrix product (in steady state each frame feeds all k).
    stacked: Option<Tensor>,
    /// Depthwise convs on the CPU: the step path keeps pending outputs as plain buffers.
    dw: Option<DepthwisePending>,
}

/// Step form of a depthwise conv on the CPU: the partial sums of pending outputs as plain buffers;
/// the kernel adds each tap's term straight into the sum it feeds (no per-tap tensor, no add pass)
/// and the folded bias is added once at emission. Same additions in the same order as the tensor
/// accumulators, so the results are identical.
#[derive(Debug, Clone, Default)]
struct DepthwisePending {
    /// `(output index j, partial sum (C·OH·OW))`, oldest first.
    sums: VecDeque<(i64, Vec<f32>)>,
    /// Per-channel bias (empty: none).
    bias: Vec<f32>,
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
        let bias = bias.map(|b| b.reshape((1, c_out, 1, 1))).transpose()?;
        let acc = Accumulators::new(k, stride, pad.stream_before());
        let stacked = if stride == 1 && k > 1 {
            taps.iter().map(|t| t.gemm_matrix().cloned()).collect::<Option<Vec<_>>>().map(|m| Tensor::cat(&m, 0)).transpose()?
        } else {
            None
        };
        let dw = if taps.iter().all(|t| t.depthwise().is_some()) {
            let bias = match &bias {
                Some(b) => b.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?,
                None => Vec::new(),
            };
            Some(DepthwisePending { sums: VecDeque::new(), bias })
        } else {
            None
        };
        Ok(TemporalConv {
            name: name.into(),
            taps,
            bias,
            stride,
            pad,
            fill,
            acc,
            position: StreamPosition::default(),
            out_hw: (0, 0),
            folded_bn: false,
            stacked,
            dw,
        })
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

    fn k(&self) -> usize {
        self.taps.len()
    }

    fn is_stateless(&self) -> bool {
        self.k() == 1 && self.stride == 1 && self.pad.stream_before() == 0
    }

    fn emit(&self, acc: Option<Tensor>) -> Result<Tensor> {
        let y = match acc {
            Some(y) => y,
            None => {
                let (h, w) = self.out_hw;
                super::spatial::zeros((1, self.taps[0].c_out(), h, w), &candle_core::Device::Cpu)?
            }
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// [`Self::absorb`] for depthwise convs on the CPU: taps accumulate in place.
    fn absorb_depthwise(&mut self, t: i64, x: Option<&Tensor>) -> Result<Option<Tensor>> {
        let (c, (oh, ow)) = (self.taps[0].c_out(), self.out_hw);
        let n = c * oh * ow;
        let k = self.k();
        let Some(dw) = self.dw.as_mut() else { bail!("{}: not a depthwise conv", self.name) };
        let x = x.map(|x| x.contiguous()).transpose()?;
        let guard = x.as_ref().map(|x| x.storage_and_layout());
        let input = match &guard {
            None => None,
            Some((storage, layout)) => match (&**storage, layout.contiguous_offsets()) {
                (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => Some(&v[a..b]),
                _ => bail!("{}: depthwise step needs a contiguous f32 CPU frame", self.name),
            },
        };
        let (h, w) = match &x {
            Some(x) => (x.dim(2)?, x.dim(3)?),
            None => (0, 0),
        };
        let targets: Vec<(i64, usize)> = self.acc.targets(t).collect();
        if let Some(input) = input {
            // Every output this frame feeds gets its tap's term in one pass over the frame.
            for &(j, _) in &targets {
                if !dw.sums.iter().any(|(pj, _)| *pj == j) {
                    dw.sums.push_back((j, vec![0f32; n]));
                }
            }
            let mut convs = Vec::with_capacity(targets.len());
            let mut outs: Vec<&mut [f32]> = Vec::with_capacity(targets.len());
            for (pj, buf) in dw.sums.iter_mut() {
                if let Some(&(_, tap)) = targets.iter().find(|(j, _)| j == pj) {
                    convs.push(self.taps[tap].depthwise().expect("checked at construction"));
                    outs.push(buf.as_mut_slice());
                }
            }
            DepthwiseConv2d::accumulate_many(&convs, input, h, w, &mut outs)?;
        }
        let completed = match targets.iter().find(|(_, tap)| *tap == k - 1) {
            Some(&(j, _)) => Some(dw.sums.iter().position(|(pj, _)| *pj == j).map(|i| dw.sums.remove(i).expect("found").1)),
            None => None,
        };
        let Some(sum) = completed else { return Ok(None) };
        let mut y = sum.unwrap_or_else(|| vec![0f32; n]);
        if !dw.bias.is_empty() {
            for (plane, &b) in y.chunks_mut(oh * ow).zip(&dw.bias) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        }
        Tensor::from_vec(y, (1, c, oh, ow), &Device::Cpu).map(Some)
    }

    fn absorb(&mut self, t: i64, x: Option<&Tensor>) -> Result<Option<Tensor>> {
        if self.dw.is_some() {
            return self.absorb_depthwise(t, x);
        }
        let taps = &self.taps;
        let out_hw = self.out_hw;
        let stacked = self.stacked.as_ref();
        // The taps share one im2col of the frame, made on first use.
        let mut col: Option<Option<Tensor>> = None;
        // With stacked weights: every tap's term at once, `(k·C_out, OH·OW)`.
        let mut all: Option<Tensor> = None;
        let done = self.acc.absorb(
            t,
            |tap| {
                let Some(x) = x else { return Ok(None) };
                if let Some(st) = stacked {
                    if all.is_none() {
                        let c = taps[0].columns(x)?.expect("stacked convs have a matrix form");
                        all = Some(st.matmul(&c.squeeze(0)?)?);
                    }
                    let c_out = taps[tap].c_out();
                    let term = all.as_ref().expect("computed above").narrow(0, tap * c_out, c_out)?;
                    return term.reshape((1, c_out, out_hw.0, out_hw.1)).map(Some);
                }
                if col.is_none() {
                    col = Some(taps[0].columns(x)?);
                }
                match col.as_ref().and_then(Option::as_ref) {
                    Some(c) => taps[tap].apply_columns(c, out_hw).map(Some),
                    None => taps[tap].apply(x).map(Some),
                }
            },
            |a, b| a + b,
        )?;
        done.map(|(_, acc)| self.emit(acc)).transpose()
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

    fn step(&mut self, x: &Tensor) -> Result<Option<Tensor>> {
        if self.is_stateless() {
            return self.emit(Some(self.taps[0].apply(x)?)).map(Some);
        }
        let (_, _, h, w) = x.dims4()?;
        self.out_hw = self.taps[0].output_hw(h, w);
        // With a replicate fill the first frame also stands for the virtual past (it cannot emit).
        let mut y = None;
        for t in self.position.next_indices(self.fill, self.pad.stream_before()) {
            y = self.absorb(t, Some(&x))?;
        }
        self.position.advance(&x, self.fill);
        Ok(y)
    }

    fn flush(&mut self) -> Result<Vec<Tensor>> {
        if self.is_stateless() {
            return Ok(Vec::new());
        }
        let after = self.pad.flush_after(self.position.seen(), self.k(), self.stride);
        let (indices, frame) = self.position.end_padding(after, self.fill);
        let mut outs = Vec::new();
        for t in indices {
            if let Some(y) = self.absorb(t, frame.as_ref())? {
                outs.push(y);
            }
        }
        Ok(outs)
    }

    fn reset(&mut self) {
        self.acc.clear();
        if let Some(dw) = self.dw.as_mut() {
            dw.sums.clear();
        }
        self.position.reset();
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
            children: Vec::new(),
        }
    }
}
