//! A layer graph: one input stream, layers on any earlier value, and joins that combine values of
//! the same output *position* (docs/continual.md, "Joins and clocks"). Unlike [`super::Parallel`],
//! whose branches must share one clock and are aligned by counting delays, a graph's values may run
//! at different rates (a slow pathway on every 4th frame beside a fast one) and a join waits, by
//! index, for whichever side comes later. Temporal shapes are derived from the parts, never declared.

use candle_core::{Result, Tensor, bail};

use super::container::{Reduce, combine_frames};
use crate::engine::stream::{Frame, FrameRef};
use crate::engine::timing::Timings;
use crate::engine::{Chw, Fusion, Layer, LayerReport, PadMode, Primed, Temporal, prime_by_stepping};

/// Most values a graph may hold (the step path keeps this step's outputs on the stack).
const MAX_NODES: usize = 64;
/// Most inputs one join may combine.
const MAX_JOIN_INPUTS: usize = 8;

/// A value in a graph under construction: the graph input, a layer's output or a join's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node(usize);

enum Op {
    /// The graph's input stream (node 0).
    Input,
    Layer {
        from: usize,
        layer: Box<dyn Layer>,
    },
    Join(Join),
}

struct NodeState {
    op: Op,
    /// Temporal shape from the graph input to this value: its position `k` covers input frames
    /// `k·s − p … k·s − p + R − 1` and is emitted on step `k·s + delay`.
    temporal: Temporal,
}

/// Builds a [`Graph`] in topological order: every node's inputs exist before it.
pub struct GraphBuilder {
    name: String,
    nodes: Vec<NodeState>,
    /// The first misuse (an unknown node, a layer the graph cannot hold), reported by `build`.
    error: Option<String>,
}

impl GraphBuilder {
    pub fn new(name: impl Into<String>) -> Self {
        GraphBuilder { name: name.into(), nodes: vec![NodeState { op: Op::Input, temporal: Temporal::POINTWISE }], error: None }
    }

    /// The graph's input stream.
    pub fn input(&self) -> Node {
        Node(0)
    }

    /// `layer` applied to the value `from`.
    pub fn layer(&mut self, from: Node, layer: impl Layer + 'static) -> Node {
        self.layer_boxed(from, Box::new(layer))
    }

    pub fn layer_boxed(&mut self, from: Node, layer: Box<dyn Layer>) -> Node {
        let at = self.nodes.len();
        if self.check(from).is_ok() && layer.scratch_lender().is_some() {
            // Its output would wait in a shared slot while other nodes step (docs/engine.md,
            // "Scratch outputs"); inside a `Sequential`, before the layer reading it, it is
            // released in time.
            self.fail(format!("node {at}: a layer lending scratch outputs must sit inside a Sequential"));
        }
        let temporal = match self.check(from) {
            Ok(()) => self.nodes[from.0].temporal.then(layer.temporal()),
            Err(e) => {
                self.fail(e);
                Temporal::POINTWISE
            }
        };
        self.nodes.push(NodeState { op: Op::Layer { from: from.0, layer }, temporal });
        Node(at)
    }

    /// Outputs of `from` with the same index combined (summed, or concatenated along channels in
    /// order). The inputs must have the same stride relative to the graph input.
    pub fn join(&mut self, name: &str, from: &[Node], reduce: Reduce) -> Result<Node> {
        let what = format!("{}: join {name}", self.name);
        let Some(first) = from.first() else { bail!("{what}: joins nothing") };
        if from.len() > MAX_JOIN_INPUTS {
            bail!("{what}: more than {MAX_JOIN_INPUTS} inputs");
        }
        for &n in from {
            self.check(n).map_err(|e| candle_core::Error::Msg(format!("{what}: {e}")))?;
        }
        let shapes: Vec<Temporal> = from.iter().map(|n| self.nodes[n.0].temporal).collect();
        let stride = self.nodes[first.0].temporal.stride;
        if shapes.iter().any(|t| t.stride != stride) {
            let strides: Vec<usize> = shapes.iter().map(|t| t.stride).collect();
            bail!("{what}: inputs run at different strides {strides:?}; only positions of one clock can be joined");
        }
        // The union of the inputs' windows for each position (docs/continual.md, "Joins and clocks").
        let padding = shapes.iter().map(|t| t.padding).max().unwrap_or(0);
        let delay = shapes.iter().map(|t| t.delay()).max().unwrap_or(0);
        let temporal = Temporal { receptive_field: padding + delay + 1, padding, stride };
        let join = Join {
            name: name.to_string(),
            inputs: from.iter().map(|n| n.0).collect(),
            reduce,
            waiting: from.iter().map(|_| Waiting::default()).collect(),
            emitted: 0,
            out: Frame::default(),
        };
        let at = self.nodes.len();
        self.nodes.push(NodeState { op: Op::Join(join), temporal });
        Ok(Node(at))
    }

