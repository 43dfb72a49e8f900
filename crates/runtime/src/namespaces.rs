//! Namespaces: which to create, which to join by path, and joining them.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::{Context, Result};

pub fn clone_flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // Rejected by bundle validation; no flag of its own in nix.
        LinuxNamespaceType::Time => CloneFlags::empty(),
    }
}

/// The name of the namespace under /proc/PID/ns.
pub fn proc_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// A namespace to join, opened before any of them is joined (the paths may stop
/// resolving once we have entered another mount namespace).
pub struct JoinNamespace {
    pub typ: LinuxNamespaceType,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// The spec's namespaces, split into those to create and those to join.
pub struct NamespacePlan {
    pub create: CloneFlags,
    pub join: Vec<JoinNamespace>,
}

impl NamespacePlan {
    pub fn from_spec(namespaces: &[LinuxNamespace]) -> Result<Self> {
        let mut create = CloneFlags::empty();
        let mut join = Vec::new();
        for ns in namespaces {
            match ns.path() {
                Some(path) => join.push(JoinNamespace {
                    typ: ns.typ(),
                    path: path.clone(),
                    fd: open_ns(path)?,
                }),
                None => create |= clone_flag(ns.typ()),
            }
        }
        // Join the user namespace first (it grants the rights for the others) and the
        // mount namespace last (it changes what paths mean).
        join.sort_by_key(|j| match j.typ {
            LinuxNamespaceType::User => 0,
            LinuxNamespaceType::Mount => 2,
            _ => 1,
        });
        Ok(NamespacePlan { create, join })
    }

    pub fn creates(&self, flag: CloneFlags) -> bool {
        self.create.contains(flag)
    }

    pub fn joins(&self, typ: LinuxNamespaceType) -> bool {
        self.join.iter().any(|j| j.typ == typ)
    }

    /// The namespaces to join from the forked process (a PID namespace is joined by
    /// the runtime before it forks), in the plan's order.
    pub fn joins_after_fork(&self) -> impl Iterator<Item = &JoinNamespace> {
        self.join
            .iter()
            .filter(|j| j.typ != LinuxNamespaceType::Pid)
    }

    /// Join [`Self::joins_after_fork`], in order.
    pub fn join_after_fork(&self) -> Result<()> {
        self.joins_after_fork().try_for_each(join)
    }
}

pub fn open_ns(path: &Path) -> Result<OwnedFd> {
    open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .context(|| format!("open namespace {}", path.display()))
}

pub fn join(ns: &JoinNamespace) -> Result<()> {
    setns(ns.fd.as_fd(), clone_flag(ns.typ))
        .context(|| format!("join {} namespace {}", proc_name(ns.typ), ns.path.display()))
}

/// Namespaces of `pid` that differ from our own, to be joined by `exec`.
pub fn of_process(pid: i32) -> Result<Vec<JoinNamespace>> {
    use LinuxNamespaceType::*;
    let mut out = Vec::new();
    for typ in [User, Ipc, Uts, Network, Pid, Cgroup, Mount] {
        let name = proc_name(typ);
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(a), Ok(b)) = (std::fs::read_link(&theirs), std::fs::read_link(&ours)) else {
            continue;
        };
        if a != b {
            let fd = open_ns(&theirs)?;
            out.push(JoinNamespace {
                typ,
                path: theirs,
                fd,
            });
        }
    }
    Ok(out)
}
