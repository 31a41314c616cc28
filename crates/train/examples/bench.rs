//! lifesweep's training benchmark, one compute thread, as the workers run:
//!
//!     cargo run --release -p lifesweep-train --example bench -- batch
//!
//! Modes (each prints one JSON object per line, for `scripts/bench.sh`, and a readable line on
//! stderr):
//!
//! - `batch [--cells 1x1,1x5,1x20,3x1,3x5,3x20] [--repeats 5] [--seconds 1.0]`: mean time
//!   of one training batch (board generation, forward pass, loss, backward pass, Adam step) at
//!   batch size 128, 10x10 boards, sigmoid and LeakyReLU, per cell `STEPSxM_FACTOR`; each
//!   repeat trains about `--seconds`; reports the minimum and median over repeats, the board
//!   generation time alone (`fill_batch_bits`, CPU time), the CPU time per batch (robust when
//!   other processes share the cores), and GFLOP/s (the multiply-adds of the convolutions, 2
//!   flops each, over the minimum wall time).
//! - `first-batch [--cell 1x1]`: builds the network and trains one batch, then prints the
//!   wall clock (ns since the epoch) so that the caller can subtract its own start time:
//!   process start to first batch.
//! - `eval [--cell 1x1] [--repeats 5]`: evaluation of 1000 5x5 boards.
//! - `fused [--cell 1x5] [--k 8] [--batches 2000]`: K runs of one grid point (seeds 1..K)
//!   trained one after the other and fused into one call; runs per hour of each.
//!
//! The PyTorch reference (`scripts/bench/pytorch_reference.py`) has the same modes.

use std::time::Instant;

/// As in the workers: glibc malloc page-faults on large temporaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::Device;
use lifesweep_life::{bit_words, fill_batch_bits, stream_rng, RngStream};
use lifesweep_train::{
    evaluate, train, train_and_evaluate, train_and_evaluate_many, Activation, Network,
    TrainControl, TrainParams,
};

type Error = Box<dyn std::error::Error>;

fn params(steps: u32, m_factor: u32, batches: u32) -> TrainParams {
    TrainParams {
        steps,
        m_factor,
        batch_size: 128,
        board_size: 10,
        use_sigmoid: true,
        activation: Activation::LeakyReLU,
        batches,
        loss_every: 1000,
        eval_boards: 1000,
        eval_board_size: 5,
        ..TrainParams::default()
    }
}

/// Multiply-add flops of one training batch: forward, weight gradients, input gradients
/// (all blocks but the first).
fn flops_per_batch(p: &TrainParams) -> f64 {
    let m = f64::from(p.m_factor);
    let n = f64::from(p.batch_size) * f64::from(p.board_size).powi(2);
    let (c1, c2) = (2.0 * m, m);
    let forward = 9.0 * c1 + c1 * c2 + c2;
    let weights = forward;
    let inputs = c1 * c2 + c2;
    let first_input = 9.0 * c1;
    let blocks = f64::from(p.blocks());
    2.0 * n * (blocks * (forward + weights + inputs) + (blocks - 1.0) * first_input)
}

fn parse_cell(cell: &str) -> Result<(u32, u32), Error> {
    let (steps, m) = cell
        .split_once('x')
        .ok_or_else(|| format!("cell {cell:?}: expected STEPSxM_FACTOR, e.g. 3x20"))?;
    Ok((steps.parse()?, m.parse()?))
}

struct Args {
    mode: String,
    options: Vec<(String, String)>,
}

impl Args {
    fn parse() -> Result<Args, Error> {
        let mut args = std::env::args().skip(1);
        let mode = args.next().unwrap_or_else(|| "batch".to_string());
        let mut options = Vec::new();
        while let Some(key) = args.next() {
            let Some(key) = key.strip_prefix("--") else {
                return Err(format!("unexpected argument {key:?}").into());
            };
            let value = args
                .next()
                .ok_or_else(|| format!("--{key} needs a value"))?;
            options.push((key.to_string(), value));
        }
        Ok(Args { mode, options })
    }

    fn get(&self, key: &str, default: &str) -> String {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map_or(default.to_string(), |(_, v)| v.clone())
    }
}

