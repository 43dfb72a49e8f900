//! `create` (and the first half of `run`): set up the container's namespaces,
//! cgroup and root filesystem, and leave its init process waiting for `start`.
//!
//! Process structure. The runtime clones the container's init directly with every
//! namespace it must create (one clone, no re-exec of ourselves: that is most of
//! our start-up advantage over runc). Only when the spec asks to join namespaces by
//! path do we need an intermediate process: it joins, unshares what is new, and forks
//! the init so that the init lands in the new PID namespace.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode as FileMode;
use nix::sys::wait::waitpid;
use nix::unistd::{mkfifo, Pid};
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType, Spec};

use super::init::{self, InitContext, WaitForStart};
use super::{clone_process, exit_child, Global};
use crate::bundle::{self, Bundle};
use crate::cgroups::{self, CgroupManager};
use crate::error::{Context, Result, RuntimeError};
use crate::namespaces::{self, NamespacePlan};
use crate::state::{self, ContainerState, Status};
use crate::sync::{self, Channel, Message};
use crate::{console, hooks};

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// The container's stdin, stdout and stderr, when not ours (a shim's pipes).
    pub stdio: Option<[i32; 3]>,
}

/// How the init waits once it is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `create`: wait on the exec fifo until `start`.
    Create,
    /// `run`: the runtime stays and releases the init itself.
    Run,
}

/// A container whose init is set up and waiting.
pub struct Created {
    pub dir: PathBuf,
    pub state: ContainerState,
    /// In `Mode::Run`, the channel on which to release the init.
    pub channel: Channel,
}

/// Undo a half-made container if creation fails at any point.
struct Undo<'a> {
    dir: &'a Path,
    cgroup: Option<&'a dyn CgroupManager>,
    pid: Option<i32>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = self.cgroup {
            // The killed init may take a moment to leave the cgroup.
            for _ in 0..100 {
                if cg.destroy().is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        let _ = fs::remove_dir_all(self.dir);
    }
}

