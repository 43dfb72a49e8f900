//! The container's init process, from birth in its namespaces to execve of the
//! user's program. Runs in the child of `create`/`run`; reports failure over the
//! sync channel and exits.
//!
//! Order (as the OCI runtime spec and runc fix it): wait for the runtime to write
//! the id maps and join the cgroup → cgroup namespace → hostname → rootfs mounts →
//! createRuntime hooks (run by the runtime) → createContainer hooks → pivot_root →
//! console → masked/readonly paths → sysctl, oom_score_adj, rlimits → seccomp (when
//! it may not rely on no_new_privs) → capabilities bounding set → user → the other
//! capability sets → no_new_privs → "created" → wait for start → startContainer
//! hooks → seccomp (with no_new_privs) → execve.

use std::ffi::CString;
use std::os::fd::RawFd;

use nix::sched::{unshare, CloneFlags};
use nix::unistd::{sethostname, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::exit_child;
use crate::bundle::Bundle;
use crate::error::{Context, Result, RuntimeError};
use crate::namespaces::NamespacePlan;
use crate::process::seccomp::SeccompFilter;
use crate::process::{capabilities, rlimits, user};
use crate::rootfs::{self, RootfsOptions};
use crate::sync::{Channel, Message};
use crate::{console, hooks};

pub enum WaitForStart {
    /// Block reading this fifo fd until `start` writes to it.
    Fifo(RawFd),
    /// Wait for `Proceed` on the sync channel.
    Channel,
}

pub struct InitContext<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub bundle: &'a Bundle,
    pub plan: &'a NamespacePlan,
    pub channel: &'a Channel,
    pub seccomp: Option<&'a SeccompFilter>,
    pub console: Option<RawFd>,
    pub wait: WaitForStart,
    pub no_pivot: bool,
    /// Keep the caller's session keyring instead of joining a new one.
    pub no_new_keyring: bool,
    /// Fds 3.. (3 + preserve_fds) are passed to the container process.
    pub preserve_fds: u32,
    pub stdio: Option<[i32; 3]>,
    pub listen_fds: u32,
    /// cgroup v1 `tasks` files to join by writing `0`, first thing (see
    /// [`crate::cgroups::SelfJoin`]); empty when the runtime moves us.
    pub cgroup_tasks: &'a [std::path::PathBuf],
    /// The plan's joined namespaces (but PID) are ours to join, not a stage's.
    pub join_in_init: bool,
}

