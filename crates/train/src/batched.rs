//! K networks of one grid point as one network with a leading model dimension, from candle's
//! differentiable ops, for any device: the fused multi-seed path off the CPU (see
//! [`crate::many`]).
//!
//! Block `b`'s parameters of all K models are one variable `[K, params]` (each row packed as
//! [`BlockLayout`](crate::native::BlockLayout) says), so Adam, being elementwise, keeps each
//! model's own moments. A layer is one batched matmul `[K, cout, fan_in] x [K, fan_in, N]`;
//! the loss of each model is its own mean over its cells, and the sum of those is what the
//! backward pass differentiates, so each model gets exactly the gradient of its own run.
//! Boards and noise come from each model's own streams, in the order of a separate run.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use lifesweep_life::{fill_batch, stream_rng, RngStream};
use lifesweep_spec::TrainParams;
use rand::RngCore;

use crate::loss::bce_cells_ops;
use crate::native::{Act, NetShape};
use crate::network::{act_ops, draw_noise, im2col_ops, Network};
use crate::train::{
    finish_run, LossCurve, TrainControl, TrainOutcome, ADAM_BETA1, ADAM_BETA2, ADAM_EPS,
    CONTROL_EVERY,
};
use crate::TrainError;

/// The noise of one training pass of all models, per block and layer: RReLU slopes
/// `[K, cout, N]`, dropout factors `[K, 2m, batch, 1]`.
struct Noise {
    slopes: Vec<[Option<Tensor>; 3]>,
    masks: Vec<Option<Tensor>>,
}

/// Draws every model's noise from its own stream, as a separate run would, and stacks it.
fn draw_all(
    shape: &NetShape,
    rngs: &mut [impl RngCore],
    samples: usize,
    n: usize,
    device: &Device,
) -> candle_core::Result<Noise> {
    let k = rngs.len();
    // per model, block and layer: (slopes, dropout factors)
    type Drawn = [(Option<Vec<f32>>, Option<Vec<f32>>); 3];
    let mut per_model: Vec<Vec<Drawn>> = Vec::new();
    for rng in rngs.iter_mut() {
        let mut blocks = Vec::with_capacity(shape.blocks);
        for (block, acts) in shape.train_acts.iter().enumerate() {
            blocks.push(std::array::from_fn(|layer| {
                let (_, cout) = shape.layout.fan_in_out(layer);
                let dropout = shape.dropout && layer == 0 && block + 1 != shape.blocks;
                draw_noise(rng, acts[layer], dropout, cout, n, samples)
            }));
        }
        per_model.push(blocks);
    }
    let mut noise = Noise {
        slopes: Vec::new(),
        masks: Vec::new(),
    };
    for block in 0..shape.blocks {
        let mut slopes: [Option<Tensor>; 3] = Default::default();
        for (layer, slot) in slopes.iter_mut().enumerate() {
            let (_, cout) = shape.layout.fan_in_out(layer);
            let values: Option<Vec<f32>> = per_model
                .iter()
                .map(|m| m[block][layer].0.clone())
                .collect::<Option<Vec<_>>>()
                .map(|v| v.concat());
            *slot = values
                .map(|v| Tensor::from_vec(v, (k, cout, n), device))
                .transpose()?;
        }
        let mask: Option<Vec<f32>> = per_model
            .iter()
            .map(|m| m[block][0].1.clone())
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat());
        let c1 = 2 * shape.layout.m;
        noise.slopes.push(slopes);
        noise.masks.push(
            mask.map(|v| Tensor::from_vec(v, (k, c1, samples, 1), device))
                .transpose()?,
        );
    }
    Ok(noise)
}

/// The training forward pass of all models: boards `[K, samples, size, size]` -> raw outputs
/// `[K, N]`.
fn forward(
    shape: &NetShape,
    vars: &[Var],
    boards: &Tensor,
    noise: &Noise,
) -> candle_core::Result<Tensor> {
    let (k, samples, size, _) = boards.dims4()?;
    let n = samples * size * size;
    let mut x = boards.reshape((k * samples, size, size))?;
    for (block, var) in vars.iter().enumerate() {
        let params = var.as_tensor();
        let taps = im2col_ops(&x, k * samples, size, shift_of(shape))?
            .reshape((9, k, n))?
            .transpose(0, 1)?
            .contiguous()?;
        let mut h = taps;
        for layer in 0..3 {
            let (fan_in, cout) = shape.layout.fan_in_out(layer);
            let (w_off, b_off) = shape.layout.offsets(layer);
            let weight = params
                .narrow(1, w_off, cout * fan_in)?
                .reshape((k, cout, fan_in))?
                .contiguous()?;
            let bias = params.narrow(1, b_off, cout)?.reshape((k, cout, 1))?;
            let pre = weight.matmul(&h)?.broadcast_add(&bias)?;
            let act: Act = shape.train_acts[block][layer];
            let mut out = act_ops(&pre, act, noise.slopes[block][layer].as_ref())?;
            if let (0, Some(mask)) = (layer, &noise.masks[block]) {
                out = out
                    .reshape((k, cout, samples, size * size))?
                    .broadcast_mul(mask)?
                    .reshape((k, cout, n))?;
            }
            h = out;
        }
        x = h.reshape((k * samples, size, size))?;
    }
    x.reshape((k, n))
}

