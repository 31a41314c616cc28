//! The training loop and the one entry point of a run, [`train_and_evaluate`].

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use lifesweep_life::{generate_batch, stream_rng, RngStream};
use lifesweep_spec::{LossPoint, RunMetrics, TrainParams};

use crate::eval::evaluate;
use crate::network::{check_params, Network, Pass};
use crate::TrainError;

/// `should_stop` is asked, and `on_progress` told, every this many batches.
pub const CONTROL_EVERY: u32 = 10;

/// What a finished run hands back.
pub struct TrainOutcome {
    pub metrics: RunMetrics,
    /// The trained weights by name (see [`Network::weights`]), for the caller to save.
    pub weights: Vec<(String, Tensor)>,
}

/// How the caller steers a run.
pub struct TrainControl<'a> {
    /// Asked before batch 1 and then every [`CONTROL_EVERY`] batches; `true` ends the run with
    /// [`TrainError::Interrupted`].
    pub should_stop: &'a (dyn Fn() -> bool + Sync),
    /// Told the number of batches done every [`CONTROL_EVERY`] batches and after the last one.
    pub on_progress: &'a (dyn Fn(u32) + Sync),
}

fn never() -> bool {
    false
}

fn ignore(_batches: u32) {}

impl TrainControl<'static> {
    /// Never stops, reports nowhere.
    pub fn unattended() -> TrainControl<'static> {
        TrainControl {
            should_stop: &never,
            on_progress: &ignore,
        }
    }
}

/// One whole run: build the network of `params` on `device`, train it, evaluate it.
///
/// `device_label` is recorded as [`RunMetrics::device`] (e.g. "cpu", "cuda:0"). The time in
/// [`RunMetrics::wall_seconds`] runs from building the network to the end of evaluation.
pub fn train_and_evaluate(
    params: &TrainParams,
    device: &Device,
    device_label: &str,
    control: &TrainControl,
) -> Result<TrainOutcome, TrainError> {
    check_params(params)?;
    let started = Instant::now();
    let net = Network::new(params, device)?;
    let loss_curve = train(&net, params, control)?;
    let eval = evaluate(&net, params, device)?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let final_loss = loss_curve.last().map_or(f64::NAN, |point| point.loss);
    tracing::debug!(
        success_rate = eval.success_rate,
        cell_accuracy = eval.cell_accuracy,
        final_loss,
        wall_seconds,
        "run finished"
    );
    Ok(TrainOutcome {
        metrics: RunMetrics {
            success_rate: eval.success_rate,
            training_success: eval.success_rate == 1.0,
            cell_accuracy: eval.cell_accuracy,
            final_loss,
            loss_curve,
            param_count: net.param_count(),
            wall_seconds,
            device: device_label.to_string(),
        },
        weights: net.weights()?,
    })
}

/// Trains `net` in place for `params.batches` batches and returns the loss curve: the mean
/// loss over each `loss_every` batches, at batches `loss_every`, `2 * loss_every`, ..., and
/// over the last, possibly shorter, interval at the last batch.
///
/// Each batch: `batch_size` fresh boards from the run's `TrainData` stream, a training pass
/// (noise from the `Dropout` stream), the BCE loss, backward, one Adam step (betas 0.9 and
/// 0.999, eps 1e-8, no weight decay). A NaN or infinite loss ends the run with
/// [`TrainError::Diverged`] before the step.
pub fn train(
    net: &Network,
    params: &TrainParams,
    control: &TrainControl,
) -> Result<Vec<LossPoint>, TrainError> {
    check_params(params)?;
    let device = net.device();
    let adam = ParamsAdamW {
        lr: params.learning_rate,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut optimizer = AdamW::new(net.vars(), adam)?;
    let mut data_rng = stream_rng(params.seed, RngStream::TrainData);
    let mut noise_rng = stream_rng(params.seed, RngStream::Dropout);
    let size = params.board_size as usize;
    let count = params.batch_size as usize;
    let mut curve = Vec::with_capacity((params.batches / params.loss_every + 1) as usize);
    let (mut interval_sum, mut interval_batches) = (0f64, 0u32);
    tracing::debug!(
        batches = params.batches,
        params = net.param_count(),
        "training"
    );
    for batch in 1..=params.batches {
        if (batch - 1) % CONTROL_EVERY == 0 && (control.should_stop)() {
            return Err(TrainError::Interrupted);
        }
        let data = generate_batch(
            &mut data_rng,
            params.rule,
            params.steps,
            size,
            count,
            params.density,
        );
        let inputs = Tensor::from_vec(data.inputs, (count, size, size), device)?;
        let targets = Tensor::from_vec(data.targets, count * size * size, device)?;
        let output = net.forward(&inputs, Pass::Train(&mut noise_rng))?;
        let loss = net.loss(&output, &targets)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        if !value.is_finite() {
            tracing::debug!(batch, loss = value, "diverged");
            return Err(TrainError::Diverged { batch, loss: value });
        }
        optimizer.backward_step(&loss)?;
        interval_sum += value;
        interval_batches += 1;
        if batch % params.loss_every == 0 || batch == params.batches {
            curve.push(LossPoint {
                batch,
                loss: interval_sum / f64::from(interval_batches),
            });
            (interval_sum, interval_batches) = (0.0, 0);
        }
        if batch % CONTROL_EVERY == 0 || batch == params.batches {
            (control.on_progress)(batch);
        }
    }
    Ok(curve)
}
