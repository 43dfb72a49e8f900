//! Cgroups: create and enter a cgroup, write resource limits, read stats, freeze.
//!
//! v1 and v2 are two drivers behind [`CgroupManager`]. The hierarchy root is a
//! parameter (normally `/sys/fs/cgroup`) so that both drivers are unit-tested
//! against a fake tree in a temporary directory.
//!
//! STUB: the full implementation is being written; this file fixes the interface.

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid cgroups path {0:?}")]
    InvalidPath(String),
    #[error("{0}")]
    Other(String),
}

/// Resource usage of a container, shaped as runc's `events --stats` data.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Stats {
    #[serde(default)]
    pub cpu: serde_json::Value,
    #[serde(default)]
    pub memory: serde_json::Value,
    #[serde(default)]
    pub pids: serde_json::Value,
    #[serde(default)]
    pub blkio: serde_json::Value,
    #[serde(default)]
    pub hugetlb: serde_json::Value,
}

/// One container's cgroup, whatever the host's cgroup version.
pub trait CgroupManager {
    /// Create the cgroup (in every hierarchy the driver uses) and move `pid` into it.
    fn apply(&self, pid: i32) -> Result<(), CgroupError>;
    /// Write the resource limits.
    fn set(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Freeze (`true`) or thaw (`false`) every process in the cgroup; returns once done.
    fn freeze(&self, frozen: bool) -> Result<(), CgroupError>;
    fn is_frozen(&self) -> Result<bool, CgroupError>;
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// PIDs of every process in the cgroup (recursively).
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Remove the cgroup directories (processes must be gone).
    fn destroy(&self) -> Result<(), CgroupError>;
    /// The cgroup path inside the hierarchy, absolute (as stored in the state file).
    fn path(&self) -> &str;
}

/// Resolve the spec's `cgroupsPath` (absolute, relative to the runtime's own cgroup,
/// empty, or `slice:prefix:name` with `--systemd-cgroup`) to an absolute path.
pub fn resolve_path(
    cgroups_path: Option<&str>,
    container_id: &str,
    systemd: bool,
) -> Result<String, CgroupError> {
    let _ = systemd;
    Ok(match cgroups_path {
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) if !p.is_empty() => format!("/{p}"),
        _ => format!("/{container_id}"),
    })
}

/// The manager for an absolute cgroup path on this host.
pub fn manager(path: &str) -> Result<Box<dyn CgroupManager>, CgroupError> {
    Ok(Box::new(Noop(path.to_string())))
}

struct Noop(String);

impl CgroupManager for Noop {
    fn apply(&self, _pid: i32) -> Result<(), CgroupError> {
        Ok(())
    }
    fn set(&self, _resources: &LinuxResources) -> Result<(), CgroupError> {
        Ok(())
    }
    fn freeze(&self, _frozen: bool) -> Result<(), CgroupError> {
        Ok(())
    }
    fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(false)
    }
    fn stats(&self) -> Result<Stats, CgroupError> {
        Ok(Stats::default())
    }
    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        Ok(vec![])
    }
    fn destroy(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    fn path(&self) -> &str {
        &self.0
    }
}
