//! Cgroups: create and enter a cgroup, write resource limits, read stats, freeze.
//!
//! v1 and v2 are two drivers behind [`CgroupManager`], split as crun splits them:
//! [`setup`] finds the hierarchies and creates, enters and removes directories,
//! [`v1`] and [`v2`] write limits and read stats, [`devices`] renders v1 device
//! rules and [`ebpf`] compiles them into a v2 device program. The hierarchy roots
//! come from a [`Hierarchy`] value (normally read from `/proc/self/mountinfo`), so
//! both drivers are unit-tested against a fake tree in a temporary directory.
//!
//! # The stored path
//!
//! [`resolve_path`] turns the spec's `cgroupsPath` into the string kept in the
//! state file and handed back to [`manager`]:
//! - `/a/b` (leading slash): the same absolute path in every hierarchy.
//! - `a/b` (no leading slash): only when the spec's path was relative and the
//!   runtime's own cgroup differs between v1 hierarchies; each hierarchy resolves it
//!   against the *calling* process's own cgroup in that hierarchy (runc's rule).
//!   Whenever the runtime's own cgroup is the same everywhere (always on v2),
//!   the relative path is resolved once, at create, into the absolute form.

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

pub mod devices;
pub mod ebpf;
mod fs;
pub mod resources;
pub mod setup;
pub mod stats;
pub mod v1;
pub mod v2;

pub use setup::{Hierarchy, V1Mount};
pub use stats::Stats;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid cgroups path {0:?}")]
    InvalidPath(String),
    #[error("cgroup controller {controller} is not available, but the spec sets {what}")]
    ControllerMissing {
        controller: &'static str,
        what: &'static str,
    },
    #[error("invalid value for {what}: {reason}")]
    InvalidValue { what: &'static str, reason: String },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("no cgroup hierarchy is mounted (read {0})")]
    NotMounted(PathBuf),
    #[error("{path}: timed out waiting for {what}")]
    Timeout { path: PathBuf, what: &'static str },
    #[error("bpf {op}: {source}{log}")]
    Bpf {
        op: &'static str,
        source: std::io::Error,
        log: String,
    },
    #[error("{0}")]
    Other(String),
}

/// One container's cgroup, whatever the host's cgroup version.
pub trait CgroupManager {
    /// Create the cgroup (in every hierarchy the driver uses) if missing and move
    /// `pid` into it. Idempotent: `exec` calls it again for each new process.
    fn apply(&self, pid: i32) -> Result<(), CgroupError>;
    /// Write the resource limits.
    fn set(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Freeze (`true`) or thaw (`false`) every process in the cgroup; returns once done.
    fn freeze(&self, frozen: bool) -> Result<(), CgroupError>;
    fn is_frozen(&self) -> Result<bool, CgroupError>;
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// PIDs of every process in the cgroup (recursively).
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Remove the cgroup directories (processes must be gone). No error if gone.
    fn destroy(&self) -> Result<(), CgroupError>;
    /// The stored cgroup path (see the module docs for its two forms).
    fn path(&self) -> &str;
    /// Creates the cgroup for an init that will join it by itself (see [`SelfJoin`]),
    /// or None when this manager needs [`CgroupManager::apply`] from the parent.
    fn prepare_self_join(&self) -> Result<Option<SelfJoin>, CgroupError> {
        Ok(None)
    }
}

/// How a new init enters its cgroup without the kernel's global threadgroup lock.
///
/// Moving another process (writing its PID to `cgroup.procs`) takes the kernel's
/// `cgroup_threadgroup_rwsem` for writing, and the first such write after a quiet
/// spell waits for an RCU grace period: 10–15 ms per hierarchy set, measured here,
/// the largest single cost of a container start. A single-threaded task that moves
/// *itself* (`0` into a v1 `tasks` file) skips that lock, and a child born into a v2
/// cgroup (`clone3` with `CLONE_INTO_CGROUP`) takes it only for reading.
pub struct SelfJoin {
    /// v1 `tasks` files the init writes `0` into, first thing after it is born.
    pub tasks: Vec<PathBuf>,
    /// The v2 (unified) directory, opened, for `CLONE_INTO_CGROUP`.
    pub clone_into: Option<std::fs::File>,
    /// The same directory, for the parent to fall back on when `clone3` cannot.
    pub unified_dir: Option<PathBuf>,
}

/// Resolve the spec's `cgroupsPath` (absolute, relative to the runtime's own cgroup,
/// empty, or `slice:prefix:name` with `--systemd-cgroup`) into the stored form
/// described in the module docs.
pub fn resolve_path(
    cgroups_path: Option<&str>,
    container_id: &str,
    systemd: bool,
) -> Result<String, CgroupError> {
    let hierarchy = Hierarchy::detect()?;
    resolve_path_in(cgroups_path, container_id, systemd, &hierarchy)
}

/// [`resolve_path`] against a given hierarchy (its own-cgroup table decides how a
/// relative path is stored).
pub fn resolve_path_in(
    cgroups_path: Option<&str>,
    container_id: &str,
    systemd: bool,
    hierarchy: &Hierarchy,
) -> Result<String, CgroupError> {
    let raw = cgroups_path.unwrap_or("");
    let path = if systemd {
        systemd_path(raw, container_id)?
    } else if raw.is_empty() {
        container_id.to_string()
    } else {
        raw.to_string()
    };
    let clean = clean_path(&path)?;
    if clean.starts_with('/') {
        return Ok(clean);
    }
    Ok(match hierarchy.common_own_cgroup() {
        Some(own) => join_cgroup(&own, &clean),
        None => clean,
    })
}

/// Join a relative cgroup path onto an absolute one.
pub(crate) fn join_cgroup(base: &str, relative: &str) -> String {
    let base = base.trim_end_matches('/');
    if relative.is_empty() {
        return if base.is_empty() {
            "/".into()
        } else {
            base.into()
        };
    }
    format!("{base}/{relative}")
}

/// Collapse repeated and trailing slashes and `.`; refuse `..` so a spec cannot
/// climb out of the hierarchy or out of the runtime's own cgroup.
fn clean_path(path: &str) -> Result<String, CgroupError> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(CgroupError::InvalidPath(path.to_string())),
            p => parts.push(p),
        }
    }
    if path.starts_with('/') {
        Ok(format!("/{}", parts.join("/")))
    } else if parts.is_empty() {
        Err(CgroupError::InvalidPath(path.to_string()))
    } else {
        Ok(parts.join("/"))
    }
}

