//! `state`: print the OCI state of a container.

use super::Global;
use crate::error::{Result, RuntimeError};
use crate::state;

pub fn state_json(global: &Global, id: &str) -> Result<String> {
    let (dir, container) = state::load(&global.root, id)?;
    let status = container.status(&dir);
    serde_json::to_string_pretty(&container.oci_state(status))
        .map_err(|e| RuntimeError::Other(e.to_string()))
}
