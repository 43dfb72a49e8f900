//! The runtime as its own console: when `run` in the foreground is asked for a
//! terminal and given no `--console-socket`, it receives the pty master itself and
//! copies between it and its own stdio, as runc does.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};

use crate::error::{Result, RuntimeError};

pub struct ConsoleListener {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleListener {
    pub fn bind(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io("create state root", e))?;
        let path = dir.join(format!(".console-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).map_err(|e| RuntimeError::io("bind console socket", e))?;
        Ok(ConsoleListener { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept the init's connection and receive the pty master.
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| RuntimeError::io("accept console connection", e))?;
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| RuntimeError::sys("receive pty master", e))?;
        for cmsg in msg
            .cmsgs()
            .map_err(|e| RuntimeError::sys("receive pty master", e))?
        {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(fd) = fds.first() {
                    // SAFETY: the kernel just gave us this fd; nobody else owns it.
                    return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
        }
        Err(RuntimeError::Init("console socket carried no fd".into()))
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Our terminal in raw mode for as long as this lives.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    pub fn enter() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}

/// Copy our window size to the pty.
pub fn copy_window_size(master: RawFd) {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into `ws`, TIOCSWINSZ reads it.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Start copying stdin → master and master → stdout. The returned receiver gets a
/// message when the output side has ended (the container closed the pty).
pub fn start_copy(master: &OwnedFd) -> Result<mpsc::Receiver<()>> {
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map(std::fs::File::from)
            .map_err(|e| RuntimeError::io("dup pty master", e))
    };
    let mut to_pty = dup(master)?;
    let mut from_pty = dup(master)?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || to_pty.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut stdout = std::io::stdout();
        // EIO once every slave fd is closed: the container is gone.
        while let Ok(n) = from_pty.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = stdout.flush();
        }
        let _ = done_tx.send(());
    });
    Ok(done_rx)
}

/// Wait a little for the output copy to drain after the container exited.
pub fn drain(done: &mpsc::Receiver<()>) {
    let _ = done.recv_timeout(Duration::from_millis(500));
}
