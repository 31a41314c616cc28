//! The CPU kernels of the fast formulation ([`crate::Formulation::Fused`]): candle custom ops
//! with hand-written backward passes.
//!
//! Candle's autograd allocates a zero tensor and adds into it for every gradient of every
//! node, and its CPU `conv2d` backward is a naive loop, so a block written as
//! `conv2d -> broadcast_add -> activation -> dropout -> ...` costs many passes over the
//! activations. Here a whole block of three convolutions is one node ([`BlockOp`]) whose
//! parameters are one packed vector ([`BlockLayout`]). Inside, activations are
//! `[channels, N]` with `N = batch * H * W` (channels first): the 3x3 convolution with its
//! single input channel is one matmul over the 9 shifted copies of the board (an "im2col"
//! `[9, N]`), the 1x1 convolutions are plain matmuls, and bias, activation and dropout are
//! one pass per layer. The backward pass computes every gradient of the block with six
//! matmuls (five when the block input is the boards) and one pass per layer. The loss is one
//! op too ([`BceLoss`]).
//!
//! These ops have CPU kernels only; on other devices the network uses
//! [`crate::Formulation::Ops`], built from candle's own differentiable ops.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Device, Layout, Result, Shape, Storage, Tensor};

use crate::math::{exp_neg, ln_1p_unit, ln_unit};

/// The contiguous f32 data of a CPU storage as seen through `layout`.
fn slice_f32<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{what}: expected an f32 tensor, got {:?}", storage.dtype())
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

/// Runs `f` on the CPU storage and layout of a tensor.
fn with_cpu<R>(
    tensor: &Tensor,
    what: &str,
    f: impl FnOnce(&CpuStorage, &Layout) -> Result<R>,
) -> Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(cpu, layout),
        _ => bail!("{what}: the fused kernels run on the cpu only"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor.
fn with_f32<R>(tensor: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    with_cpu(tensor, what, |storage, layout| {
        f(slice_f32(storage, layout, what)?)
    })
}

/// An f32 buffer that candle's matmul can read: a `CpuStorage::F32` known to be one.
struct Buf(CpuStorage);

impl Buf {
    fn new(values: Vec<f32>) -> Buf {
        Buf(CpuStorage::F32(values))
    }

    fn from_storage(storage: CpuStorage) -> Result<Buf> {
        match storage {
            CpuStorage::F32(_) => Ok(Buf(storage)),
            other => bail!("expected f32 values, got {:?}", other.dtype()),
        }
    }

    fn values(&self) -> &[f32] {
        match &self.0 {
            CpuStorage::F32(v) => v,
            _ => &[],
        }
    }

    fn values_mut(&mut self) -> &mut [f32] {
        match &mut self.0 {
            CpuStorage::F32(v) => v,
            _ => &mut [],
        }
    }
}

/// `lhs @ rhs` with candle's CPU matmul (gemm); the layouts carry shapes, offsets and strides
/// (a transposed operand is a layout with swapped strides, no copy).
fn matmul(lhs: &CpuStorage, lhs_l: &Layout, rhs: &CpuStorage, rhs_l: &Layout) -> Result<Buf> {
    let (m, k) = lhs_l.shape().dims2()?;
    let (rhs_k, n) = rhs_l.shape().dims2()?;
    if k != rhs_k {
        bail!("fused matmul: {m}x{k} times {rhs_k}x{n}")
    }
    Buf::from_storage(lhs.matmul(rhs, (1, m, n, k), lhs_l, rhs_l)?)
}

/// Row-major `[rows, cols]` at `offset`.
fn rows(rows: usize, cols: usize, offset: usize) -> Layout {
    Layout::contiguous_with_offset((rows, cols), offset)
}

/// The transpose of row-major `[rows, cols]` at `offset`: `[cols, rows]`.
fn transposed(rows: usize, cols: usize, offset: usize) -> Layout {
    Layout::new(Shape::from((cols, rows)), vec![1, cols], offset)
}

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

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const INV_SQRT_2PI: f32 = 0.398_942_3;

fn erf(v: f32) -> f32 {
    candle_core::cpu::erf::erf_f32(v)
}

fn gelu(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * FRAC_1_SQRT_2))
}

