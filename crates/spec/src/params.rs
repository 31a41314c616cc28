//! The parameters of one training run and the metrics it produces.

use lifesweep_life::Rule;
use serde::{Deserialize, Serialize};

/// The activation after each convolution but the last of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Activation {
    #[default]
    ReLU,
    ELU,
    /// Negative slope 0.01 (PyTorch's default).
    LeakyReLU,
    /// Randomised leaky ReLU: slopes U(1/8, 1/3) per element in training, the mean slope
    /// (11/48) in evaluation.
    RReLU,
    /// The exact (erf) form.
    GELU,
}

impl Activation {
    pub const ALL: [Activation; 5] = [
        Activation::ReLU,
        Activation::ELU,
        Activation::LeakyReLU,
        Activation::RReLU,
        Activation::GELU,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Activation::ReLU => "ReLU",
            Activation::ELU => "ELU",
            Activation::LeakyReLU => "LeakyReLU",
            Activation::RReLU => "RReLU",
            Activation::GELU => "GELU",
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that determines one training run. A grid point plus a seed; the job key is
/// derived from this (see [`crate::job_key`]), so field names are part of the stored format:
/// add new fields with a default that reproduces the old behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    /// Life rule of the boards.
    pub rule: Rule,
    /// Life steps between input and target.
    pub steps: u32,
    /// Seed of every random stream of the run (weights, data, dropout, evaluation).
    pub seed: u64,
    /// Width multiplier: channels 2m and m per block.
    pub m_factor: u32,
    /// Depth multiplier: blocks = floor(steps * d_factor).
    pub d_factor: f64,
    /// Start at the exact solution.
    pub presolve: bool,
    /// Presolve only these block indices (0-based).
    pub solve_layers: Vec<u32>,
    /// Sigmoid at the end; no activation directly before it.
    pub use_sigmoid: bool,
    pub activation: Activation,
    /// The "better" net: shifted inputs, N(0, 0.02) weights, U(-1, 1) biases, channel dropout
    /// 0.4 after each 3x3 conv except the last block, sigmoid at the end.
    pub normalize: bool,
    /// Apply the -0.5..0.5 shift of `normalize` (the original code never did; `false`
    /// reproduces its normalize runs).
    pub normalize_shift: bool,
    /// Number of training batches.
    pub batches: u32,
    /// Boards per training batch.
    pub batch_size: u32,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Side of the training boards.
    pub board_size: u32,
    /// Probability that a cell of a random board is alive.
    pub density: f64,
    /// Record the mean training loss every this many batches (and always at the end).
    pub loss_every: u32,
    /// Save the trained weights as safetensors next to the database.
    pub save_weights: bool,
    /// Number of evaluation boards.
    pub eval_boards: u32,
    /// Side of the evaluation boards.
    pub eval_board_size: u32,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            rule: Rule::VonNeumann,
            steps: 1,
            seed: 1,
            m_factor: 1,
            d_factor: 1.0,
            presolve: false,
            solve_layers: Vec::new(),
            use_sigmoid: false,
            activation: Activation::ReLU,
            normalize: false,
            normalize_shift: true,
            batches: 5000,
            batch_size: 32,
            learning_rate: 1e-3,
            board_size: 10,
            density: 0.5,
            loss_every: 1000,
            save_weights: false,
            eval_boards: 1000,
            eval_board_size: 5,
        }
    }
}

/// The names of the parameters that may appear in `[train]` or `[grid]`, in field order.
pub const TRAIN_KEYS: &[&str] = &[
    "rule",
    "steps",
    "seed",
    "m_factor",
    "d_factor",
    "presolve",
    "solve_layers",
    "use_sigmoid",
    "activation",
    "normalize",
    "normalize_shift",
    "batches",
    "batch_size",
    "learning_rate",
    "board_size",
    "density",
    "loss_every",
    "save_weights",
];

/// The `[eval]` keys and the parameter each one sets.
pub const EVAL_KEYS: &[(&str, &str)] =
    &[("boards", "eval_boards"), ("board_size", "eval_board_size")];

impl TrainParams {
    /// Number of blocks of three convolutions: floor(steps * d_factor).
    pub fn blocks(&self) -> u32 {
        (f64::from(self.steps) * self.d_factor).floor() as u32
    }

    /// Whether the network ends in a sigmoid (asked for, or implied by `normalize`).
    pub fn ends_in_sigmoid(&self) -> bool {
        self.use_sigmoid || self.normalize
    }

    /// Checks the values that serde cannot: returns the offending key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        fn positive(key: &'static str, v: u32) -> Result<(), (&'static str, String)> {
            if v == 0 {
                Err((key, format!("{key} must be at least 1, got 0")))
            } else {
                Ok(())
            }
        }
        positive("steps", self.steps)?;
        positive("m_factor", self.m_factor)?;
        positive("batches", self.batches)?;
        positive("batch_size", self.batch_size)?;
        positive("board_size", self.board_size)?;
        positive("loss_every", self.loss_every)?;
        positive("eval_boards", self.eval_boards)?;
        positive("eval_board_size", self.eval_board_size)?;
        if !(self.d_factor.is_finite() && self.d_factor > 0.0) {
            return Err((
                "d_factor",
                format!("d_factor must be a positive number, got {}", self.d_factor),
            ));
        }
        if self.blocks() == 0 {
            return Err((
                "d_factor",
                format!(
                    "steps {} x d_factor {} gives floor({}) = 0 blocks; the network needs at least one",
                    self.steps,
                    self.d_factor,
                    f64::from(self.steps) * self.d_factor
                ),
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err((
                "learning_rate",
                format!(
                    "learning_rate must be a positive number, got {}",
                    self.learning_rate
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.density) {
            return Err((
                "density",
                format!("density must lie in [0, 1], got {}", self.density),
            ));
        }
        if let Some(&bad) = self.solve_layers.iter().find(|&&b| b >= self.blocks()) {
            return Err((
                "solve_layers",
                format!(
                    "solve_layers names block {bad} but the network has {} blocks (0..{})",
                    self.blocks(),
                    self.blocks()
                ),
            ));
        }
        Ok(())
    }
}

/// What one finished training run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Fraction of evaluation boards with every cell right.
    pub success_rate: f64,
    /// Whether success_rate is exactly 1.
    pub training_success: bool,
    /// Fraction of evaluation cells right.
    pub cell_accuracy: f64,
    /// Mean training loss over the last recorded interval.
    pub final_loss: f64,
    /// (batch number, mean loss over the interval ending there).
    pub loss_curve: Vec<LossPoint>,
    /// Trainable parameters of the network.
    pub param_count: u64,
    /// Seconds from the start of training to the end of evaluation.
    pub wall_seconds: f64,
    /// Where it ran, e.g. "cpu" or "cuda:0".
    pub device: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    pub batch: u32,
    pub loss: f64,
}
