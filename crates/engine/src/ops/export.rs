//! `docker export`: the container's whole root filesystem (image layers and its own
//! changes, as the merged overlay shows them) as one tar stream. A stopped container's
//! rootfs is mounted for the export and unmounted after.

use std::io::Write;
use std::path::Path;

use crate::engine::{Engine, EngineError, Result};

impl Engine {
    /// Writes the tar into `out`.
    pub fn export<W: Write>(&self, key: &str, out: W) -> Result<W> {
        self.with_rootfs(key, |c, rootfs| {
            self.container_event(c, "export", &[]);
            berth_image::layer::export(Path::new(&rootfs.merged_dir), out)
                .map_err(|e| EngineError::Internal(format!("exporting the rootfs: {e}")))
        })
    }
}