fn gelu_grad(v: f32) -> f32 {
    0.5 * (1.0 + erf(v * FRAC_1_SQRT_2)) + v * INV_SQRT_2PI * (-0.5 * v * v).exp()
}

/// Calls `f(channel, &mut value, aux values, factor)` for every cell of `values`
/// (`[channels, n]`), where the aux values are the cell's values in each `aux` slice (same
/// layout) and `factor` is the dropout factor of the cell's channel and sample (1 without a
/// mask). Written over equal-length chunks so that the loops vectorise.
#[inline(always)]
fn for_each_cell<const K: usize>(
    values: &mut [f32],
    aux: [&[f32]; K],
    n: usize,
    samples: usize,
    mask: Option<&[f32]>,
    f: impl FnMut(usize, &mut f32, [f32; K], f32),
) {
    for_each_cell_then(values, aux, n, samples, mask, f, |_, _| {});
}

/// [`for_each_cell`], calling `then(channel, cells)` on each run of cells just done (while
/// they are in the L1 cache).
#[inline(always)]
fn for_each_cell_then<const K: usize>(
    values: &mut [f32],
    aux: [&[f32]; K],
    n: usize,
    samples: usize,
    mask: Option<&[f32]>,
    mut f: impl FnMut(usize, &mut f32, [f32; K], f32),
    mut then: impl FnMut(usize, &[f32]),
) {
    let run = if mask.is_some() { n / samples } else { n };
    for (r, cells) in values.chunks_exact_mut(run).enumerate() {
        let c = r * run / n;
        let factor = mask.map_or(1.0, |mask| mask[r]);
        let start = r * run;
        let aux = aux.map(|a| &a[start..start + cells.len()]);
        for (j, v) in cells.iter_mut().enumerate() {
            f(c, v, aux.map(|a| a[j]), factor);
        }
        then(c, cells);
    }
}

/// `values = act(values + bias) * factor`, in place, one pass. Selects rather than branches
/// (the signs are random: branches mispredict); NaN passes through every arm so that a
/// diverging run shows in its loss.
fn activate(
    values: &mut [f32],
    bias: &[f32],
    act: Act,
    slopes: &[f32],
    n: usize,
    samples: usize,
    mask: Option<&[f32]>,
) {
    match act {
        Act::Identity => for_each_cell(values, [], n, samples, mask, |c, v, _, f| {
            *v = (*v + bias[c]) * f
        }),
        Act::Relu => for_each_cell(values, [], n, samples, mask, |c, v, _, f| {
            let u = *v + bias[c];
            *v = if u < 0.0 { 0.0 } else { u * f }
        }),
        Act::Leaky(slope) => for_each_cell(values, [], n, samples, mask, |c, v, _, f| {
            let u = *v + bias[c];
            *v = if u > 0.0 { u } else { u * slope } * f
        }),
        Act::RandomLeaky => {
            for_each_cell(values, [slopes], n, samples, mask, |c, v, [slope], f| {
                let u = *v + bias[c];
                *v = if u > 0.0 { u } else { u * slope } * f
            })
        }
        Act::Elu => for_each_cell(values, [], n, samples, mask, |c, v, _, f| {
            let u = *v + bias[c];
            *v = if u > 0.0 { u } else { u.exp_m1() } * f
        }),
        Act::Gelu => for_each_cell(values, [], n, samples, mask, |c, v, _, f| {
            *v = gelu(*v + bias[c]) * f
        }),
    }
}

