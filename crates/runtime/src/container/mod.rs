//! Container lifecycle verbs, one file each: the file list is the feature list.
//!
//! `create` and `run` share the spawn path in `create.rs`; what happens inside the
//! new namespaces is in `init.rs`; `exec` has its own two-stage join in `exec.rs`.

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod init;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod query;
pub mod run;
pub mod spec;
pub mod start;
pub mod tty;
pub mod update;

use std::path::PathBuf;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Result, RuntimeError};

/// Options every verb shares (runc's global flags).
#[derive(Debug, Clone)]
pub struct Global {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
}

/// Signals a foreground `run`/`exec` passes on to the container process.
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGPIPE,
];

/// The signals a foreground runtime blocks and waits for with sigwait: those it
/// forwards, and SIGCHLD.
pub fn forwarding_mask() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Wait for `pid` to exit, forwarding signals to it and reaping any other child
/// (we are a subreaper). Returns the shell-style exit code. The mask must already be
/// blocked.
pub fn wait_forwarding(pid: i32, mask: &SigSet) -> Result<i32> {
    wait_forwarding_with(pid, mask, &|_| false)
}

/// As [`wait_forwarding`]; `handle` may take a signal for itself (returns true).
pub fn wait_forwarding_with(
    pid: i32,
    mask: &SigSet,
    handle: &dyn Fn(Signal) -> bool,
) -> Result<i32> {
    loop {
        if let Some(code) = reap(pid)? {
            return Ok(code);
        }
        let sig = mask.wait().map_err(|e| RuntimeError::sys("sigwait", e))?;
        if sig != Signal::SIGCHLD && !handle(sig) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
        }
    }
}

/// Reap every exited child; `Some(code)` once `pid` is among them.
fn reap(pid: i32) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                return Ok(Some(128 + sig as i32))
            }
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => continue,
            Err(nix::errno::Errno::ECHILD) => {
                return Err(RuntimeError::Other(format!(
                    "process {pid} is not our child"
                )))
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RuntimeError::sys("waitpid", e)),
        }
    }
}

/// Turn "KILL", "SIGKILL", "9" into a signal.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n)
            .map_err(|_| RuntimeError::Other(format!("unknown signal {s:?}")));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| RuntimeError::Other(format!("unknown signal {s:?}")))
}

/// Fork the calling (single-threaded) process, creating the namespaces in `flags`.
/// Returns 0 in the child, the child's PID in the parent.
pub(crate) fn clone_process(flags: nix::sched::CloneFlags) -> Result<i32> {
    // SAFETY: a raw clone without CLONE_VM and with a NULL stack behaves like fork:
    // the child gets a copy of our address space. berth-runtime is single-threaded when
    // it gets here, so no lock is held by a thread that does not exist in the child.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if ret < 0 {
        return Err(RuntimeError::sys(
            format!("clone({flags:?})"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(ret as i32)
}

/// [`clone_process`] with the child born inside the cgroup v2 directory `cgroup`
/// (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7+). `Ok(None)` when the kernel cannot
/// (no `clone3`, or no `CLONE_INTO_CGROUP` for this cgroup): the caller forks the old way.
pub(crate) fn clone_process_into(
    flags: nix::sched::CloneFlags,
    cgroup: std::os::fd::BorrowedFd<'_>,
) -> Result<Option<i32>> {
    use std::os::fd::AsRawFd;
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    /// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let args = CloneArgs {
        // Through u32: the flags are a C int, and a sign extension would set flags
        // that do not exist.
        flags: u64::from(flags.bits() as u32) | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.as_raw_fd() as u64,
    };
    // SAFETY: clone3 reads `args` (valid for its size) and, without CLONE_VM and with
    // no stack, forks as clone_process does; the same single-threaded reasoning holds.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        let errno = nix::errno::Errno::last();
        return match errno {
            nix::errno::Errno::ENOSYS
            | nix::errno::Errno::E2BIG
            | nix::errno::Errno::EINVAL
            | nix::errno::Errno::EOPNOTSUPP
            | nix::errno::Errno::EBADF => Ok(None),
            e => Err(RuntimeError::sys(
                format!("clone3({flags:?}, into cgroup)"),
                e,
            )),
        };
    }
    Ok(Some(ret as i32))
}

/// [`clone_process`] for a child that joins its cgroups by itself (`join`, see
/// [`crate::cgroups::SelfJoin`]): born into the unified one when the kernel can, else
/// moved there by us right after the fork (killed and reaped if that fails).
pub(crate) fn clone_joining(
    flags: nix::sched::CloneFlags,
    join: Option<&crate::cgroups::SelfJoin>,
) -> Result<i32> {
    use std::os::fd::AsFd;
    let Some(into) = join.and_then(|j| j.clone_into.as_ref()) else {
        return clone_process(flags);
    };
    if let Some(pid) = clone_process_into(flags, into.as_fd())? {
        return Ok(pid);
    }
    let pid = clone_process(flags)?;
    if pid != 0 {
        if let Some(dir) = join.and_then(|j| j.unified_dir.as_ref()) {
            if let Err(e) = std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
                let child = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(RuntimeError::Init(format!("join {}: {e}", dir.display())));
            }
        }
    }
    Ok(pid)
}

/// Leave the child process at once, without running destructors or atexit handlers
/// that belong to the parent's state.
pub(crate) fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("KILL").ok(), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("sigterm").ok(), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("9").ok(), Some(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
