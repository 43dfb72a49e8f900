//! `docker pause` / `docker unpause`: freeze and thaw every process of the container
//! through the cgroup freezer (the runtime library's `pause`). The record shows it as
//! Docker does: `State.Status` "paused", `Running` and `Paused` both true.

use berth_runtime::container::pause::pause;

use crate::container::Container;
use crate::engine::{Engine, EngineError, Result};

impl Engine {
    pub fn pause(&self, key: &str) -> Result<()> {
        self.set_paused(key, true)
    }

    pub fn unpause(&self, key: &str) -> Result<()> {
        self.set_paused(key, false)
    }

    fn set_paused(&self, key: &str, frozen: bool) -> Result<()> {
        let id = self.resolve(key)?;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c: Container = self.store().get(&id)?;
        if !c.state.running {
            return Err(EngineError::Conflict(format!(
                "Container {id} is not running"
            )));
        }
        if frozen && c.state.paused {
            return Err(EngineError::Conflict(format!(
                "Container {id} is already paused"
            )));
        }
        if !frozen && !c.state.paused {
            return Err(EngineError::Conflict(format!(
                "Container {id} is not paused"
            )));
        }
        pause(&self.runtime_global(), &id, frozen).map_err(|e| {
            let verb = if frozen { "pause" } else { "unpause" };
            EngineError::Internal(format!("Cannot {verb} container {id}: {e}"))
        })?;
        c.state.paused = frozen;
        c.state.status = if frozen { "paused" } else { "running" }.into();
        self.save(&c)?;
        self.container_event(&c, if frozen { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// A frozen process takes no signal: after signalling a paused container (kill,
    /// stop, remove -f), thaw it so the signal lands, as dockerd does.
    pub(crate) fn thaw_after_signal(&self, c: &Container) {
        if c.state.paused {
            let _ = pause(&self.runtime_global(), &c.id, false);
        }
    }
}
