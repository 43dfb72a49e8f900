//! Making the rootfs the root: pivot_root with the old root detached, or MS_MOVE +
//! chroot where pivot_root cannot work (ramfs root, or `--no-pivot`).

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::syscall::Syscall;
use super::RootfsError;

fn sys_error(what: &str, path: &Path) -> impl FnOnce(nix::errno::Errno) -> RootfsError {
    let (what, path) = (what.to_string(), path.to_path_buf());
    move |source| RootfsError::Sys { what, path, source }
}

/// Enter `rootfs` (already a mount point) as `/`.
pub fn enter_rootfs_with(
    sys: &dyn Syscall,
    rootfs: &Path,
    no_pivot: bool,
) -> Result<(), RootfsError> {
    let on_ramfs = sys
        .is_ramfs(Path::new("/"))
        .map_err(sys_error("statfs", Path::new("/")))?;
    if no_pivot || on_ramfs {
        move_root(sys, rootfs)
    } else {
        pivot_root(sys, rootfs)
    }
}

/// pivot_root(".", ".") stacks the old root on top of the new one, so no put_old
/// directory is needed inside the rootfs (and none is left behind).
fn pivot_root(sys: &dyn Syscall, rootfs: &Path) -> Result<(), RootfsError> {
    let root = Path::new("/");
    let dot = Path::new(".");
    let old_root = sys
        .open_dir(root)
        .map_err(sys_error("open old root", root))?;
    let new_root = sys
        .open_dir(rootfs)
        .map_err(sys_error("open new root", rootfs))?;
    sys.fchdir(&new_root).map_err(sys_error("fchdir", rootfs))?;
    sys.pivot_root(dot, dot)
        .map_err(sys_error("pivot_root", rootfs))?;
    sys.fchdir(&old_root)
        .map_err(sys_error("fchdir to old root", root))?;
    // rslave first: the detach below must not propagate to the host's mounts.
    sys.mount(None, dot, None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
        .map_err(sys_error("make old root rslave", root))?;
    sys.umount2(dot, MntFlags::MNT_DETACH)
        .map_err(sys_error("detach old root", root))?;
    sys.chdir(root).map_err(sys_error("chdir", root))
}

fn move_root(sys: &dyn Syscall, rootfs: &Path) -> Result<(), RootfsError> {
    let root = PathBuf::from("/");
    sys.chdir(rootfs).map_err(sys_error("chdir", rootfs))?;
    sys.mount(Some(rootfs), &root, None, MsFlags::MS_MOVE, None)
        .map_err(sys_error("move rootfs onto /", rootfs))?;
    sys.chroot(Path::new("."))
        .map_err(sys_error("chroot", rootfs))?;
    sys.chdir(&root).map_err(sys_error("chdir", &root))
}
