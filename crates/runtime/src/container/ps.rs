//! `ps`: the processes of a container, through the host's `ps` or as JSON PIDs.

use std::process::Command;

use super::Global;
use crate::cgroups;
use crate::error::{Result, RuntimeError};
use crate::state;

pub fn ps(global: &Global, id: &str, format: &str, ps_args: &[String]) -> Result<String> {
    let (_dir, container) = state::load(&global.root, id)?;
    let pids = cgroups::manager(&container.cgroup_path)?.pids()?;
    if format == "json" {
        return serde_json::to_string(&pids)
            .map(|s| s + "\n")
            .map_err(|e| RuntimeError::Other(e.to_string()));
    }
    if format != "table" {
        return Err(RuntimeError::Other(format!(
            "invalid format option {format:?}: use table or json"
        )));
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| RuntimeError::io("run ps", e))?;
    if !out.status.success() {
        return Err(RuntimeError::Other(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| RuntimeError::Other("ps output has no PID column".into()))?;
    let mut result = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            result.push_str(line);
            result.push('\n');
        }
    }
    Ok(result)
}
