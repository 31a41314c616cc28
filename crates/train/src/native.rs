//! The native CPU path ([`crate::Formulation::Fused`]): a whole training step (boards, forward
//! pass, loss, backward pass, Adam) on host buffers that live as long as the run, with the
//! vector kernels of [`crate::kernels`]. No candle tensor, no autograd graph and no allocation
//! per batch.
//!
//! # Layout
//! Activations are channels first. The `N = batch * H * W` cells of a batch are cut into
//! *tiles* of whole boards (about [`TILE_CELLS`] cells); a tile's cells are padded to a
//! multiple of 16 (`stride`), so every kernel runs on whole vectors. A tile of a `C`-channel
//! activation is `[C, stride]`; one-channel block inputs and outputs carry a zero margin on
//! each side so that the nine shifted reads of the 3x3 convolution ("taps") are plain offset
//! loads, with a 0/1 mask per tap and cell for the zero padding at board edges.
//!
//! # One step
//! Every block but the last runs forward tile by tile, keeping its two hidden activations for
//! the backward pass. The last block runs forward, loss and backward tile by tile while the
//! tile is in cache and keeps nothing. The other blocks then run backward, last to first. A
//! block's weight gradients are summed tile after tile as 16 partial sums per weight (one per
//! vector lane) and reduced once per batch; nothing depends on timing or threads, so a run is
//! bit-identical on the same machine.
//!
//! Padding cells (past the last board of a partial tile, or past a tile's cells up to its
//! stride) are computed like the others but get a zero loss gradient, so they add nothing to
//! any gradient.
//!
//! The random numbers are drawn exactly as the candle formulations draw them (boards from
//! the `TrainData` stream, RReLU slopes and dropout masks from the `Dropout` stream, in the
//! same order), and Adam is candle's `AdamW` written out, so this path and the others train
//! alike (the integration tests compare them).

use lifesweep_life::{bit_words, fill_batch_bits};
use lifesweep_spec::TrainParams;
use rand::RngCore;

use crate::kernels::{
    matmul, matmul_nt_lanes, reduce_lanes, ActGrad, BiasAct, Dense, Epilogue, Kernels, Plain, Simd,
    SimpleAct, TapRows, WithSimd, LANES,
};
use crate::math::{bce_cell, erf};

/// About this many cells per tile: the hidden activations of a tile stay in the L2 cache.
pub const TILE_CELLS: usize = 800;

/// The activation after a layer, with the conventions of PyTorch's backward passes at 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    Identity,
    /// Gradient 0 at 0.
    Relu,
    /// `x` for `x > 0`, `slope * x` otherwise; gradient `slope` at 0.
    Leaky(f32),
    /// Like `Leaky` with one slope per element (RReLU in training).
    RandomLeaky,
    /// alpha 1.
    Elu,
    /// The exact erf form.
    Gelu,
}

impl Act {
    /// The vector form of the kernels' epilogues, where there is one.
    fn simple(self) -> Option<SimpleAct> {
        match self {
            Act::Identity => Some(SimpleAct::Identity),
            Act::Relu => Some(SimpleAct::Relu),
            Act::Leaky(slope) => Some(SimpleAct::Leaky(slope)),
            Act::RandomLeaky | Act::Elu | Act::Gelu => None,
        }
    }
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const INV_SQRT_2PI: f32 = 0.398_942_3;

fn gelu(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * FRAC_1_SQRT_2))
}

fn gelu_grad(v: f32) -> f32 {
    0.5 * (1.0 + erf(v * FRAC_1_SQRT_2)) + v * INV_SQRT_2PI * (-0.5 * v * v).exp()
}

/// Where the weights and biases of a block of width `m` lie in its packed parameter vector:
/// conv3 weight `[2m, 9]`, conv3 bias `[2m]`, conv1a weight `[m, 2m]`, conv1a bias `[m]`,
/// conv1b weight `[1, m]`, conv1b bias `[1]`, each row-major, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    pub m: usize,
}

impl BlockLayout {
    /// `(cin * kernel * kernel, cout)` of layer `layer` (0 conv3, 1 conv1a, 2 conv1b).
    pub fn fan_in_out(&self, layer: usize) -> (usize, usize) {
        let m = self.m;
        [(9, 2 * m), (2 * m, m), (m, 1)][layer]
    }

    /// Offset of the weight and of the bias of `layer`.
    pub fn offsets(&self, layer: usize) -> (usize, usize) {
        let mut offset = 0;
        for l in 0..layer {
            let (fan_in, cout) = self.fan_in_out(l);
            offset += cout * fan_in + cout;
        }
        let (fan_in, cout) = self.fan_in_out(layer);
        (offset, offset + cout * fan_in)
    }

    /// Number of parameters of the block.
    pub fn param_count(&self) -> usize {
        let (_, bias) = self.offsets(2);
        bias + 1
    }

    /// Size of the transposed weights a block keeps for its backward pass: conv3's `[9, 2m]`
    /// and conv1a's `[2m, m]` (conv1b's `[m, 1]` is its own weight read as a column).
    fn transposed_count(&self) -> usize {
        9 * 2 * self.m + 2 * self.m * self.m
    }
}

/// What the native path needs to know of a network.
#[derive(Debug, Clone)]
pub struct NetShape {
    pub layout: BlockLayout,
    pub blocks: usize,
    /// Subtracted from every block input, padding included (see [`crate::network`]).
    pub shift: f32,
    /// Channel dropout after conv3 of every block but the last (training only).
    pub dropout: bool,
    /// The output is a logit (the network ends in a sigmoid).
    pub logits: bool,
    /// The activations of each block's three layers in training and in evaluation.
    pub train_acts: Vec<[Act; 3]>,
    pub eval_acts: Vec<[Act; 3]>,
}

impl NetShape {
    fn c1(&self) -> usize {
        2 * self.layout.m
    }

    fn c2(&self) -> usize {
        self.layout.m
    }

    fn params_per_block(&self) -> usize {
        self.layout.param_count()
    }