/// Never returns: execs the container process or exits.
/// `parent_is_runtime`: our parent is the runtime (not an intermediate stage that
/// exits), so we can ask to die with it while it sets us up.
pub fn run(ctx: &InitContext, parent_is_runtime: bool) -> ! {
    if parent_is_runtime {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    reset_signal_dispositions();
    for tasks in ctx.cgroup_tasks {
        if let Err(e) = std::fs::write(tasks, "0") {
            let _ = ctx.channel.send(&Message::Error(format!(
                "join cgroup {}: {e}",
                tasks.display()
            )));
            exit_child(1);
        }
    }
    if let Some(stdio) = ctx.stdio {
        if let Err(e) = install_stdio(stdio) {
            let _ = ctx.channel.send(&Message::Error(e.to_string()));
            exit_child(1);
        }
    }
    let err = match setup_and_exec(ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = ctx.channel.send(&Message::Error(err.to_string()));
    exit_child(1);
}

pub enum Never {}

fn setup_and_exec(ctx: &InitContext) -> Result<Never> {
    let spec = ctx.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::invalid("process", "is required"))?;
    let host_pid = match ctx.channel.recv()? {
        Some(Message::InitPid(pid)) => pid,
        other => {
            return Err(RuntimeError::Init(format!(
                "expected our pid, got {other:?}"
            )))
        }
    };
    ctx.channel.expect(&Message::Proceed)?;
    if ctx.join_in_init {
        ctx.plan.join_after_fork()?;
    }
    let in_user_ns =
        ctx.plan.creates(CloneFlags::CLONE_NEWUSER) || ctx.plan.joins(LinuxNamespaceType::User);
    if in_user_ns {
        // Become root of the new user namespace (the maps are written by now).
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .context(|| "setresgid 0 in the user namespace".into())?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .context(|| "setresuid 0 in the user namespace".into())?;
    }
    if !ctx.no_new_keyring {
        join_session_keyring(ctx.id);
    }
    if ctx.plan.creates(CloneFlags::CLONE_NEWCGROUP) {
        unshare(CloneFlags::CLONE_NEWCGROUP).context(|| "unshare cgroup namespace".into())?;
    }
    if let Some(hostname) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sethostname(hostname).context(|| format!("set hostname {hostname:?}"))?;
    }
    if let Some(domain) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        set_domainname(domain)?;
    }

    let opts = RootfsOptions {
        rootfs: &ctx.bundle.rootfs,
        bundle: &ctx.bundle.path,
        in_user_ns,
        in_cgroup_ns: ctx.plan.creates(CloneFlags::CLONE_NEWCGROUP)
            || ctx.plan.joins(LinuxNamespaceType::Cgroup),
    };
    // Without a mount namespace of its own the container shares the host's: mounting
    // anything would change the host, so its root is only a chroot.
    let own_mounts =
        ctx.plan.creates(CloneFlags::CLONE_NEWNS) || ctx.plan.joins(LinuxNamespaceType::Mount);
    if own_mounts {
        rootfs::prepare_rootfs(spec, &opts)?;
    }
    #[allow(deprecated)]
    let runtime_hooks = spec.hooks().as_ref().is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
    });
    if runtime_hooks {
        ctx.channel.send(&Message::RunCreateRuntimeHooks)?;
        ctx.channel.expect(&Message::Proceed)?;
    }
    if let Some(h) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().clone())
    {
        hooks::run(
            "createContainer",
            &h,
            &own_state_json(ctx, host_pid, "created"),
        )?;
    }
    if own_mounts {
        rootfs::enter_rootfs(&ctx.bundle.rootfs, ctx.no_pivot)?;
    } else {
        nix::unistd::chroot(&ctx.bundle.rootfs).context(|| "chroot into the rootfs".into())?;
        std::env::set_current_dir("/").context(|| "chdir to /".into())?;
    }
    if let Some(socket) = ctx.console {
        let size = process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        console::setup_pty(socket, size, true)?;
        // SAFETY: the console socket fd is ours and not used after this.
        unsafe { libc::close(socket) };
    }
    // Sysctls go in before /proc/sys is made read-only.
    if let Some(linux) = spec.linux() {
        for (key, value) in linux.sysctl().iter().flatten() {
            write_sysctl(key, value)?;
        }
    }
    if own_mounts {
        rootfs::finalize_rootfs(spec)?;
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .context(|| "write /proc/self/oom_score_adj".into())?;
    }
    rlimits::apply(process.rlimits().as_deref().unwrap_or(&[]))?;
    let prepared = prepare_exec(process, ctx.listen_fds)?;
    std::env::set_current_dir(process.cwd())
        .context(|| format!("chdir to cwd {:?}", process.cwd()))?;

    // Before any seccomp filter: an older profile may not know close_range.
    pass_fds(ctx.preserve_fds)?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if let (Some(filter), false) = (ctx.seccomp, no_new_privs) {
        filter.load()?;
    }
    finalize_identity(process)?;
    if no_new_privs {
        set_no_new_privs()?;
    }

    // Setup is over: from here the runtime may exit without taking us along.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    ctx.channel.send(&Message::Created)?;
    match ctx.wait {
        WaitForStart::Fifo(fd) => {
            let mut byte = [0u8; 1];
            loop {
                match nix::unistd::read(
                    // SAFETY: the fifo fd stays open until exec (it is CLOEXEC).
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                    &mut byte,
                ) {
                    Ok(1) => break,
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(RuntimeError::sys("wait for start on exec fifo", e)),
                }
            }
        }
        WaitForStart::Channel => ctx.channel.expect(&Message::Proceed)?,
    }
    if let Some(h) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
    {
        hooks::run(
            "startContainer",
            &h,
            &own_state_json(ctx, host_pid, "running"),
        )?;
    }
    if let (Some(filter), true) = (ctx.seccomp, no_new_privs) {
        filter.load()?;
    }
    exec(&prepared)
}

/// The user's program, resolved and encoded before we give up privileges.
pub(crate) struct PreparedExec {
    pub path: CString,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
}