    /// The graph computing `output`. Every node must feed it.
    pub fn build(self, output: Node) -> Result<Graph> {
        let GraphBuilder { name, nodes, error } = self;
        if let Some(e) = error {
            bail!("{name}: {e}");
        }
        if output.0 >= nodes.len() {
            bail!("{name}: the output is not a node of this graph");
        }
        if nodes.len() > MAX_NODES {
            bail!("{name}: more than {MAX_NODES} nodes");
        }
        // Nodes are in topological order, so one backward pass marks everything the output reads.
        let mut used = vec![false; nodes.len()];
        used[output.0] = true;
        for i in (0..nodes.len()).rev() {
            if !used[i] {
                continue;
            }
            match &nodes[i].op {
                Op::Input => {}
                Op::Layer { from, .. } => used[*from] = true,
                Op::Join(j) => j.inputs.iter().for_each(|&f| used[f] = true),
            }
        }
        if let Some(unused) = used.iter().position(|u| !u) {
            bail!("{name}: node {unused} does not feed the output");
        }
        let mut timings = Timings::default();
        nodes.iter().for_each(|_| timings.push());
        Ok(Graph { name, nodes, output: output.0, timings })
    }

    fn check(&self, n: Node) -> std::result::Result<(), String> {
        if n.0 < self.nodes.len() { Ok(()) } else { Err(format!("node {} does not exist yet", n.0)) }
    }

    fn fail(&mut self, e: String) {
        self.error.get_or_insert(e);
    }
}

/// A layer graph (see the module docs). Steps one input frame at a time through its nodes in build
/// order; a node steps only on what its input emitted in the same step.
pub struct Graph {
    name: String,
    nodes: Vec<NodeState>,
    output: usize,
    timings: Timings,
}

impl Graph {
    /// The temporal shape of every node from the graph input, in build order (node 0 is the input).
    pub fn node_temporals(&self) -> Vec<Temporal> {
        self.nodes.iter().map(|n| n.temporal).collect()
    }

    /// Per node, the output shape for a graph input of shape `input` (node 0 is the input).
    fn shapes(&self, input: Chw) -> Vec<Chw> {
        let mut shapes: Vec<Chw> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let shape = match &node.op {
                Op::Input => input,
                Op::Layer { from, layer } => layer.report(shapes[*from]).output,
                Op::Join(j) => j.output_shape(&shapes),
            };
            shapes.push(shape);
        }
        shapes
    }
}