    fn needs_pre(&self, acts: &[[Act; 3]]) -> bool {
        acts.iter().flatten().any(|&a| a == Act::Gelu)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// How a batch of `samples` boards of side `size` is cut into tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub samples: usize,
    pub size: usize,
    pub area: usize,
    pub boards_per_tile: usize,
    pub tiles: usize,
    /// Cells of a full tile.
    pub tile_cells: usize,
    /// `tile_cells` rounded up to whole vectors: the row length of a tile.
    pub stride: usize,
    /// Zero cells before and after a one-channel tile (at least a board row and one).
    pub margin: usize,
}

impl Geometry {
    pub fn new(samples: usize, size: usize) -> Geometry {
        let area = (size * size).max(1);
        // whole boards, about TILE_CELLS cells, and a whole number of vectors when a few
        // boards make one
        let aligned = LANES / gcd(area, LANES);
        let mut boards_per_tile = (TILE_CELLS / area).max(1);
        if boards_per_tile >= aligned {
            boards_per_tile -= boards_per_tile % aligned;
        }
        let boards_per_tile = boards_per_tile.min(samples.max(1));
        let tile_cells = boards_per_tile * area;
        Geometry {
            samples,
            size,
            area,
            boards_per_tile,
            tiles: samples.div_ceil(boards_per_tile),
            tile_cells,
            stride: tile_cells.div_ceil(LANES) * LANES,
            margin: (size + 1).div_ceil(LANES) * LANES,
        }
    }

    /// Cells of all boards.
    pub fn cells(&self) -> usize {
        self.samples * self.area
    }

    /// Length of one tile of a one-channel buffer with its margins.
    fn x_tile_len(&self) -> usize {
        self.stride + 2 * self.margin
    }

    fn x_len(&self) -> usize {
        self.tiles * self.x_tile_len()
    }

    /// Real (not padding) cells of tile `tile`.
    fn cells_in(&self, tile: usize) -> usize {
        let boards = (self.samples - tile * self.boards_per_tile).min(self.boards_per_tile);
        boards * self.area
    }
}

/// The zero padding of the 3x3 convolution: for tap `k = ky * 3 + kx`, cell `j` of a tile
/// reads cell `j + offsets[k]` where bit `j % 16` of `bits[k * vectors + j / 16]` is set, and
/// 0 where it is clear (that cell is off the board, or `j` is a padding cell).
struct Taps {
    offsets: [isize; 9],
    bits: Vec<u16>,
    vectors: usize,
}

impl Taps {
    fn new(geo: &Geometry) -> Taps {
        let size = geo.size as isize;
        let vectors = geo.stride / LANES;
        let mut offsets = [0isize; 9];
        let mut bits = vec![0u16; 9 * vectors];
        for ky in 0..3isize {
            for kx in 0..3isize {
                let k = (ky * 3 + kx) as usize;
                offsets[k] = (ky - 1) * size + (kx - 1);
                for j in 0..geo.tile_cells {
                    let p = (j % geo.area) as isize;
                    let (y, x) = (p / size + ky - 1, p % size + kx - 1);
                    if (0..size).contains(&y) && (0..size).contains(&x) {
                        bits[k * vectors + j / LANES] |= 1 << (j % LANES);
                    }
                }
            }
        }
        Taps {
            offsets,
            bits,
            vectors,
        }
    }

