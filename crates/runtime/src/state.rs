//! Container state on disk: `<root>/<id>/state.json`, written atomically, plus the
//! exec fifo that holds a created container until `start`.
//!
//! The status is never stored: it is derived each time from the init process (alive,
//! and the same process as recorded, by its start time), the fifo and the freezer.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, RuntimeError};

/// Default state root, as runc's is `/run/runc`.
pub const DEFAULT_ROOT: &str = "/run/berth-runtime";
pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What we remember about a container between runtime invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    /// Host PID of the container's init process (0 before it exists).
    pub pid: i32,
    /// Start time of the init process in clock ticks since boot (field 22 of
    /// /proc/PID/stat), so that a recycled PID is not taken for the container.
    pub init_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time, UTC.
    pub created: String,
    pub owner: String,
    /// Absolute cgroup path, as resolved at create time.
    pub cgroup_path: String,
    pub systemd_cgroup: bool,
    /// The exec fifo's fd number in the init (it closes on exec): `start` watches
    /// /proc/PID/fd/N to know the user's program is running.
    #[serde(default)]
    pub exec_fifo_fd: i32,
    /// The container's spec, as loaded at create time (updated by `update`).
    pub config: Spec,
}

/// The state JSON that `state` prints and hooks receive, as the OCI spec defines it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub owner: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<&'a std::collections::HashMap<String, String>>,
}

impl ContainerState {
    pub fn oci_state(&self, status: Status) -> OciState<'_> {
        OciState {
            oci_version: self.config.version(),
            id: &self.id,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: &self.owner,
            annotations: self.config.annotations().as_ref(),
        }
    }

    /// The container's status, read from the kernel.
    pub fn status(&self, dir: &Path) -> Status {
        if self.pid <= 0 || !process_is(self.pid, self.init_start_time) {
            return Status::Stopped;
        }
        if dir.join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if let Ok(cg) = crate::cgroups::manager(&self.cgroup_path) {
            if cg.is_frozen().unwrap_or(false) {
                return Status::Paused;
            }
        }
        Status::Running
    }
}

/// Is `pid` alive (not a zombie) and the same process that started at `start_time`?
pub fn process_is(pid: i32, start_time: u64) -> bool {
    match proc_stat(pid) {
        Some((state, start)) => state != 'Z' && state != 'X' && start == start_time,
        None => false,
    }
}

/// State letter and start time of a process from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state); start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Container ids are used as directory names: allow what runc allows.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(RuntimeError::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id == "." || id == ".." {
        return bad("it is a path component");
    }
    if id.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return bad("only letters, digits, '_', '+', '-' and '.' are allowed");
    }
    Ok(())
}

/// The directory holding a container's state.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf> {
    validate_id(id)?;
    Ok(root.join(id))
}

/// Load a container's state; `ContainerNotFound` when there is none.
pub fn load(root: &Path, id: &str) -> Result<(PathBuf, ContainerState)> {
    let dir = container_dir(root, id)?;
    let path = dir.join(STATE_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RuntimeError::ContainerNotFound(id.to_string()))
        }
        Err(e) => return Err(RuntimeError::io(format!("read {}", path.display()), e)),
    };
    let state = serde_json::from_slice(&data)
        .map_err(|e| RuntimeError::Other(format!("corrupt state file {}: {e}", path.display())))?;
    Ok((dir, state))
}

/// Write the state file atomically (temp file, rename).
pub fn save(dir: &Path, state: &ContainerState) -> Result<()> {
    let data =
        serde_json::to_vec(state).map_err(|e| RuntimeError::Other(format!("encode state: {e}")))?;
    write_atomic(&dir.join(STATE_FILE), &data)
}

/// Write `data` to `path` so that readers see the old or the new file, never a part.
///
/// No fsync: the files written here (state, pid and exit files) live under a state root
/// that does not outlive a boot (`/run`), as runc's do. The rename keeps them whole
/// across a crash of any process, which is what they must survive.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        RuntimeError::io(format!("write {}", path.display()), e)
    })
}

/// All container ids under `root`.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(RuntimeError::io(format!("read {}", root.display()), e)),
    };
    for entry in entries.flatten() {
        if entry.path().join(STATE_FILE).exists() {
            ids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

/// Create the state directory; fails with `ContainerExists` if it is there already,
/// which makes two concurrent creates of one id race safely.
pub fn create_dir(root: &Path, id: &str) -> Result<PathBuf> {
    let dir = container_dir(root, id)?;
    fs::create_dir_all(root).context(|| format!("create state root {}", root.display()))?;
    match fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(RuntimeError::ContainerExists(id.to_string()))
        }
        Err(e) => Err(RuntimeError::io(format!("create {}", dir.display()), e)),
    }
}

/// Current time as RFC 3339 with nanoseconds, UTC (what runc prints in `created`).
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

pub fn format_rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_rfc3339(1_700_000_000, 5),
            "2023-11-14T22:13:20.000000005Z"
        );
        assert_eq!(
            format_rfc3339(951_782_400, 0),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn own_stat() {
        let pid = std::process::id() as i32;
        let (state, start) = proc_stat(pid).expect("stat of self");
        assert!(state == 'R' || state == 'S');
        assert!(process_is(pid, start));
        assert!(!process_is(pid, start + 1));
    }
}