/// `grad *= act'(pre) * factor`, in place, with `act'` read off the layer's output where it
/// can be (`out > 0` iff `pre > 0`: factors are positive wherever they do not zero the cell);
/// GELU needs the pre-activations `pre`. Adds each channel's sum of the result (the bias
/// gradient) to `sums` in the same pass.
#[allow(clippy::too_many_arguments)]
fn activation_grad(
    grad: &mut [f32],
    out: &[f32],
    pre: &[f32],
    act: Act,
    slopes: &[f32],
    n: usize,
    samples: usize,
    mask: Option<&[f32]>,
    sums: &mut [f32],
) {
    let then = |c: usize, cells: &[f32]| sums[c] += sum(cells);
    match act {
        Act::Identity => for_each_cell_then(grad, [], n, samples, mask, |_, g, _, f| *g *= f, then),
        Act::Relu => for_each_cell_then(
            grad,
            [out],
            n,
            samples,
            mask,
            |_, g, [o], f| *g = if o > 0.0 { *g * f } else { 0.0 },
            then,
        ),
        Act::Leaky(slope) => for_each_cell_then(
            grad,
            [out],
            n,
            samples,
            mask,
            |_, g, [o], f| *g *= if o > 0.0 { f } else { slope * f },
            then,
        ),
        Act::RandomLeaky => for_each_cell_then(
            grad,
            [out, slopes],
            n,
            samples,
            mask,
            |_, g, [o, slope], f| *g *= if o > 0.0 { f } else { slope * f },
            then,
        ),
        // elu'(pre) = elu(pre) + 1 = out / f + 1 for pre <= 0
        Act::Elu => for_each_cell_then(
            grad,
            [out],
            n,
            samples,
            mask,
            |_, g, [o], f| *g *= if o > 0.0 || f == 0.0 { f } else { o + f },
            then,
        ),
        Act::Gelu => for_each_cell_then(
            grad,
            [pre],
            n,
            samples,
            mask,
            |_, g, [p], f| *g *= gelu_grad(p) * f,
            then,
        ),
    }
}

/// The sum of `values` over 16 interleaved partial sums: vectorises (a plain sequential sum
/// cannot, float addition not being associative) and is deterministic.
fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = values.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + rest
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
}

/// The 9 zero-padded shifts of a batch of single-channel boards, minus `shift`: `[9, N]`,
/// row `ky * 3 + kx` holding for each cell `(b, y, x)` the cell `(b, y + ky - 1, x + kx - 1)`
/// (0 off the board, so `-shift` there). A `[2m, 9]` weight matrix times this is PyTorch's
/// `conv2d(x - shift, w, padding=1)` with the padding at `-shift` too: off-board cells stay
/// dead (see [`crate::Network`] on the shift).
fn im2col(input: &[f32], samples: usize, size: usize, shift: f32) -> Vec<f32> {
    let n = samples * size * size;
    let mut out = vec![-shift; 9 * n];
    for_each_tap_run(samples, size, |k, dst, src, len| {
        for (d, &v) in out[k * n + dst..k * n + dst + len]
            .iter_mut()
            .zip(&input[src..src + len])
        {
            *d = v - shift;
        }
    });
    out
}

/// The gradient of [`im2col`]: sums each tap's gradient back onto its source cell.
fn col2im(grad: &[f32], samples: usize, size: usize) -> Vec<f32> {
    let n = samples * size * size;
    let mut out = vec![0f32; n];
    for_each_tap_run(samples, size, |k, dst, src, len| {
        for (d, &g) in out[src..src + len]
            .iter_mut()
            .zip(&grad[k * n + dst..k * n + dst + len])
        {
            *d += g;
        }
    });
    out
}

/// Calls `f(k, dst, src, len)` for every kernel tap `k` and run of cells of one output row
/// whose sources lie on the board: cells `dst..dst + len` of tap row `k` read input cells
/// `src..src + len`.
fn for_each_tap_run(samples: usize, size: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
    let s = size as isize;
    let hw = size * size;
    for ky in 0..3isize {
        for kx in 0..3isize {
            let (dy, dx) = (ky - 1, kx - 1);
            let k = (ky * 3 + kx) as usize;
            let x_lo = (-dx).max(0);
            let x_hi = (s - dx).min(s);
            let len = (x_hi - x_lo) as usize;
            for y in 0..s {
                let ys = y + dy;
                if ys < 0 || ys >= s {
                    continue;
                }
                for b in 0..samples {
                    let dst = b * hw + (y * s + x_lo) as usize;
                    let src = b * hw + (ys * s + x_lo + dx) as usize;
                    f(k, dst, src, len);
                }
            }
        }
    }
}

