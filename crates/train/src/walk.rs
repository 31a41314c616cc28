//! Loss walks: the training loss (and board success) along a straight line in weight space
//! from a trained network, either to the presolved weights of the same architecture or along a
//! random direction. They show what lies between a failed run and the exact solution: a
//! monotone slope (the optimiser stopped short), or a ridge of higher loss (a separate basin).
//!
//! Every point of a walk is scored on the same boards: `batches` batches of `batch_size`
//! training boards drawn once from the run's seed (stream `WalkBoards`), so that the curve is
//! smooth and every walk of one run starts at the same loss; the success rate is the run's own
//! evaluation ([`crate::evaluate`]). The network is evaluated deterministically (no dropout,
//! RReLU at its mean slope). A walk is a pure function of the run's parameters, its trained
//! weights and the [`WalkOptions`].
//!
//! # Distances
//! `distance` is the L1 distance in weight space from the start (the trained weights, after
//! alignment). A presolve walk also has a `fraction` of the way, 0 at the trained weights and
//! 1 at the solution. A random walk's direction has unit L1 norm, so its distances are its
//! step sizes: by default 0, 0.1, ..., 1, then 2, 3, ..., 30, as in the original study.
//!
//! # Alignment
//! A network of width m has the same function under any permutation of the 2m channels of a
//! block's 3x3 convolution (with the matching columns of its first 1x1) and of the m channels
//! of its first 1x1 (with the matching inputs of the last 1x1). The presolved network uses the
//! first two and the first one of them; a trained network may have learnt the same features
//! in any other channels. The straight line to the solution then crosses regions that are
//! only far because of the labelling, and its loss hump says nothing about the landscape.
//! [`align_to`] first permutes the trained channels, block by block, to maximise the inner
//! product with the target's weights (equivalently, minimise the L2 distance), alternating
//! between the two permutations, each an exact linear assignment, until neither changes. It
//! does not remove the other symmetry of (leaky) ReLU networks, rescaling a channel's inputs by
//! a > 0 and its outputs by 1 / a.

use candle_core::{Device, Tensor};
use lifesweep_life::{generate_batch, stream_rng, RngStream};
use lifesweep_spec::TrainParams;
use rand_distr::{Distribution, StandardNormal};

use crate::eval::evaluate;
use crate::kernels::Kernels;
use crate::math::bce_cell;
use crate::native::{forward_eval, BlockLayout};
use crate::network::{check_params, Network};
use crate::TrainError;

/// Where a walk goes from the trained weights.
#[derive(Debug, Clone, PartialEq)]
pub enum WalkTarget {
    /// To the presolved weights of the same architecture, at `points` evenly spaced points
    /// (both ends included).
    Presolve { points: u32 },
    /// Along a random direction of unit L1 norm drawn from `seed`, to each distance.
    Random { seed: u64, distances: Vec<f64> },
}

impl WalkTarget {
    /// The kind as stored: `presolve` or `random`.
    pub fn kind(&self) -> &'static str {
        match self {
            WalkTarget::Presolve { .. } => "presolve",
            WalkTarget::Random { .. } => "random",
        }
    }
}

/// The original study's random-walk distances: 0, 0.1, ..., 1, then 2, 3, ..., `max`.
pub fn default_random_distances(max: u32) -> Vec<f64> {
    let mut out: Vec<f64> = (0..=10).map(|i| f64::from(i) / 10.0).collect();
    out.extend((2..=max).map(f64::from));
    out
}

/// What to walk and how to score it.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkOptions {
    pub target: WalkTarget,
    /// Batches of training boards each point's loss is averaged over.
    pub batches: u32,
    /// Permute the trained hidden channels to best match the presolved weights first.
    pub align: bool,
}

