//! The few system calls the shim makes that std and nix leave raw or unsafe, each
//! behind a small safe function: poll, fork, window size, heap trimming, and the
//! console socket on which the container's pty master arrives.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::error::ShimError;

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd), ShimError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ShimError::sys("pipe", e))
}

pub fn set_nonblocking(fd: impl AsFd) -> Result<(), ShimError> {
    let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(|e| ShimError::sys("F_GETFL", e))?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(&fd, FcntlArg::F_SETFL(flags)).map_err(|e| ShimError::sys("F_SETFL", e))?;
    Ok(())
}

pub fn open_null() -> Result<OwnedFd, ShimError> {
    nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| ShimError::sys("open /dev/null", e))
}

/// Wait for events on `fds`; `timeout_ms` < 0 waits forever. EINTR counts as
/// "nothing happened".
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<(), ShimError> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the length
    // we pass; the kernel writes only the `revents` fields inside it.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let errno = Errno::last();
        if errno != Errno::EINTR {
            return Err(ShimError::sys("poll", errno));
        }
    }
    Ok(())
}

/// Fork; the parent exits at once with status 0, the child returns. berthd's
/// child is thereby gone and the shim is re-parented away from berthd.
pub fn fork_away() -> Result<(), ShimError> {
    // SAFETY: the shim is single-threaded when it forks (it is the first thing it
    // does after reading its arguments), so the child inherits no lock held by a
    // thread that does not exist in it.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => Ok(()),
        // SAFETY: _exit skips destructors and atexit handlers, which belong to the
        // child now; it never returns.
        Ok(nix::unistd::ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
        Err(e) => Err(ShimError::sys("fork", e)),
    }
}

/// TIOCSWINSZ on a pty master.
pub fn set_window_size(master: impl AsFd, height: u16, width: u16) -> Result<(), ShimError> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct, which lives across the call; the
    // fd is borrowed and open.
    let ret = unsafe { libc::ioctl(master.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if ret < 0 {
        return Err(ShimError::sys("set window size", Errno::last()));
    }
    Ok(())
}

/// Hand freed heap memory back to the kernel. The shim's steady state is small;
/// creating the container (spec parsing, seccomp compilation) is not, and glibc
/// would otherwise keep those pages resident for the container's whole life.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks glibc's own arenas; no pointer of ours is
    // involved.
    unsafe { libc::malloc_trim(0) };
}

/// Close every descriptor from `first` up that we inherited: berthd's sockets,
/// other containers' pipes. Held here they would keep someone else's pipe from
/// reaching EOF for as long as this container runs.
pub fn close_inherited_from(first: u32) {
    // SAFETY: called at start-up, before the shim opens anything of its own at or
    // above `first`, so no descriptor owned by Rust code is closed under it.
    unsafe { libc::close_range(first, u32::MAX, 0) };
}

/// Give back the pages that only start-up needed. Creating a container runs
/// most of the runtime library (spec parsing, seccomp, mounts): its code stays
/// mapped and counted as ours for the container's whole life, though the loop
/// never runs it again. Dropping our executable's clean, file-backed mappings
/// costs a few minor faults for what the loop does use; pages we wrote
/// (relocations, data) are anonymous and are left alone. The unused depth of the
/// stack below the current frame goes too.
pub fn drop_startup_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let exe = exe.to_string_lossy();
    let mut clean_ranges = Vec::new();
    let mut stack = None;
    let mut current: Option<(usize, usize, bool)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some(range) = parse_range(first) {
            if let Some((start, end, true)) = current.take() {
                clean_ranges.push((start, end));
            }
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            if path == "[stack]" {
                stack = Some(range);
            }
            let candidate = path == exe && !perms.contains('w');
            current = Some((range.0, range.1, candidate));
        } else if first == "Anonymous:" && fields.next() != Some("0") {
            if let Some(c) = current.as_mut() {
                c.2 = false;
            }
        }
    }
    if let Some((start, end, true)) = current {
        clean_ranges.push((start, end));
    }
    for (start, end) in clean_ranges {
        advise_dontneed(start, end);
    }
    if let Some((start, _)) = stack {
        let marker = 0u8;
        let sp = std::ptr::addr_of!(marker) as usize;
        // Keep a margin below our frame for the calls still to come in this one.
        let below = (sp & !0xfff).saturating_sub(4 * 4096);
        if below > start {
            advise_dontneed(start, below);
        }
    }
}