/// What the forward pass of a block keeps for its backward pass.
struct Saved {
    /// `[9, N]`
    taps: Buf,
    /// The outputs of conv3 and conv1a (after activation and dropout).
    hidden: [Buf; 2],
    /// Pre-activations of the three layers, for GELU only.
    pre: [Vec<f32>; 3],
}

/// One block of three convolutions as one op: arguments (block input with `samples * size *
/// size` cells in any shape, packed parameters as [`BlockLayout`]), output `[1, N]`.
pub struct BlockOp {
    pub samples: usize,
    pub size: usize,
    pub shift: f32,
    pub layout: BlockLayout,
    pub acts: [Act; 3],
    /// `[cout, N]` slopes per layer whose act is [`Act::RandomLeaky`].
    pub slopes: [Option<Vec<f32>>; 3],
    /// The channel dropout factors after conv3, `[2m, samples]`.
    pub mask: Option<Vec<f32>>,
    /// Keep what the backward pass needs (a training pass).
    pub save: bool,
    saved: Mutex<Option<Saved>>,
}

impl BlockOp {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        samples: usize,
        size: usize,
        shift: f32,
        layout: BlockLayout,
        acts: [Act; 3],
        slopes: [Option<Vec<f32>>; 3],
        mask: Option<Vec<f32>>,
        save: bool,
    ) -> BlockOp {
        BlockOp {
            samples,
            size,
            shift,
            layout,
            acts,
            slopes,
            mask,
            save,
            saved: Mutex::new(None),
        }
    }

    fn n(&self) -> usize {
        self.samples * self.size * self.size
    }

    fn check(&self) -> Result<()> {
        let n = self.n();
        for layer in 0..3 {
            let (_, cout) = self.layout.fan_in_out(layer);
            let slopes = self.slopes[layer].as_ref().map(Vec::len);
            if self.acts[layer] == Act::RandomLeaky && slopes != Some(cout * n) {
                bail!("block: layer {layer} needs {} random slopes", cout * n)
            }
        }
        if let Some(mask) = &self.mask {
            if self.samples == 0 || mask.len() != 2 * self.layout.m * self.samples {
                bail!(
                    "block: the dropout mask needs {} x {} factors",
                    2 * self.layout.m,
                    self.samples
                )
            }
        }
        Ok(())
    }

    fn mask_of(&self, layer: usize) -> Option<&[f32]> {
        if layer == 0 {
            self.mask.as_deref()
        } else {
            None
        }
    }

    fn slopes_of(&self, layer: usize) -> &[f32] {
        self.slopes[layer].as_deref().unwrap_or_default()
    }
}