pub(crate) fn prepare_exec(process: &Process, listen_fds: u32) -> Result<PreparedExec> {
    let args = process.args().as_deref().unwrap_or(&[]);
    let arg0 = args
        .first()
        .ok_or_else(|| RuntimeError::invalid("process.args", "is empty"))?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if listen_fds > 0 {
        env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
        env.push(format!("LISTEN_FDS={listen_fds}"));
        env.push("LISTEN_PID=1".to_string());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        // As runc: HOME from the user's passwd entry in the container, else "/".
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    let cwd = process.cwd().to_string_lossy();
    let path = user::find_executable(arg0, &env, &cwd)?;
    let to_c = |field: &str, s: &str| {
        CString::new(s).map_err(|_| RuntimeError::invalid(field, format!("{s:?} contains NUL")))
    };
    Ok(PreparedExec {
        path,
        args: args
            .iter()
            .map(|a| to_c("process.args", a))
            .collect::<Result<_>>()?,
        env: env
            .iter()
            .map(|e| to_c("process.env", e))
            .collect::<Result<_>>()?,
    })
}

/// Bounding set, user, then the other capability sets, as the kernel requires.
pub(crate) fn finalize_identity(process: &Process) -> Result<()> {
    if let Some(caps) = process.capabilities() {
        capabilities::apply_bounding(caps)?;
    }
    user::apply(process.user())?;
    if let Some(caps) = process.capabilities() {
        capabilities::apply_process_sets(caps)?;
    }
    Ok(())
}

pub(crate) fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(RuntimeError::sys(
            "set no_new_privs",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// Fds 3..3+n go to the container; every other fd we inherited is closed on exec.
pub(crate) fn pass_fds(n: u32) -> Result<()> {
    for fd in 3..3 + n as RawFd {
        // SAFETY: F_GETFD/F_SETFD on an fd number; a closed fd just fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
        }
    }
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on fds.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 + n,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        return Err(RuntimeError::sys("close_range", nix::errno::Errno::last()));
    }
    Ok(())
}

pub(crate) fn exec(prepared: &PreparedExec) -> Result<Never> {
    let err = nix::unistd::execve(&prepared.path, &prepared.args, &prepared.env)
        .err()
        .unwrap_or(nix::errno::Errno::EINVAL);
    Err(RuntimeError::sys(format!("exec {:?}", prepared.path), err))
}

fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe a live byte slice.
    let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if r != 0 {
        return Err(RuntimeError::sys(
            format!("set domainname {name:?}"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

fn write_sysctl(key: &str, value: &str) -> Result<()> {
    if key.contains("..") || key.contains('/') && key.contains('.') && key.starts_with('/') {
        return Err(RuntimeError::invalid(
            "linux.sysctl",
            format!("bad key {key:?}"),
        ));
    }
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).context(|| format!("sysctl {key}={value}"))
}

/// The OCI state for hooks we run ourselves; `pid` as the runtime sees it.
fn own_state_json(ctx: &InitContext, host_pid: i32, status: &str) -> Vec<u8> {
    let state = serde_json::json!({
        "ociVersion": ctx.spec.version(),
        "id": ctx.id,
        "pid": host_pid,
        "status": status,
        "bundle": ctx.bundle.path,
        "annotations": ctx.spec.annotations(),
    });
    serde_json::to_vec(&state).unwrap_or_default()
}

/// A session keyring of the container's own, so that keys are not shared with the
/// host's session (as runc does). Kernels without keyrings just say no: not fatal.
fn join_session_keyring(id: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let Ok(name) = CString::new(format!("_ses.{id}")) else {
        return;
    };
    // SAFETY: keyctl JOIN_SESSION_KEYRING reads a NUL-terminated name that outlives the call.
    unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
}

/// Make `fds` our stdin, stdout and stderr. They are first moved above 2 so that
/// one of them being 0, 1 or 2 already cannot be clobbered by another's dup2.
pub(crate) fn install_stdio(fds: [i32; 3]) -> Result<()> {
    let mut high = [0; 3];
    for (i, fd) in fds.iter().enumerate() {
        // SAFETY: F_DUPFD_CLOEXEC on an fd number; failure is reported.
        let dup = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            return Err(RuntimeError::sys(
                format!("duplicate stdio fd {fd}"),
                nix::errno::Errno::last(),
            ));
        }
        high[i] = dup;
    }
    for (target, fd) in high.iter().enumerate() {
        // SAFETY: dup2 onto 0-2, which are ours to replace; then close the copy.
        unsafe {
            if libc::dup2(*fd, target as i32) < 0 {
                return Err(RuntimeError::sys("dup2 stdio", nix::errno::Errno::last()));
            }
            libc::close(*fd);
        }
    }
    Ok(())
}

/// The home directory of `uid` in the container's /etc/passwd, or "/".
fn home_of(uid: u32) -> String {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
        })
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// Rust ignores SIGPIPE in its programs, and ignored signals survive exec: give the
/// container's process the default disposition, as any other runtime does.
pub(crate) fn reset_signal_dispositions() {
    // SAFETY: setting SIGPIPE to SIG_DFL installs no handler; always sound.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}
