//! Builds a database of synthetic finished runs through the store API, without training: the
//! fixture of `scripts/bench-results.sh`, and a quick way to try `lifesweep results`, `plot`,
//! `report`, `status` and `export` on a realistic sweep.
//!
//!     cargo run --release -p lifesweep-results --example fixture_db -- PATH [--seeds N] [--queued N]
//!
//! The grid is steps {1,2,3,5,10} x m_factor {1,5,10,20,30,40,50,75,100,150} x d_factor
//! {1,1.5} x N seeds (default 100: 10,000 runs). About 1% of the jobs fail; the last
//! `--queued` jobs (default 0) are left queued. Metrics follow a smooth made-up law (success
//! gets likelier with width, rarer with steps) from a hash of the job id, so the database is
//! the same every time.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use lifesweep_spec::{LossPoint, RunMetrics, SweepSpec};
use lifesweep_store::{RunRecord, Store};

fn usage() -> ExitCode {
    eprintln!("usage: fixture_db PATH [--seeds N] [--queued N]");
    ExitCode::from(2)
}

/// A uniform number in [0, 1) from an integer (splitmix64).
fn unit(mut x: u64) -> f64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn metrics(job_id: i64, steps: u32, m_factor: u32, d_factor: f64) -> RunMetrics {
    let id = job_id as u64;
    // P(success) rises with width, falls with steps.
    let p = 1.0 / (1.0 + (-(f64::from(m_factor) * d_factor - 8.0 * f64::from(steps)) / 6.0).exp());
    let success = unit(id * 3) < p;
    let success_rate = if success {
        1.0
    } else {
        (unit(id * 3 + 1) * 0.98).powf(2.0)
    };
    let final_loss = if success {
        1e-4 + 1e-3 * unit(id * 3 + 2)
    } else {
        0.02 + 0.2 * unit(id * 3 + 2)
    };
    let loss_curve = (1..=10)
        .map(|i| LossPoint {
            batch: i * 1000,
            loss: final_loss + 0.6 * (-f64::from(i) * (0.3 + p)).exp(),
        })
        .collect();
    RunMetrics {
        success_rate,
        training_success: success,
        cell_accuracy: 1.0 - (1.0 - success_rate) * 0.05,
        final_loss,
        loss_curve,
        param_count: u64::from(m_factor) * u64::from(steps) * 120,
        wall_seconds: 5.0 + f64::from(m_factor) * 0.2 * f64::from(steps),
        device: "cpu".into(),
    }
}

async fn build(path: &str, seeds: u32, queued: usize) -> Result<(), Box<dyn std::error::Error>> {
    let text = format!(
        "[sweep]\nname = \"fixture\"\ndescription = \"synthetic runs for benchmarks\"\n\
         [grid]\nsteps = [1, 2, 3, 5, 10]\nm_factor = [1, 5, 10, 20, 30, 40, 50, 75, 100, 150]\n\
         d_factor = [1.0, 1.5]\nseed = {{ from = 1, to = {seeds} }}\n\
         [train]\nuse_sigmoid = true\nactivation = \"LeakyReLU\"\nbatch_size = 128\nbatches = 10000\n"
    );
    let spec = SweepSpec::parse(&text, "fixture.toml", "fixture")?;
    let store = Store::open(path).await?;
    let outcome = store.submit_sweep(&spec, &text, 1).await?;
    let to_finish = spec.jobs().len().saturating_sub(queued);
    let mut finished = 0;
    let lease = Duration::from_secs(3600);
    while finished < to_finish {
        let batch = store
            .claim_jobs(
                "fixture",
                Some("fixture"),
                lease,
                (to_finish - finished).min(100),
            )
            .await?;
        if batch.is_empty() {
            break;
        }
        for job in batch {
            finished += 1;
            if unit(job.job_id as u64 * 7 + 5) < 0.01 {
                store
                    .fail_job(
                        job.job_id,
                        "fixture",
                        job.attempt,
                        "synthetic failure: loss became NaN at batch 4000",
                        false,
                    )
                    .await?;
                continue;
            }
            let p = &job.params;
            let m = metrics(job.job_id, p.steps, p.m_factor, p.d_factor);
            let record = RunRecord {
                started_at: 0.0,
                finished_at: m.wall_seconds,
                metrics: m,
                weights_path: None,
            };
            store
                .complete_job(job.job_id, "fixture", job.attempt, &record)
                .await?;
        }
    }
    eprintln!(
        "{path}: {} jobs, {finished} finished",
        outcome.added + outcome.existing
    );
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        return usage();
    };
    let (mut seeds, mut queued) = (100u32, 0usize);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--seeds", Some(v)) if v >= 1 => seeds = v as u32,
            ("--queued", Some(v)) => queued = v as usize,
            _ => return usage(),
        }
    }
    let started = Instant::now();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(build(&path, seeds, queued)) {
        Ok(()) => {
            eprintln!("built in {:.1} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