impl Layer for Graph {
    /// Nodes in order on clips; a join keeps the positions all its inputs have. `Valid` is the
    /// start-padded result cropped to the positions whose window lies wholly inside the clip (a
    /// strided join has no padding-free alignment of its own; docs/continual.md, "Joins and clocks").
    fn forward(&self, x: &Tensor, mode: PadMode) -> Result<Tensor> {
        let node_mode = if mode == PadMode::Valid { PadMode::StartOnly } else { mode };
        let mut values: Vec<Tensor> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let y = match &node.op {
                Op::Input => x.clone(),
                Op::Layer { from, layer } => layer.forward(&values[*from], node_mode)?,
                Op::Join(j) => j.forward(&values)?,
            };
            values.push(y);
        }
        let y = values.swap_remove(self.output);
        if mode != PadMode::Valid {
            return Ok(y);
        }
        let n = x.dim(0)?;
        let t = self.temporal();
        let (s, p, d) = (t.stride, t.padding, t.delay());
        // Position k is inside when k·s ≥ p and its newest frame k·s + d ≤ n − 1.
        let first = p.div_ceil(s);
        let Some(last) = (n.checked_sub(1 + d)).map(|m| m / s).filter(|&l| l >= first) else {
            bail!("{}: clip of {n} frames is shorter than the receptive field {}", self.name, t.receptive_field);
        };
        y.narrow(0, first, (last + 1).min(y.dim(0)?).saturating_sub(first))
    }

    fn step_frame<'a>(&'a mut self, x: FrameRef<'a>) -> Result<Option<FrameRef<'a>>> {
        let Graph { name, nodes, output, timings } = self;
        // What each node emitted this step (`FrameRef` is Copy: a value read by several nodes is
        // borrowed by each, never copied).
        let mut outs: [Option<FrameRef<'a>>; MAX_NODES] = [None; MAX_NODES];
        outs[0] = Some(x);
        for (i, node) in nodes.iter_mut().enumerate().skip(1) {
            // A node whose inputs emitted nothing sees nothing this step (a join completes a
            // position only on an arrival), and is neither stepped nor timed.
            let start = timings.start();
            outs[i] = match &mut node.op {
                Op::Input => continue,
                Op::Layer { from, layer } => match outs[*from] {
                    Some(y) => layer.step_frame(y)?,
                    None => continue,
                },
                Op::Join(j) if j.inputs.iter().any(|&f| outs[f].is_some()) => j.step(name, &outs)?,
                Op::Join(_) => continue,
            };
            timings.add(i, start);
        }
        Ok(outs[*output])
    }

    /// Each node in order takes what its input flushed, then flushes itself; joins combine the
    /// flushed positions by index.
    fn flush_frames(&mut self) -> Result<Vec<Frame>> {
        let mut flushed: Vec<Vec<Frame>> = Vec::with_capacity(self.nodes.len());
        for node in &mut self.nodes {
            let out = match &mut node.op {
                Op::Input => Vec::new(),
                Op::Layer { from, layer } => {
                    let mut out = Vec::new();
                    for x in &flushed[*from] {
                        if let Some(y) = layer.step_frame(x.as_ref())? {
                            out.push(y.to_frame());
                        }
                    }
                    out.extend(layer.flush_frames()?);
                    out
                }
                Op::Join(j) => j.flush(&self.name, &flushed)?,
            };
            flushed.push(out);
        }
        Ok(flushed.swap_remove(self.output))
    }

    /// With every node turning a constant input into a constant output, a still input makes still
    /// outputs everywhere, whatever the clocks (joins combine equal frames).
    fn preserves_constant(&self) -> bool {
        self.nodes.iter().all(|n| match &n.op {
            Op::Layer { layer, .. } => layer.preserves_constant(),
            // Positions waiting from before are other frames.
            Op::Join(j) => j.waiting.iter().all(|w| w.len == 0),
            Op::Input => true,
        })
    }

    /// Each node in build order is primed once with copies of its input's output, as many as that
    /// input emitted; a join queues the positions one input has ahead of the others
    /// (docs/continual.md, "Warm-up in closed form"). Otherwise step by step.
    fn prime<'a>(&'a mut self, x: FrameRef<'a>, n: usize) -> Result<Primed<'a>> {
        if !self.preserves_constant() {
            return prime_by_stepping(self, x, n);
        }
        let Graph { name, nodes, output, .. } = self;
        let mut primed: [Primed<'a>; MAX_NODES] = [Primed::NONE; MAX_NODES];
        primed[0] = Primed::every_step(n, (n > 0).then_some(x));
        for (i, node) in nodes.iter_mut().enumerate().skip(1) {
            primed[i] = match &mut node.op {
                Op::Input => continue,
                Op::Layer { from, layer } => match primed[*from] {
                    Primed { emitted: 0, .. } => Primed::NONE,
                    Primed { emitted, output: Some(y), last_step } => {
                        let p = layer.prime(y, emitted)?;
                        if p.emitted > 0 && p.output.is_none() {
                            bail!("{name}: node {i} primed without handing on its output");
                        }
                        // It emits on the last step when its last input came on the last step.
                        Primed { last_step: p.last_step && last_step, ..p }
                    }
                    Primed { output: None, .. } => bail!("{name}: node {from} primed without handing on its output"),
                },
                Op::Join(j) => j.prime(name, &primed)?,
            };
        }
        Ok(primed[*output])
    }

    fn reset(&mut self) {
        for node in &mut self.nodes {
            match &mut node.op {
                Op::Input => {}
                Op::Layer { layer, .. } => layer.reset(),
                Op::Join(j) => j.reset(),
            }
        }
    }

    fn temporal(&self) -> Temporal {
        self.nodes[self.output].temporal
    }

    /// Each node (build order, the output last) as a `graph node` whose `temporal` is the shape from
    /// the graph input to the node's input, holding the node's own report (docs/engine.md, "Layer
    /// graphs"): what a cost count needs to place the node on the graph's clock.
    fn report(&self, input: Chw) -> LayerReport {
        let shapes = self.shapes(input);
        let children = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, node)| {
                let (report, from) = match &node.op {
                    Op::Input => return None,
                    Op::Layer { from, layer } => (layer.report(shapes[*from]), *from),
                    Op::Join(j) => {
                        let report = LayerReport {
                            name: j.name.clone(),
                            kind: match j.reduce {
                                Reduce::Sum => "join sum",
                                Reduce::Concat => "join concat",
                            },
                            input: shapes[j.inputs[0]],
                            output: shapes[i],
                            temporal: Temporal::POINTWISE,
                            ..Default::default()
                        };
                        // The join's positions are on its own clock: the same as its output's.
                        return Some(graph_node(report, node.temporal, self.timings.get(i)));
                    }
                };
                Some(graph_node(report, self.nodes[from].temporal, self.timings.get(i)))
            })
            .collect();
        LayerReport {
            name: self.name.clone(),
            kind: "graph",
            input,
            output: shapes[self.output],
            macs_per_output: 0,
            temporal: self.temporal(),
            children,
            ..Default::default()
        }
    }
}

