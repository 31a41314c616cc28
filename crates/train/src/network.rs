//! The seed's network: `floor(steps * d_factor)` blocks of three convolutions.
//!
//! Per block (m = `m_factor`): a 3x3 convolution 1 -> 2m with padding 1, then the activation
//! (then channel dropout with `normalize`, except in the last block); a 1x1 convolution
//! 2m -> m, then the activation; a 1x1 convolution m -> 1, then the activation, except for the
//! last block of a network that ends in a sigmoid ([`TrainParams::ends_in_sigmoid`]): there the
//! last 1x1 has no activation and its output is the logit of the sigmoid.
//!
//! # Initialisation (stream `InitWeights`)
//! Block by block, layer by layer, weights (row-major `[out, in, kh, kw]`) then biases:
//! PyTorch's `Conv2d` default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both, or with
//! `normalize` weights N(0, 0.02) (0.02 is the standard deviation) and biases U(-1, 1).
//! Presolved blocks are drawn too and then overwritten, so presolving block 3 leaves the
//! random weights of the other blocks as they would be without it.
//!
//! # Presolve
//! A block is presolved when `solve_layers` names it, or, when `solve_layers` is empty, when
//! `presolve` is set. Blocks `0..steps` get the seed's exact one-step weights (SEED.md; extra
//! channels and their biases zero). A network with more blocks than steps (`d_factor > 1`)
//! has no "seed" solution for its extra blocks, so blocks `steps..` are presolved as exact
//! *identity* blocks: 3x3 channel A = act(centre cell), channel B zero; 1x1: `1 - A`; last
//! 1x1: `1 - that` (or weight -20, bias 10 before a final sigmoid). Blocks doing Life steps
//! come first, identities after. With ReLU the presolved network is exact (success rate 1)
//! for both rules, any steps, width, depth and normalize option. The other activations leak
//! through negative values, so the same weights are only approximately right: LeakyReLU's
//! 0.01 stays below the thresholds for one step (two for von-neumann) and not beyond; RReLU
//! (slope 11/48 in evaluation), ELU and GELU are wrong from the first step. There presolve is
//! only a starting point, as it was in the original.
//!
//! # The normalize shift
//! With `normalize` and `normalize_shift`, every block input (the boards, and each block's
//! output entering the next block) is shifted by -0.5 before the 3x3 convolution, *including*
//! its padding: cells off the board read -0.5, i.e. stay dead, as the rule says, instead of
//! reading 0 = "half alive" as `conv2d(x - 0.5, padding=1)` would. This keeps the learning
//! problem identical to the unshifted one (only re-parametrised) and presolve exact: a
//! presolved block adds `0.5 * sum(kernel)` to its 3x3 biases to undo the shift. Network
//! outputs are not shifted (the sigmoid maps to 0..1). `normalize_shift = false` reproduces
//! the original code, which never applied the shift.
//!
//! # Randomness in training (stream `Dropout`)
//! In a training pass, in layer order, each RReLU layer draws one slope U(1/8, 1/3) per
//! element (`[channels, N]` order, N = batch, row, column) and each dropout layer draws one
//! keep/drop per channel and sample (`[channels, batch]` order, dropped with p = 0.4, kept
//! ones scaled by 1/0.6). Evaluation draws nothing: no dropout, RReLU slope 11/48.

use candle_core::{DType, Device, Tensor, Var};
use lifesweep_life::{stream_rng, RngStream, Rule};
use lifesweep_spec::{Activation, TrainParams};
use rand::{Rng, RngCore};
use rand_distr::{Distribution, Normal};

use crate::kernels::Kernels;
use crate::loss::bce_loss;
use crate::native::{forward_eval, Act, BlockLayout, NetShape};
use crate::TrainError;

