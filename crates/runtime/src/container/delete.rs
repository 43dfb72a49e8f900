//! `delete`: remove a stopped container (with `--force`, kill it first): its cgroup,
//! its state directory, then the poststop hooks.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::Global;
use crate::cgroups;
use crate::error::{Result, RuntimeError};
use crate::hooks;
use crate::state::{self, Status};

pub fn delete(global: &Global, id: &str, force: bool) -> Result<()> {
    let (dir, container) = match state::load(&global.root, id) {
        Ok(x) => x,
        Err(RuntimeError::ContainerNotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let status = container.status(&dir);
    match status {
        Status::Stopped => {}
        // A created container was never started: deleting it discards it, as runc does.
        Status::Created => kill_and_wait(&container)?,
        Status::Running | Status::Paused | Status::Creating if force => kill_and_wait(&container)?,
        _ => {
            return Err(RuntimeError::BadStatus {
                id: id.to_string(),
                status: status.to_string(),
                what: "cannot delete a running container without --force",
            })
        }
    }
    if let Ok(cg) = cgroups::manager(&container.cgroup_path) {
        // Stray processes (from exec, or forked by the init) die with the container.
        if let Ok(pids) = cg.pids() {
            if !pids.is_empty() {
                let _ = cg.freeze(false);
                for pid in pids {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match cg.destroy() {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    std::fs::remove_dir_all(&dir)
        .map_err(|e| RuntimeError::io(format!("remove {}", dir.display()), e))?;
    if let Some(h) = container
        .config
        .hooks()
        .as_ref()
        .and_then(|h| h.poststop().clone())
    {
        let json = serde_json::to_vec(&container.oci_state(Status::Stopped))
            .map_err(|e| RuntimeError::Other(e.to_string()))?;
        // Poststop failures are logged, not fatal: the container is gone already.
        if let Err(e) = hooks::run("poststop", &h, &json) {
            eprintln!("berth-runtime: {e}");
        }
    }
    Ok(())
}

fn kill_and_wait(container: &state::ContainerState) -> Result<()> {
    let pid = Pid::from_raw(container.pid);
    if let Ok(cg) = cgroups::manager(&container.cgroup_path) {
        if cg.is_frozen().unwrap_or(false) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = cg.freeze(false);
        }
    }
    let _ = kill(pid, Signal::SIGKILL);
    // If it is our child (run), reap it; otherwise wait for it to disappear.
    let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    let deadline = Instant::now() + Duration::from_secs(10);
    while state::process_is(container.pid, container.init_start_time) {
        if Instant::now() > deadline {
            return Err(RuntimeError::Other(format!(
                "container {} did not die after SIGKILL",
                container.id
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
    Ok(())
}
