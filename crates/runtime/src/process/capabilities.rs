//! Capabilities: the five sets (bounding, effective, permitted, inheritable, ambient).
//!
//! STUB: being written.

use oci_spec::runtime::LinuxCapabilities;

use crate::error::Result;

/// Drop every capability not in the bounding set (needs CAP_SETPCAP; call before
/// changing user).
pub fn apply_bounding(caps: &LinuxCapabilities) -> Result<()> {
    let _ = caps;
    Ok(())
}

/// Set effective, permitted, inheritable and ambient sets (call after changing user).
pub fn apply_process_sets(caps: &LinuxCapabilities) -> Result<()> {
    let _ = caps;
    Ok(())
}