/// `slice:prefix:name` as systemd lays it out in the hierarchy: the slice expands
/// into its ancestors (`a-b.slice` lives in `a.slice/a-b.slice`), the unit is a
/// scope `prefix-name.scope` unless `name` is itself a slice.
fn systemd_path(raw: &str, container_id: &str) -> Result<String, CgroupError> {
    let (slice, prefix, name) = if raw.is_empty() {
        ("system.slice", "berth", container_id)
    } else {
        let parts: Vec<&str> = raw.split(':').collect();
        match parts.as_slice() {
            [slice, prefix, name] => (*slice, *prefix, *name),
            _ => return Err(CgroupError::InvalidPath(raw.to_string())),
        }
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let name = if name.is_empty() { container_id } else { name };
    if name.contains('/') || prefix.contains('/') {
        return Err(CgroupError::InvalidPath(raw.to_string()));
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Ok(format!("{}/{unit}", expand_slice(slice, raw)?))
}

fn expand_slice(slice: &str, raw: &str) -> Result<String, CgroupError> {
    let invalid = || CgroupError::InvalidPath(raw.to_string());
    let stem = slice.strip_suffix(".slice").ok_or_else(invalid)?;
    if stem == "-" {
        return Ok(String::new());
    }
    if stem.is_empty()
        || stem.contains('/')
        || stem.starts_with('-')
        || stem.ends_with('-')
        || stem.contains("--")
    {
        return Err(invalid());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Ok(path)
}

/// The manager for a stored cgroup path on this host.
pub fn manager(path: &str) -> Result<Box<dyn CgroupManager>, CgroupError> {
    manager_in(path, Hierarchy::detect()?)
}

/// The manager for a stored cgroup path in a given hierarchy (tests pass a fake one).
pub fn manager_in(path: &str, hierarchy: Hierarchy) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let clean = clean_path(path)?;
    Ok(match hierarchy {
        Hierarchy::V1 { .. } => Box::new(v1::V1Manager::new(&clean, &hierarchy)?),
        Hierarchy::V2 { .. } => Box::new(v2::V2Manager::new(&clean, &hierarchy)?),
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_root;
