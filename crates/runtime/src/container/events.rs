//! `events`: resource statistics of a container as runc prints them, once
//! (`--stats`) or every interval while it lives.

use std::io::Write;
use std::time::Duration;

use super::Global;
use crate::cgroups;
use crate::error::{Result, RuntimeError};
use crate::state::{self, Status};

pub fn events(global: &Global, id: &str, stats_once: bool, interval: Duration) -> Result<()> {
    let (dir, container) = state::load(&global.root, id)?;
    let cg = cgroups::manager(&container.cgroup_path)?;
    let mut out = std::io::stdout();
    loop {
        if container.status(&dir) == Status::Stopped {
            return Err(RuntimeError::BadStatus {
                id: id.to_string(),
                status: "stopped".into(),
                what: "container not running",
            });
        }
        let event = serde_json::json!({
            "type": "stats",
            "id": id,
            "data": cg.stats()?,
        });
        writeln!(out, "{event}").map_err(|e| RuntimeError::io("write stdout", e))?;
        let _ = out.flush();
        if stats_once {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}