impl CustomOp2 for BlockOp {
    fn name(&self) -> &'static str {
        "lifesweep-block"
    }

    fn cpu_fwd(
        &self,
        x_st: &CpuStorage,
        x_l: &Layout,
        p_st: &CpuStorage,
        p_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.check()?;
        let n = self.n();
        let input = slice_f32(x_st, x_l, "block input")?;
        if input.len() != n {
            bail!("block: input has {} cells, expected {n}", input.len())
        }
        let params = slice_f32(p_st, p_l, "block parameters")?;
        if params.len() != self.layout.param_count() {
            bail!(
                "block: {} parameters, expected {}",
                params.len(),
                self.layout.param_count()
            )
        }
        let base = p_l.start_offset();
        let taps = Buf::new(im2col(input, self.samples, self.size, self.shift));
        let mut pre: [Vec<f32>; 3] = Default::default();
        let mut hidden: Vec<Buf> = Vec::with_capacity(3);
        for layer in 0..3 {
            let (fan_in, cout) = self.layout.fan_in_out(layer);
            let (w_off, b_off) = self.layout.offsets(layer);
            let x = if layer == 0 {
                &taps
            } else {
                &hidden[layer - 1]
            };
            let mut out = matmul(
                p_st,
                &rows(cout, fan_in, base + w_off),
                &x.0,
                &rows(fan_in, n, 0),
            )?;
            let act = self.acts[layer];
            let bias = &params[b_off..b_off + cout];
            if act == Act::Gelu && self.save {
                let values = out.values_mut();
                for_each_cell(values, [], n, self.samples, None, |c, v, _, _| {
                    *v += bias[c]
                });
                pre[layer] = values.to_vec();
                activate(
                    values,
                    &vec![0.0; cout],
                    act,
                    &[],
                    n,
                    self.samples,
                    self.mask_of(layer),
                );
            } else {
                activate(
                    out.values_mut(),
                    bias,
                    act,
                    self.slopes_of(layer),
                    n,
                    self.samples,
                    self.mask_of(layer),
                );
            }
            hidden.push(out);
        }
        let Some(out) = hidden.pop() else {
            bail!("block: no output")
        };
        if self.save {
            let h2 = hidden.pop();
            let h1 = hidden.pop();
            if let (Some(h1), Some(h2), Ok(mut saved)) = (h1, h2, self.saved.lock()) {
                *saved = Some(Saved {
                    taps,
                    hidden: [h1, h2],
                    pre,
                });
            }
        }
        Ok((out.0, Shape::from((1, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self.saved.lock().ok().and_then(|mut s| s.take());
        let Some(Saved { taps, hidden, pre }) = saved else {
            bail!("block: backward pass without a saved training forward pass")
        };
        let n = self.n();
        let mut grad_params = vec![0f32; self.layout.param_count()];
        let mut grad = Buf::new(with_f32(grad_res, "block gradient", |g| Ok(g.to_vec()))?);
        if grad.values().len() != n {
            bail!(
                "block: gradient has {} values, expected {n}",
                grad.values().len()
            )
        }
        let out = with_f32(res, "block output", |o| Ok(o.to_vec()))?;
        let grad_x = with_cpu(params, "block parameters", |p_st, p_l| {
            let base = p_l.start_offset();
            let mut grad_taps = None;
            for layer in (0..3).rev() {
                let (fan_in, cout) = self.layout.fan_in_out(layer);
                let (w_off, b_off) = self.layout.offsets(layer);
                let (input, output) = match layer {
                    0 => (&taps, hidden[0].values()),
                    1 => (&hidden[0], hidden[1].values()),
                    _ => (&hidden[1], out.as_slice()),
                };
                let mask = self.mask_of(layer);
                // d bias = row sums of g, in the same pass
                let grad_b = &mut grad_params[b_off..b_off + cout];
                let (acts, slopes) = (self.acts[layer], self.slopes_of(layer));
                activation_grad(
                    grad.values_mut(),
                    output,
                    &pre[layer],
                    acts,
                    slopes,
                    n,
                    self.samples,
                    mask,
                    grad_b,
                );
                // d weight = g @ input^T
                let grad_w = matmul(
                    &grad.0,
                    &rows(cout, n, 0),
                    &input.0,
                    &transposed(fan_in, n, 0),
                )?;
                grad_params[w_off..w_off + cout * fan_in].copy_from_slice(grad_w.values());
                // d input = W^T @ g (not for the boards)
                if layer > 0 || x.track_op() {
                    let next = if cout == 1 {
                        // an outer product: written directly, no zero-filled gemm output
                        let weights =
                            &slice_f32(p_st, p_l, "block parameters")?[w_off..w_off + fan_in];
                        let g = grad.values();
                        let mut next = Vec::with_capacity(fan_in * n);
                        for &w in weights {
                            next.extend(g.iter().map(|&g| w * g));
                        }
                        Buf::new(next)
                    } else {
                        matmul(
                            p_st,
                            &transposed(cout, fan_in, base + w_off),
                            &grad.0,
                            &rows(cout, n, 0),
                        )?
                    };
                    if layer == 0 {
                        grad_taps = Some(next);
                    } else {
                        grad = next;
                    }
                }
            }
            Ok(grad_taps.map(|g| col2im(g.values(), self.samples, self.size)))
        })?;
        let grad_x = grad_x
            .map(|g| Tensor::from_vec(g, x.shape(), &Device::Cpu))
            .transpose()?;
        let grad_params = Tensor::from_vec(grad_params, params.shape(), &Device::Cpu)?;
        Ok((grad_x, Some(grad_params)))
    }
}

/// The mean binary cross-entropy of `(output, targets)` as one op with the gradients of
/// PyTorch: with `logits`, the stable form `max(x, 0) - x y + ln(1 + exp(-|x|))` with
/// gradient `sigmoid(x) - y`; without, `BCELoss(clamp(x, 0, 1), y)` with logs clamped at -100
/// and gradient `(p - y) / max(p (1 - p), 1e-12)` where `0 <= x <= 1`, else 0. The forward
/// pass computes the cell gradients too (they share the exponential) and keeps them for the
/// backward pass.
#[derive(Debug)]
pub struct BceLoss {
    pub logits: bool,
    grads: Mutex<Option<Vec<f32>>>,
}

impl BceLoss {
    pub fn new(logits: bool) -> BceLoss {
        BceLoss {
            logits,
            grads: Mutex::new(None),
        }
    }
}

/// Loss and gradient of one cell in f32, like PyTorch (the mean adds the losses up in f64).
/// Selects, not branches, so that the loop over cells vectorises; NaN stays NaN.
#[inline(always)]
fn bce_cell(x: f32, y: f32, logits: bool) -> (f32, f32) {
    if logits {
        let e = exp_neg(x.abs());
        let positive = if x > 0.0 { x } else { 0.0 };
        let loss = positive - x * y + ln_1p_unit(e);
        // sigmoid(x) from the same exponential
        let sigmoid = if x >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        };
        (loss, sigmoid - y)
    } else {
        let clamp_log = |v: f32| if v < -100.0 { -100.0 } else { v };
        let p = x.clamp(0.0, 1.0);
        let q = 1.0 - p;
        let loss = -(y * clamp_log(ln_unit(p)) + (1.0 - y) * clamp_log(ln_unit(q)));
        let denom = p * q;
        let denom = if denom > 1e-12 { denom } else { 1e-12 };
        let grad = if (0.0..=1.0).contains(&x) {
            (p - y) / denom
        } else {
            0.0
        };
        (loss, grad)
    }
}

/// `1 / (1 + exp(-x))` without overflow for large `|x|`.
pub fn stable_sigmoid(x: f32) -> f32 {
    let e = exp_neg(x.abs());
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

impl CustomOp2 for BceLoss {
    fn name(&self) -> &'static str {
        "lifesweep-bce"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice_f32(s1, l1, "loss output")?;
        let y = slice_f32(s2, l2, "loss targets")?;
        if x.len() != y.len() || x.is_empty() {
            bail!("loss: {} outputs for {} targets", x.len(), y.len())
        }
        let mut grads = vec![0f32; x.len()];
        let mut losses = vec![0f32; x.len()];
        // one plain loop per kind, so that each vectorises
        let cells = losses.iter_mut().zip(grads.iter_mut()).zip(x.iter().zip(y));
        if self.logits {
            cells.for_each(|((l, g), (&x, &y))| (*l, *g) = bce_cell(x, y, true));
        } else {
            cells.for_each(|((l, g), (&x, &y))| (*l, *g) = bce_cell(x, y, false));
        }
        // 16 partial sums in f64: vectorises, and is deterministic
        let mut lanes = [0f64; 16];
        let chunks = losses.chunks_exact(16);
        let rest: f64 = chunks.remainder().iter().map(|&l| f64::from(l)).sum();
        for chunk in chunks {
            for (lane, &l) in lanes.iter_mut().zip(chunk) {
                *lane += f64::from(l);
            }
        }
        lanes[0] += rest;
        let mean = lanes.iter().sum::<f64>() / x.len() as f64;
        if let Ok(mut saved) = self.grads.lock() {
            *saved = Some(grads);
        }
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = grad_res.to_scalar::<f32>()? / x.elem_count() as f32;
        let Some(mut grads) = self.grads.lock().ok().and_then(|mut g| g.take()) else {
            bail!("loss: backward pass without its forward pass")
        };
        grads.iter_mut().for_each(|g| *g *= scale);
        Ok((
            Some(Tensor::from_vec(grads, x.shape(), &Device::Cpu)?),
            None,
        ))
    }
}
