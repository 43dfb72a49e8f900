//! How a container ended: its exit code and time, whether the kernel's OOM killer
//! struck in its cgroup, and the `exit` file that records it for berthd.

use std::path::Path;
use std::time::SystemTime;

use serde_json::json;

use crate::error::ShimError;
use crate::sys::rfc3339_nano;

pub const EXIT_FILE: &str = "exit";

#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// Shell-style: the status, or 128 + the signal that killed the process.
    pub code: i32,
    pub at: SystemTime,
}

/// Did the OOM killer kill anything in the container's memory cgroup? The
/// `oom_kill` counter is in memory.oom_control on v1 and memory.events on v2.
pub fn oom_killed(cgroup_path: &str) -> bool {
    let rel = cgroup_path.trim_start_matches('/');
    if rel.is_empty() {
        return false;
    }
    let candidates = [
        format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
        format!("/sys/fs/cgroup/{rel}/memory.events"),
    ];
    candidates.iter().any(|path| {
        std::fs::read_to_string(path)
            .map(|text| oom_kill_count(&text) > 0)
            .unwrap_or(false)
    })
}

fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|n| n.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// `{"exit_code":N,"exited_at":"…","oom_killed":bool}`, written atomically (temp
/// file, rename) into `dir`, under the exec-root: it must outlive berthd and the shim,
/// not the boot (see [`berth_runtime::state::write_atomic`]).
pub fn write_exit_file(dir: &Path, exit: Exit, oom_killed: bool) -> Result<(), ShimError> {
    let mut data = json!({
        "exit_code": exit.code,
        "exited_at": rfc3339_nano(exit.at),
        "oom_killed": oom_killed,
    })
    .to_string();
    data.push('\n');
    berth_runtime::state::write_atomic(&dir.join(EXIT_FILE), data.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counters() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 0\noom 1\noom_kill 0\n"),
            0
        );
        assert_eq!(oom_kill_count(""), 0);
        assert!(!oom_killed("/berth-test-no-such-cgroup"));
    }

    #[test]
    fn exit_file() {
        let dir = tempfile::tempdir().unwrap();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        write_exit_file(dir.path(), Exit { code: 137, at }, true).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(EXIT_FILE)).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"exit_code": 137, "exited_at": "2023-11-14T22:13:20Z", "oom_killed": true})
        );
    }
}
