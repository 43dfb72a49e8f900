//! Network namespaces that outlive their processes: made by a short-lived thread that
//! unshares its namespace and bind-mounts it onto a file (as `ip netns add` and dockerd
//! do), so a container joins it by path and berthd can configure it before the container
//! exists and after berthd restarts.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))
}

/// Makes a new network namespace with `lo` up and pins it at `path`.
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(path)?;
    let target = cstr(path)?;
    let made = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            // SAFETY: unshare only changes this thread's namespace; the thread ends
            // right after, so no other code runs in the new namespace by accident.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let source = c"/proc/thread-self/ns/net";
            // SAFETY: both strings are valid NUL-terminated paths.
            let rc = unsafe {
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut nl = crate::netlink::Netlink::open()?;
            nl.set_up(1)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
    });
    if made.is_err() {
        let _ = remove(path);
    }
    made
}

/// Unpins and deletes a namespace file; one that is already gone is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: c is a valid path; MNT_DETACH never blocks on users of the mount.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `path` is a pinned namespace (a bind mount of nsfs), not a plain file left
/// behind by a crash between create and mount.
pub fn is_pinned(path: &Path) -> bool {
    let Ok(c) = cstr(path) else { return false };
    // SAFETY: statfs fills the zeroed struct; c is a valid path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    // NSFS_MAGIC
    st.f_type as i64 == 0x6e73_6673
}

/// Runs `f` on a thread that has entered the namespace at `path`.
pub fn enter<T: Send>(path: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = File::open(path)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns only changes this thread's namespace, and the thread ends
            // when f returns.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
    })
}