/// A node's report wrapped with `upstream`, the shape from the graph input to the node's input; the
/// step time goes on the node's own report (where per-layer tables read it).
fn graph_node(report: LayerReport, upstream: Temporal, step_time: Option<crate::engine::timing::StepTime>) -> LayerReport {
    LayerReport {
        name: report.name.clone(),
        kind: "graph node",
        input: report.input,
        output: report.output,
        temporal: upstream,
        children: vec![LayerReport { step_time, ..report }],
        ..Default::default()
    }
}

impl Fusion for Graph {}

/// Combines the outputs of its inputs that have the same position.
struct Join {
    name: String,
    inputs: Vec<usize>,
    reduce: Reduce,
    /// Per input, its positions that arrived before every other input had the same one: positions
    /// `emitted, emitted + 1, …` in order.
    waiting: Vec<Waiting>,
    /// Positions emitted since the reset: the next one to emit.
    emitted: usize,
    /// The step output.
    out: Frame,
}

impl Join {
    fn output_shape(&self, shapes: &[Chw]) -> Chw {
        let first = shapes[self.inputs[0]];
        match self.reduce {
            Reduce::Sum => first,
            Reduce::Concat => Chw { c: self.inputs.iter().map(|&i| shapes[i].c).sum(), ..first },
        }
    }

    fn forward(&self, values: &[Tensor]) -> Result<Tensor> {
        let n = self.inputs.iter().map(|&i| values[i].dim(0)).collect::<Result<Vec<_>>>()?.into_iter().min().unwrap_or(0);
        let parts = self.inputs.iter().map(|&i| values[i].narrow(0, 0, n)).collect::<Result<Vec<_>>>()?;
        match self.reduce {
            Reduce::Concat => Tensor::cat(&parts, 1),
            Reduce::Sum => parts[1..].iter().try_fold(parts[0].clone(), |acc, y| acc + y),
        }
    }

