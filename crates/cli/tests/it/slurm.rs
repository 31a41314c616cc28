//! `lifesweep slurm` on a real single-node Slurm cluster with a real PostgreSQL: the test starts
//! munged, slurmctld and slurmd (Debian's slurm-wlm and munge) with a configuration of its own
//! in a temporary directory, submits a small sweep as a two-task job array, cancels one task
//! while its worker is training, and checks that every job ran exactly once.
//!
//! It needs root (slurmd starts jobs as their user), Slurm, munge and PostgreSQL; without them
//! it says what is missing and passes. `LIFESWEEP_TEST_REQUIRE_SLURM=1` (set by
//! `scripts/test.sh` once it has installed them) turns that skip into a failure. Every wait
//! polls a condition with a bound; nothing sleeps to synchronise.

use std::collections::HashSet;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lifesweep_store::{RunRow, Store};
use lifesweep_testkit::{say, Watched};
use serde_json::Value;

use crate::{expect_code, lifesweep, slow_sweep, stdout};

const REQUIRE_VAR: &str = "LIFESWEEP_TEST_REQUIRE_SLURM";
const CLUSTER: &str = "lifesweeptest";

/// What is missing to run the test, if anything.
fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the Slurm test needs root (slurmd starts jobs as their user)".into());
    }
    let missing: Vec<&str> = [
        "munged",
        "slurmctld",
        "slurmd",
        "sbatch",
        "squeue",
        "scancel",
        "scontrol",
        "sinfo",
    ]
    .into_iter()
    .filter(|program| find_program(program).is_none())
    .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "Slurm not installed ({} not found; apt-get install slurm-wlm munge)",
            missing.join(", ")
        )
    })
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// Polls `condition` every 100 ms until it holds; panics after `limit`, with `context()`.
fn wait_until(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut condition: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A private single-node cluster: its daemons, configuration, state and logs in one directory.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    /// Stopped in reverse order of starting when the cluster is dropped.
    daemons: Vec<Watched>,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("lifesweep-slurm-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        for sub in ["munge", "state", "spool", "log"] {
            fs::create_dir(root.join(sub)).unwrap();
        }
        // munged wants its socket in a directory others may enter but not write.
        use std::os::unix::fs::PermissionsExt;
        for path in [root.clone(), root.join("munge")] {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let key = root.join("munge/munge.key");
        let mut bytes = vec![0u8; 128];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .unwrap();
        fs::write(&key, &bytes).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let socket = root.join("munge/munge.socket.2");

        let host = lifesweep_runner::hostname();
        let short_host = host.split('.').next().unwrap_or(&host).to_string();
        let conf = root.join("slurm.conf");
        let p = |sub: &str| root.join(sub).display().to_string();
        fs::write(
            &conf,
            format!(
                "ClusterName={CLUSTER}
SlurmctldHost={short_host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={socket}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={ctld_pid}
SlurmdPidFile={d_pid}
SlurmctldLogFile={ctld_log}
SlurmdLogFile={d_log}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=10
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
",
                ctld_port = free_port(),
                d_port = free_port(),
                socket = socket.display(),
                state = p("state"),
                spool = p("spool"),
                ctld_pid = p("slurmctld.pid"),
                d_pid = p("slurmd.pid"),
                ctld_log = p("log/slurmctld.log"),
                d_log = p("log/slurmd.log"),
            ),
        )
        .unwrap();

        let mut cluster = Cluster {
            dir,
            conf: conf.clone(),
            daemons: Vec::new(),
        };
        let conf_arg = conf.display().to_string();
        let s = |path: &Path| path.display().to_string();
        cluster.daemon(
            "munged",
            vec![
                "-F".into(),
                format!("--socket={}", s(&socket)),
                format!("--key-file={}", s(&key)),
                format!("--pid-file={}", p("munge/munged.pid")),
                format!("--seed-file={}", p("munge/munged.seed")),
                format!("--log-file={}", p("log/munged.log")),
            ],
        );
        wait_until(
            "munged's socket",
            Duration::from_secs(30),
            || cluster.logs(),
            || socket.exists(),
        );
        cluster.daemon(
            "slurmctld",
            vec!["-D".into(), "-f".into(), conf_arg.clone()],
        );
        cluster.daemon(
            "slurmd",
            vec![
                "-D".into(),
                "-N".into(),
                "localhost".into(),
                "-f".into(),
                conf_arg,
            ],
        );
        wait_until(
            "the node to be idle",
            Duration::from_secs(60),
            || cluster.logs(),
            || {
                cluster
                    .command("sinfo")
                    .args(["--noheader", "--format=%T"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
            },
        );
        cluster
    }

    fn daemon(&mut self, name: &str, args: Vec<String>) {
        let program = find_program(name).expect("checked before");
        let log = self.dir.path().join(format!("log/{name}.out"));
        let watched = Watched::start(name, &program, &args, &log)
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.daemons.push(watched);
    }

    /// A Slurm client command (sbatch, squeue, ...) talking to this cluster.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf);
        command
    }

    fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"))
    }

    /// The daemons' logs and which have exited, for failure messages.
    fn logs(&self) -> String {
        let mut text = String::new();
        for entry in fs::read_dir(self.dir.path().join("log"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let content = fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = content.lines().rev().take(30).collect();
            text.push_str(&format!("--- {}\n", entry.path().display()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Array task ids (`JOB_TASK`) still pending or running.
    fn live_tasks(&self) -> Vec<String> {
        let output = self.output("squeue", &["--noheader", "--array", "--format=%i"]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// `JobState` and `ExitCode` of a task, from `scontrol show job`.
    fn task_state(&self, task: &str) -> (String, String) {
        let output = self.output("scontrol", &["show", "job", "--oneliner", task]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or("")
                .to_string()
        };
        (field("JobState"), field("ExitCode"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Jobs first (their processes are not the daemons' children), then the daemons.
        let _ = self.command("scancel").args(["--user=root"]).output();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !self.live_tasks().is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
        while let Some(daemon) = self.daemons.pop() {
            drop(daemon);
        }
    }
}

fn runs(runtime: &tokio::runtime::Runtime, store: &Store) -> Vec<RunRow> {
    runtime
        .block_on(store.runs(Some("array")))
        .expect("read the runs")
}

#[test]
fn a_cancelled_array_task_hands_its_job_back_and_every_job_runs_once() {
    if let Some(missing) = missing_prerequisite() {
        if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
            panic!("{REQUIRE_VAR}=1 but {missing}");
        }
        say(&format!("skipped: {missing}"));
        return;
    }
    let Some(postgres) = lifesweep_testkit::postgres() else {
        return;
    };
    let started = Instant::now();
    let cluster = Cluster::start();
    let db = postgres.fresh_url();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("array.toml");
    fs::write(&config, slow_sweep("array")).unwrap();

    // A SQLite database is refused before anything is written or submitted.
    let refused = expect_code(
        lifesweep()
            .args(["slurm", "submit", "--workers", "2", "--db"])
            .arg(work.path().join("x.db"))
            .arg(&config)
            .env("SLURM_CONF", &cluster.conf),
        2,
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs a PostgreSQL database"));
    assert!(cluster.live_tasks().is_empty());

    let submitted = expect_code(
        lifesweep()
            .args([
                "slurm",
                "submit",
                "--workers",
                "2",
                "--heartbeat",
                "1",
                "--db",
                &db,
            ])
            .arg(&config)
            .env("SLURM_CONF", &cluster.conf)
            .current_dir(work.path()),
        0,
    );
    let text = stdout(&submitted);
    let array: String = text
        .split("submitted job array ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no job array id in:\n{text}"))
        .to_string();
    assert!(text.contains("2 workers for 6 unfinished jobs"), "{text}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime
        .block_on(Store::open_existing(&db))
        .expect("the submission created the database");
    let context = || {
        format!(
            "squeue: {:?}\ntask logs:\n{}\n{}",
            cluster.live_tasks(),
            task_logs(work.path()),
            cluster.logs()
        )
    };

    // Cancel a task right after its worker claims a job (a claim we see appear), so that it is
    // training when the signal comes.
    let worker_of = |task: u32| format!("{CLUSTER}:{array}_{task}.0");
    let mut seen_running: HashSet<i64> = HashSet::new();
    let mut first_look = true;
    let mut victim: Option<(String, i64)> = None;
    wait_until(
        "a fresh claim to cancel",
        Duration::from_secs(120),
        context,
        || {
            for run in runs(&runtime, &store) {
                if run.state != "running" || !seen_running.insert(run.job_id) {
                    continue;
                }
                // Jobs already running at the first look may be about to finish; a job seen
                // running for the first time later was claimed within the last poll.
                if !first_look && victim.is_none() {
                    let worker = run.worker_id.clone().unwrap_or_default();
                    let task = if worker == worker_of(0) { 0 } else { 1 };
                    let task_id = format!("{array}_{task}");
                    let cancel = cluster.output("scancel", &[&task_id]);
                    assert!(cancel.status.success(), "scancel {task_id}: {cancel:?}");
                    victim = Some((task_id, run.job_id));
                }
            }
            first_look = false;
            victim.is_some()
        },
    );
    let (cancelled_task, interrupted_job) = victim.expect("a task was cancelled");

    wait_until(
        "every job to be done and both tasks to end",
        Duration::from_secs(240),
        context,
        || {
            let runs = runs(&runtime, &store);
            runs.iter()
                .all(|r| r.state == "done" || r.state == "failed")
                && cluster.live_tasks().is_empty()
        },
    );

    let runs = runs(&runtime, &store);
    let survivor = if cancelled_task.ends_with("_0") {
        worker_of(1)
    } else {
        worker_of(0)
    };
    assert_eq!(runs.len(), 6);
    for run in &runs {
        // attempts 1: the handed-back claim was given back, so each job ran to the end once.
        assert_eq!(
            (run.state.as_str(), run.attempts, run.metrics.is_some()),
            ("done", 1, true),
            "job {}: {run:?}\n{}",
            run.job_id,
            context()
        );
    }
    let interrupted = runs.iter().find(|r| r.job_id == interrupted_job).unwrap();
    assert_eq!(
        interrupted.worker_id.as_deref(),
        Some(survivor.as_str()),
        "the job the cancelled task was training was finished by the other task\n{}",
        context()
    );
    let logs = task_logs(work.path());
    assert!(
        logs.contains("interrupted; job handed back to the queue"),
        "the cancelled worker handed its job back:\n{logs}"
    );

    let (state, _) = cluster.task_state(&cancelled_task);
    assert_eq!(state, "CANCELLED", "{}", context());
    let other = if cancelled_task.ends_with("_0") { 1 } else { 0 };
    let (state, exit) = cluster.task_state(&format!("{array}_{other}"));
    assert_eq!(
        (state.as_str(), exit.as_str()),
        ("COMPLETED", "0:0"),
        "{}",
        context()
    );

    // `slurm status` puts the (now empty) array beside the counts.
    let status = expect_code(
        lifesweep()
            .args(["slurm", "status", "--format", "json", "--db", &db])
            .env("SLURM_CONF", &cluster.conf),
        0,
    );
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(
        (&status["done"], &status["queued"], &status["tasks"]),
        (&Value::from(6), &Value::from(0), &Value::Array(Vec::new()))
    );
    assert_eq!(status["job_name"], "lifesweep-array");
    say(&format!(
        "slurm test: cluster up, 6 jobs through a 2-task array with one task cancelled, in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}

/// The array tasks' output files, concatenated.
fn task_logs(dir: &Path) -> String {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "out"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            format!(
                "--- {}\n{}",
                p.display(),
                fs::read_to_string(p).unwrap_or_default()
            )
        })
        .collect()
}
