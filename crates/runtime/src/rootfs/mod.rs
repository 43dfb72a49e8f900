//! The container's root filesystem: mounts, /dev, pivot_root, masked and read-only paths.
//!
//! STUB: the full implementation is being written; this file fixes the interface.

use std::path::Path;

use oci_spec::runtime::Spec;

use crate::error::Result;

/// Everything the rootfs setup needs to know beyond the spec.
pub struct RootfsOptions<'a> {
    /// Absolute path of the rootfs on the host.
    pub rootfs: &'a Path,
    /// Absolute path of the bundle (relative bind sources resolve against it).
    pub bundle: &'a Path,
    /// The container has its own user namespace (mknod is not allowed: bind devices).
    pub in_user_ns: bool,
    /// The container has its own cgroup namespace.
    pub in_cgroup_ns: bool,
}

/// Runs in the container's new mount namespace, before pivot_root: set root
/// propagation, bind the rootfs onto itself, mount every spec mount (destinations
/// resolved inside the rootfs), create /dev and the spec's devices.
pub fn prepare_rootfs(spec: &Spec, opts: &RootfsOptions) -> Result<()> {
    let _ = (spec, opts);
    Ok(())
}

/// Make `rootfs` the root: pivot_root, or MS_MOVE + chroot when `no_pivot` is set
/// or the current root is on ramfs.
pub fn enter_rootfs(rootfs: &Path, no_pivot: bool) -> Result<()> {
    let _ = (rootfs, no_pivot);
    Ok(())
}

/// After the root is entered: masked and read-only paths, `root.readonly`, and
/// `rootfsPropagation`.
pub fn finalize_rootfs(spec: &Spec) -> Result<()> {
    let _ = spec;
    Ok(())
}