fn shift_of(shape: &NetShape) -> f32 {
    shape.shift
}

/// Fused training of `params` (checked by the caller) as one batched network on `device`.
pub(crate) fn many_batched(
    params: &[TrainParams],
    device: &Device,
    device_label: &str,
    control: &TrainControl,
) -> Vec<Result<TrainOutcome, TrainError>> {
    let started = Instant::now();
    let count = params.len();
    match train_batched(params, device, control) {
        Ok((nets, curves, failed)) => {
            let share = started.elapsed().as_secs_f64() / count as f64;
            let runs = nets.iter().zip(params).zip(curves).zip(failed);
            runs.map(|(((net, p), curve), failed)| match failed {
                Some(error) => Err(error),
                None => finish_run(net, p, device, device_label, curve.points, share),
            })
            .collect()
        }
        Err(e) => {
            let message = e.to_string();
            (0..count)
                .map(|_| Err(candle_core::Error::Msg(message.clone()).into()))
                .collect()
        }
    }
}

type Trained = (Vec<Network>, Vec<LossCurve>, Vec<Option<TrainError>>);

fn train_batched(
    params: &[TrainParams],
    device: &Device,
    control: &TrainControl,
) -> Result<Trained, TrainError> {
    let count = params.len();
    let first = &params[0];
    let nets = params
        .iter()
        .map(|p| Network::new(p, device))
        .collect::<Result<Vec<_>, _>>()?;
    let shape = nets[0].shape();
    let per_block = shape.layout.param_count();
    let mut packed = Vec::with_capacity(count);
    for net in &nets {
        packed.push(net.packed_params()?);
    }
    let vars = (0..shape.blocks)
        .map(|block| {
            let rows: Vec<f32> = packed
                .iter()
                .flat_map(|p| {
                    p[block * per_block..(block + 1) * per_block]
                        .iter()
                        .copied()
                })
                .collect();
            Var::from_vec(rows, (count, per_block), device)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mut optimizer = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: first.learning_rate,
            beta1: ADAM_BETA1,
            beta2: ADAM_BETA2,
            eps: ADAM_EPS,
            weight_decay: 0.0,
        },
    )?;
    let mut data_rngs: Vec<_> = params
        .iter()
        .map(|p| stream_rng(p.seed, RngStream::TrainData))
        .collect();
    let mut noise_rngs: Vec<_> = params
        .iter()
        .map(|p| stream_rng(p.seed, RngStream::Dropout))
        .collect();
    let (size, samples) = (first.board_size as usize, first.batch_size as usize);
    let n = samples * size * size;
    let mut inputs = vec![0f32; count * n];
    let mut targets = vec![0f32; count * n];
    let mut curves: Vec<LossCurve> = params.iter().map(LossCurve::new).collect();
    let mut failed: Vec<Option<TrainError>> = (0..count).map(|_| None).collect();
    tracing::debug!(
        runs = count,
        batches = first.batches,
        "fused training, batched on {device:?}"
    );
    for batch_index in 1..=first.batches {
        if (batch_index - 1) % CONTROL_EVERY == 0 && (control.should_stop)() {
            for f in failed.iter_mut().filter(|f| f.is_none()) {
                *f = Some(TrainError::Interrupted);
            }
            break;
        }
        let buffers = inputs.chunks_exact_mut(n).zip(targets.chunks_exact_mut(n));
        for (rng, (input, target)) in data_rngs.iter_mut().zip(buffers) {
            fill_batch(
                rng,
                first.rule,
                first.steps,
                size,
                samples,
                first.density,
                input,
                target,
            );
        }
        let boards = Tensor::from_slice(&inputs, (count, samples, size, size), device)?;
        let y = Tensor::from_slice(&targets, (count, n), device)?;
        let noise = draw_all(&shape, &mut noise_rngs, samples, n, device)?;
        let out = forward(&shape, &vars, &boards, &noise)?;
        // each model's mean loss; the gradient of their sum is each model's own gradient
        let xd = out.detach();
        let (cell_loss, cell_grad) = bce_cells_ops(&xd, &y, shape.logits)?;
        let values = cell_loss.mean(1)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let grad = cell_grad.affine(1.0 / n as f64, 0.0)?;
        let surrogate = ((&out - &xd)? * grad)?.sum_all()?;
        for (i, &value) in values.iter().enumerate() {
            let value = f64::from(value);
            if failed[i].is_some() {
                continue;
            }
            if value.is_finite() {
                curves[i].record(batch_index, value);
            } else {
                failed[i] = Some(TrainError::Diverged {
                    batch: batch_index,
                    loss: value,
                });
            }
        }
        if failed.iter().all(Option::is_some) {
            break;
        }
        // a diverged model's rows turn NaN from here on; the others' gradients never read them
        optimizer.backward_step(&surrogate)?;
        if batch_index % CONTROL_EVERY == 0 || batch_index == first.batches {
            (control.on_progress)(batch_index);
        }
    }
    for (i, net) in nets.iter().enumerate() {
        let mut values = Vec::with_capacity(shape.blocks * per_block);
        for var in &vars {
            values.extend(var.as_tensor().get(i)?.to_vec1::<f32>()?);
        }
        net.set_packed_params(&values)?;
    }
    Ok((nets, curves, failed))
}