    /// The taps of `x`, a one-channel tile with its margins.
    fn rows<'a>(&'a self, x: &'a [f32], margin: usize) -> TapRows<'a> {
        TapRows {
            x,
            margin,
            offsets: &self.offsets,
            bits: &self.bits,
            vectors: self.vectors,
        }
    }
}

/// The buffers of one geometry, shared by the models trained one after the other on it.
pub struct Workspace {
    geo: Geometry,
    taps_geo: Taps,
    /// One batch's boards (evaluation), boards one after the other.
    pub inputs: Vec<f32>,
    /// One batch's boards and targets as bit streams (training; see
    /// [`lifesweep_life::fill_batch_bits`]).
    input_bits: Vec<u64>,
    target_bits: Vec<u64>,
    /// The targets of one tile.
    ys: Vec<f32>,
    /// Block inputs (`xs[0]` the boards) and the network output, one channel, with margins.
    xs: Vec<Vec<f32>>,
    /// Hidden activations of every block but the last (training).
    h1: Vec<Vec<f32>>,
    h2: Vec<Vec<f32>>,
    /// Pre-activations per block and layer (GELU only).
    pre: Vec<[Vec<f32>; 3]>,
    /// Gradients with respect to block outputs, alternating (one channel, with margins).
    grads: [Vec<f32>; 2],
    // per tile
    dtaps: Vec<f32>,
    g1: Vec<f32>,
    g2: Vec<f32>,
    g3: Vec<f32>,
    s1: Vec<f32>,
    s2: Vec<f32>,
}

impl Workspace {
    /// Buffers for `samples` boards of side `size`; `train` adds what the backward pass needs.
    pub fn new(shape: &NetShape, samples: usize, size: usize, train: bool) -> Workspace {
        let geo = Geometry::new(samples, size);
        let (c1, c2, tile) = (shape.c1(), shape.c2(), geo.stride);
        let saved = if train { shape.blocks - 1 } else { 0 };
        let acts = if train {
            &shape.train_acts
        } else {
            &shape.eval_acts
        };
        let pre = if train && shape.needs_pre(acts) {
            (0..shape.blocks)
                .map(|_| [c1, c2, 1].map(|c| vec![0f32; geo.tiles * c * tile]))
                .collect()
        } else {
            Vec::new()
        };
        Workspace {
            geo,
            taps_geo: Taps::new(&geo),
            inputs: vec![0f32; geo.cells()],
            input_bits: vec![0u64; bit_words(geo.cells())],
            target_bits: vec![0u64; bit_words(geo.cells())],
            ys: vec![0f32; tile],
            xs: (0..=shape.blocks)
                .map(|_| vec![0f32; geo.x_len()])
                .collect(),
            h1: (0..saved)
                .map(|_| vec![0f32; geo.tiles * c1 * tile])
                .collect(),
            h2: (0..saved)
                .map(|_| vec![0f32; geo.tiles * c2 * tile])
                .collect(),
            pre,
            grads: [vec![0f32; geo.x_len()], vec![0f32; geo.x_len()]],
            dtaps: vec![0f32; 9 * tile],
            g1: vec![0f32; c1 * tile],
            g2: vec![0f32; c2 * tile],
            g3: vec![0f32; tile],
            s1: vec![0f32; c1 * tile],
            s2: vec![0f32; c2 * tile],
        }
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// Copies `inputs` (boards one after the other) into the first block's input tiles.
    fn load_inputs(&mut self) {
        let geo = self.geo;
        let x = &mut self.xs[0];
        for tile in 0..geo.tiles {
            let cells = geo.cells_in(tile);
            let start = tile * geo.x_tile_len() + geo.margin;
            let from = tile * geo.tile_cells;
            x[start..start + cells].copy_from_slice(&self.inputs[from..from + cells]);
        }
    }

    /// Expands `input_bits` into the first block's input tiles.
    #[inline(always)]
    fn load_input_bits<S: Simd>(&mut self, s: S) {
        let geo = self.geo;
        for tile in 0..geo.tiles {
            let start = tile * geo.x_tile_len() + geo.margin;
            expand_bits(
                s,
                &self.input_bits,
                tile * geo.tile_cells,
                geo.cells_in(tile),
                &mut self.xs[0][start..start + geo.stride],
            );
        }
    }

    /// The network output of the last forward pass, boards one after the other.
    fn read_outputs(&self, blocks: usize, out: &mut [f32]) {
        let geo = self.geo;
        for tile in 0..geo.tiles {
            let cells = geo.cells_in(tile);
            let start = tile * geo.x_tile_len() + geo.margin;
            let to = tile * geo.tile_cells;
            out[to..to + cells].copy_from_slice(&self.xs[blocks][start..start + cells]);
        }
    }
}

/// Writes bits `first..first + count` of the bit stream `bits` to `out` as 0.0 / 1.0, and
/// zeros after them up to the end of `out` (a whole number of vectors).
#[inline(always)]
fn expand_bits<S: Simd>(s: S, bits: &[u64], first: usize, count: usize, out: &mut [f32]) {
    const ONES: [f32; LANES] = [1.0; LANES];
    assert!(out.len().is_multiple_of(LANES) && count <= out.len());
    assert!(count == 0 || (first + count).div_ceil(64) <= bits.len());
    for (v, chunk) in out.chunks_exact_mut(LANES).enumerate() {
        let at = first + v * LANES;
        let left = count.saturating_sub(v * LANES).min(LANES);
        let mask = if left == 0 {
            0
        } else {
            let (word, offset) = (at / 64, at % 64);
            let mut window = bits[word] >> offset;
            if offset + left > 64 {
                window |= bits[word + 1] << (64 - offset);
            }
            (window & ((1u64 << left) - 1)) as u16
        };
        // SAFETY: ONES and the chunk hold 16 floats each.
        unsafe { s.store(chunk.as_mut_ptr(), s.load_masked(ONES.as_ptr(), mask)) };
    }
}

/// The training noise of one block: RReLU slopes `[cout, N]` per layer, dropout factors
/// `[2m, samples]` after conv3.
#[derive(Default)]
struct BlockNoise {
    slopes: [Option<Vec<f32>>; 3],
    mask: Option<Vec<f32>>,
}

/// One model: parameters, Adam state, gradients.
pub struct Model {
    /// The packed parameters of every block (see [`BlockLayout`]), block after block.
    pub params: Vec<f32>,
    grads: Vec<f32>,
    /// 16 partial sums per parameter.
    lanes: Vec<f32>,
    transposed: Vec<f32>,
    /// conv3's bias with the input shift folded in, per block.
    folded: Vec<f32>,
    adam_m: Vec<f32>,
    adam_v: Vec<f32>,
    step: i32,
    noise: Vec<BlockNoise>,
}

/// Adam as candle's `AdamW` (no weight decay), PyTorch's defaults but the learning rate.
#[derive(Debug, Clone, Copy)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Model {
    pub fn new(shape: &NetShape, params: Vec<f32>) -> Model {
        let count = params.len();
        debug_assert_eq!(count, shape.blocks * shape.params_per_block());
        let mut model = Model {
            params,
            grads: vec![0f32; count],
            lanes: vec![0f32; count * LANES],
            transposed: vec![0f32; shape.blocks * shape.layout.transposed_count()],
            folded: vec![0f32; shape.blocks * shape.c1()],
            adam_m: vec![0f32; count],
            adam_v: vec![0f32; count],
            step: 0,
            noise: (0..shape.blocks).map(|_| BlockNoise::default()).collect(),
        };
        model.transpose(shape);
        model
    }

    /// The gradients of the last training step.
    pub fn grads(&self) -> &[f32] {
        &self.grads
    }

    fn transpose(&mut self, shape: &NetShape) {
        let (c1, c2) = (shape.c1(), shape.c2());
        let per_block = shape.params_per_block();
        let per_t = shape.layout.transposed_count();
        for b in 0..shape.blocks {
            let p = &self.params[b * per_block..(b + 1) * per_block];
            let t = &mut self.transposed[b * per_t..(b + 1) * per_t];
            let (w3, _) = shape.layout.offsets(0);
            let (w1a, _) = shape.layout.offsets(1);
            let (t3, t1a) = t.split_at_mut(9 * c1);
            for c in 0..c1 {
                for k in 0..9 {
                    t3[k * c1 + c] = p[w3 + c * 9 + k];
                }
            }
            for o in 0..c2 {
                for i in 0..c1 {
                    t1a[i * c2 + o] = p[w1a + o * c1 + i];
                }
            }
            fold_bias(shape, p, &mut self.folded[b * c1..(b + 1) * c1]);
        }
    }

    /// Draws the noise of a training pass in the order of the candle formulations.
    fn draw_noise(&mut self, shape: &NetShape, rng: &mut dyn RngCore, geo: &Geometry) {
        let n = geo.cells();
        for (block, noise) in self.noise.iter_mut().enumerate() {
            let acts = shape.train_acts[block];
            noise.mask = None;
            for (layer, &act) in acts.iter().enumerate() {
                let (_, cout) = shape.layout.fan_in_out(layer);
                let dropout = shape.dropout && layer == 0 && block + 1 != shape.blocks;
                let (slopes, mask) =
                    crate::network::draw_noise(rng, act, dropout, cout, n, geo.samples);
                noise.slopes[layer] = slopes;
                if mask.is_some() {
                    noise.mask = mask;
                }
            }
        }
    }