pub fn create(global: &Global, opts: &CreateOptions, mode: Mode) -> Result<Created> {
    state::validate_id(&opts.id)?;
    let bundle = bundle::load(&opts.bundle)?;
    let spec = &bundle.spec;
    let default_linux = Linux::default();
    let linux = spec.linux().as_ref().unwrap_or(&default_linux);
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::invalid("process", "is required"))?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() {
        return Err(RuntimeError::invalid(
            "process.terminal",
            "a terminal needs --console-socket to hand the pty to",
        ));
    }
    let plan = NamespacePlan::from_spec(linux.namespaces().as_deref().unwrap_or(&[]))?;
    let cgroup_path = cgroups::resolve_path(
        linux.cgroups_path().as_ref().and_then(|p| p.to_str()),
        &opts.id,
        global.systemd_cgroup,
    )?;
    // Compiling a large profile costs milliseconds; the state root caches it by content.
    let seccomp_cache = global.root.join(".seccomp");
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(|s| crate::process::seccomp_cache::compile_cached(s, &seccomp_cache))
        .transpose()?;

    let cgroup = cgroups::manager(&cgroup_path)?;
    let dir = state::create_dir(&global.root, &opts.id)?;
    let mut undo = Undo {
        dir: &dir,
        cgroup: None,
        pid: None,
        armed: true,
    };
    undo.cgroup = Some(cgroup.as_ref());

    let fifo = match mode {
        Mode::Create => Some(open_exec_fifo(&dir)?),
        Mode::Run => None,
    };
    let exec_fifo_fd = fifo.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
    let console = opts
        .console_socket
        .as_deref()
        .filter(|_| terminal)
        .map(console::connect)
        .transpose()?;
    let (parent, child) = sync::pair()?;

    // The init joins its cgroup by itself (fast; see cgroups::SelfJoin) unless it is
    // born in a new user namespace (no right to the host's cgroup files then) or
    // through a stage process.
    // Network, IPC and UTS namespaces to join (a bridge network's pinned netns,
    // `--network`/`--ipc container:`) the init joins itself after its clone, which
    // keeps the cgroup self-join. A stage process joins the others (user, mount,
    // cgroup: the order matters there), and any namespace when a user namespace is
    // made (a process in it has no right to join the host's).
    let joined: Vec<LinuxNamespaceType> = plan.joins_after_fork().map(|j| j.typ).collect();
    let init_can_join = joined.iter().all(|t| {
        matches!(
            t,
            LinuxNamespaceType::Network | LinuxNamespaceType::Ipc | LinuxNamespaceType::Uts
        )
    });
    let needs_stage =
        !joined.is_empty() && (!init_can_join || plan.creates(CloneFlags::CLONE_NEWUSER));
    let self_join = if needs_stage || plan.creates(CloneFlags::CLONE_NEWUSER) {
        None
    } else {
        cgroup.prepare_self_join()?
    };
    let ctx = InitContext {
        id: &opts.id,
        spec,
        bundle: &bundle,
        plan: &plan,
        channel: &child,
        seccomp: seccomp.as_ref(),
        console: console.as_ref().map(|c| c.as_raw_fd()),
        wait: match &fifo {
            Some(f) => WaitForStart::Fifo(f.as_raw_fd()),
            None => WaitForStart::Channel,
        },
        no_pivot: opts.no_pivot,
        no_new_keyring: opts.no_new_keyring,
        preserve_fds: opts.preserve_fds + listen_fds(),
        stdio: opts.stdio,
        listen_fds: listen_fds(),
        cgroup_tasks: self_join
            .as_ref()
            .map(|j| j.tasks.as_slice())
            .unwrap_or(&[]),
        join_in_init: !needs_stage,
    };

    // Joining a PID namespace affects our future children only, so the runtime does
    // it itself before forking: the init is then born inside it.
    if let Some(pid_ns) = plan.join.iter().find(|j| j.typ == LinuxNamespaceType::Pid) {
        namespaces::join(pid_ns)?;
    }
    let parent_applies = self_join.is_none();
    let init_pid = if needs_stage {
        spawn_staged(&ctx, &parent, linux)?
    } else {
        let flags = plan.create - CloneFlags::CLONE_NEWCGROUP;
        let pid = super::clone_joining(flags, self_join.as_ref())?;
        if pid == 0 {
            drop(parent);
            init::run(&ctx, true);
        }
        if plan.creates(CloneFlags::CLONE_NEWUSER) {
            write_id_maps(pid, linux)?;
        }
        pid
    };
    undo.pid = Some(init_pid);
    drop(child);
    drop(console);
    drop(fifo);

    if parent_applies {
        cgroup.apply(init_pid)?;
    }
    cgroup.set(&with_default_devices(
        linux.resources().clone().unwrap_or_default(),
    ))?;

    let mut container = ContainerState {
        id: opts.id.clone(),
        pid: init_pid,
        init_start_time: state::proc_stat(init_pid).map(|s| s.1).unwrap_or(0),
        bundle: bundle.path.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::now_rfc3339(),
        owner: String::new(),
        cgroup_path: cgroup.path().to_string(),
        systemd_cgroup: global.systemd_cgroup,
        exec_fifo_fd,
        config: spec.clone(),
    };
    parent.send(&Message::InitPid(init_pid))?;
    parent.send(&Message::Proceed)?;
    loop {
        match parent.recv()? {
            Some(Message::RunCreateRuntimeHooks) => {
                run_create_runtime_hooks(spec, &container)?;
                parent.send(&Message::Proceed)?;
            }
            Some(Message::Created) => break,
            Some(Message::Error(text)) => return Err(RuntimeError::Init(text)),
            Some(other) => return Err(RuntimeError::Init(format!("unexpected message {other:?}"))),
            None => {
                return Err(RuntimeError::Init(
                    "container init exited during setup".into(),
                ))
            }
        }
    }
    // Re-read in case the first read raced the exec of a staged init.
    if let Some((_, start)) = state::proc_stat(init_pid) {
        container.init_start_time = start;
    }
    state::save(&dir, &container)?;
    if let Some(pid_file) = &opts.pid_file {
        write_pid_file(pid_file, init_pid)?;
    }
    undo.armed = false;
    drop(undo);
    Ok(Created {
        dir,
        state: container,
        channel: parent,
    })
}

/// `create` verb: set up and leave the init waiting.
pub fn run_create(global: &Global, opts: &CreateOptions) -> Result<()> {
    create(global, opts, Mode::Create).map(|_| ())
}

fn run_create_runtime_hooks(spec: &Spec, container: &ContainerState) -> Result<()> {
    let Some(h) = spec.hooks() else {
        return Ok(());
    };
    let json = serde_json::to_vec(&container.oci_state(Status::Creating))
        .map_err(|e| RuntimeError::Other(e.to_string()))?;
    #[allow(deprecated)]
    hooks::run("prestart", h.prestart().as_deref().unwrap_or(&[]), &json)?;
    hooks::run(
        "createRuntime",
        h.create_runtime().as_deref().unwrap_or(&[]),
        &json,
    )
}

/// The fifo that holds a created container until `start`. The init keeps it open
/// read-write (so opening never blocks) and blocks reading it; `start` opens it
/// write-only without blocking — which fails if no init is there — and writes a byte.
fn open_exec_fifo(dir: &Path) -> Result<OwnedFd> {
    let path = dir.join(state::EXEC_FIFO);
    mkfifo(&path, FileMode::from_bits_truncate(0o600))
        .context(|| format!("mkfifo {}", path.display()))?;
    nix::fcntl::open(
        &path,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        FileMode::empty(),
    )
    .context(|| format!("open {}", path.display()))
}

