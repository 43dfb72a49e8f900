//! `update`: change the resource limits of a running container.

use oci_spec::runtime::LinuxResources;

use super::Global;
use crate::cgroups;
use crate::error::{Result, RuntimeError};
use crate::state::{self, Status};

pub fn update(global: &Global, id: &str, resources: &LinuxResources) -> Result<()> {
    let (dir, mut container) = state::load(&global.root, id)?;
    if container.status(&dir) == Status::Stopped {
        return Err(RuntimeError::BadStatus {
            id: id.to_string(),
            status: "stopped".into(),
            what: "cannot update a stopped container",
        });
    }
    cgroups::manager(&container.cgroup_path)?.set(resources)?;
    // Remember the new limits (merged field by field) for `state` readers.
    if let Some(linux) = container.config.linux_mut() {
        let mut merged = linux.resources().clone().unwrap_or_default();
        if resources.memory().is_some() {
            merged.set_memory(*resources.memory());
        }
        if resources.cpu().is_some() {
            merged.set_cpu(resources.cpu().clone());
        }
        if resources.pids().is_some() {
            merged.set_pids(*resources.pids());
        }
        if resources.block_io().is_some() {
            merged.set_block_io(resources.block_io().clone());
        }
        linux.set_resources(Some(merged));
    }
    state::save(&dir, &container).map_err(|e| RuntimeError::Other(e.to_string()))
}
