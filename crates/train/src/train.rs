//! The training loop and the one entry point of a run, [`train_and_evaluate`].

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use lifesweep_life::{generate_batch, stream_rng, RngStream};
use lifesweep_spec::{LossPoint, RunMetrics, TrainParams};

use crate::eval::evaluate;
use crate::fpu::FlushSubnormals;
use crate::kernels::Kernels;
use crate::native::{Adam, BatchSpec, Trainer, Workspace};
use crate::network::{check_params, Formulation, Network, Pass};
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
    let _flush = FlushSubnormals::new();
    let started = Instant::now();
    let net = Network::new(params, device)?;
    let loss_curve = train(&net, params, control)?;
    finish_run(
        &net,
        params,
        device,
        device_label,
        loss_curve,
        started.elapsed().as_secs_f64(),
    )
}

/// Evaluates a trained network and assembles the outcome of its run; `seconds` so far are
/// added to the evaluation time in [`RunMetrics::wall_seconds`].
pub(crate) fn finish_run(
    net: &Network,
    params: &TrainParams,
    device: &Device,
    device_label: &str,
    loss_curve: Vec<LossPoint>,
    seconds: f64,
) -> Result<TrainOutcome, TrainError> {
    let started = Instant::now();
    let eval = evaluate(net, params, device)?;
    let wall_seconds = seconds + started.elapsed().as_secs_f64();
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
    let _flush = FlushSubnormals::new();
    if net.formulation() == Formulation::Fused && net.device().is_cpu() {
        return train_native(net, params, control);
    }
    let device = net.device();
    let adam = ParamsAdamW {
        lr: params.learning_rate,
        beta1: ADAM_BETA1,
        beta2: ADAM_BETA2,
        eps: ADAM_EPS,
        weight_decay: 0.0,
    };
    let mut optimizer = AdamW::new(net.vars(), adam)?;
    let mut data_rng = stream_rng(params.seed, RngStream::TrainData);
    let mut noise_rng = stream_rng(params.seed, RngStream::Dropout);
    let size = params.board_size as usize;
    let count = params.batch_size as usize;
    let mut curve = LossCurve::new(params);
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
        curve.record(batch, value);
        if batch % CONTROL_EVERY == 0 || batch == params.batches {
            (control.on_progress)(batch);
        }
    }
    Ok(curve.points)
}

/// Adam's constants (PyTorch's defaults).
pub(crate) const ADAM_BETA1: f64 = 0.9;
pub(crate) const ADAM_BETA2: f64 = 0.999;
pub(crate) const ADAM_EPS: f64 = 1e-8;

/// The Adam of a run on the native path.
pub(crate) fn native_adam(params: &TrainParams) -> Adam {
    Adam {
        lr: params.learning_rate,
        beta1: ADAM_BETA1,
        beta2: ADAM_BETA2,
        eps: ADAM_EPS,
    }
}

/// The mean loss over each `loss_every` batches (see [`train`]).
pub(crate) struct LossCurve {
    every: u32,
    last: u32,
    sum: f64,
    batches: u32,
    pub(crate) points: Vec<LossPoint>,
}

impl LossCurve {
    pub(crate) fn new(params: &TrainParams) -> LossCurve {
        LossCurve {
            every: params.loss_every,
            last: params.batches,
            sum: 0.0,
            batches: 0,
            points: Vec::with_capacity((params.batches / params.loss_every + 1) as usize),
        }
    }

    pub(crate) fn record(&mut self, batch: u32, loss: f64) {
        self.sum += loss;
        self.batches += 1;
        if batch.is_multiple_of(self.every) || batch == self.last {
            self.points.push(LossPoint {
                batch,
                loss: self.sum / f64::from(self.batches),
            });
            (self.sum, self.batches) = (0.0, 0);
        }
    }
}

/// [`train`] on the native CPU path ([`crate::native`]): the same batches, noise, loss and
/// Adam as the candle loop, on host buffers; the trained parameters are written back into
/// the network's variables at the end (also when the run diverges or is interrupted).
fn train_native(
    net: &Network,
    params: &TrainParams,
    control: &TrainControl,
) -> Result<Vec<LossPoint>, TrainError> {
    let shape = net.shape();
    let batch = BatchSpec::of(params);
    let kernels = Kernels::detect();
    let mut ws = Workspace::new(&shape, batch.count, batch.size, true);
    let mut trainer = Trainer::new(
        &shape,
        net.packed_params()?,
        stream_rng(params.seed, RngStream::TrainData),
        stream_rng(params.seed, RngStream::Dropout),
        native_adam(params),
    );
    let mut curve = LossCurve::new(params);
    tracing::debug!(
        batches = params.batches,
        params = net.param_count(),
        ?kernels,
        "training on the native cpu path"
    );
    let mut outcome = Ok(());
    for batch_index in 1..=params.batches {
        if (batch_index - 1) % CONTROL_EVERY == 0 && (control.should_stop)() {
            outcome = Err(TrainError::Interrupted);
            break;
        }
        let value = trainer.forward_backward(&shape, &batch, &mut ws, kernels);
        if !value.is_finite() {
            tracing::debug!(batch = batch_index, loss = value, "diverged");
            outcome = Err(TrainError::Diverged {
                batch: batch_index,
                loss: value,
            });
            break;
        }
        trainer.apply(&shape);
        curve.record(batch_index, value);
        if batch_index % CONTROL_EVERY == 0 || batch_index == params.batches {
            (control.on_progress)(batch_index);
        }
    }
    net.set_packed_params(&trainer.model.params)?;
    outcome.map(|()| curve.points)
}
