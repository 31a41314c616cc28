//! Benchmark of the store's per-job overhead: claim a job, then write its result, with W worker
//! processes on one SQLite file (each process has its own connection pool, as real workers
//! do). Jobs do no work, so the numbers are the store's cost alone.
//!
//!     cargo run --release -p lifesweep-store --example claim_bench -- [--workers 1,8] [--jobs 2000] [--dir DIR]
//!
//! For each worker count it prints the wall time per job (the throughput of the whole group)
//! and, per job, the mean and 99th percentile time a worker spent in `claim_next_job` and in
//! `complete_job` (the latency one worker sees). `scripts/bench-store.sh` runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifesweep_spec::{LossPoint, RunMetrics, SweepSpec};
use lifesweep_store::{RunRecord, Store, WorkerInfo};

const LEASE: Duration = Duration::from_secs(60);

fn usage() -> ! {
    eprintln!("usage: claim_bench [--workers 1,8] [--jobs 2000] [--dir DIR]");
    std::process::exit(2);
}

struct Args {
    workers: Vec<usize>,
    jobs: u32,
    dir: Option<PathBuf>,
    child: Option<(PathBuf, usize)>,
}

fn parse_args() -> Args {
    let mut args = Args {
        workers: vec![1, 8],
        jobs: 2000,
        dir: None,
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--workers" => {
                args.workers = value()
                    .split(',')
                    .map(|w| w.trim().parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--jobs" => args.jobs = value().parse().unwrap_or_else(|_| usage()),
            "--dir" => args.dir = Some(PathBuf::from(value())),
            "--child" => {
                let db = PathBuf::from(value());
                let index = value().parse().unwrap_or_else(|_| usage());
                args.child = Some((db, index));
            }
            _ => usage(),
        }
    }
    args
}

fn record() -> RunRecord {
    let metrics = RunMetrics {
        success_rate: 0.75,
        training_success: false,
        cell_accuracy: 0.98,
        final_loss: 0.01,
        loss_curve: (1..=25)
            .map(|i| LossPoint {
                batch: i * 1000,
                loss: 1.0 / f64::from(i),
            })
            .collect(),
        param_count: 1234,
        wall_seconds: 12.5,
        device: "cpu".into(),
    };
    RunRecord {
        metrics,
        started_at: 1.0,
        finished_at: 2.0,
        weights_path: None,
    }
}

/// A worker process: waits for the start signal, then claims and completes until nothing is
/// left. Prints "jobs claim_seconds... | complete_seconds..." for the parent.
async fn child(db: &Path, index: usize) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(db.to_str().ok_or("database path is not UTF-8")?).await?;
    let worker = format!("bench-{index}");
    let info = WorkerInfo {
        id: worker.clone(),
        host: "bench".into(),
        pid: std::process::id(),
        device: "cpu".into(),
    };
    store.register_worker(&info).await?;
    println!("ready");
    let go = db.with_extension("go");
    while !go.exists() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let result = record();
    let (mut claims, mut completes) = (Vec::new(), Vec::new());
    loop {
        let start = Instant::now();
        let Some(job) = store.claim_next_job(&worker, None, LEASE).await? else {
            break;
        };
        let claimed = Instant::now();
        if !store
            .complete_job(job.job_id, &worker, job.attempt, &result)
            .await?
        {
            return Err(format!("job {} was lost", job.job_id).into());
        }
        claims.push((claimed - start).as_secs_f64());
        completes.push(claimed.elapsed().as_secs_f64());
    }
    store.worker_stopped(&worker).await?;
    let join = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.6}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("{}|{}", join(&claims), join(&completes));
    Ok(())
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let p99 = v[((v.len() as f64 * 0.99) as usize).min(v.len() - 1)];
    (mean * 1e3, p99 * 1e3)
}

async fn bench(dir: &Path, workers: usize, jobs: u32) -> Result<(), Box<dyn std::error::Error>> {
    let db = dir.join(format!("bench-{workers}.db"));
    let store = Store::open(db.to_str().ok_or("database path is not UTF-8")?).await?;
    let text = format!("[sweep]\nname = \"bench\"\n[grid]\nseed = {{ from = 1, to = {jobs} }}\n[train]\nbatches = 1");
    let spec = SweepSpec::parse(&text, "bench.toml", "bench")?;
    let submit_start = Instant::now();
    store.submit_sweep(&spec, &text, 3).await?;
    let submit = submit_start.elapsed();

    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for i in 0..workers {
        let mut child = Command::new(&exe)
            .args([
                "--child",
                db.to_str().ok_or("database path is not UTF-8")?,
                &i.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()?;
        // Wait for "ready" so that process start-up is not timed.
        let mut stdout = std::io::BufReader::new(child.stdout.take().ok_or("no child stdout")?);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line)?;
        if line.trim() != "ready" {
            return Err(format!("worker {i} did not start: {line:?}").into());
        }
        children.push((child, stdout));
    }
    let start = Instant::now();
    std::fs::write(db.with_extension("go"), b"")?;
    let (mut claims, mut completes) = (Vec::new(), Vec::new());
    for (mut child, mut stdout) in children {
        let mut line = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut line)?;
        if !child.wait()?.success() {
            return Err("a worker process failed".into());
        }
        let (c, w) = line
            .trim()
            .split_once('|')
            .ok_or("malformed worker report")?;
        claims.extend(
            c.split_whitespace()
                .map(|x| x.parse::<f64>().unwrap_or(f64::NAN)),
        );
        completes.extend(
            w.split_whitespace()
                .map(|x| x.parse::<f64>().unwrap_or(f64::NAN)),
        );
    }
    let wall = start.elapsed();

    let counts = store.job_counts(None).await?;
    if counts.done != u64::from(jobs) || claims.len() != jobs as usize {
        return Err(format!(
            "expected {jobs} jobs done once each, got {counts:?} and {} claims",
            claims.len()
        )
        .into());
    }
    let runs_start = Instant::now();
    let runs = store.runs(None).await?;
    let runs_time = runs_start.elapsed();
    let (claim_mean, claim_p99) = stats(claims);
    let (complete_mean, complete_p99) = stats(completes);
    println!(
        "workers {workers:>2}  jobs {jobs}  wall {:.3} ms/job ({:.0} jobs/s)  claim mean {claim_mean:.3} ms p99 \
         {claim_p99:.3} ms  complete mean {complete_mean:.3} ms p99 {complete_p99:.3} ms  (submit {:.0} ms, \
         runs() of {} rows {:.0} ms)",
        wall.as_secs_f64() * 1e3 / f64::from(jobs),
        f64::from(jobs) / wall.as_secs_f64(),
        submit.as_secs_f64() * 1e3,
        runs.len(),
        runs_time.as_secs_f64() * 1e3,
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    if let Some((db, index)) = &args.child {
        if let Err(e) = child(db, *index).await {
            eprintln!("error: worker {index}: {e}");
            std::process::exit(2);
        }
        return;
    }
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().expect("create a temporary directory");
            temp.path().to_path_buf()
        }
    };
    for &workers in &args.workers {
        if let Err(e) = bench(&dir, workers, args.jobs).await {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
