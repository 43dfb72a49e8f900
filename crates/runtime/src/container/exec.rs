//! `exec`: run another process in a running container: join every namespace of its
//! init and its cgroup, take on the container's (or the given) identity, limits and
//! seccomp filter.
//!
//! Joining a PID namespace only affects children, so a first child joins the
//! namespaces and is moved into the cgroup, then forks the process that execs.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Capability, LinuxCapabilities, Process};

use super::init::{exec, finalize_identity, pass_fds, prepare_exec, set_no_new_privs};
use super::{
    clone_process, create::write_pid_file, exit_child, forwarding_mask, wait_forwarding, Global,
};
use crate::cgroups;
use crate::console;
use crate::error::{Context, Result, RuntimeError};
use crate::namespaces;
use crate::process::{rlimits, seccomp};
use crate::state::{self, Status};
use crate::sync::{self, Message};

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub id: String,
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub cwd: Option<String>,
    pub env: Vec<String>,
    /// `uid[:gid]`
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// The process's stdin, stdout and stderr, when not ours (a shim's pipes).
    pub stdio: Option<[i32; 3]>,
    pub ignore_paused: bool,
}

/// Returns the exit code for the runtime process (0 when detached).
pub fn exec_in(global: &Global, opts: &ExecOptions) -> Result<i32> {
    let (dir, container) = state::load(&global.root, &opts.id)?;
    let status = container.status(&dir);
    match status {
        Status::Running | Status::Created => {}
        Status::Paused if opts.ignore_paused => {}
        _ => {
            return Err(RuntimeError::BadStatus {
                id: opts.id.clone(),
                status: status.to_string(),
                what: "cannot exec in a container that is not running",
            })
        }
    }
    let process = build_process(&container.config, opts)?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && opts.detach {
        return Err(RuntimeError::Other(
            "exec -d with a terminal needs --console-socket".into(),
        ));
    }
    // In the foreground with a terminal and no console socket, we are the console.
    let own_console = if terminal && opts.console_socket.is_none() {
        Some(super::tty::ConsoleListener::bind(&global.root)?)
    } else {
        None
    };
    let console_path = opts
        .console_socket
        .clone()
        .or_else(|| own_console.as_ref().map(|l| l.path().to_path_buf()));
    let seccomp = container
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(|s| crate::process::seccomp_cache::compile_cached(s, &global.root.join(".seccomp")))
        .transpose()?;
    let joins = namespaces::of_process(container.pid)?;
    let cgroup = cgroups::manager(&container.cgroup_path)?;
    let console = console_path
        .as_deref()
        .filter(|_| terminal)
        .map(console::connect)
        .transpose()?;
    let (parent, child) = sync::pair()?;
    let mask = forwarding_mask();
    if !opts.detach {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .map_err(|e| RuntimeError::sys("block signals", e))?;
    }

    // As the init does at create: the stage joins the container's cgroups itself,
    // before it enters the container's namespaces (see cgroups::SelfJoin).
    let self_join = cgroup.prepare_self_join()?;
    let stage = super::clone_joining(nix::sched::CloneFlags::empty(), self_join.as_ref())?;
    if stage == 0 {
        drop(parent);
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        let result = (|| -> Result<i32> {
            for tasks in self_join.iter().flat_map(|j| j.tasks.iter()) {
                std::fs::write(tasks, "0").map_err(|e| {
                    RuntimeError::Init(format!("join cgroup {}: {e}", tasks.display()))
                })?;
            }
            for ns in &joins {
                namespaces::join(ns)?;
            }
            child.expect(&Message::Proceed)?;
            let pid = clone_process(nix::sched::CloneFlags::empty())?;
            if pid == 0 {
                super::init::reset_signal_dispositions();
                if let Some(stdio) = opts.stdio {
                    if let Err(e) = super::init::install_stdio(stdio) {
                        let _ = child.send(&Message::Error(e.to_string()));
                        exit_child(127);
                    }
                }
                let err = match exec_stage(
                    &process,
                    seccomp.as_ref(),
                    console.as_ref().map(|c| c.as_raw_fd()),
                    opts.preserve_fds,
                ) {
                    Ok(never) => match never {},
                    Err(e) => e,
                };
                let _ = child.send(&Message::Error(err.to_string()));
                exit_child(127);
            }
            Ok(pid)
        })();
        match result {
            Ok(pid) => {
                let _ = child.send(&Message::InitPid(pid));
                exit_child(0)
            }
            Err(e) => {
                let _ = child.send(&Message::Error(e.to_string()));
                exit_child(1)
            }
        }
    }
    drop(child);
    drop(console);
    let fail = |e: RuntimeError| {
        let _ = nix::sys::signal::kill(Pid::from_raw(stage), nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(stage), None);
        e
    };
    if self_join.is_none() {
        cgroup.apply(stage).map_err(|e| fail(e.into()))?;
    }
    parent.send(&Message::Proceed).map_err(fail)?;
    let pid = match parent.recv().map_err(fail)? {
        Some(Message::InitPid(pid)) => pid,
        Some(Message::Error(text)) => return Err(fail(RuntimeError::Init(text))),
        other => return Err(fail(RuntimeError::Init(format!("exec setup: {other:?}")))),
    };
    let _ = waitpid(Pid::from_raw(stage), None);
    // The channel reaches EOF when the process has exec'd (it is close-on-exec).
    match parent.recv()? {
        None => {}
        Some(Message::Error(text)) => {
            let _ = waitpid(Pid::from_raw(pid), None);
            return Err(RuntimeError::Init(text));
        }
        Some(other) => return Err(RuntimeError::Init(format!("exec: {other:?}"))),
    }
    if let Some(pid_file) = &opts.pid_file {
        write_pid_file(pid_file, pid)?;
    }
    if opts.detach {
        return Ok(0);
    }
    let Some(listener) = own_console else {
        return wait_forwarding(pid, &mask);
    };
    let master = listener.receive_master()?;
    drop(listener);
    super::tty::copy_window_size(master.as_raw_fd());
    let raw = super::tty::RawMode::enter();
    let done = super::tty::start_copy(&master)?;
    let fd = master.as_raw_fd();
    let code = super::wait_forwarding_with(pid, &mask, &|sig| {
        if sig == nix::sys::signal::Signal::SIGWINCH {
            super::tty::copy_window_size(fd);
            return true;
        }
        false
    })?;
    super::tty::drain(&done);
    drop(raw);
    Ok(code)
}

