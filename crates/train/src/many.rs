//! Fused multi-seed training: K runs of one grid point, differing only in their seed, trained
//! as one computation ([`train_and_evaluate_many`]).
//!
//! Each run keeps everything a separate run has: its own initial weights, boards, dropout and
//! RReLU noise (its seed's streams), Adam state, loss curve, divergence and evaluation. So the
//! result of each run equals the separate run of its parameters (bit for bit on the native CPU
//! path, within float tolerance on the batched candle path), whatever the other runs do; a run
//! that diverges stops alone.
//!
//! - On the CPU the runs step batch by batch on the native path ([`crate::native`]), sharing
//!   one workspace: the model dimension is the outer loop of each batch. A step is already a
//!   handful of large kernels, so what fusing saves here is per-run overhead (process start,
//!   job claims, buffers), not per-batch time.
//! - On other devices (CUDA) the K models are one network with a leading model dimension
//!   ([`crate::batched`]): every layer is one batched matmul over the K models, so a batch
//!   costs the kernel launches of one run instead of K.

use std::time::Instant;

use candle_core::Device;
use lifesweep_life::{stream_rng, RngStream};
use lifesweep_spec::TrainParams;

use crate::kernels::Kernels;
use crate::native::{BatchSpec, Trainer, Workspace};
use crate::network::{Formulation, Network};
use crate::train::{finish_run, native_adam, LossCurve, TrainControl, TrainOutcome, CONTROL_EVERY};
use crate::TrainError;

/// The largest number of runs fused into one computation (`fuse_seeds` in a sweep file).
pub const MAX_FUSED_RUNS: usize = 64;

/// Trains and evaluates the runs of `params` (one grid point: equal but for `seed`) as one
/// computation on `device` and returns each run's outcome in order, as
/// [`crate::train_and_evaluate`] would for it alone.
///
/// Parameters that are invalid, or that differ in more than the seed, fail every run with
/// [`TrainError::InvalidParams`]. `should_stop` stops every run ([`TrainError::Interrupted`]);
/// `on_progress` is told the batches done by the group. A run's
/// [`RunMetrics::wall_seconds`](lifesweep_spec::RunMetrics::wall_seconds) is its share of the
/// group's training time (the time divided by the number of runs) plus its own evaluation.
pub fn train_and_evaluate_many(
    params: &[TrainParams],
    device: &Device,
    device_label: &str,
    control: &TrainControl,
) -> Vec<Result<TrainOutcome, TrainError>> {
    let formulation = Formulation::for_device(device);
    train_and_evaluate_many_with(params, device, device_label, control, formulation)
}

/// [`train_and_evaluate_many`] with a chosen formulation: [`Formulation::Fused`] is the
/// native CPU path (CPU devices only), anything else the batched candle network (any device;
/// on the CPU, for tests).
pub fn train_and_evaluate_many_with(
    params: &[TrainParams],
    device: &Device,
    device_label: &str,
    control: &TrainControl,
    formulation: Formulation,
) -> Vec<Result<TrainOutcome, TrainError>> {
    let _flush = crate::fpu::FlushSubnormals::new();
    if let Err((key, message)) = check_group(params) {
        return params
            .iter()
            .map(|_| {
                Err(TrainError::InvalidParams {
                    key,
                    message: message.clone(),
                })
            })
            .collect();
    }
    if params.is_empty() {
        return Vec::new();
    }
    if formulation == Formulation::Fused && device.is_cpu() {
        many_native(params, device, device_label, control)
    } else {
        crate::batched::many_batched(params, device, device_label, control)
    }
}

/// Whether `params` can be fused: valid, at most [`MAX_FUSED_RUNS`], equal but for the seed.
fn check_group(params: &[TrainParams]) -> Result<(), (&'static str, String)> {
    if params.len() > MAX_FUSED_RUNS {
        return Err((
            "fuse_seeds",
            format!(
                "at most {MAX_FUSED_RUNS} runs can be fused, got {}",
                params.len()
            ),
        ));
    }
    let Some(first) = params.first() else {
        return Ok(());
    };
    for p in params {
        p.validate()?;
        if (TrainParams {
            seed: first.seed,
            ..p.clone()
        }) != *first
        {
            return Err((
                "seed",
                "fused runs must differ only in their seed (one grid point)".to_string(),
            ));
        }
    }
    Ok(())
}

