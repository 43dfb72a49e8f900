//! `pause` and `resume`: freeze and thaw every process of the container.

use super::Global;
use crate::cgroups;
use crate::error::{Result, RuntimeError};
use crate::state::{self, Status};

pub fn pause(global: &Global, id: &str, frozen: bool) -> Result<()> {
    let (dir, container) = state::load(&global.root, id)?;
    let status = container.status(&dir);
    let ok = if frozen {
        matches!(status, Status::Running | Status::Created)
    } else {
        status == Status::Paused
    };
    if !ok {
        return Err(RuntimeError::BadStatus {
            id: id.to_string(),
            status: status.to_string(),
            what: if frozen {
                "container not running"
            } else {
                "container not paused"
            },
        });
    }
    cgroups::manager(&container.cgroup_path)?.freeze(frozen)?;
    Ok(())
}