/// Channel dropout probability of `normalize`.
pub const DROPOUT_P: f32 = 0.4;
/// RReLU's slope range in training (PyTorch's defaults).
pub const RRELU_LOWER: f32 = 1.0 / 8.0;
pub const RRELU_UPPER: f32 = 1.0 / 3.0;
/// LeakyReLU's slope (PyTorch's default).
pub const LEAKY_SLOPE: f32 = 0.01;

/// How the forward pass is written in candle. All three compute the same function and the same
/// gradients (up to float rounding); they differ in speed and in the devices they run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formulation {
    /// The native CPU path ([`crate::native`]): the whole training step on host buffers
    /// with hand-written vector kernels, no candle graph. CPU only. A training pass through
    /// [`Network::forward`] (candle autograd) computes it as [`Formulation::Ops`].
    Fused,
    /// The same matmul formulation from candle's differentiable ops: any device.
    Ops,
    /// The plain reference: candle's `conv2d` in `[batch, channels, H, W]`. Slow on the CPU;
    /// kept to check the other two.
    Conv2d,
}

impl Formulation {
    /// The fastest formulation that runs on `device`.
    pub fn for_device(device: &Device) -> Formulation {
        if device.is_cpu() {
            Formulation::Fused
        } else {
            Formulation::Ops
        }
    }
}

/// A forward pass in training (dropout on, RReLU random; noise drawn from the given RNG, the
/// run's `Dropout` stream) or in evaluation (deterministic).
pub enum Pass<'r> {
    Train(&'r mut dyn RngCore),
    Eval,
}

/// The names of the three layers of a block, as in the weight names.
const LAYER_NAMES: [&str; 3] = ["conv3", "conv1a", "conv1b"];

/// One block: its parameters packed in one variable (see [`BlockLayout`]), so that Adam and
/// the fused kernel see one tensor per block.
struct Block {
    params: Var,
}

impl Block {
    fn params(&self, pass: &Pass) -> Tensor {
        match pass {
            Pass::Train(_) => self.params.as_tensor().clone(),
            Pass::Eval => self.params.as_tensor().detach(),
        }
    }
}

/// Which exact function a presolved block computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Solution {
    LifeStep(Rule),
    Identity,
}

/// Weights and biases of one layer as host vectors.
type LayerValues = (Vec<f32>, Vec<f32>);

/// The network of one run; see the module documentation.
pub struct Network {
    blocks: Vec<Block>,
    layout: BlockLayout,
    activation: Activation,
    ends_in_sigmoid: bool,
    dropout: bool,
    shift: f32,
    formulation: Formulation,
    device: Device,
}

/// The layer shapes of a block of width `m`: (cin, cout, kernel).
fn layer_shapes(m: usize) -> [(usize, usize, usize); 3] {
    [(1, 2 * m, 3), (2 * m, m, 1), (m, 1, 1)]
}

/// What every block input is shifted by (see the module documentation).
fn input_shift(params: &TrainParams) -> f32 {
    if params.normalize && params.normalize_shift {
        0.5
    } else {
        0.0
    }
}

pub(crate) fn check_params(params: &TrainParams) -> Result<(), TrainError> {
    params
        .validate()
        .map_err(|(key, message)| TrainError::InvalidParams { key, message })
}

impl Network {
    /// The network of a run at the start of training: random weights from the run's
    /// `InitWeights` stream, then the presolved blocks (see the module documentation).
    pub fn new(params: &TrainParams, device: &Device) -> Result<Network, TrainError> {
        check_params(params)?;
        let presolved = |block: u32| {
            if params.solve_layers.is_empty() {
                params.presolve
            } else {
                params.solve_layers.contains(&block)
            }
        };
        Network::build(params, device, presolved)
    }

    /// The network with every block presolved, whatever `presolve` and `solve_layers` say.
    pub fn presolved(params: &TrainParams, device: &Device) -> Result<Network, TrainError> {
        check_params(params)?;
        Network::build(params, device, |_| true)
    }