/// Every run fails with the same error (built once per run: errors are not `Clone`).
fn fail_all(count: usize, error: impl Fn() -> TrainError) -> Vec<Result<TrainOutcome, TrainError>> {
    (0..count).map(|_| Err(error())).collect()
}

/// The CPU path: the runs step one after the other within each batch on one workspace.
fn many_native(
    params: &[TrainParams],
    device: &Device,
    device_label: &str,
    control: &TrainControl,
) -> Vec<Result<TrainOutcome, TrainError>> {
    let started = Instant::now();
    let count = params.len();
    let nets = match params
        .iter()
        .map(|p| Network::new(p, device).map(|n| n.with_formulation(Formulation::Fused)))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(nets) => nets,
        Err(e) => {
            let message = e.to_string();
            return fail_all(count, || candle_core::Error::Msg(message.clone()).into());
        }
    };
    let first = &params[0];
    let shape = nets[0].shape();
    let batch = BatchSpec::of(first);
    let kernels = Kernels::detect();
    let mut ws = Workspace::new(&shape, batch.count, batch.size, true);
    let mut trainers = Vec::with_capacity(count);
    for (net, p) in nets.iter().zip(params) {
        match net.packed_params() {
            Ok(values) => trainers.push(Trainer::new(
                &shape,
                values,
                stream_rng(p.seed, RngStream::TrainData),
                stream_rng(p.seed, RngStream::Dropout),
                native_adam(p),
            )),
            Err(e) => {
                let message = e.to_string();
                return fail_all(count, || candle_core::Error::Msg(message.clone()).into());
            }
        }
    }
    let mut curves: Vec<LossCurve> = params.iter().map(LossCurve::new).collect();
    let mut failed: Vec<Option<TrainError>> = (0..count).map(|_| None).collect();
    tracing::debug!(
        runs = count,
        batches = first.batches,
        ?kernels,
        "fused training on the native cpu path"
    );
    for batch_index in 1..=first.batches {
        if (batch_index - 1) % CONTROL_EVERY == 0 && (control.should_stop)() {
            for f in failed.iter_mut().filter(|f| f.is_none()) {
                *f = Some(TrainError::Interrupted);
            }
            break;
        }
        let runs = trainers.iter_mut().zip(&mut curves).zip(&mut failed);
        for ((trainer, curve), failed) in runs.filter(|(_, f)| f.is_none()) {
            let value = trainer.forward_backward(&shape, &batch, &mut ws, kernels);
            if !value.is_finite() {
                *failed = Some(TrainError::Diverged {
                    batch: batch_index,
                    loss: value,
                });
                continue;
            }
            trainer.apply(&shape);
            curve.record(batch_index, value);
        }
        if failed.iter().all(Option::is_some) {
            break;
        }
        if batch_index % CONTROL_EVERY == 0 || batch_index == first.batches {
            (control.on_progress)(batch_index);
        }
    }
    let share = started.elapsed().as_secs_f64() / count as f64;
    let runs = nets
        .iter()
        .zip(params)
        .zip(trainers)
        .zip(curves)
        .zip(failed);
    runs.map(|((((net, p), trainer), curve), failed)| {
        net.set_packed_params(&trainer.model.params)?;
        match failed {
            Some(error) => Err(error),
            None => finish_run(net, p, device, device_label, curve.points, share),
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_must_differ_only_in_seed() {
        let a = TrainParams::default();
        let b = TrainParams {
            seed: 7,
            ..a.clone()
        };
        assert!(check_group(&[a.clone(), b.clone()]).is_ok());
        let c = TrainParams {
            m_factor: 3,
            ..b.clone()
        };
        let (key, message) = check_group(&[a.clone(), c]).unwrap_err();
        assert_eq!(key, "seed");
        assert!(message.contains("differ only in their seed"), "{message}");
        let bad = TrainParams {
            batches: 0,
            ..a.clone()
        };
        assert_eq!(check_group(&[bad]).unwrap_err().0, "batches");
        let too_many = vec![a; MAX_FUSED_RUNS + 1];
        assert_eq!(check_group(&too_many).unwrap_err().0, "fuse_seeds");
    }
}