    /// One Adam step from `self.grads`.
    fn adam_step(&mut self, shape: &NetShape, adam: &Adam) {
        self.step += 1;
        let beta1 = adam.beta1 as f32;
        let beta2 = adam.beta2 as f32;
        let one_minus_beta1 = (1.0 - adam.beta1) as f32;
        let one_minus_beta2 = (1.0 - adam.beta2) as f32;
        let scale_m = (1.0 / (1.0 - adam.beta1.powi(self.step))) as f32;
        let scale_v = (1.0 / (1.0 - adam.beta2.powi(self.step))) as f32;
        let (lr, eps) = (adam.lr as f32, adam.eps as f32);
        let state = self.adam_m.iter_mut().zip(self.adam_v.iter_mut());
        for ((theta, &g), (m, v)) in self.params.iter_mut().zip(&self.grads).zip(state) {
            *m = *m * beta1 + g * one_minus_beta1;
            *v = *v * beta2 + (g * g) * one_minus_beta2;
            let m_hat = *m * scale_m;
            let v_hat = *v * scale_v;
            *theta -= m_hat / (v_hat.sqrt() + eps) * lr;
        }
        self.transpose(shape);
    }
}

/// conv3's bias with the shift of the block input folded in: the taps are read unshifted
/// (zero off the board), and `w (t - shift) + b = w t + (b - shift sum(w))`.
fn fold_bias(shape: &NetShape, block_params: &[f32], out: &mut [f32]) {
    let (w3, b3) = shape.layout.offsets(0);
    for (c, out) in out.iter_mut().enumerate() {
        let sum: f32 = block_params[w3 + 9 * c..w3 + 9 * c + 9].iter().sum();
        *out = block_params[b3 + c] - shape.shift * sum;
    }
}

/// The weight gradient of conv3 from the unshifted taps (see [`fold_bias`]):
/// `sum g (t - shift) = sum g t - shift sum g`, the last sum being the bias gradient.
fn unfold_grads(shape: &NetShape, grads: &mut [f32]) {
    if shape.shift == 0.0 {
        return;
    }
    let (w3, b3) = shape.layout.offsets(0);
    for block in grads.chunks_exact_mut(shape.params_per_block()) {
        for c in 0..shape.c1() {
            let bias_grad = block[b3 + c];
            for w in &mut block[w3 + 9 * c..w3 + 9 * c + 9] {
                *w -= shape.shift * bias_grad;
            }
        }
    }
}

/// Everything one tile of one block needs.
struct TileBlock<'a> {
    shape: &'a NetShape,
    geo: &'a Geometry,
    taps_geo: &'a Taps,
    acts: [Act; 3],
    /// The block's packed parameters and transposed weights.
    w: &'a [f32],
    wt: &'a [f32],
    /// conv3's bias with the input shift folded in ([`fold_bias`]).
    bias3: &'a [f32],
    noise: Option<&'a BlockNoise>,
    tile: usize,
}

