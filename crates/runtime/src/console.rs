//! Terminals: a pty created inside the container (so it belongs to the container's
//! devpts), its master handed to the caller over `--console-socket` as runc does,
//! its slave made the process's controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;
use nix::unistd::{dup2, setsid};

use crate::error::{Context, Result, RuntimeError};

/// Connect to the caller's console socket (done by the runtime before it forks, so
/// the path resolves on the host).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let stream = UnixStream::connect(path)
        .context(|| format!("connect console socket {}", path.display()))?;
    Ok(OwnedFd::from(stream))
}

/// Send `fd` over the unix socket `socket` with `name` as the payload.
pub fn send_fd(socket: RawFd, name: &str, fd: RawFd) -> Result<()> {
    let iov = [IoSlice::new(name.as_bytes())];
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(socket, &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| RuntimeError::sys("send pty master over console socket", e))?;
    Ok(())
}

/// Create a pty in the current mount namespace, send its master over `socket`, and make
/// its slave our controlling terminal and stdio. With `mount_console`, the slave is also
/// bind-mounted on /dev/console.
pub fn setup_pty(socket: RawFd, size: Option<(u16, u16)>, mount_console: bool) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::sys("open /dev/ptmx", e))?;
    grantpt(&master).map_err(|e| RuntimeError::sys("grantpt", e))?;
    unlockpt(&master).map_err(|e| RuntimeError::sys("unlockpt", e))?;
    let slave_name = ptsname_r(&master).map_err(|e| RuntimeError::sys("ptsname", e))?;
    let slave = open(
        Path::new(&slave_name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("open {slave_name}"))?;
    if let Some((height, width)) = size {
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    send_fd(socket, &slave_name, master.as_raw_fd())?;
    drop(master);
    if mount_console {
        let console = Path::new("/dev/console");
        if !console.exists() {
            std::fs::File::create(console).context(|| "create /dev/console".to_string())?;
        }
        mount(
            Some(Path::new(&slave_name)),
            console,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .context(|| format!("bind {slave_name} on /dev/console"))?;
    }
    make_controlling(slave)
}

/// Become session leader with `tty` as controlling terminal and stdin/stdout/stderr.
pub fn make_controlling(tty: OwnedFd) -> Result<()> {
    // We may already be a session leader (the init of a new pid namespace is not,
    // but an exec'd process could be); EPERM then is harmless.
    let _ = setsid();
    // SAFETY: TIOCSCTTY takes an int argument; the fd is open.
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(RuntimeError::sys(
            "make the pty the controlling terminal",
            nix::errno::Errno::last(),
        ));
    }
    let raw = tty.into_raw_fd();
    for target in 0..3 {
        // SAFETY: stdio fds 0-2 are ours to replace; `raw` is open.
        let mut std_fd = unsafe { OwnedFd::from_raw_fd(target) };
        dup2(
            unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) },
            &mut std_fd,
        )
        .map_err(|e| RuntimeError::sys("dup2 pty", e))?;
        let _ = std_fd.into_raw_fd();
    }
    if raw > 2 {
        // SAFETY: `raw` came from into_raw_fd above and is not used after this.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    Ok(())
}
