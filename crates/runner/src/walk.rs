//! A loss walk of a finished run: read its saved weights, walk, turn the points into records.
//! The worker runs queued walk jobs with it; `lifesweep walk RUN` runs one in-process.

use lifesweep_spec::{TrainParams, WalkKind, WalkSpec};
use lifesweep_store::WalkPointRecord;
use lifesweep_train::walk::{default_random_distances, walk, Walk, WalkOptions, WalkTarget};

use crate::RunnerError;

/// The options of the train crate's walk for a stored walk spec.
pub fn walk_options(spec: &WalkSpec) -> WalkOptions {
    let target = match spec.kind {
        WalkKind::Presolve => WalkTarget::Presolve {
            points: spec.points,
        },
        WalkKind::Random => WalkTarget::Random {
            seed: spec.seed,
            distances: default_random_distances(spec.max_distance),
        },
    };
    WalkOptions {
        target,
        batches: spec.batches,
        align: spec.align,
    }
}

/// The weights of a run as its worker saved them (safetensors).
pub fn load_weights(path: &str) -> Result<Vec<(String, candle_core::Tensor)>, RunnerError> {
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).map_err(|e| {
        RunnerError::Weights {
            path: path.to_string(),
            source: std::io::Error::other(format!("cannot read the run's weights: {e}")),
        }
    })?;
    let mut named: Vec<_> = tensors.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(named)
}

/// Walks the run of `params` whose weights `spec` names.
pub fn walk_run(params: &TrainParams, spec: &WalkSpec) -> Result<Walk, RunnerError> {
    let weights = load_weights(&spec.weights_path)?;
    walk(params, &weights, &walk_options(spec)).map_err(|e| RunnerError::Walk {
        path: spec.weights_path.clone(),
        message: e.to_string(),
    })
}

/// The points of a walk as the store keeps them.
pub fn point_records(walk: &Walk) -> Vec<WalkPointRecord> {
    walk.points
        .iter()
        .map(|p| WalkPointRecord {
            point: p.index,
            fraction: p.fraction,
            distance: p.distance,
            loss: p.loss,
            success_rate: p.success_rate,
            cell_accuracy: p.cell_accuracy,
        })
        .collect()
}