impl TileBlock<'_> {
    /// The natural index of the tile's first cell.
    fn first_cell(&self) -> usize {
        self.tile * self.geo.tile_cells
    }

    /// `act(values) * factor` for the activations without a vector form, dropout included,
    /// in place on `[rows, stride]` (bias already added); keeps the input in `pre` if given.
    fn activate_rows(&self, layer: usize, values: &mut [f32], pre: Option<&mut [f32]>) {
        let act = self.acts[layer];
        let geo = self.geo;
        let (n, first, cells) = (geo.cells(), self.first_cell(), geo.cells_in(self.tile));
        if let Some(pre) = pre {
            pre.copy_from_slice(values);
        }
        let slopes = self.noise.and_then(|n| n.slopes[layer].as_deref());
        let mask = self.mask(layer);
        for (c, row) in values.chunks_exact_mut(geo.stride).enumerate() {
            for (j, v) in row.iter_mut().enumerate().take(cells) {
                let cell = first + j;
                let f = mask.map_or(1.0, |m| m[c * geo.samples + cell / geo.area]);
                let u = *v;
                *v = match act {
                    Act::Relu if u < 0.0 => 0.0,
                    Act::Identity | Act::Relu => u * f,
                    Act::Leaky(_) | Act::RandomLeaky if u > 0.0 => u * f,
                    Act::Leaky(slope) => u * slope * f,
                    Act::RandomLeaky => u * slopes.map_or(0.0, |s| s[c * n + cell]) * f,
                    Act::Elu if u > 0.0 => u * f,
                    Act::Elu => u.exp_m1() * f,
                    Act::Gelu => gelu(u) * f,
                };
            }
        }
    }

    /// The dropout factors after layer `layer`, `[2m, samples]`.
    fn mask(&self, layer: usize) -> Option<&[f32]> {
        if layer == 0 {
            self.noise.and_then(|n| n.mask.as_deref())
        } else {
            None
        }
    }

    /// `grad *= act'(...) * factor` for the activations without a vector form or with
    /// dropout, in place on `[rows, stride]`, adding each row's sums to `sums` (`[rows,
    /// LANES]`). `out` is the layer's output, `pre` its input (GELU only).
    fn act_grad_rows(
        &self,
        layer: usize,
        grad: &mut [f32],
        out: &[f32],
        pre: Option<&[f32]>,
        sums: &mut [f32],
    ) {
        let act = self.acts[layer];
        let geo = self.geo;
        let (n, first, cells) = (geo.cells(), self.first_cell(), geo.cells_in(self.tile));
        let slopes = self.noise.and_then(|n| n.slopes[layer].as_deref());
        let mask = self.mask(layer);
        let rows = grad
            .chunks_exact_mut(geo.stride)
            .zip(out.chunks_exact(geo.stride));
        for (c, (row, out)) in rows.enumerate() {
            let sums = &mut sums[c * LANES..(c + 1) * LANES];
            for (j, g) in row.iter_mut().enumerate() {
                if j >= cells {
                    *g = 0.0;
                    continue;
                }
                let cell = first + j;
                let f = mask.map_or(1.0, |m| m[c * geo.samples + cell / geo.area]);
                let o = out[j];
                let d = match act {
                    Act::Identity => f,
                    Act::Relu | Act::Leaky(_) | Act::RandomLeaky if o > 0.0 => f,
                    Act::Relu => 0.0,
                    Act::Leaky(slope) => slope * f,
                    Act::RandomLeaky => slopes.map_or(0.0, |s| s[c * n + cell]) * f,
                    // elu'(pre) = elu(pre) + 1 = out / f + 1 for pre <= 0
                    Act::Elu if o > 0.0 || f == 0.0 => f,
                    Act::Elu => o + f,
                    Act::Gelu => gelu_grad(pre.map_or(0.0, |p| p[c * geo.stride + j])) * f,
                };
                *g *= d;
                sums[j % LANES] += *g;
            }
        }
    }

    /// The activation of layer `layer` when it runs in the kernel's epilogue.
    fn fused_act(&self, layer: usize) -> Option<SimpleAct> {
        if self.mask(layer).is_some() {
            None
        } else {
            self.acts[layer].simple()
        }
    }

    /// Adds each tap's gradient back onto its source cell: `gx` (a tile with margins) is the
    /// gradient of the block input.
    #[inline(always)]
    fn scatter_taps<S: Simd>(&self, s: S, dtaps: &[f32], gx: &mut [f32]) {
        let geo = self.geo;
        let taps = self.taps_geo;
        gx.fill(0.0);
        assert!(dtaps.len() >= 9 * geo.stride && taps.bits.len() >= 9 * taps.vectors);
        for k in 0..9 {
            let offset = (geo.margin as isize + taps.offsets[k]) as usize;
            let target = &mut gx[offset..offset + geo.stride];
            for v in 0..taps.vectors {
                // SAFETY: v < vectors = stride / LANES; the rows hold `stride` cells.
                unsafe {
                    let p = target.as_mut_ptr().add(v * LANES);
                    let bits = *taps.bits.get_unchecked(k * taps.vectors + v);
                    let row = dtaps.as_ptr().add(k * geo.stride + v * LANES);
                    s.store(p, s.add(s.load(p), s.load_masked(row, bits)));
                }
            }
        }
    }

    /// `y = act(a x + bias)` for layer `layer` (`a` its weight, `[rows, k_len]`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn layer_forward<S: Simd, X: crate::kernels::Rows<S>>(
        &self,
        s: S,
        layer: usize,
        rows: usize,
        k_len: usize,
        x: &X,
        y: &mut [f32],
        pre: Option<&mut [f32]>,
    ) {
        let stride = self.geo.stride;
        let (w, b) = self.shape.layout.offsets(layer);
        let a = &self.w[w..w + rows * k_len];
        let bias = if layer == 0 {
            self.bias3
        } else {
            &self.w[b..b + rows]
        };
        match self.fused_act(layer) {
            Some(act) if pre.is_none() => {
                let mut epilogue = BiasAct { bias, act };
                matmul(s, a, rows, k_len, x, y, stride, stride, &mut epilogue);
            }
            _ => {
                let mut epilogue = BiasAct {
                    bias,
                    act: SimpleAct::Identity,
                };
                matmul(s, a, rows, k_len, x, y, stride, stride, &mut epilogue);
                self.activate_rows(layer, &mut y[..rows * stride], pre);
            }
        }
    }

    /// `y = (a x) * act'` for the gradient entering layer `layer` from above (`a` the
    /// transposed weight of the layer above, `[rows, k_len]`; `out` the output of layer
    /// `layer`), adding the row sums (the bias gradient of `layer`) to `sums`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn grad_matmul<S: Simd>(
        &self,
        s: S,
        layer: usize,
        a: &[f32],
        rows: usize,
        k_len: usize,
        x: &[f32],
        y: &mut [f32],
        out: &[f32],
        pre: Option<&[f32]>,
        sums: &mut [f32],
    ) {
        let stride = self.geo.stride;
        match self.fused_act(layer) {
            Some(act) => {
                assert!(out.len() >= rows * stride && sums.len() >= rows * LANES);
                let mut epilogue = ActGrad {
                    out: out.as_ptr(),
                    out_stride: stride,
                    act,
                    sums,
                };
                let x = Dense {
                    values: x,
                    ld: stride,
                };
                matmul(s, a, rows, k_len, &x, y, stride, stride, &mut epilogue);
            }
            None => {
                let x = Dense {
                    values: x,
                    ld: stride,
                };
                matmul(s, a, rows, k_len, &x, y, stride, stride, &mut Plain);
                let out = &out[..rows * stride];
                self.act_grad_rows(layer, &mut y[..rows * stride], out, pre, sums);
            }
        }
    }

    /// The forward pass of the block on the tile: `x` (with margins) -> `h1` `[2m, stride]`,
    /// `h2` `[m, stride]`, `out` `[stride]`; `pre` keeps pre-activations.
    #[inline(always)]
    fn forward<S: Simd>(
        &self,
        s: S,
        x: &[f32],
        h1: &mut [f32],
        h2: &mut [f32],
        out: &mut [f32],
        pre: [Option<&mut [f32]>; 3],
    ) {
        let (c1, c2, stride) = (self.shape.c1(), self.shape.c2(), self.geo.stride);
        let [pre0, pre1, pre2] = pre;
        let taps = self.taps_geo.rows(x, self.geo.margin);
        self.layer_forward(s, 0, c1, 9, &taps, h1, pre0);
        let h1 = Dense {
            values: h1,
            ld: stride,
        };
        self.layer_forward(s, 1, c2, c1, &h1, h2, pre1);
        let h2 = Dense {
            values: h2,
            ld: stride,
        };
        self.layer_forward(s, 2, 1, c2, &h2, out, pre2);
    }

    /// The backward pass of the block on the tile, from `g3`, the gradient of its output (in
    /// place; scratch after): adds the weight and bias gradients to `lanes` (the block's
    /// `[params, LANES]`) and, when `gx` is given, writes the gradient of the block input
    /// there (a tile with margins).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn backward<S: Simd>(
        &self,
        s: S,
        x: &[f32],
        act_out: [&[f32]; 3],
        pre: [Option<&[f32]>; 3],
        scratch: Scratch<'_>,
        lanes: &mut [f32],
        gx: Option<&mut [f32]>,
    ) {
        let layout = self.shape.layout;
        let (c1, c2, stride) = (self.shape.c1(), self.shape.c2(), self.geo.stride);
        let [h1, h2, out] = act_out;
        let [pre0, pre1, pre2] = pre;
        let Scratch { dtaps, g1, g2, g3 } = scratch;
        let (w3, b3) = layout.offsets(0);
        let (w1a, b1a) = layout.offsets(1);
        let (w1b, b1b) = layout.offsets(2);
        // conv1b: activation derivative and bias in place, weight from h2
        let sums = &mut lanes[b1b * LANES..(b1b + 1) * LANES];
        match self.fused_act(2) {
            Some(act) => {
                let mut epilogue = ActGrad {
                    out: out.as_ptr(),
                    out_stride: stride,
                    act,
                    sums,
                };
                assert!(out.len() >= stride && g3.len() >= stride);
                let mut sum = s.zero();
                for v in (0..stride).step_by(LANES) {
                    // SAFETY: v + LANES <= stride <= the lengths of g3 and out.
                    unsafe {
                        let p = g3.as_mut_ptr().add(v);
                        let g = epilogue.apply(s, 0, v, s.load(p));
                        sum = s.add(sum, g);
                        s.store(p, g);
                    }
                }
                // SAFETY: row 0 of the one-row sums.
                unsafe { epilogue.row_sum(s, 0, sum) };
            }
            None => self.act_grad_rows(2, &mut g3[..stride], &out[..stride], pre2, sums),
        }
        let h2_rows = Dense {
            values: h2,
            ld: stride,
        };
        matmul_nt_lanes(
            s,
            g3,
            1,
            stride,
            &h2_rows,
            c2,
            stride,
            &mut lanes[w1b * LANES..],
            c2,
        );
        // conv1a: g2 = w1b^T g3 (w1b read as a column), derivative, bias; weight from h1
        let w1b_column = &self.w[w1b..w1b + c2];
        self.grad_matmul(
            s,
            1,
            w1b_column,
            c2,
            1,
            g3,
            g2,
            h2,
            pre1,
            &mut lanes[b1a * LANES..],
        );
        let h1_rows = Dense {
            values: h1,
            ld: stride,
        };
        matmul_nt_lanes(
            s,
            g2,
            c2,
            stride,
            &h1_rows,
            c1,
            stride,
            &mut lanes[w1a * LANES..],
            c1,
        );
        // conv3: g1 = w1a^T g2, derivative, bias; weight from the taps
        let w1a_t = &self.wt[9 * c1..9 * c1 + c1 * c2];
        self.grad_matmul(
            s,
            0,
            w1a_t,
            c1,
            c2,
            g2,
            g1,
            h1,
            pre0,
            &mut lanes[b3 * LANES..],
        );
        let taps = self.taps_geo.rows(x, self.geo.margin);
        matmul_nt_lanes(
            s,
            g1,
            c1,
            stride,
            &taps,
            9,
            stride,
            &mut lanes[w3 * LANES..],
            9,
        );
        // the block input: dtaps = w3^T g1, each tap back onto its source cell
        if let Some(gx) = gx {
            let w3_t = &self.wt[..9 * c1];
            let g1_rows = Dense {
                values: g1,
                ld: stride,
            };
            matmul(s, w3_t, 9, c1, &g1_rows, dtaps, stride, stride, &mut Plain);
            self.scatter_taps(s, dtaps, gx);
        }
    }
}

