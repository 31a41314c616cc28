//! A daemon that a test starts and that never outlives it.
//!
//! The command runs under a watchdog shell that reads a pipe only this process writes to:
//! when the [`Watched`] is dropped, or the test process ends in any way, the pipe closes and
//! the watchdog sends the daemon SIGTERM, then SIGKILL ten seconds later if it is still there.

use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A running daemon; dropping it stops it (and waits, at most 15 s, until it has stopped).
#[derive(Debug)]
pub struct Watched {
    name: String,
    watchdog: Child,
    pipe: Option<ChildStdin>,
}

const WATCHDOG: &str = r#"
log=$1; shift
trap '' INT HUP
"$@" >> "$log" 2>&1 &
daemon=$!
cat > /dev/null
kill -TERM "$daemon" 2>/dev/null
tries=0
while kill -0 "$daemon" 2>/dev/null && [ "$tries" -lt 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
kill -KILL "$daemon" 2>/dev/null
wait "$daemon"
"#;

impl Watched {
    /// Starts `program args...` with its output appended to `log`. The command's environment
    /// is this process's; its working directory is `/`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> std::io::Result<Watched> {
        let mut watchdog = Command::new("sh");
        watchdog
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(log)
            .arg(program)
            .args(args)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: a Ctrl-C at the terminal reaches the tests, not the daemon,
        // which the watchdog then stops in order.
        std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
        let mut watchdog = watchdog.spawn()?;
        let pipe = watchdog.stdin.take();
        Ok(Watched {
            name: name.to_string(),
            watchdog,
            pipe,
        })
    }

    /// Whether the daemon (with its watchdog) has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.watchdog.try_wait(), Ok(Some(_)) | Err(_))
    }

    /// The name given at start, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        drop(self.pipe.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.has_exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}
