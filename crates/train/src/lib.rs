//! The seed's network: build it (random, presolved or from saved weights), train it on fresh
//! random boards with Adam, and evaluate it on held-out boards. On the CPU a training step runs
//! on the crate's own vector kernels ([`native`]); on other devices (CUDA) on candle's ops.
//!
//! One run is [`train_and_evaluate`]: it takes validated [`TrainParams`], a candle
//! [`Device`](candle_core::Device) and a [`TrainControl`] (stop flag and progress callback),
//! and returns the run's [`RunMetrics`] plus the named trained weights; K runs of one grid
//! point are [`train_and_evaluate_many`]. Every random number (initial weights, training
//! boards, dropout and RReLU noise, evaluation boards) comes from the seeded host streams of
//! [`lifesweep_life::stream_rng`], so the same parameters on the same CPU give bit-identical
//! results (the native path is single-threaded and sums in a fixed order).
//!
//! This crate deliberately does no file IO and no SQL, reads no environment variables and
//! prints nothing (it logs through `tracing`): saving weights as safetensors, storing metrics
//! and scheduling runs belong to the callers.
//!
//! Reading order: [`network`] (architecture, initialisation, presolve and the three
//! formulations of the forward pass), [`native`] (the fast CPU path: a whole training step on
//! host buffers) and its [`kernels`], [`loss`], [`mod@train`] (the loop), [`mod@eval`] and
//! [`mod@walk`] (loss walks between a trained network and the solution).

mod batched;
pub mod eval;
pub mod fpu;
pub mod kernels;
pub mod loss;
mod many;
mod math;
pub mod native;
pub mod network;
pub mod train;
pub mod walk;

pub use eval::{evaluate, EvalResult};
pub use many::{train_and_evaluate_many, train_and_evaluate_many_with, MAX_FUSED_RUNS};
pub use network::{presolved_network, Formulation, Network, Pass};
pub use train::{train, train_and_evaluate, TrainControl, TrainOutcome};
pub use walk::{walk, Walk, WalkOptions, WalkPoint, WalkTarget};

pub use lifesweep_spec::{Activation, LossPoint, RunMetrics, TrainParams};

/// Why a training run did not produce metrics.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The parameters break a rule that serde cannot check (see [`TrainParams::validate`]).
    #[error("invalid training parameter {key}: {message}")]
    InvalidParams { key: &'static str, message: String },
    /// The training loss became NaN or infinite at this (1-based) batch. This is a result of
    /// the run, reproducible from its parameters, not an infrastructure failure.
    #[error("training diverged at batch {batch}: the loss is {loss}")]
    Diverged { batch: u32, loss: f64 },
    /// The caller's `should_stop` asked the run to stop.
    #[error("training interrupted on request")]
    Interrupted,
    /// A weight set handed to [`Network::from_weights`] does not fit the network.
    #[error("weight {name}: {message}")]
    BadWeights { name: String, message: String },
    /// An error of candle (tensor shapes, device, allocation).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

impl TrainError {
    /// Whether the error is an outcome of the run itself, deterministic given its parameters,
    /// so that retrying would only repeat it (today: [`TrainError::Diverged`]). Everything
    /// else is bad input, a request to stop, or infrastructure.
    pub fn is_run_failure(&self) -> bool {
        matches!(self, TrainError::Diverged { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_divergence_is_a_run_failure() {
        assert!(TrainError::Diverged {
            batch: 3,
            loss: f64::NAN
        }
        .is_run_failure());
        assert!(!TrainError::Interrupted.is_run_failure());
        assert!(!TrainError::InvalidParams {
            key: "steps",
            message: String::new()
        }
        .is_run_failure());
        let candle = candle_core::Error::Msg("oops".into());
        assert!(!TrainError::from(candle).is_run_failure());
    }

    #[test]
    fn error_messages_say_what_and_where() {
        let e = TrainError::Diverged {
            batch: 17,
            loss: f64::INFINITY,
        };
        assert_eq!(
            e.to_string(),
            "training diverged at batch 17: the loss is inf"
        );
    }
}