/// CPU time of this thread in seconds: unlike wall time, barely moved by other processes
/// competing for the cores.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn batch_mode(args: &Args) -> Result<(), Error> {
    let repeats: usize = args.get("repeats", "5").parse()?;
    let seconds: f64 = args.get("seconds", "1.0").parse()?;
    let cells = args.get("cells", "1x1,1x5,1x20,3x1,3x5,3x20");
    let device = Device::Cpu;
    for cell in cells.split(',') {
        let (steps, m_factor) = parse_cell(cell)?;
        let warm = params(steps, m_factor, 20);
        let net = Network::new(&warm, &device)?;
        let started = Instant::now();
        train(&net, &warm, &TrainControl::unattended())?;
        let estimate = started.elapsed().as_secs_f64() / 20.0;
        let batches = ((seconds / estimate) as u32).clamp(20, 20_000);
        let p = params(steps, m_factor, batches);
        let mut times = Vec::with_capacity(repeats);
        let mut cpu = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            let net = Network::new(&p, &device)?;
            let (started, cpu_started) = (Instant::now(), thread_cpu_seconds());
            train(&net, &p, &TrainControl::unattended())?;
            times.push(started.elapsed().as_secs_f64() * 1e3 / f64::from(batches));
            cpu.push((thread_cpu_seconds() - cpu_started) * 1e3 / f64::from(batches));
        }
        let mut data = Vec::with_capacity(repeats);
        let words = bit_words(128 * 100);
        let (mut inputs, mut targets) = (vec![0u64; words], vec![0u64; words]);
        for _ in 0..repeats {
            let mut rng = stream_rng(1, RngStream::TrainData);
            let started = thread_cpu_seconds();
            for _ in 0..batches {
                fill_batch_bits(
                    &mut rng,
                    p.rule,
                    steps,
                    10,
                    128,
                    0.5,
                    &mut inputs,
                    &mut targets,
                );
            }
            data.push((thread_cpu_seconds() - started) * 1e3 / f64::from(batches));
        }
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let med = median(&mut times);
        let cpu_min = cpu.iter().copied().fold(f64::INFINITY, f64::min);
        let data_ms = median(&mut data);
        let gflops = flops_per_batch(&p) / (min * 1e-3) / 1e9;
        println!(
            "{{\"mode\":\"batch\",\"steps\":{steps},\"m_factor\":{m_factor},\"batches\":{batches},\
             \"repeats\":{repeats},\"ms_min\":{min:.4},\"ms_median\":{med:.4},\
             \"cpu_ms_min\":{cpu_min:.4},\"data_ms\":{data_ms:.4},\"gflops\":{gflops:.2},\"mflop_per_batch\":{:.2}}}",
            flops_per_batch(&p) / 1e6
        );
        eprintln!(
            "steps {steps} m_factor {m_factor:>2}: {min:.3} ms/batch (median {med:.3}, cpu \
             {cpu_min:.3}, {repeats} x {batches} batches), data {data_ms:.4} ms, {gflops:.1} GFLOP/s"
        );
    }
    Ok(())
}

fn first_batch_mode(args: &Args) -> Result<(), Error> {
    let (steps, m_factor) = parse_cell(&args.get("cell", "1x1"))?;
    let p = params(steps, m_factor, 1);
    let net = Network::new(&p, &Device::Cpu)?;
    train(&net, &p, &TrainControl::unattended())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    println!(
        "{{\"mode\":\"first-batch\",\"steps\":{steps},\"m_factor\":{m_factor},\"epoch_ns\":{}}}",
        now.as_nanos()
    );
    Ok(())
}

fn eval_mode(args: &Args) -> Result<(), Error> {
    let (steps, m_factor) = parse_cell(&args.get("cell", "1x1"))?;
    let repeats: usize = args.get("repeats", "5").parse()?;
    let p = params(steps, m_factor, 1);
    let net = Network::new(&p, &Device::Cpu)?;
    let mut times = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        std::hint::black_box(evaluate(&net, &p, &Device::Cpu)?);
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let med = median(&mut times);
    println!(
        "{{\"mode\":\"eval\",\"steps\":{steps},\"m_factor\":{m_factor},\"boards\":1000,\
         \"ms_min\":{min:.4},\"ms_median\":{med:.4}}}"
    );
    eprintln!(
        "eval of 1000 boards, steps {steps} m_factor {m_factor}: {min:.3} ms (median {med:.3})"
    );
    Ok(())
}

fn fused_mode(args: &Args) -> Result<(), Error> {
    let (steps, m_factor) = parse_cell(&args.get("cell", "1x5"))?;
    let k: u64 = args.get("k", "8").parse()?;
    let batches: u32 = args.get("batches", "2000").parse()?;
    let runs: Vec<TrainParams> = (1..=k)
        .map(|seed| TrainParams {
            seed,
            ..params(steps, m_factor, batches)
        })
        .collect();
    let control = TrainControl::unattended();
    let started = Instant::now();
    for p in &runs {
        train_and_evaluate(p, &Device::Cpu, "cpu", &control)?;
    }
    let separate = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for outcome in train_and_evaluate_many(&runs, &Device::Cpu, "cpu", &control) {
        outcome?;
    }
    let fused = started.elapsed().as_secs_f64();
    let per_hour = |seconds: f64| k as f64 * 3600.0 / seconds;
    println!(
        "{{\"mode\":\"fused\",\"steps\":{steps},\"m_factor\":{m_factor},\"k\":{k},\
         \"batches\":{batches},\"separate_s\":{separate:.3},\"fused_s\":{fused:.3},\
         \"separate_runs_per_hour\":{:.0},\"fused_runs_per_hour\":{:.0}}}",
        per_hour(separate),
        per_hour(fused)
    );
    eprintln!(
        "{k} runs of steps {steps} m_factor {m_factor}, {batches} batches: separate {separate:.2} s \
         ({:.0} runs/h), fused {fused:.2} s ({:.0} runs/h)",
        per_hour(separate),
        per_hour(fused)
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let args = Args::parse()?;
    match args.mode.as_str() {
        "batch" => batch_mode(&args),
        "first-batch" => first_batch_mode(&args),
        "eval" => eval_mode(&args),
        "fused" => fused_mode(&args),
        other => Err(format!("unknown mode {other:?}: batch, first-batch, eval or fused").into()),
    }
}
