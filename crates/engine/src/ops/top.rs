//! `docker top`: the host's `ps` with the user's arguments, keeping the rows of the
//! container's processes (those in its cgroup), as dockerd does.

use std::process::Command;

use serde::Serialize;

use crate::engine::{Engine, EngineError, Result};

/// The body of `GET /containers/{id}/top`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// Parses `ps` output: the header gives the titles, the PID column picks the rows
/// whose PID is in `pids`; the last column keeps its spaces (the command line).
pub fn parse_ps(output: &str, pids: &[i32]) -> Result<Top> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();
    let pid_index = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| EngineError::Internal("Couldn't find PID field in ps output".into()))?;
    let mut processes = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let Some(pid) = fields.get(pid_index).and_then(|p| p.parse::<i32>().ok()) else {
            return Err(EngineError::Internal(format!(
                "Unexpected pid '{}': invalid syntax",
                fields.get(pid_index).unwrap_or(&"")
            )));
        };
        if !pids.contains(&pid) {
            continue;
        }
        let last = titles.len().saturating_sub(1);
        let mut row: Vec<String> = fields.iter().take(last).map(|f| f.to_string()).collect();
        if fields.len() > last {
            row.push(fields[last..].join(" "));
        }
        processes.push(row);
    }
    Ok(Top { titles, processes })
}

impl Engine {
    /// `ps_args` as the API gives it (`-ef` when empty), split on spaces as dockerd
    /// splits it.
    pub fn top(&self, key: &str, ps_args: &str) -> Result<Top> {
        let c = self.running(key)?;
        let pids = self.cgroup(&c.id)?.pids().map_err(|e| {
            EngineError::Internal(format!("listing the container's processes: {e}"))
        })?;
        let args: Vec<&str> = if ps_args.trim().is_empty() {
            vec!["-ef"]
        } else {
            ps_args.split(' ').filter(|a| !a.is_empty()).collect()
        };
        let out = Command::new("ps")
            .args(&args)
            .output()
            .map_err(|e| EngineError::Internal(format!("Error running ps: {e}")))?;
        if !out.status.success() {
            return Err(EngineError::Internal(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let top = parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)?;
        self.container_event(&c, "top", &[]);
        Ok(top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_container_rows_and_the_whole_command() {
        let out = "UID PID PPID C STIME TTY TIME CMD\n\
                   root 1 0 0 10:00 ? 00:00:01 /sbin/init\n\
                   root 4242 4200 0 10:01 ? 00:00:00 sleep 1000 --x\n";
        let top = parse_ps(out, &[4242]).expect("parse");
        assert_eq!(top.titles.len(), 8);
        assert_eq!(
            top.processes,
            vec![vec![
                "root",
                "4242",
                "4200",
                "0",
                "10:01",
                "?",
                "00:00:00",
                "sleep 1000 --x"
            ]]
        );
        let e = parse_ps("USER CMD\nroot x\n", &[1]).unwrap_err();
        assert_eq!(e.to_string(), "Couldn't find PID field in ps output");
    }
}