/// The per-tile scratch of a backward pass; `g3` holds the output gradient on entry.
struct Scratch<'a> {
    dtaps: &'a mut [f32],
    g1: &'a mut [f32],
    g2: &'a mut [f32],
    g3: &'a mut [f32],
}

/// Loss and gradient of a tile's cells: `grad[j] = scale * dloss/dout[j]` for the `targets`
/// (the tile's real cells), 0 for padding; the cell losses are added to `sums`.
#[inline(always)]
fn loss_tile(
    out: &[f32],
    targets: &[f32],
    logits: bool,
    scale: f32,
    grad: &mut [f32],
    sums: &mut [f64; LANES],
) {
    let cells = targets.len();
    let (real, padding) = grad.split_at_mut(cells);
    padding.fill(0.0);
    let mut chunks = real
        .chunks_exact_mut(LANES)
        .zip(out.chunks_exact(LANES))
        .zip(targets.chunks_exact(LANES));
    for ((g, o), y) in chunks.by_ref() {
        for l in 0..LANES {
            let (loss, grad) = bce_cell(o[l], y[l], logits);
            g[l] = grad * scale;
            sums[l] += f64::from(loss);
        }
    }
    let done = cells / LANES * LANES;
    for j in done..cells {
        let (loss, g) = bce_cell(out[j], targets[j], logits);
        grad[j] = g * scale;
        sums[j - done] += f64::from(loss);
    }
}

/// The tile slices of the pre-activation buffers of a block (empty when there are none).
fn pre_tile(
    pre: &mut [[Vec<f32>; 3]],
    block: usize,
    tile: usize,
    rows: [usize; 3],
    stride: usize,
) -> [Option<&mut [f32]>; 3] {
    match pre.get_mut(block) {
        Some(buffers) => {
            let [a, b, c] = buffers;
            [(a, rows[0]), (b, rows[1]), (c, rows[2])]
                .map(|(buf, r)| Some(&mut buf[tile * r * stride..(tile + 1) * r * stride]))
        }
        None => [None, None, None],
    }
}

fn read_only(pre: [Option<&mut [f32]>; 3]) -> [Option<&[f32]>; 3] {
    pre.map(|p| p.map(|p| &*p))
}

/// One training step of one model on the boards in `ws.inputs` / `ws.targets`: forward,
/// loss, backward; leaves the gradients in `model.grads` and returns the mean loss.
struct TrainStep<'a> {
    shape: &'a NetShape,
    model: &'a mut Model,
    ws: &'a mut Workspace,
}