/// The spec asks to join namespaces by path: fork a stage that joins them, creates
/// the new ones, and forks the init into the new PID namespace if there is one.
fn spawn_staged(ctx: &InitContext, parent: &Channel, linux: &Linux) -> Result<i32> {
    let stage = clone_process(CloneFlags::empty())?;
    if stage == 0 {
        let result = (|| -> Result<()> {
            // Join first (user namespace first, mount last: the plan's order), then
            // create: a namespace we create must not stand between us and one we join.
            ctx.plan.join_after_fork()?;
            if ctx.plan.creates(CloneFlags::CLONE_NEWUSER) {
                unshare(CloneFlags::CLONE_NEWUSER).context(|| "unshare user namespace".into())?;
                ctx.channel.send(&Message::NeedMaps)?;
                ctx.channel.expect(&Message::Proceed)?;
            }
            let rest = ctx.plan.create
                - CloneFlags::CLONE_NEWUSER
                - CloneFlags::CLONE_NEWPID
                - CloneFlags::CLONE_NEWCGROUP;
            if !rest.is_empty() {
                unshare(rest).context(|| format!("unshare {rest:?}"))?;
            }
            if ctx.plan.creates(CloneFlags::CLONE_NEWPID) {
                unshare(CloneFlags::CLONE_NEWPID).context(|| "unshare pid namespace".into())?;
                let init = clone_process(CloneFlags::empty())?;
                if init == 0 {
                    init::run(ctx, false);
                }
                ctx.channel.send(&Message::InitPid(init))?;
                exit_child(0);
            }
            // "The init is me": our own PID as we see it may be in a joined PID
            // namespace, while the runtime knows our host PID already.
            ctx.channel.send(&Message::InitPid(0))?;
            Ok(())
        })();
        match result {
            Ok(()) => init::run(ctx, true),
            Err(e) => {
                let _ = ctx.channel.send(&Message::Error(e.to_string()));
                exit_child(1);
            }
        }
    }
    let reap_stage = |stage: i32| {
        let _ = waitpid(Pid::from_raw(stage), None);
    };
    loop {
        match parent.recv()? {
            Some(Message::NeedMaps) => {
                write_id_maps(stage, linux)?;
                parent.send(&Message::Proceed)?;
            }
            Some(Message::InitPid(0)) => return Ok(stage),
            Some(Message::InitPid(pid)) => {
                reap_stage(stage);
                return Ok(pid);
            }
            Some(Message::Error(text)) => {
                reap_stage(stage);
                return Err(RuntimeError::Init(text));
            }
            Some(other) => {
                let _ = kill(Pid::from_raw(stage), Signal::SIGKILL);
                reap_stage(stage);
                return Err(RuntimeError::Init(format!("unexpected message {other:?}")));
            }
            None => {
                reap_stage(stage);
                return Err(RuntimeError::Init("namespace setup process exited".into()));
            }
        }
    }
}

fn write_id_maps(pid: i32, linux: &Linux) -> Result<()> {
    let render = |maps: &Option<Vec<LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let uid = render(linux.uid_mappings());
    let gid = render(linux.gid_mappings());
    if !uid.is_empty() {
        fs::write(format!("/proc/{pid}/uid_map"), uid)
            .context(|| format!("write uid_map of {pid}"))?;
    }
    if !gid.is_empty() {
        fs::write(format!("/proc/{pid}/gid_map"), gid)
            .context(|| format!("write gid_map of {pid}"))?;
    }
    Ok(())
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    state::write_atomic(path, pid.to_string().as_bytes())
}

/// Socket-activation fds handed to us by our caller (LISTEN_FDS, for our PID or any).
fn listen_fds() -> u32 {
    let Some(n) = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return 0;
    };
    match std::env::var("LISTEN_PID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(pid) if pid != std::process::id() => 0,
        _ => n,
    }
}

impl Bundle {
    /// For tests and callers that already hold a spec.
    pub fn rootfs_path(&self) -> &Path {
        &self.rootfs
    }
}

/// The devices every container may use whatever its spec's device rules say (the
/// ones the runtime creates in /dev, and creating nodes), appended after the spec's
/// rules as runc does, so that a leading "deny all" does not lock out /dev/null.
pub(crate) fn with_default_devices(
    mut resources: oci_spec::runtime::LinuxResources,
) -> oci_spec::runtime::LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    let mut devices = resources.devices().clone().unwrap_or_default();
    if devices.is_empty() {
        return resources;
    }
    devices.extend([
        rule(LinuxDeviceType::C, None, None, "m"),
        rule(LinuxDeviceType::B, None, None, "m"),
        rule(LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(8), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(7), "rwm"),
        rule(LinuxDeviceType::C, Some(5), Some(0), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(5), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(9), "rwm"),
        rule(LinuxDeviceType::C, Some(136), None, "rwm"),
        rule(LinuxDeviceType::C, Some(5), Some(2), "rwm"),
    ]);
    resources.set_devices(Some(devices));
    resources
}
