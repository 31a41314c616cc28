//! Facts about this host that the scheduler and resume need.

use lifesweep_store::Store;
use tracing::info;

use crate::RunnerError;

/// Re-queues at once the jobs held by workers of this host whose process is gone (the
/// orchestrator was killed, the machine rebooted), instead of waiting for their leases to run
/// out. Workers on other hosts are left to their leases. Returns how many jobs were re-queued.
pub async fn requeue_dead_local_workers(store: &Store) -> Result<u64, RunnerError> {
    let host = hostname();
    let dead: Vec<String> = store
        .workers_on_host(&host)
        .await?
        .into_iter()
        .filter(|w| w.stopped_at.is_none() && !pid_alive(w.info.pid))
        .map(|w| w.info.id)
        .collect();
    if dead.is_empty() {
        return Ok(0);
    }
    let requeued = store.requeue_jobs_of_dead_workers(&dead).await?;
    info!(
        workers = dead.len(),
        requeued, "re-queued the jobs of dead workers on this host"
    );
    Ok(requeued)
}

/// This machine's host name (empty string if the OS will not say).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a process with this pid exists on this host (zombies count as dead).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid_t <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let exists = unsafe { libc::kill(pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    // A zombie has exited; it only waits to be reaped.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }
}