impl WithSimd for TrainStep<'_> {
    type Output = f64;

    #[inline(always)]
    fn with<S: Simd>(self, s: S) -> f64 {
        let TrainStep { shape, model, ws } = self;
        let geo = ws.geo;
        let (c1, c2, stride, xt, margin) = (
            shape.c1(),
            shape.c2(),
            geo.stride,
            geo.x_tile_len(),
            geo.margin,
        );
        let rows = [c1, c2, 1];
        let per_block = shape.params_per_block();
        let per_t = shape.layout.transposed_count();
        let last = shape.blocks - 1;
        ws.load_input_bits(s);
        let Workspace {
            taps_geo,
            target_bits,
            ys,
            xs,
            h1,
            h2,
            pre,
            grads,
            dtaps,
            g1,
            g2,
            g3,
            s1,
            s2,
            ..
        } = ws;
        let Model {
            params,
            lanes,
            transposed,
            folded,
            noise,
            grads: model_grads,
            ..
        } = model;
        // `lanes` is zero: from its allocation, then from `reduce_lanes`
        let tile_block = |block: usize, tile: usize| TileBlock {
            shape,
            geo: &geo,
            taps_geo,
            acts: shape.train_acts[block],
            w: &params[block * per_block..(block + 1) * per_block],
            wt: &transposed[block * per_t..(block + 1) * per_t],
            bias3: &folded[block * c1..(block + 1) * c1],
            noise: Some(&noise[block]),
            tile,
        };

        // every block but the last: forward, keeping the hidden activations
        for block in 0..last {
            let (inputs, outputs) = xs.split_at_mut(block + 1);
            let (x, y) = (&inputs[block], &mut outputs[0]);
            for tile in 0..geo.tiles {
                tile_block(block, tile).forward(
                    s,
                    &x[tile * xt..(tile + 1) * xt],
                    &mut h1[block][tile * c1 * stride..(tile + 1) * c1 * stride],
                    &mut h2[block][tile * c2 * stride..(tile + 1) * c2 * stride],
                    &mut y[tile * xt + margin..tile * xt + margin + stride],
                    pre_tile(pre, block, tile, rows, stride),
                );
            }
        }

        // the last block: forward, loss and backward per tile
        let mut loss_sums = [0f64; LANES];
        let scale = 1.0 / geo.cells() as f32;
        {
            let (inputs, outputs) = xs.split_at_mut(last + 1);
            let (x, y) = (&inputs[last], &mut outputs[0]);
            let block_lanes = &mut lanes[last * per_block * LANES..(last + 1) * per_block * LANES];
            for tile in 0..geo.tiles {
                let tb = tile_block(last, tile);
                let x = &x[tile * xt..(tile + 1) * xt];
                let out = &mut y[tile * xt + margin..tile * xt + margin + stride];
                tb.forward(s, x, s1, s2, out, pre_tile(pre, last, tile, rows, stride));
                let cells = geo.cells_in(tile);
                expand_bits(s, target_bits, tile * geo.tile_cells, cells, ys);
                loss_tile(out, &ys[..cells], shape.logits, scale, g3, &mut loss_sums);
                let gx = (last > 0).then(|| &mut grads[0][tile * xt..(tile + 1) * xt]);
                let scratch = Scratch { dtaps, g1, g2, g3 };
                let pre = read_only(pre_tile(pre, last, tile, rows, stride));
                tb.backward(s, x, [s1, s2, out], pre, scratch, block_lanes, gx);
            }
        }

        // the other blocks backward, last to first
        for block in (0..last).rev() {
            let [first_buffer, second_buffer] = grads;
            let (gout, gx) = if (last - 1 - block) % 2 == 0 {
                (&*first_buffer, second_buffer)
            } else {
                (&*second_buffer, first_buffer)
            };
            let block_lanes =
                &mut lanes[block * per_block * LANES..(block + 1) * per_block * LANES];
            for tile in 0..geo.tiles {
                let tb = tile_block(block, tile);
                let interior = tile * xt + margin..tile * xt + margin + stride;
                g3.copy_from_slice(&gout[interior.clone()]);
                let scratch = Scratch { dtaps, g1, g2, g3 };
                let act_out = [
                    &h1[block][tile * c1 * stride..(tile + 1) * c1 * stride],
                    &h2[block][tile * c2 * stride..(tile + 1) * c2 * stride],
                    &xs[block + 1][interior],
                ];
                let pre = read_only(pre_tile(pre, block, tile, rows, stride));
                let gx = (block > 0).then(|| &mut gx[tile * xt..(tile + 1) * xt]);
                tb.backward(
                    s,
                    &xs[block][tile * xt..(tile + 1) * xt],
                    act_out,
                    pre,
                    scratch,
                    block_lanes,
                    gx,
                );
            }
        }

        reduce_lanes(lanes, model_grads);
        unfold_grads(shape, model_grads);
        let total: f64 = loss_sums.iter().sum();
        f64::from((total / geo.cells() as f64) as f32)
    }
}

/// The evaluation forward pass of a model over `ws.inputs`, into `out`.
struct EvalPass<'a> {
    shape: &'a NetShape,
    params: &'a [f32],
    ws: &'a mut Workspace,
}

impl WithSimd for EvalPass<'_> {
    type Output = ();

    #[inline(always)]
    fn with<S: Simd>(self, s: S) {
        let EvalPass { shape, params, ws } = self;
        let geo = ws.geo;
        let (stride, xt, margin) = (geo.stride, geo.x_tile_len(), geo.margin);
        let per_block = shape.params_per_block();
        let Workspace {
            taps_geo,
            xs,
            s1,
            s2,
            ..
        } = ws;
        let c1 = shape.c1();
        let mut folded = vec![0f32; shape.blocks * c1];
        for (block, folded) in folded.chunks_exact_mut(c1).enumerate() {
            fold_bias(
                shape,
                &params[block * per_block..(block + 1) * per_block],
                folded,
            );
        }
        for block in 0..shape.blocks {
            let (inputs, outputs) = xs.split_at_mut(block + 1);
            let (x, y) = (&inputs[block], &mut outputs[0]);
            for tile in 0..geo.tiles {
                let tb = TileBlock {
                    shape,
                    geo: &geo,
                    taps_geo,
                    acts: shape.eval_acts[block],
                    w: &params[block * per_block..(block + 1) * per_block],
                    wt: &[],
                    bias3: &folded[block * c1..(block + 1) * c1],
                    noise: None,
                    tile,
                };
                let out = &mut y[tile * xt + margin..tile * xt + margin + stride];
                tb.forward(
                    s,
                    &x[tile * xt..(tile + 1) * xt],
                    s1,
                    s2,
                    out,
                    [None, None, None],
                );
            }
        }
    }
}

/// The raw network output (logits with a sigmoid) of `params` for `samples` boards of side
/// `size` (`inputs`, boards one after the other), in evaluation mode.
pub fn forward_eval(
    shape: &NetShape,
    params: &[f32],
    inputs: &[f32],
    samples: usize,
    size: usize,
    kernels: Kernels,
) -> Vec<f32> {
    let mut ws = Workspace::new(shape, samples, size, false);
    ws.inputs.copy_from_slice(inputs);
    ws.load_inputs();
    kernels.run(EvalPass {
        shape,
        params,
        ws: &mut ws,
    });
    let mut out = vec![0f32; ws.geo.cells()];
    ws.read_outputs(shape.blocks, &mut out);
    out
}

/// A model in training: its network, parameters, optimiser state and random streams.
pub struct Trainer<R> {
    pub model: Model,
    data_rng: R,
    noise_rng: R,
    adam: Adam,
}

/// What one training run draws its boards with.
#[derive(Debug, Clone, Copy)]
pub struct BatchSpec {
    pub rule: lifesweep_life::Rule,
    pub steps: u32,
    pub size: usize,
    pub count: usize,
    pub density: f64,
}

impl BatchSpec {
    pub fn of(params: &TrainParams) -> BatchSpec {
        BatchSpec {
            rule: params.rule,
            steps: params.steps,
            size: params.board_size as usize,
            count: params.batch_size as usize,
            density: params.density,
        }
    }
}

impl<R: RngCore> Trainer<R> {
    pub fn new(shape: &NetShape, params: Vec<f32>, data_rng: R, noise_rng: R, adam: Adam) -> Self {
        Trainer {
            model: Model::new(shape, params),
            data_rng,
            noise_rng,
            adam,
        }
    }