    /// Emits position `emitted` once every input has it. Each input emits its positions in order,
    /// one per graph step at most, so at most one position completes per step: a position left
    /// incomplete at the previous step lacked some input, which delivers exactly that position now
    /// and nothing later, so the position after it cannot be complete too (checked below).
    fn step<'a>(&'a mut self, graph: &str, outs: &[Option<FrameRef<'a>>]) -> Result<Option<FrameRef<'a>>> {
        let Join { name, inputs, reduce, waiting, emitted, out } = self;
        let n = inputs.len();
        let complete = inputs.iter().zip(waiting.iter()).all(|(&i, w)| w.len > 0 || outs[i].is_some());
        if !complete {
            // Keep this step's arrivals until the other inputs reach their positions.
            for (&i, w) in inputs.iter().zip(waiting.iter_mut()) {
                if let Some(y) = outs[i] {
                    w.push(y);
                }
            }
            return Ok(None);
        }
        {
            // Position `emitted` of each input: the oldest waiting one, else this step's arrival
            // (which is that position when nothing waits), borrowed without a copy.
            let mut parts: [Option<FrameRef<'_>>; MAX_JOIN_INPUTS] = [None; MAX_JOIN_INPUTS];
            for ((part, &i), w) in parts.iter_mut().zip(inputs.iter()).zip(waiting.iter()) {
                *part = w.front().or(outs[i]);
            }
            combine_frames(name, *reduce, None, parts[..n].iter().map(|p| p.expect("complete")), out)?;
        }
        for (&i, w) in inputs.iter().zip(waiting.iter_mut()) {
            if w.len > 0 {
                w.pop();
                if let Some(y) = outs[i] {
                    w.push(y);
                }
            }
        }
        *emitted += 1;
        if waiting.iter().all(|w| w.len > 0) {
            bail!("{graph}: join {name}: position {} complete on the step of {} (inputs out of order)", *emitted, *emitted - 1);
        }
        Ok(Some(out.as_ref()))
    }

    /// [`Join::step`] over a warm-up, given what each input's warm-up emitted (every output of an
    /// input the same frame) and nothing waiting before: the positions every input has are emitted,
    /// those one input has ahead of the others wait.
    fn prime<'a>(&'a mut self, graph: &str, primed: &[Primed<'a>]) -> Result<Primed<'a>> {
        let Join { name, inputs, reduce, waiting, emitted, out } = self;
        let count = inputs.iter().map(|&i| primed[i].emitted).min().unwrap_or(0);
        for (&i, w) in inputs.iter().zip(waiting.iter_mut()) {
            let Some(y) = primed[i].output else { continue };
            for _ in count..primed[i].emitted {
                w.push(y);
            }
            // A spare frame: in steady state an input may run one position further ahead.
            w.push(y);
            w.len -= 1;
        }
        if count == 0 {
            return Ok(Primed::NONE);
        }
        let mut parts: [Option<FrameRef<'_>>; MAX_JOIN_INPUTS] = [None; MAX_JOIN_INPUTS];
        for (part, &i) in parts.iter_mut().zip(inputs.iter()) {
            *part = primed[i].output;
        }
        if parts[..inputs.len()].iter().any(Option::is_none) {
            bail!("{graph}: join {name}: an input primed without handing on its output");
        }
        combine_frames(name, *reduce, None, parts[..inputs.len()].iter().map(|p| p.expect("checked")), out)?;
        *emitted += count;
        // The last position completes on the last step when an input that has no more delivered it then.
        let last_step = inputs.iter().any(|&i| primed[i].emitted == count && primed[i].last_step);
        Ok(Primed { emitted: count, last_step, output: Some(out.as_ref()) })
    }

    /// The positions every input has after the flush: what was waiting, then what each flushed.
    fn flush(&mut self, graph: &str, flushed: &[Vec<Frame>]) -> Result<Vec<Frame>> {
        let what = format!("{graph}: join {}", self.name);
        let have = |k: usize| self.waiting[k].len + flushed[self.inputs[k]].len();
        let count = (0..self.inputs.len()).map(have).min().unwrap_or(0);
        let mut outs = Vec::with_capacity(count);
        for m in 0..count {
            let parts = self.inputs.iter().zip(&self.waiting).map(|(&i, w)| match w.get(m) {
                Some(f) => f,
                None => flushed[i][m - w.len].as_ref(),
            });
            let mut y = Frame::default();
            combine_frames(&what, self.reduce, None, parts, &mut y)?;
            outs.push(y);
        }
        self.reset();
        Ok(outs)
    }

    fn reset(&mut self) {
        self.waiting.iter_mut().for_each(Waiting::clear);
        self.emitted = 0;
    }
}

/// A queue of frames, oldest first, whose buffers are reused: it grows only while the lag between
/// the inputs of a join is still building up (the first steps of a stream).
#[derive(Default)]
struct Waiting {
    frames: Vec<Frame>,
    head: usize,
    len: usize,
}

impl Waiting {
    fn push(&mut self, x: FrameRef<'_>) {
        if self.len == self.frames.len() {
            self.frames.rotate_left(self.head);
            self.head = 0;
            self.frames.push(Frame::default());
        }
        let at = (self.head + self.len) % self.frames.len();
        self.frames[at].copy_from(x);
        self.len += 1;
    }

    fn get(&self, m: usize) -> Option<FrameRef<'_>> {
        (m < self.len).then(|| self.frames[(self.head + m) % self.frames.len()].as_ref())
    }

    fn front(&self) -> Option<FrameRef<'_>> {
        self.get(0)
    }

    fn pop(&mut self) {
        self.head = (self.head + 1) % self.frames.len();
        self.len -= 1;
    }

    fn clear(&mut self) {
        (self.head, self.len) = (0, 0);
    }
}
