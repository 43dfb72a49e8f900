//! `start`: release a created container's init by writing to its exec fifo, then
//! run the poststart hooks.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use super::Global;
use crate::error::{Result, RuntimeError};
use crate::hooks;
use crate::state::{self, Status};

pub fn start(global: &Global, id: &str) -> Result<()> {
    let (dir, container) = state::load(&global.root, id)?;
    let status = container.status(&dir);
    if status != Status::Created {
        return Err(RuntimeError::BadStatus {
            id: id.to_string(),
            status: status.to_string(),
            what: "cannot start a container that is not created",
        });
    }
    let fifo_path = dir.join(state::EXEC_FIFO);
    // Non-blocking: if no init holds the fifo open, this fails (ENXIO) at once
    // instead of hanging.
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo_path)
        .map_err(|e| RuntimeError::BadStatus {
            id: id.to_string(),
            status: format!("not waiting for start ({e})"),
            what: "cannot start",
        })?;
    fifo.write_all(&[0])
        .map_err(|e| RuntimeError::io("write exec fifo", e))?;
    drop(fifo);
    wait_for_exec(&container);
    let _ = std::fs::remove_file(&fifo_path);
    // The spec: a failing poststart hook is a warning; the lifecycle goes on.
    if let Err(e) = run_poststart(&container) {
        eprintln!("berth-runtime: warning: {e}");
    }
    Ok(())
}

pub(crate) fn run_poststart(container: &state::ContainerState) -> Result<()> {
    if let Some(h) = container
        .config
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().clone())
    {
        let json = serde_json::to_vec(&container.oci_state(Status::Running))
            .map_err(|e| RuntimeError::Other(e.to_string()))?;
        hooks::run("poststart", &h, &json)?;
    }
    Ok(())
}

/// Wait until the init has exec'd the user's program (poststart hooks must run
/// after that). The init holds the exec fifo open close-on-exec, so the program is
/// running once that fd is gone from /proc/PID/fd (or the process is). Bounded, in
/// case startContainer hooks hang.
fn wait_for_exec(container: &state::ContainerState) {
    if container.exec_fifo_fd < 0 {
        return;
    }
    let link = format!("/proc/{}/fd/{}", container.pid, container.exec_fifo_fd);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut pause = std::time::Duration::from_micros(50);
    while std::time::Instant::now() < deadline {
        match std::fs::read_link(&link) {
            Ok(target) if target.to_string_lossy().ends_with(state::EXEC_FIFO) => {}
            _ => return,
        }
        if !state::process_is(container.pid, container.init_start_time) {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(5));
    }
}
