//! What happens after the root is entered: masked paths, read-only paths,
//! `root.readonly`, and the final propagation of `/`.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use oci_spec::runtime::Spec;

use super::syscall::{Kind, Syscall};
use super::RootfsError;

fn mount_error(path: &Path, what: &str) -> impl FnOnce(Errno) -> RootfsError {
    let (destination, what) = (path.to_path_buf(), what.to_string());
    move |source| RootfsError::Mount {
        destination,
        what,
        source,
    }
}

/// Files are covered by /dev/null, directories by an empty read-only tmpfs.
/// A path that does not exist has nothing to hide.
pub fn mask_path(sys: &dyn Syscall, path: &Path) -> Result<(), RootfsError> {
    let kind = match sys.kind(path) {
        Ok(Some(kind)) => kind,
        Ok(None) | Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(mount_error(path, "stat masked path")(e)),
    };
    match kind {
        Kind::Dir => sys
            .mount(
                Some(Path::new("tmpfs")),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0k,nr_inodes=1"),
            )
            .map_err(mount_error(path, "mask with tmpfs")),
        Kind::File => sys
            .mount(
                Some(Path::new("/dev/null")),
                path,
                None,
                MsFlags::MS_BIND,
                None,
            )
            .map_err(mount_error(path, "mask with /dev/null")),
    }
}

/// Bind the path onto itself, then remount it read-only keeping its locked flags.
pub fn readonly_path(sys: &dyn Syscall, path: &Path) -> Result<(), RootfsError> {
    match sys.mount(
        Some(path),
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    ) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(mount_error(path, "bind read-only path onto itself")(e)),
    }
    remount_readonly(sys, path, MsFlags::MS_REC)
}

fn remount_readonly(sys: &dyn Syscall, path: &Path, extra: MsFlags) -> Result<(), RootfsError> {
    let locked = sys
        .mount_flags(path)
        .map_err(mount_error(path, "statvfs"))?
        & (MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC
            | MsFlags::MS_NOATIME
            | MsFlags::MS_NODIRATIME
            | MsFlags::MS_RELATIME);
    sys.mount(
        None,
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra | locked,
        None,
    )
    .map_err(mount_error(path, "remount read-only"))
}

pub fn finalize_rootfs_with(sys: &dyn Syscall, spec: &Spec) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    for path in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask_path(sys, Path::new(path))?;
    }
    for path in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly_path(sys, Path::new(path))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_readonly(sys, Path::new("/"), MsFlags::empty())?;
    }
    if let Some(propagation) = linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        let flags = super::mount::parse_propagation(propagation)?;
        sys.mount(None, Path::new("/"), None, flags, None)
            .map_err(mount_error(Path::new("/"), "set rootfsPropagation"))?;
    }
    Ok(())
}
