//! Where the hierarchies are, and creating, entering and removing a cgroup in one.
//!
//! The host's layout is read once from `/proc/self/mountinfo` (which hierarchies are
//! mounted where) and `/proc/self/cgroup` (the runtime's own cgroup in each, the base
//! of relative paths). Everything here works on plain directories, so the drivers'
//! tests give it a temporary tree.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fs::{self, io_error};
use super::{join_cgroup, CgroupError};

const MOUNTINFO: &str = "/proc/self/mountinfo";
const OWN_CGROUP: &str = "/proc/self/cgroup";

/// One mounted v1 hierarchy: its controllers (co-mounted ones together, named
/// hierarchies as `name=…`), where it is mounted, and which cgroup the mount shows
/// at its top (not `/` inside a cgroup namespace or a bind mount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    pub root: String,
}

impl V1Mount {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The cgroup layout of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// Controllers in v1 hierarchies; `unified` is the cgroup2 mount of a hybrid
    /// host (`/sys/fs/cgroup/unified`), which gets the same cgroup, as runc does.
    V1 {
        mounts: Vec<V1Mount>,
        unified: Option<PathBuf>,
        own: OwnCgroups,
    },
    /// Pure cgroup v2.
    V2 {
        mount_point: PathBuf,
        own: OwnCgroups,
    },
}

/// The cgroup of the calling process in each hierarchy, from `/proc/self/cgroup`;
/// the key is a controller name (`cpu`, `name=systemd`), or `""` for cgroup2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnCgroups(pub BTreeMap<String, String>);

impl OwnCgroups {
    pub fn parse(content: &str) -> Self {
        let mut map = BTreeMap::new();
        for line in content.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                map.insert(String::new(), path.to_string());
            } else {
                for c in controllers.split(',') {
                    map.insert(c.to_string(), path.to_string());
                }
            }
        }
        OwnCgroups(map)
    }

    /// Own cgroup in the hierarchy that holds `controllers`; `/` if unknown.
    pub fn of(&self, controllers: &[String]) -> String {
        controllers
            .iter()
            .find_map(|c| self.0.get(c))
            .cloned()
            .unwrap_or_else(|| "/".to_string())
    }

    pub fn unified(&self) -> String {
        self.0.get("").cloned().unwrap_or_else(|| "/".to_string())
    }
}

/// Mount options of a v1 cgroup mount that are not controllers.
fn is_controller_option(option: &str) -> bool {
    if option.starts_with("name=") {
        return true;
    }
    !option.contains('=')
        && !matches!(
            option,
            "rw" | "ro"
                | "xattr"
                | "noprefix"
                | "clone_children"
                | "cpuset_v2_mode"
                | "favordynmods"
                | "nsdelegate"
                | "memory_recursiveprot"
                | "memory_localevents"
                | "memory_hugetlb_accounting"
                | "pids_localevents"
        )
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Hierarchy {
    /// The layout of this host, as the calling process sees it.
    pub fn detect() -> Result<Self, CgroupError> {
        let mountinfo =
            std::fs::read_to_string(MOUNTINFO).map_err(|e| io_error(Path::new(MOUNTINFO), e))?;
        let own =
            std::fs::read_to_string(OWN_CGROUP).map_err(|e| io_error(Path::new(OWN_CGROUP), e))?;
        Self::from_proc(&mountinfo, &own)
            .ok_or_else(|| CgroupError::NotMounted(PathBuf::from(MOUNTINFO)))
    }

    /// The layout described by a mountinfo text and a `/proc/<pid>/cgroup` text;
    /// `None` when no cgroup hierarchy is mounted.
    pub fn from_proc(mountinfo: &str, own_cgroup: &str) -> Option<Self> {
        let mut mounts: Vec<V1Mount> = Vec::new();
        let mut unified: Option<PathBuf> = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 5 || right.len() < 3 {
                continue;
            }
            let root = unescape(left[3]);
            let mount_point = PathBuf::from(unescape(left[4]));
            match right[0] {
                // The first mount of cgroup2 wins; later ones are bind mounts.
                "cgroup2" if unified.is_none() => unified = Some(mount_point),
                "cgroup" => {
                    let controllers: Vec<String> = right[2]
                        .split(',')
                        .filter(|o| is_controller_option(o))
                        .map(str::to_string)
                        .collect();
                    if controllers.is_empty() || mounts.iter().any(|m| m.controllers == controllers)
                    {
                        continue;
                    }
                    mounts.push(V1Mount {
                        controllers,
                        mount_point,
                        root,
                    });
                }
                _ => {}
            }
        }
        let own = OwnCgroups::parse(own_cgroup);
        if !mounts.is_empty() {
            Some(Hierarchy::V1 {
                mounts,
                unified,
                own,
            })
        } else {
            unified.map(|mount_point| Hierarchy::V2 { mount_point, own })
        }
    }

    /// The runtime's own cgroup when it is the same in every hierarchy used; a
    /// relative path is then stored resolved.
    pub fn common_own_cgroup(&self) -> Option<String> {
        match self {
            Hierarchy::V2 { own, .. } => Some(own.unified()),
            Hierarchy::V1 {
                mounts,
                unified,
                own,
            } => {
                let mut paths = mounts.iter().map(|m| own.of(&m.controllers));
                let first = paths.next()?;
                let same =
                    paths.all(|p| p == first) && (unified.is_none() || own.unified() == first);
                same.then_some(first)
            }
        }
    }
}

/// The directory of stored cgroup path `path` in a hierarchy mounted at
/// `mount_point` whose top is cgroup `mount_root`, for a caller in cgroup `own`.
pub(crate) fn cgroup_dir(mount_point: &Path, mount_root: &str, own: &str, path: &str) -> PathBuf {
    let absolute = if path.starts_with('/') {
        path.to_string()
    } else {
        join_cgroup(own, path)
    };
    let inside = match absolute.strip_prefix(mount_root.trim_end_matches('/')) {
        Some(rest) if mount_root != "/" && (rest.is_empty() || rest.starts_with('/')) => {
            rest.to_string()
        }
        _ => absolute,
    };
    mount_point.join(inside.trim_start_matches('/'))
}

/// Create `dir` and any missing parent; returns the directories created, top first.
pub(crate) fn create_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    missing.reverse();
    for d in &missing {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(d, e)),
        }
    }
    Ok(missing)
}

/// Move process `pid` (all its threads) into the cgroup at `dir`.
pub(crate) fn enter(dir: &Path, pid: i32) -> Result<(), CgroupError> {
    fs::write(dir, "cgroup.procs", pid.to_string())
}

/// Remove `dir` and every cgroup below it, children first. A cgroup whose last
/// task has just exited can stay busy for a moment, so EBUSY is retried briefly.
pub(crate) fn remove(dir: &Path) -> Result<(), CgroupError> {
    for d in fs::dirs_leaf_first(dir) {
        let mut delay = Duration::from_millis(5);
        let mut attempts = 0;
        loop {
            match std::fs::remove_dir(&d) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempts < 8 => {
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempts += 1;
                }
                Err(e) => return Err(io_error(&d, e)),
            }
        }
    }
    Ok(())
}

/// PIDs in `cgroup.procs` of `dir` and every cgroup below it.
pub(crate) fn procs_recursive(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    for d in fs::dirs_leaf_first(dir) {
        let Some(content) = fs::read_optional(&d, "cgroup.procs")? else {
            continue;
        };
        for line in content.lines().filter(|l| !l.trim().is_empty()) {
            let pid = line
                .trim()
                .parse()
                .map_err(|_| fs::parse_error(&d, "cgroup.procs", &content))?;
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}
