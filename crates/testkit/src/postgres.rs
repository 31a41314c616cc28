//! A throwaway PostgreSQL server for tests.
//!
//! `initdb` refuses to run as root, so when the tests run as root the server runs as `nobody`
//! (through `setpriv`, from util-linux), in a directory handed to that user. A watchdog shell
//! holds the server: it reads its standard input from a pipe whose other end only this process
//! holds, so when this process exits (normally, by a panic, or killed) the read ends, and the
//! watchdog stops the server and removes its directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::say;

/// Set to 1 (as `scripts/test.sh` does after installing PostgreSQL) to make a missing
/// PostgreSQL a failure instead of a skip.
const REQUIRE_VAR: &str = "LIFESWEEP_TEST_REQUIRE_POSTGRES";

/// The superuser the tests connect as (trust authentication, loopback only).
const USER: &str = "lifesweep";

/// A running server. Lives as long as the test process.
#[derive(Debug)]
pub struct PgServer {
    port: u16,
    dir: PathBuf,
    next_database: AtomicU32,
    /// The write end of the watchdog's pipe: never written, closed by the process's exit.
    _watchdog: Mutex<(Child, ChildStdin)>,
}

/// The server of this test process, started on first use. None when PostgreSQL is not
/// installed: the caller skips, and a line saying so is printed once per process. Panics when
/// PostgreSQL is installed but does not start.
pub fn postgres() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    static SKIP_SAID: OnceLock<()> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        let bin = find_bin_dir()?;
        Some(PgServer::start(&bin).unwrap_or_else(|e| panic!("PostgreSQL test server: {e}")))
    });
    if server.is_none() {
        if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
            panic!("PostgreSQL is required ({REQUIRE_VAR}=1) but not installed: apt-get install postgresql");
        }
        SKIP_SAID.get_or_init(|| {
            say("skipped: PostgreSQL not installed (apt-get install postgresql); the PostgreSQL variants of these tests pass without running");
        });
    }
    server.as_ref()
}

/// The newest Debian PostgreSQL with both `initdb` and `postgres`, or `$LIFESWEEP_PG_BIN`.
fn find_bin_dir() -> Option<PathBuf> {
    let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("LIFESWEEP_PG_BIN").map(PathBuf::from) {
        return usable(&dir).then_some(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            usable(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

impl PgServer {
    /// `postgres://lifesweep@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The URL of a database name no test of this process has used yet (the database does not
    /// exist: opening it with the store creates it).
    pub fn fresh_url(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::SeqCst);
        self.url(&format!("test_{n}"))
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory (data, socket, log), removed when the process ends.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn start(bin: &Path) -> Result<PgServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("lifesweep-pg-")
            .tempdir()
            .map_err(|e| format!("creating a temporary directory: {e}"))?
            .keep();
        let run_as = run_as_user(&dir)?;
        let data = dir.join("data");

        let initdb = as_user(&run_as, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !initdb.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!(
                "initdb failed ({}):\n{}{}",
                initdb.status,
                String::from_utf8_lossy(&initdb.stdout),
                String::from_utf8_lossy(&initdb.stderr)
            ));
        }

        // A port that was free a moment ago; another process taking it in between makes the
        // server fail to start, and the error says so.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let mut postgres = as_user(&run_as, &bin.join("postgres"));
        postgres.arg("-D").arg(&data).arg("-k").arg(&dir).args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            // A test server: durability off, room for many worker processes.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=400",
        ]);
        let mut watchdog = Command::new("sh");
        watchdog
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(&dir)
            .arg(postgres.get_program())
            .args(postgres.get_args())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: a Ctrl-C at the terminal stops the tests, and the watchdog
        // then cleans up, rather than dying with them.
        std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
        let mut child = watchdog
            .spawn()
            .map_err(|e| format!("starting the server: {e}"))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let server = PgServer {
            port,
            dir: dir.clone(),
            next_database: AtomicU32::new(0),
            _watchdog: Mutex::new((child, stdin)),
        };
        server.wait_until_ready(bin)?;
        Ok(server)
    }

    fn wait_until_ready(&self, bin: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    USER,
                ])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            let exited = self
                ._watchdog
                .lock()
                .map(|mut w| w.0.try_wait().ok().flatten().is_some())
                .unwrap_or(true);
            if exited || Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
                return Err(format!(
                    "the server on port {} did not start{}:\n{log}",
                    self.port,
                    if exited { "" } else { " within 60 s" }
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `$@` (the server) with its output in `$1/postgres.log`, waits for standard input to
/// end (the test process exited), then stops the server and removes its directory.
const WATCHDOG: &str = r#"
dir=$1; shift
trap '' INT HUP
"$@" > "$dir/postgres.log" 2>&1 &
server=$!
cat > /dev/null
kill -INT "$server" 2>/dev/null
wait "$server"
rm -rf "$dir"
"#;

/// The user to run the server as: `None` (this user) unless this is root, which initdb refuses;
/// then `nobody`, who is given the directory.
fn run_as_user(dir: &Path) -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let (uid, gid) = user_ids("nobody")
        .ok_or("running as root, and there is no user `nobody` to run PostgreSQL as")?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(|e| format!("handing {} to nobody: {e}", dir.display()))?;
    Ok(Some((uid, gid)))
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam returns null or a pointer to a static record, read at once, before any
    // other call that could overwrite it (tests start the server once, under a OnceLock).
    unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        if entry.is_null() {
            None
        } else {
            Some(((*entry).pw_uid, (*entry).pw_gid))
        }
    }
}

/// A command for `program`, run as `user` when one is given (by `setpriv`).
fn as_user(user: &Option<(u32, u32)>, program: &Path) -> Command {
    match user {
        None => Command::new(program),
        Some((uid, gid)) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(program);
            // Not root's home: PostgreSQL's tools look there for config files.
            command.env("HOME", "/").current_dir("/");
            command
        }
    }
}
