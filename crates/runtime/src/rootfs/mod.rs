//! The container's root filesystem: mounts, /dev, pivot_root, masked and read-only paths.
//!
//! Runs in the container's init, in its new mount namespace, as root. Every path
//! inside the rootfs is resolved by [`safe_path`] so that `..` and symlinks planted in
//! an image cannot make us create or mount anything on the host. The order of
//! syscalls lives here and in the submodules, written against the [`syscall::Syscall`]
//! trait so that it is unit-tested without root. /dev/console is the console
//! module's, through [`bind_console`].

mod device;
mod masked;
mod mount;
mod pivot;
pub mod safe_path;
mod syscall;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_root;

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::Spec;

use crate::error::Result;

pub use mount::{lookup_option, MountOption, MountOptions};
pub use safe_path::SafePathError;

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

/// What went wrong while building the root filesystem, naming the mount, device or
/// path concerned.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mount {destination:?}: {source}")]
    Destination {
        destination: PathBuf,
        #[source]
        source: SafePathError,
    },
    #[error("mount {destination:?}: {what}: {source}")]
    Mount {
        destination: PathBuf,
        what: String,
        #[source]
        source: Errno,
    },
    #[error("mount {destination:?}: {reason}")]
    Invalid {
        destination: PathBuf,
        reason: String,
    },
    #[error("device {path:?}: {source}")]
    Device {
        path: PathBuf,
        #[source]
        source: SafePathError,
    },
    #[error("{what} ({path:?}): {source}")]
    Sys {
        what: String,
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("read {path:?}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rootfs {path:?}: {source}")]
    Rootfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs in the container's new mount namespace, before pivot_root: set root
/// propagation, bind the rootfs onto itself, mount every spec mount (destinations
/// resolved inside the rootfs), create /dev and the spec's devices.
///
/// Expects the process to be in the container's cgroup already: on a v1 host a
/// `cgroup` mount shows the cgroups of /proc/self/cgroup.
pub fn prepare_rootfs(spec: &Spec, opts: &RootfsOptions) -> Result<()> {
    // Symlinks in the rootfs path itself are the caller's, and trusted; resolving
    // them once makes the escape check of every later lookup exact.
    let rootfs = std::fs::canonicalize(opts.rootfs).map_err(|source| RootfsError::Rootfs {
        path: opts.rootfs.to_path_buf(),
        source,
    })?;
    let opts = RootfsOptions {
        rootfs: &rootfs,
        ..*opts
    };
    Ok(prepare_rootfs_with(&syscall::Linux, spec, &opts)?)
}

fn prepare_rootfs_with(
    sys: &dyn syscall::Syscall,
    spec: &Spec,
    opts: &RootfsOptions,
) -> Result<(), RootfsError> {
    let propagation = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .map(mount::parse_propagation)
        .transpose()?;
    mount::prepare_root(sys, opts.rootfs, propagation)?;
    for m in spec.mounts().iter().flatten() {
        mount::mount_to_rootfs(sys, m, opts)?;
    }
    if !device::dev_is_bind(spec) {
        device::create_devices(sys, spec, opts)?;
        device::create_dev_symlinks(sys, spec, opts)?;
    }
    Ok(())
}

/// Make `rootfs` the root: pivot_root, or MS_MOVE + chroot when `no_pivot` is set
/// or the current root is on ramfs.
pub fn enter_rootfs(rootfs: &Path, no_pivot: bool) -> Result<()> {
    Ok(pivot::enter_rootfs_with(&syscall::Linux, rootfs, no_pivot)?)
}

/// After the root is entered: masked and read-only paths, `root.readonly`, and
/// `rootfsPropagation`.
pub fn finalize_rootfs(spec: &Spec) -> Result<()> {
    Ok(masked::finalize_rootfs_with(&syscall::Linux, spec)?)
}

/// Bind the console's pty slave (a host path such as `/dev/pts/3`) onto
/// `<rootfs>/dev/console`, creating an empty file there first. Call before
/// [`enter_rootfs`] with the rootfs path, or after it with `/`.
pub fn bind_console(rootfs: &Path, slave: &Path) -> Result<()> {
    Ok(device::bind_console_with(&syscall::Linux, rootfs, slave)?)
}