impl WalkOptions {
    /// Checks the options; errors name the option.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |key: &'static str, message: String| TrainError::InvalidParams { key, message };
        if self.batches == 0 {
            return Err(bad("batches", "a walk needs at least one batch".into()));
        }
        match &self.target {
            WalkTarget::Presolve { points } if *points < 2 => Err(bad(
                "points",
                format!("a walk needs at least 2 points, got {points}"),
            )),
            WalkTarget::Random { distances, .. } if distances.is_empty() => Err(bad(
                "distances",
                "a random walk needs at least one distance".into(),
            )),
            WalkTarget::Random { distances, .. }
                if distances.iter().any(|d| !d.is_finite() || *d < 0.0) =>
            {
                Err(bad(
                    "distances",
                    "distances must be finite and not negative".into(),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// One scored point of a walk.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkPoint {
    pub index: u32,
    /// Presolve walks: the fraction of the way to the solution (0..=1).
    pub fraction: Option<f64>,
    /// L1 distance from the start in weight space.
    pub distance: f64,
    /// Mean training loss over the walk's boards.
    pub loss: f64,
    pub success_rate: f64,
    pub cell_accuracy: f64,
}

/// A finished walk.
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    pub points: Vec<WalkPoint>,
    /// Whether the trained channels were permuted before walking.
    pub aligned: bool,
    /// L1 distance from the trained weights to the presolved ones, before and after alignment
    /// (equal without `align`).
    pub distance_to_solution: (f64, f64),
}

/// Walks from `trained` (the run's weights, as [`Network::weights`] names them) as `options`
/// say. CPU only: a walk is a few hundred evaluation passes, cheap next to training.
pub fn walk(
    params: &TrainParams,
    trained: &[(String, Tensor)],
    options: &WalkOptions,
) -> Result<Walk, TrainError> {
    check_params(params)?;
    options.validate()?;
    let _flush = crate::fpu::FlushSubnormals::new();
    let device = Device::Cpu;
    let net = Network::from_weights(params, &device, trained)?;
    let layout = net.layout();
    let solution = Network::presolved(params, &device)?.packed_params()?;
    let mut start = net.packed_params()?;
    let before = l1_distance(&start, &solution);
    if options.align {
        align_to(layout, &mut start, &solution);
    }
    let after = l1_distance(&start, &solution);
    let boards = WalkBoards::new(params, options.batches);
    let score = |weights: &[f32]| -> Result<(f64, f64, f64), TrainError> {
        net.set_packed_params(weights)?;
        let loss = boards.mean_loss(&net, weights);
        let eval = evaluate(&net, params, &device)?;
        Ok((loss, eval.success_rate, eval.cell_accuracy))
    };
    let mut points = Vec::new();
    let mut weights = vec![0f32; start.len()];
    match &options.target {
        WalkTarget::Presolve { points: count } => {
            for index in 0..*count {
                let t = f64::from(index) / f64::from(count - 1);
                for ((w, s), e) in weights.iter_mut().zip(&start).zip(&solution) {
                    *w = ((1.0 - t) * f64::from(*s) + t * f64::from(*e)) as f32;
                }
                let (loss, success_rate, cell_accuracy) = score(&weights)?;
                points.push(WalkPoint {
                    index,
                    fraction: Some(t),
                    distance: t * after,
                    loss,
                    success_rate,
                    cell_accuracy,
                });
            }
        }
        WalkTarget::Random { seed, distances } => {
            let direction = random_direction(*seed, start.len());
            for (index, &d) in distances.iter().enumerate() {
                for ((w, s), u) in weights.iter_mut().zip(&start).zip(&direction) {
                    *w = (f64::from(*s) + d * u) as f32;
                }
                let (loss, success_rate, cell_accuracy) = score(&weights)?;
                points.push(WalkPoint {
                    index: index as u32,
                    fraction: None,
                    distance: d,
                    loss,
                    success_rate,
                    cell_accuracy,
                });
            }
        }
    }
    Ok(Walk {
        points,
        aligned: options.align,
        distance_to_solution: (before, after),
    })
}

fn l1_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).sum()
}

/// A direction of unit L1 norm: standard normal components, scaled.
fn random_direction(seed: u64, len: usize) -> Vec<f64> {
    let mut rng = stream_rng(seed, RngStream::Aux);
    let raw: Vec<f64> = (0..len).map(|_| StandardNormal.sample(&mut rng)).collect();
    let norm: f64 = raw.iter().map(|v| v.abs()).sum();
    raw.into_iter()
        .map(|v| v / norm.max(f64::MIN_POSITIVE))
        .collect()
}

/// The fixed boards every point of a walk is scored on.
struct WalkBoards {
    inputs: Vec<f32>,
    targets: Vec<f32>,
    batch: usize,
    size: usize,
}

impl WalkBoards {
    fn new(params: &TrainParams, batches: u32) -> WalkBoards {
        let mut rng = stream_rng(params.seed, RngStream::WalkBoards);
        let size = params.board_size as usize;
        let batch = params.batch_size as usize;
        let count = batch * batches as usize;
        let data = generate_batch(
            &mut rng,
            params.rule,
            params.steps,
            size,
            count,
            params.density,
        );
        WalkBoards {
            inputs: data.inputs,
            targets: data.targets,
            batch,
            size,
        }
    }