    fn build(
        params: &TrainParams,
        device: &Device,
        presolved: impl Fn(u32) -> bool,
    ) -> Result<Network, TrainError> {
        let m = params.m_factor as usize;
        let blocks = params.blocks();
        let shift = input_shift(params);
        let mut rng = stream_rng(params.seed, RngStream::InitWeights);
        let mut values: Vec<[LayerValues; 3]> = Vec::with_capacity(blocks as usize);
        for _ in 0..blocks {
            values.push(layer_shapes(m).map(|(cin, cout, kernel)| {
                random_layer(&mut rng, cin * kernel * kernel, cout, params.normalize)
            }));
        }
        for (i, block) in values.iter_mut().enumerate() {
            let i = i as u32;
            if presolved(i) {
                let solution = if i < params.steps {
                    Solution::LifeStep(params.rule)
                } else {
                    Solution::Identity
                };
                let sigmoid_last = i + 1 == blocks && params.ends_in_sigmoid();
                *block = presolved_block(solution, m, sigmoid_last, shift);
            }
        }
        Network::from_values(params, device, values, shift)
    }

    fn from_values(
        params: &TrainParams,
        device: &Device,
        values: Vec<[LayerValues; 3]>,
        shift: f32,
    ) -> Result<Network, TrainError> {
        let layout = BlockLayout {
            m: params.m_factor as usize,
        };
        let mut blocks = Vec::with_capacity(values.len());
        for block in values {
            let mut packed = Vec::with_capacity(layout.param_count());
            for (weights, bias) in block {
                packed.extend(weights);
                packed.extend(bias);
            }
            if packed.len() != layout.param_count() {
                return Err(candle_core::Error::Msg(format!(
                    "block has {} parameters, expected {}",
                    packed.len(),
                    layout.param_count()
                ))
                .into());
            }
            blocks.push(Block {
                params: Var::from_vec(packed, layout.param_count(), device)?,
            });
        }
        Ok(Network {
            blocks,
            layout,
            activation: params.activation,
            ends_in_sigmoid: params.ends_in_sigmoid(),
            dropout: params.normalize,
            shift,
            formulation: Formulation::for_device(device),
            device: device.clone(),
        })
    }

    /// The network of `params` with the given weights (names and shapes as [`Network::weights`]
    /// returns them; any shape with the right number of elements is accepted).
    pub fn from_weights(
        params: &TrainParams,
        device: &Device,
        weights: &[(String, Tensor)],
    ) -> Result<Network, TrainError> {
        check_params(params)?;
        let m = params.m_factor as usize;
        let blocks = params.blocks() as usize;
        let mut values: Vec<[LayerValues; 3]> = vec![Default::default(); blocks];
        let mut seen = std::collections::HashSet::new();
        for (name, tensor) in weights {
            let bad = |message: String| TrainError::BadWeights {
                name: name.clone(),
                message,
            };
            let (block, layer, part) = parse_weight_name(name).ok_or_else(|| {
                bad("not a weight of this network (expected e.g. block0.conv3.weight)".into())
            })?;
            if block >= blocks {
                return Err(bad(format!("the network has {blocks} blocks")));
            }
            let (cin, cout, kernel) = layer_shapes(m)[layer];
            let expected = if part == 0 {
                cout * cin * kernel * kernel
            } else {
                cout
            };
            if tensor.elem_count() != expected {
                return Err(bad(format!(
                    "has {} values, expected {expected} for m_factor {m}",
                    tensor.elem_count()
                )));
            }
            let flat = tensor
                .flatten_all()?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?;
            let slot = &mut values[block][layer];
            if part == 0 {
                slot.0 = flat;
            } else {
                slot.1 = flat;
            }
            seen.insert(name.as_str());
        }
        for name in weight_names(blocks) {
            if !seen.contains(name.as_str()) {
                return Err(TrainError::BadWeights {
                    name,
                    message: "missing from the weight set".into(),
                });
            }
        }
        Network::from_values(params, device, values, input_shift(params))
    }

    /// The same network computed another way (tests and benchmarks).
    pub fn with_formulation(mut self, formulation: Formulation) -> Network {
        self.formulation = formulation;
        self
    }