    /// Draws a batch into `ws` and runs forward, loss and backward; returns the mean loss.
    /// The parameters change only in [`Trainer::apply`].
    pub fn forward_backward(
        &mut self,
        shape: &NetShape,
        batch: &BatchSpec,
        ws: &mut Workspace,
        kernels: Kernels,
    ) -> f64 {
        fill_batch_bits(
            &mut self.data_rng,
            batch.rule,
            batch.steps,
            batch.size,
            batch.count,
            batch.density,
            &mut ws.input_bits,
            &mut ws.target_bits,
        );
        let geo = ws.geo;
        self.model.draw_noise(shape, &mut self.noise_rng, &geo);
        kernels.run(TrainStep {
            shape,
            model: &mut self.model,
            ws,
        })
    }

    /// One Adam step with the gradients of the last [`Trainer::forward_backward`].
    pub fn apply(&mut self, shape: &NetShape) {
        self.model.adam_step(shape, &self.adam);
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use lifesweep_life::{generate_batch, stream_rng, RngStream, Rule};
    use lifesweep_spec::{Activation, TrainParams};

    use super::*;
    use crate::network::{Formulation, Network, Pass};

    /// Loss and gradients of one training step from candle's autograd (the Ops formulation).
    fn candle_step(
        net: &Network,
        params: &TrainParams,
        inputs: &[f32],
        targets: &[f32],
    ) -> (f32, Vec<f32>) {
        let (count, size) = (params.batch_size as usize, params.board_size as usize);
        let boards = Tensor::from_slice(inputs, (count, size, size), &Device::Cpu).unwrap();
        let y = Tensor::from_slice(targets, count * size * size, &Device::Cpu).unwrap();
        let mut noise = stream_rng(params.seed, RngStream::Dropout);
        let out = net.forward(&boards, Pass::Train(&mut noise)).unwrap();
        let loss = net.loss(&out, &y).unwrap();
        let grads = loss.backward().unwrap();
        let flat = net
            .vars()
            .iter()
            .flat_map(|v| grads.get(v).unwrap().to_vec1::<f32>().unwrap())
            .collect();
        (loss.to_scalar::<f32>().unwrap(), flat)
    }

    /// The same step on the native path with the given kernels.
    fn native_step(net: &Network, params: &TrainParams, kernels: Kernels) -> (f32, Vec<f32>) {
        let shape = net.shape();
        let batch = BatchSpec::of(params);
        let mut ws = Workspace::new(&shape, batch.count, batch.size, true);
        let mut trainer = Trainer::new(
            &shape,
            net.packed_params().unwrap(),
            stream_rng(params.seed, RngStream::TrainData),
            stream_rng(params.seed, RngStream::Dropout),
            Adam {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        );
        let loss = trainer.forward_backward(&shape, &batch, &mut ws, kernels);
        (loss as f32, trainer.model.grads().to_vec())
    }

    #[test]
    fn gradients_match_candle_autograd_on_odd_geometries() {
        let cases = [
            // (steps, d_factor, m, activation, sigmoid, normalize, shift, batch, board)
            (1, 1.0, 1, Activation::LeakyReLU, true, false, true, 16, 10),
            (2, 1.0, 3, Activation::ReLU, false, false, true, 37, 7),
            (2, 1.5, 7, Activation::LeakyReLU, true, false, true, 5, 13),
            (1, 2.0, 2, Activation::RReLU, true, true, true, 9, 3),
            (2, 1.0, 4, Activation::ELU, false, true, true, 11, 6),
            (2, 1.0, 2, Activation::GELU, true, true, false, 20, 5),
            (1, 1.0, 20, Activation::LeakyReLU, true, false, true, 3, 64),
        ];
        for (
            steps,
            d_factor,
            m,
            activation,
            use_sigmoid,
            normalize,
            normalize_shift,
            batch,
            board,
        ) in cases
        {
            let params = TrainParams {
                steps,
                d_factor,
                m_factor: m,
                activation,
                use_sigmoid,
                normalize,
                normalize_shift,
                batch_size: batch,
                board_size: board,
                rule: Rule::Conway,
                seed: u64::from(batch),
                ..TrainParams::default()
            };
            let label = format!("{activation} m {m} steps {steps} d {d_factor} normalize {normalize} batch {batch} board {board}");
            let net = Network::new(&params, &Device::Cpu)
                .unwrap()
                .with_formulation(Formulation::Fused);
            let mut rng = stream_rng(params.seed, RngStream::TrainData);
            let data = generate_batch(
                &mut rng,
                params.rule,
                steps,
                board as usize,
                batch as usize,
                params.density,
            );
            let (loss, expected) = candle_step(&net, &params, &data.inputs, &data.targets);
            let scale = expected.iter().fold(0f32, |a, g| a.max(g.abs())).max(1e-6);
            for kernels in [Kernels::Portable, Kernels::Avx512] {
                if !kernels.available() {
                    continue;
                }
                let (native_loss, grads) = native_step(&net, &params, kernels);
                assert!(
                    (native_loss - loss).abs() <= 1e-5 * loss.abs().max(1.0),
                    "{label} {kernels:?}: loss {native_loss} vs {loss}"
                );
                assert_eq!(grads.len(), expected.len());
                for (i, (g, e)) in grads.iter().zip(&expected).enumerate() {
                    assert!(
                        (g - e).abs() <= 2e-5 * scale,
                        "{label} {kernels:?}: gradient {i}: {g} vs {e} (scale {scale})"
                    );
                }
            }
        }
    }

    #[test]
    fn tiles_are_whole_boards_and_whole_vectors_when_they_can_be() {
        let g = Geometry::new(128, 10);
        assert_eq!(
            (g.boards_per_tile, g.tiles, g.tile_cells, g.stride),
            (8, 16, 800, 800)
        );
        let g = Geometry::new(1000, 5);
        assert_eq!((g.boards_per_tile, g.tile_cells, g.stride), (32, 800, 800));
        assert_eq!(g.tiles, 32);
        assert_eq!(g.cells_in(31), 8 * 25);
        let g = Geometry::new(37, 7);
        assert_eq!(g.tile_cells % 16, 0);
        let g = Geometry::new(5, 13);
        assert_eq!(
            (g.boards_per_tile, g.tiles, g.tile_cells, g.stride),
            (4, 2, 676, 688)
        );
        assert_eq!(g.cells_in(1), 169);
        assert_eq!(Geometry::new(3, 64).margin, 80);
    }
}