fn parse_range(text: &str) -> Option<(usize, usize)> {
    let (a, b) = text.split_once('-')?;
    Some((
        usize::from_str_radix(a, 16).ok()?,
        usize::from_str_radix(b, 16).ok()?,
    ))
}

fn advise_dontneed(start: usize, end: usize) {
    // SAFETY: the range is page aligned (from /proc/self/smaps, or rounded down)
    // and holds either clean file-backed pages of our executable, which fault back
    // in unchanged from the page cache, or stack below every live frame, which
    // nothing reads before writing. No Rust object lives in either.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
}

/// Is `fd` an open descriptor of this process?
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any number only queries; it touches no memory.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Take ownership of an inherited descriptor, marking it close-on-exec so the
/// container never sees it.
pub fn take_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    if !fd_is_open(fd) {
        return None;
    }
    // SAFETY: the descriptor is open, was handed to us by our parent for our sole
    // use, and is taken here exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = fcntl(&owned, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    Some(owned)
}

/// Our stdout moved to a descriptor of its own (close-on-exec, at or above 3), so
/// that stdout itself can be pointed at /dev/null later.
pub fn take_stdout_as_fd() -> Option<OwnedFd> {
    if !fd_is_open(1) {
        return None;
    }
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor; fd 1 stays as it is.
    let fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just created by fcntl and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// RFC 3339 with nanoseconds, UTC, trailing zeros of the fraction trimmed: Go's
/// `time.RFC3339Nano`, which is what Docker writes in logs and inspect.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let full = berth_runtime::state::format_rfc3339(d.as_secs() as i64, d.subsec_nanos());
    // "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"
    let Some(body) = full.strip_suffix('Z') else {
        return full;
    };
    let trimmed = body.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

/// A unix socket in the current directory on which a pty master is received over
/// SCM_RIGHTS (the runtime's `--console-socket` protocol). Non-blocking, so a
/// container that never sends one is an error rather than a hang.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    pub fn bind(name: &str) -> Result<Self, ShimError> {
        let path = Path::new(".").join(name);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| ShimError::io(format!("bind console socket {name}"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ShimError::io("console socket", e))?;
        Ok(ConsoleSocket { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The master sent by the container process, which has already connected and
    /// sent it by the time the runtime returns.
    pub fn receive_master(&self) -> Result<OwnedFd, ShimError> {
        let (stream, _) = self.listener.accept().map_err(|e| {
            ShimError::io("no pty from the container (is process.terminal set?)", e)
        })?;
        let mut name = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| ShimError::sys("receive pty master", e))?;
        let cmsgs = msg
            .cmsgs()
            .map_err(|e| ShimError::sys("receive pty master", e))?;
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                let mut owned = fds.into_iter().map(|fd| {
                    // SAFETY: the kernel has just installed these fds for us; each
                    // is owned exactly once here.
                    unsafe { OwnedFd::from_raw_fd(fd) }
                });
                if let Some(master) = owned.next() {
                    return Ok(master);
                }
            }
        }
        Err(ShimError::io(
            "receive pty master",
            std::io::Error::other("the console socket carried no fd"),
        ))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_style_nanos() {
        let t = |s, n| UNIX_EPOCH + Duration::new(s, n);
        assert_eq!(rfc3339_nano(t(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(t(1_700_000_000, 120_000_000)),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(
            rfc3339_nano(t(1_700_000_000, 5)),
            "2023-11-14T22:13:20.000000005Z"
        );
    }
}