/// In the container's namespaces and cgroup: become the process and exec it.
fn exec_stage(
    process: &Process,
    seccomp: Option<&seccomp::SeccompFilter>,
    console: Option<i32>,
    preserve_fds: u32,
) -> Result<super::init::Never> {
    if let Some(socket) = console {
        let size = process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        console::setup_pty(socket, size, false)?;
        // SAFETY: our copy of the console socket, not used after this.
        unsafe { libc::close(socket) };
    }
    std::env::set_current_dir(process.cwd())
        .context(|| format!("chdir to cwd {:?}", process.cwd()))?;
    rlimits::apply(process.rlimits().as_deref().unwrap_or(&[]))?;
    let prepared = prepare_exec(process, 0)?;
    pass_fds(preserve_fds)?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    if let (Some(f), false) = (seccomp, nnp) {
        f.load()?;
    }
    finalize_identity(process)?;
    if nnp {
        set_no_new_privs()?;
    }
    if let (Some(f), true) = (seccomp, nnp) {
        f.load()?;
    }
    exec(&prepared)
}

/// The process to exec: from `--process`, or the container's process with the
/// command line's overrides (as runc builds it).
fn build_process(config: &oci_spec::runtime::Spec, opts: &ExecOptions) -> Result<Process> {
    if let Some(path) = &opts.process_file {
        let data = std::fs::read(path).context(|| format!("read {}", path.display()))?;
        let mut de = serde_json::Deserializer::from_slice(&data);
        let process: Process = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = format!("process.{}", e.path());
            RuntimeError::invalid(field, e.into_inner().to_string())
        })?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(RuntimeError::invalid("process.args", "is empty"));
        }
        return Ok(process);
    }
    if opts.args.is_empty() {
        return Err(RuntimeError::Other(
            "exec needs a command (or --process)".into(),
        ));
    }
    let mut p = config.process().clone().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.tty));
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.into());
    }
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(opts.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(user) = &opts.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| RuntimeError::Other(format!("invalid --user {user:?}: use uid[:gid]")))
        };
        let mut u = p.user().clone();
        u.set_uid(parse(uid)?);
        if let Some(g) = gid {
            u.set_gid(parse(g)?);
        }
        p.set_user(u);
    }
    if !opts.additional_gids.is_empty() {
        let mut u = p.user().clone();
        u.set_additional_gids(Some(opts.additional_gids.clone()));
        p.set_user(u);
    }
    if !opts.caps.is_empty() {
        let mut caps: LinuxCapabilities = p.capabilities().clone().unwrap_or_default();
        for name in &opts.caps {
            let full = if name.to_ascii_uppercase().starts_with("CAP_") {
                name.to_ascii_uppercase()
            } else {
                format!("CAP_{}", name.to_ascii_uppercase())
            };
            let cap: Capability = serde_json::from_value(serde_json::Value::String(full))
                .map_err(|_| RuntimeError::Other(format!("unknown capability {name:?}")))?;
            for set in [
                caps.bounding().clone(),
                caps.effective().clone(),
                caps.permitted().clone(),
                caps.ambient().clone(),
            ]
            .into_iter()
            .enumerate()
            {
                let (i, mut s) = (set.0, set.1.unwrap_or_default());
                s.insert(cap);
                match i {
                    0 => caps.set_bounding(Some(s)),
                    1 => caps.set_effective(Some(s)),
                    2 => caps.set_permitted(Some(s)),
                    _ => caps.set_ambient(Some(s)),
                };
            }
        }
        p.set_capabilities(Some(caps));
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}