    /// The mean over batches of each batch's mean BCE, as training reports it.
    fn mean_loss(&self, net: &Network, weights: &[f32]) -> f64 {
        let shape = net.shape();
        let cells = self.batch * self.size * self.size;
        let kernels = Kernels::detect();
        let mut sum = 0.0;
        let mut batches = 0usize;
        for (inputs, targets) in self.inputs.chunks(cells).zip(self.targets.chunks(cells)) {
            let out = forward_eval(&shape, weights, inputs, self.batch, self.size, kernels);
            let total: f64 = out
                .iter()
                .zip(targets)
                .map(|(&x, &y)| f64::from(bce_cell(x, y, shape.logits).0))
                .sum();
            sum += total / cells as f64;
            batches += 1;
        }
        sum / batches as f64
    }
}

/// Permutes the hidden channels of `weights` (packed blocks, see [`BlockLayout`]) in place to
/// best match `target` block by block (see the module documentation). The network's function
/// does not change.
pub fn align_to(layout: BlockLayout, weights: &mut [f32], target: &[f32]) {
    let count = layout.param_count();
    for (block, goal) in weights
        .chunks_exact_mut(count)
        .zip(target.chunks_exact(count))
    {
        align_block(layout, block, goal);
    }
}

/// The parts of one block, as row-major matrices (rows = output channels).
struct BlockView<'a> {
    layout: BlockLayout,
    values: &'a [f32],
}

impl BlockView<'_> {
    fn at(&self, layer: usize, row: usize, col: usize) -> f64 {
        let (w, _) = self.layout.offsets(layer);
        let (fan_in, _) = self.layout.fan_in_out(layer);
        f64::from(self.values[w + row * fan_in + col])
    }

    fn bias(&self, layer: usize, row: usize) -> f64 {
        let (_, b) = self.layout.offsets(layer);
        f64::from(self.values[b + row])
    }
}

fn align_block(layout: BlockLayout, block: &mut [f32], goal: &[f32]) {
    let m = layout.m;
    let wide = 2 * m;
    let t = block.to_vec();
    let trained = BlockView { layout, values: &t };
    let target = BlockView {
        layout,
        values: goal,
    };
    // p[i]: the trained conv3 channel placed at slot i; q[j]: the conv1a channel at slot j.
    let mut p: Vec<usize> = (0..wide).collect();
    let mut q: Vec<usize> = (0..m).collect();
    for _ in 0..50 {
        // conv3 rows and biases, and conv1a columns under q
        let gain_p: Vec<Vec<f64>> = (0..wide)
            .map(|a| {
                (0..wide)
                    .map(|i| {
                        let mut g = trained.bias(0, a) * target.bias(0, i);
                        for k in 0..9 {
                            g += trained.at(0, a, k) * target.at(0, i, k);
                        }
                        for (j, &qj) in q.iter().enumerate() {
                            g += trained.at(1, qj, a) * target.at(1, j, i);
                        }
                        g
                    })
                    .collect()
            })
            .collect();
        let new_p = best_assignment(&gain_p);
        // conv1a rows under p and biases, and conv1b inputs
        let gain_q: Vec<Vec<f64>> = (0..m)
            .map(|b| {
                (0..m)
                    .map(|j| {
                        let mut g = trained.bias(1, b) * target.bias(1, j)
                            + trained.at(2, 0, b) * target.at(2, 0, j);
                        for (i, &pi) in new_p.iter().enumerate() {
                            g += trained.at(1, b, pi) * target.at(1, j, i);
                        }
                        g
                    })
                    .collect()
            })
            .collect();
        let new_q = best_assignment(&gain_q);
        let settled = new_p == p && new_q == q;
        p = new_p;
        q = new_q;
        if settled {
            break;
        }
    }
    permute_block(layout, &t, &p, &q, block);
}

