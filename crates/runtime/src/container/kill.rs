//! `kill`: send a signal to the container's init, or with `--all` to every process
//! in its cgroup.

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::Global;
use crate::cgroups;
use crate::error::{Result, RuntimeError};
use crate::state::{self, Status};

pub fn kill(global: &Global, id: &str, signal: Signal, all: bool) -> Result<()> {
    let (dir, container) = state::load(&global.root, id)?;
    let status = container.status(&dir);
    if status == Status::Stopped {
        return Err(RuntimeError::BadStatus {
            id: id.to_string(),
            status: status.to_string(),
            what: "container not running",
        });
    }
    if all {
        let cg = cgroups::manager(&container.cgroup_path)?;
        for pid in cg.pids()? {
            let _ = send(Pid::from_raw(pid), signal);
        }
        // A frozen cgroup would hold the signal until thawed.
        if status == Status::Paused && signal == Signal::SIGKILL {
            let _ = cg.freeze(false);
        }
        return Ok(());
    }
    send(Pid::from_raw(container.pid), signal)
        .map_err(|e| RuntimeError::sys(format!("kill {} {signal}", container.pid), e))
}
