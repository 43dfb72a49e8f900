//! Container operations beyond the lifecycle, one file per verb as the Engine API
//! names them: pause/unpause, rename, update, top, stats, changes, export, archive
//! (`docker cp`), commit. Each works on the container record and on what the runtime
//! library and crates/image expose (the cgroup, the overlay snapshot); none of them
//! talks HTTP, and none changes the lifecycle code in `engine.rs`.

pub mod archive;
pub mod changes;
pub mod commit;
pub mod export;
pub mod pause;
pub mod rename;
pub mod stats;
pub mod top;
pub mod update;

use berth_runtime::cgroups::{self, CgroupManager};
use berth_runtime::container::Global;
use berth_runtime::state::{self, ContainerState};

use crate::container::{Container, RootfsInfo};
use crate::engine::{Engine, EngineError, Result};

impl Engine {
    /// The runtime library's global options for this engine's containers.
    pub(crate) fn runtime_global(&self) -> Global {
        Global {
            root: self.config.runtime_root(),
            systemd_cgroup: self.config.systemd_cgroup,
        }
    }

    /// The runtime's state of a running container (its cgroup path, its spec).
    pub(crate) fn runtime_state(&self, id: &str) -> Result<ContainerState> {
        state::load(&self.config.runtime_root(), id)
            .map(|(_, s)| s)
            .map_err(|e| EngineError::Internal(format!("runtime state of {id}: {e}")))
    }

    /// The cgroup of a running container.
    pub(crate) fn cgroup(&self, id: &str) -> Result<Box<dyn CgroupManager>> {
        let s = self.runtime_state(id)?;
        cgroups::manager(&s.cgroup_path)
            .map_err(|e| EngineError::Internal(format!("cgroup of {id}: {e}")))
    }

    /// A running container, or Docker's 409 for one that is not.
    pub(crate) fn running(&self, key: &str) -> Result<Container> {
        let c = self.get(key)?;
        if !c.state.running {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        Ok(c)
    }

    /// Runs `f` with the container's root filesystem mounted: the live one of a
    /// running container, else mounted for the call (under the container's lock, so a
    /// start cannot race the unmount) and unmounted after.
    pub(crate) fn with_rootfs<T>(
        &self,
        key: &str,
        f: impl FnOnce(&Container, &RootfsInfo) -> Result<T>,
    ) -> Result<T> {
        let c = self.get(key)?;
        if c.state.running && !c.rootfs.merged_dir.is_empty() {
            return f(&c, &c.rootfs);
        }
        let lock = self.lock_for(&c.id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let c: Container = self.store().get(&c.id)?;
        if c.state.running && !c.rootfs.merged_dir.is_empty() {
            return f(&c, &c.rootfs);
        }
        let info = self.image_service().mount_rootfs(&c.id, &c.image, false)?;
        let result = f(&c, &info);
        let _ = self.image_service().unmount_rootfs(&c.id);
        result
    }
}