    pub fn formulation(&self) -> Formulation {
        self.formulation
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    pub fn ends_in_sigmoid(&self) -> bool {
        self.ends_in_sigmoid
    }

    /// The trainable variables: one per block, the block's parameters packed as
    /// [`BlockLayout`] says.
    pub fn vars(&self) -> Vec<Var> {
        self.blocks.iter().map(|b| b.params.clone()).collect()
    }

    /// Total number of trainable scalars.
    pub fn param_count(&self) -> u64 {
        (self.blocks.len() * self.layout.param_count()) as u64
    }

    /// Named copies of the weights in PyTorch's shapes: `block{i}.{conv3,conv1a,conv1b}.weight`
    /// (`[out, in, kh, kw]`) and `.bias` (`[out]`).
    pub fn weights(&self) -> Result<Vec<(String, Tensor)>, TrainError> {
        let mut out = Vec::with_capacity(self.blocks.len() * 6);
        for (i, block) in self.blocks.iter().enumerate() {
            let params = block.params.as_tensor();
            for (layer, (cin, cout, kernel)) in layer_shapes(self.layout.m).into_iter().enumerate()
            {
                let (w_off, b_off) = self.layout.offsets(layer);
                let weight = params
                    .narrow(0, w_off, cout * cin * kernel * kernel)?
                    .copy()?
                    .reshape((cout, cin, kernel, kernel))?;
                out.push((format!("block{i}.{}.weight", LAYER_NAMES[layer]), weight));
                out.push((
                    format!("block{i}.{}.bias", LAYER_NAMES[layer]),
                    params.narrow(0, b_off, cout)?.copy()?,
                ));
            }
        }
        Ok(out)
    }

    /// Where each weight lies in a block's packed parameters.
    pub(crate) fn layout(&self) -> BlockLayout {
        self.layout
    }

    /// What the native path needs to know of the network.
    pub(crate) fn shape(&self) -> NetShape {
        let acts = |train: bool| {
            (0..self.blocks.len())
                .map(|block| [0, 1, 2].map(|layer| self.layer_act(block, layer, train)))
                .collect()
        };
        NetShape {
            layout: self.layout,
            blocks: self.blocks.len(),
            shift: self.shift,
            dropout: self.dropout,
            logits: self.ends_in_sigmoid,
            train_acts: acts(true),
            eval_acts: acts(false),
        }
    }

    /// Every block's packed parameters, block after block (see [`BlockLayout`]).
    pub(crate) fn packed_params(&self) -> candle_core::Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.blocks.len() * self.layout.param_count());
        for block in &self.blocks {
            out.extend(block.params.as_tensor().to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Sets every block's packed parameters from `values` (as [`Network::packed_params`]).
    pub(crate) fn set_packed_params(&self, values: &[f32]) -> candle_core::Result<()> {
        let count = self.layout.param_count();
        if values.len() != self.blocks.len() * count {
            candle_core::bail!(
                "{} parameters for {} blocks of {count}",
                values.len(),
                self.blocks.len()
            )
        }
        for (block, values) in self.blocks.iter().zip(values.chunks_exact(count)) {
            block
                .params
                .set(&Tensor::from_slice(values, count, &self.device)?)?;
        }
        Ok(())
    }

    /// The activation after a layer (0 = conv3, 1 = conv1a, 2 = conv1b) of block `block`.
    fn layer_act(&self, block: usize, layer: usize, train: bool) -> Act {
        if layer == 2 && block + 1 == self.blocks.len() && self.ends_in_sigmoid {
            return Act::Identity;
        }
        match self.activation {
            Activation::ReLU => Act::Relu,
            Activation::ELU => Act::Elu,
            Activation::LeakyReLU => Act::Leaky(LEAKY_SLOPE),
            Activation::RReLU if train => Act::RandomLeaky,
            Activation::RReLU => Act::Leaky((RRELU_LOWER + RRELU_UPPER) / 2.0),
            Activation::GELU => Act::Gelu,
        }
    }

    /// The raw output for a batch of boards `[batch, size, size]` (0/1 values): the logits when
    /// the network ends in a sigmoid, else the last activation's output; shape as the input.
    pub fn forward(&self, boards: &Tensor, pass: Pass) -> Result<Tensor, TrainError> {
        let (samples, height, width) = boards.dims3()?;
        if height != width {
            return Err(candle_core::Error::Msg(format!(
                "boards must be square, got {height}x{width}"
            ))
            .into());
        }
        let flat = self.forward_flat(boards, samples, height, pass)?;
        Ok(flat.reshape((samples, height, width))?)
    }

    /// Probabilities in evaluation mode: the sigmoid of the logits, or the output clamped to
    /// [0, 1].
    pub fn predict(&self, boards: &Tensor) -> Result<Tensor, TrainError> {
        let raw = self.forward(boards, Pass::Eval)?;
        Ok(if self.ends_in_sigmoid {
            candle_nn::ops::sigmoid(&raw)?
        } else {
            raw.clamp(0f32, 1f32)?
        })
    }

    /// The training loss (mean BCE, see [`crate::loss`]) of a raw output against its targets.
    pub fn loss(&self, output: &Tensor, targets: &Tensor) -> Result<Tensor, TrainError> {
        Ok(bce_loss(output, targets, self.ends_in_sigmoid)?)
    }

    fn forward_flat(
        &self,
        boards: &Tensor,
        samples: usize,
        size: usize,
        mut pass: Pass,
    ) -> candle_core::Result<Tensor> {
        let n = samples * size * size;
        let train = matches!(pass, Pass::Train(_));
        let last = self.blocks.len().saturating_sub(1);
        let mut x = boards.to_dtype(DType::F32)?;
        // the native path has no autograd: a training pass of `Fused` runs as `Ops`
        let formulation = match (self.formulation, train) {
            (Formulation::Fused, true) => Formulation::Ops,
            (formulation, _) => formulation,
        };
        if formulation == Formulation::Fused {
            let inputs = x.flatten_all()?.to_vec1::<f32>()?;
            let params = self.packed_params()?;
            let out = forward_eval(
                &self.shape(),
                &params,
                &inputs,
                samples,
                size,
                Kernels::detect(),
            );
            return Tensor::from_vec(out, (1, n), &self.device);
        }
        if formulation == Formulation::Conv2d {
            x = x.reshape((samples, 1, size, size))?;
        }
        for (i, block) in self.blocks.iter().enumerate() {
            let acts = [0, 1, 2].map(|layer| self.layer_act(i, layer, train));
            let mut slopes: [Option<Vec<f32>>; 3] = Default::default();
            let mut mask = None;
            if let Pass::Train(rng) = &mut pass {
                for layer in 0..3 {
                    let (_, cout) = self.layout.fan_in_out(layer);
                    let dropout = self.dropout && layer == 0 && i != last;
                    let (layer_slopes, layer_mask) =
                        draw_noise(&mut **rng, acts[layer], dropout, cout, n, samples);
                    slopes[layer] = layer_slopes;
                    if layer_mask.is_some() {
                        mask = layer_mask;
                    }
                }
            }
            let params = block.params(&pass);
            x = match formulation {
                Formulation::Conv2d => x
                    .pad_with_zeros(2, 1, 1)?
                    .pad_with_zeros(3, 1, 1)?
                    .affine(1.0, -f64::from(self.shift))?,
                _ => im2col_ops(&x, samples, size, self.shift)?,
            };
            for (layer, (cin, cout, kernel)) in layer_shapes(self.layout.m).into_iter().enumerate()
            {
                let (w_off, b_off) = self.layout.offsets(layer);
                let weight = params.narrow(0, w_off, cout * cin * kernel * kernel)?;
                let bias = params.narrow(0, b_off, cout)?;
                let slopes = slopes[layer].take();
                let mask = if layer == 0 { mask.take() } else { None };
                x = if formulation == Formulation::Ops {
                    let pre = weight
                        .reshape((cout, cin * kernel * kernel))?
                        .matmul(&x)?
                        .broadcast_add(&bias.reshape((cout, 1))?)?;
                    let slopes = slopes
                        .map(|s| Tensor::from_vec(s, (cout, n), &self.device))
                        .transpose()?;
                    let out = act_ops(&pre, acts[layer], slopes.as_ref())?;
                    match mask {
                        Some(mask) => {
                            let mask = Tensor::from_vec(mask, (cout, samples, 1), &self.device)?;
                            out.reshape((cout, samples, size * size))?
                                .broadcast_mul(&mask)?
                                .reshape((cout, n))?
                        }
                        None => out,
                    }
                } else {
                    let kernel = weight.reshape((cout, cin, kernel, kernel))?;
                    let pre = x
                        .conv2d(&kernel, 0, 1, 1, 1)?
                        .broadcast_add(&bias.reshape((1, cout, 1, 1))?)?;
                    let slopes = slopes
                        .map(|s| {
                            Tensor::from_vec(s, (cout, samples, size, size), &self.device)?
                                .transpose(0, 1)
                        })
                        .transpose()?;
                    let out = act_ops(&pre, acts[layer], slopes.as_ref())?;
                    match mask {
                        Some(mask) => {
                            let mask = Tensor::from_vec(mask, (cout, samples), &self.device)?
                                .t()?
                                .reshape((samples, cout, 1, 1))?;
                            out.broadcast_mul(&mask)?
                        }
                        None => out,
                    }
                };
            }
        }
        x.reshape((1, n))
    }
}

/// `block{i}.{layer}.{weight|bias}` -> (block, layer index, 0 weight / 1 bias).
fn parse_weight_name(name: &str) -> Option<(usize, usize, usize)> {
    let mut parts = name.split('.');
    let block = parts.next()?.strip_prefix("block")?.parse().ok()?;
    let layer_name = parts.next()?;
    let layer = LAYER_NAMES.iter().position(|&l| l == layer_name)?;
    let part_name = parts.next()?;
    let part = ["weight", "bias"].iter().position(|&p| p == part_name)?;
    parts.next().is_none().then_some((block, layer, part))
}

fn weight_names(blocks: usize) -> Vec<String> {
    (0..blocks)
        .flat_map(|i| {
            LAYER_NAMES
                .into_iter()
                .flat_map(move |l| ["weight", "bias"].map(|p| format!("block{i}.{l}.{p}")))
        })
        .collect()
}

/// The network with every block presolved (see [`Network::presolved`]).
pub fn presolved_network(params: &TrainParams, device: &Device) -> Result<Network, TrainError> {
    Network::presolved(params, device)
}

fn random_layer(rng: &mut impl Rng, fan_in: usize, cout: usize, normalize: bool) -> LayerValues {
    if normalize {
        // Normal::new fails only for a negative or NaN standard deviation.
        let normal = Normal::new(0f32, 0.02).unwrap_or_else(|_| unreachable!());
        let weights = (0..cout * fan_in).map(|_| normal.sample(rng)).collect();
        let bias = (0..cout).map(|_| rng.random_range(-1f32..1f32)).collect();
        (weights, bias)
    } else {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let weights = (0..cout * fan_in)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let bias = (0..cout).map(|_| rng.random_range(-bound..bound)).collect();
        (weights, bias)
    }
}

/// The exact weights of one block (see the module documentation).
fn presolved_block(
    solution: Solution,
    m: usize,
    sigmoid_last: bool,
    shift: f32,
) -> [LayerValues; 3] {
    let [(_, c3, _), (c1a_in, c1a, _), (c1b_in, _, _)] = layer_shapes(m);
    let mut w3 = vec![0f32; c3 * 9];
    let mut b3 = vec![0f32; c3];
    let mut w1a = vec![0f32; c1a * c1a_in];
    let mut b1a = vec![0f32; c1a];
    let mut w1b = vec![0f32; c1b_in];
    let mut b1b = vec![0f32; 1];
    match solution {
        Solution::LifeStep(rule) => {
            for channel in 0..2 {
                for &(dy, dx) in rule.neighbour_offsets() {
                    w3[channel * 9 + ((dy + 1) * 3 + dx + 1) as usize] = 1.0;
                }
                w3[channel * 9 + 4] = 0.5;
            }
            b3[0] = -2.0;
            b3[1] = -3.5;
            w1a[0] = -2.0;
            w1a[1] = 10.0;
            b1a[0] = 1.0;
        }
        Solution::Identity => {
            w3[4] = 1.0;
            w1a[0] = -1.0;
            b1a[0] = 1.0;
        }
    }
    for (bias, kernel) in b3.iter_mut().zip(w3.chunks_exact(9)) {
        *bias += shift * kernel.iter().sum::<f32>();
    }
    let last_weight = match solution {
        Solution::LifeStep(_) => -2.0,
        Solution::Identity => -1.0,
    };
    (w1b[0], b1b[0]) = if sigmoid_last {
        (-20.0, 10.0)
    } else {
        (last_weight, 1.0)
    };
    [(w3, b3), (w1a, b1a), (w1b, b1b)]
}

/// The RReLU slopes and dropout mask of one layer in a training pass.
pub(crate) fn draw_noise(
    rng: &mut dyn RngCore,
    act: Act,
    dropout: bool,
    cout: usize,
    n: usize,
    samples: usize,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let slopes = (act == Act::RandomLeaky).then(|| {
        (0..cout * n)
            .map(|_| RRELU_LOWER + (RRELU_UPPER - RRELU_LOWER) * rng.random::<f32>())
            .collect()
    });
    let keep_scale = 1.0 / (1.0 - DROPOUT_P);
    let mask = dropout.then(|| {
        (0..cout * samples)
            .map(|_| {
                if rng.random::<f32>() < DROPOUT_P {
                    0.0
                } else {
                    keep_scale
                }
            })
            .collect()
    });
    (slopes, mask)
}

/// The im2col of the fused kernels (see [`crate::fused`]) from candle ops: `[9, N]`, the 9
/// zero-padded shifts of the boards minus `shift`.
pub(crate) fn im2col_ops(
    x: &Tensor,
    samples: usize,
    size: usize,
    shift: f32,
) -> candle_core::Result<Tensor> {
    let padded = x
        .reshape((samples, size, size))?
        .pad_with_zeros(1, 1, 1)?
        .pad_with_zeros(2, 1, 1)?;
    let n = samples * size * size;
    let mut taps = Vec::with_capacity(9);
    for ky in 0..3 {
        for kx in 0..3 {
            taps.push(
                padded
                    .narrow(1, ky, size)?
                    .narrow(2, kx, size)?
                    .contiguous()?
                    .reshape((1, n))?,
            );
        }
    }
    Tensor::cat(&taps, 0)?.affine(1.0, -f64::from(shift))
}

/// An activation from candle ops, with PyTorch's gradients except ReLU's at exactly 0 (candle
/// passes the gradient there, PyTorch does not).
pub(crate) fn act_ops(
    x: &Tensor,
    act: Act,
    slopes: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    match act {
        Act::Identity => Ok(x.clone()),
        Act::Relu => x.relu(),
        Act::Elu => x.elu(1.0),
        Act::Leaky(slope) => x.gt(0f32)?.where_cond(x, &x.affine(f64::from(slope), 0.0)?),
        Act::RandomLeaky => match slopes {
            Some(slopes) => x.gt(0f32)?.where_cond(x, &(x * slopes)?),
            None => candle_core::bail!("random leaky activation without slopes"),
        },
        Act::Gelu => x.gelu_erf(),
    }
}
