//! Sweep configs: parse a TOML sweep, validate every value, expand the grid into jobs, each
//! with a stable key derived from its full parameters.
//!
//! This crate is the shared vocabulary of the pipeline (`TrainParams`, `RunMetrics`, `JobKey`).
//! It does no IO: the caller reads the file and passes its text and name, and every error
//! carries that name and the key at fault. It knows nothing of candle, SQL or processes.

mod config;
mod params;
mod walk;

pub use config::{group_keys_for, Axis, JobSpec, SweepSpec};
pub use params::{Activation, LossPoint, RunMetrics, TrainParams, EVAL_KEYS, TRAIN_KEYS};
pub use walk::{WalkKind, WalkSpec};

use sha2::{Digest, Sha256};

/// What went wrong in a sweep config. Every variant names the file (`origin`).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: {key}: {message}")]
    Key {
        origin: String,
        key: String,
        message: String,
    },
}

impl SpecError {
    /// The key at fault, when the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            SpecError::Syntax { .. } => None,
            SpecError::Key { key, .. } => Some(key),
        }
    }
}

/// A job's identity within a sweep: a hash of its full canonical parameters, so the same
/// grid point and seed always get the same key, whatever the order of the config's keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey(pub String);

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical JSON of a run's parameters: fields in declaration order, every field present.
pub fn canonical_json(params: &TrainParams) -> String {
    // Serialising a plain struct of numbers, strings and lists cannot fail.
    serde_json::to_string(params).expect("TrainParams serialises to JSON")
}

/// The stable key of a job: the first 128 bits of SHA-256 over its canonical JSON, in hex.
pub fn job_key(params: &TrainParams) -> JobKey {
    let digest = Sha256::digest(canonical_json(params).as_bytes());
    JobKey(hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_key_is_stable_and_distinguishes_parameters() {
        let a = TrainParams::default();
        let mut b = TrainParams::default();
        assert_eq!(job_key(&a), job_key(&b));
        b.seed = 2;
        assert_ne!(job_key(&a), job_key(&b));
        assert_eq!(job_key(&a).0.len(), 32);
    }

    #[test]
    fn default_params_validate_and_blocks_follow_d_factor() {
        let mut p = TrainParams::default();
        assert!(p.validate().is_ok());
        p.steps = 3;
        p.d_factor = 1.5;
        assert_eq!(p.blocks(), 4);
        p.steps = 1;
        p.d_factor = 0.5;
        assert_eq!(p.validate().unwrap_err().0, "d_factor");
    }
}