/// Writes `source` with conv3 channels taken in order `p` and conv1a channels in order `q`.
fn permute_block(layout: BlockLayout, source: &[f32], p: &[usize], q: &[usize], out: &mut [f32]) {
    let m = layout.m;
    let (w3, b3) = layout.offsets(0);
    let (w1, b1) = layout.offsets(1);
    let (w2, _) = layout.offsets(2);
    for (i, &pi) in p.iter().enumerate() {
        out[w3 + i * 9..w3 + i * 9 + 9].copy_from_slice(&source[w3 + pi * 9..w3 + pi * 9 + 9]);
        out[b3 + i] = source[b3 + pi];
    }
    for (j, &qj) in q.iter().enumerate() {
        for (i, &pi) in p.iter().enumerate() {
            out[w1 + j * 2 * m + i] = source[w1 + qj * 2 * m + pi];
        }
        out[b1 + j] = source[b1 + qj];
        out[w2 + j] = source[w2 + qj];
    }
}

/// The assignment `a[i]` (row placed at column i) maximising `sum gain[a[i]][i]`: the
/// Hungarian algorithm (shortest augmenting paths with potentials), O(n^3).
fn best_assignment(gain: &[Vec<f64>]) -> Vec<usize> {
    let n = gain.len();
    // minimise cost[row][col] = -gain; 1-based arrays with a virtual row/column 0
    let cost = |row: usize, col: usize| -gain[row - 1][col - 1];
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; n + 1];
    let mut row_of = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for row in 1..=n {
        row_of[0] = row;
        let mut col0 = 0;
        let mut min_to = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[col0] = true;
            let r = row_of[col0];
            let mut delta = f64::INFINITY;
            let mut col1 = 0;
            for col in 1..=n {
                if !used[col] {
                    let reduced = cost(r, col) - u[r] - v[col];
                    if reduced < min_to[col] {
                        min_to[col] = reduced;
                        way[col] = col0;
                    }
                    if min_to[col] < delta {
                        delta = min_to[col];
                        col1 = col;
                    }
                }
            }
            for col in 0..=n {
                if used[col] {
                    u[row_of[col]] += delta;
                    v[col] -= delta;
                } else {
                    min_to[col] -= delta;
                }
            }
            col0 = col1;
            if row_of[col0] == 0 {
                break;
            }
        }
        loop {
            let prev = way[col0];
            row_of[col0] = row_of[prev];
            col0 = prev;
            if col0 == 0 {
                break;
            }
        }
    }
    (1..=n).map(|col| row_of[col] - 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for rest in permutations(n - 1) {
            for at in 0..=rest.len() {
                let mut p = rest.clone();
                p.insert(at, n - 1);
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn assignment_is_optimal_against_brute_force() {
        let mut rng = stream_rng(7, RngStream::Aux);
        for n in 1..=6 {
            for _ in 0..20 {
                let gain: Vec<Vec<f64>> = (0..n)
                    .map(|_| (0..n).map(|_| StandardNormal.sample(&mut rng)).collect())
                    .collect();
                let total = |a: &[usize]| a.iter().enumerate().map(|(i, &r)| gain[r][i]).sum();
                let best: f64 = permutations(n)
                    .iter()
                    .map(|p| total(p))
                    .fold(f64::NEG_INFINITY, f64::max);
                let got = best_assignment(&gain);
                let mut sorted = got.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "not a permutation");
                assert!((total(&got) - best).abs() < 1e-9, "n {n}: {got:?}");
            }
        }
    }

    #[test]
    fn default_distances_are_the_originals() {
        let d = default_random_distances(30);
        assert_eq!(d.len(), 11 + 29);
        assert_eq!(d[0], 0.0);
        assert!((d[1] - 0.1).abs() < 1e-12);
        assert_eq!(d[10], 1.0);
        assert_eq!(d[11], 2.0);
        assert_eq!(*d.last().unwrap(), 30.0);
    }

    #[test]
    fn random_directions_have_unit_l1_norm_and_depend_on_the_seed() {
        let a = random_direction(3, 500);
        let norm: f64 = a.iter().map(|v| v.abs()).sum();
        assert!((norm - 1.0).abs() < 1e-12);
        assert_eq!(a, random_direction(3, 500));
        assert_ne!(a, random_direction(4, 500));
    }
}
