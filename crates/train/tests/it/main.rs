//! The integration tests of lifesweep-train: one binary (see STYLE.md), one module per topic.

/// As in the workers: glibc malloc page-faults on the large temporaries of training.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api;
mod formulations;
mod gpu;
mod many;
mod presolve;
mod training;
mod walk;

use lifesweep_train::{Activation, TrainParams};

/// Small, fast parameters: override what a test is about.
pub fn small_params() -> TrainParams {
    TrainParams {
        steps: 1,
        m_factor: 2,
        batch_size: 16,
        batches: 50,
        loss_every: 10,
        eval_boards: 100,
        activation: Activation::LeakyReLU,
        use_sigmoid: true,
        ..TrainParams::default()
    }
}
