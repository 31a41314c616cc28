//! Mean wall time of one training batch (board generation, forward pass, loss, backward pass
//! and Adam step) at batch size 128, for steps {1, 3} x m_factor {1, 5, 20}, with the fast
//! CPU formulation. Run it on one thread, as the workers do:
//!
//!     RAYON_NUM_THREADS=1 cargo run --release -p lifesweep-train --example batch_time
//!
//! The reference point (SEED.md): PyTorch on one thread of the same machine needs about
//! 1.5 ms at steps 1 and m_factor 1, 10 ms at m_factor 20, 23 ms at steps 3 and m_factor 20.

use std::time::Instant;

/// As in the workers: glibc malloc page-faults on the large temporaries of training.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::Device;
use lifesweep_life::{generate_batch, stream_rng, RngStream};
use lifesweep_train::{train, Activation, Network, TrainControl, TrainParams};

/// Each point is timed over about this many seconds of training.
const SECONDS_PER_POINT: f64 = 2.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::Cpu;
    println!("threads: {}", candle_core::utils::get_num_threads());
    println!(
        "{:>5} {:>8} {:>8} {:>12} {:>12}",
        "steps", "m_factor", "batches", "ms/batch", "data ms"
    );
    for steps in [1, 3] {
        for m_factor in [1, 5, 20] {
            let mut params = TrainParams {
                steps,
                m_factor,
                batch_size: 128,
                use_sigmoid: true,
                activation: Activation::LeakyReLU,
                batches: 20,
                loss_every: 1000,
                ..TrainParams::default()
            };
            let net = Network::new(&params, &device)?;
            let warm_up = Instant::now();
            train(&net, &params, &TrainControl::unattended())?;
            let per_batch = warm_up.elapsed().as_secs_f64() / 20.0;
            params.batches = ((SECONDS_PER_POINT / per_batch) as u32).clamp(50, 5000);
            let started = Instant::now();
            train(&net, &params, &TrainControl::unattended())?;
            let ms = started.elapsed().as_secs_f64() * 1e3 / f64::from(params.batches);

            let mut rng = stream_rng(1, RngStream::TrainData);
            let started = Instant::now();
            for _ in 0..200 {
                std::hint::black_box(generate_batch(&mut rng, params.rule, steps, 10, 128, 0.5));
            }
            let data_ms = started.elapsed().as_secs_f64() * 1e3 / 200.0;
            println!(
                "{steps:>5} {m_factor:>8} {:>8} {ms:>12.3} {data_ms:>12.3}",
                params.batches
            );
        }
    }
    Ok(())
}
