//! The terminal: raw mode while attached to a tty container, its size, and SIGWINCH.

use std::sync::atomic::{AtomicBool, Ordering};

/// Restores the terminal's settings when dropped.
pub struct RawMode {
    fd: i32,
    saved: libc::termios,
}

pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty reads no memory of ours; any fd value is acceptable.
    unsafe { libc::isatty(fd) == 1 }
}

impl RawMode {
    /// Puts `fd` in raw mode; None if it is not a terminal.
    pub fn enter(fd: i32) -> Option<RawMode> {
        if !is_tty(fd) {
            return None;
        }
        // SAFETY: termios is plain old data; zeroed is a valid value to be overwritten.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid, writable termios for the duration of the call.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: `raw` is a valid termios; cfmakeraw only edits its fields.
        unsafe { libc::cfmakeraw(&mut raw) };
        // Keep output post-processing so "\n" from our own messages still returns the carriage.
        raw.c_oflag |= libc::OPOST;
        // SAFETY: `raw` is a valid termios read by the call.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: `saved` is the termios read from this fd in `enter`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// (rows, columns) of the terminal on `fd`.
pub fn size(fd: i32) -> Option<(u16, u16)> {
    // SAFETY: winsize is plain old data.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into the valid pointer we pass.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } != 0 || ws.ws_row == 0 {
        return None;
    }
    Some((ws.ws_row, ws.ws_col))
}

static WINCH: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    WINCH.store(true, Ordering::SeqCst);
}

/// Installs the SIGWINCH handler (it only sets a flag, which is async-signal-safe).
pub fn watch_resize() {
    // SAFETY: the handler only stores to an atomic; the cast is the documented way to
    // pass a handler to signal(2).
    unsafe {
        libc::signal(
            libc::SIGWINCH,
            on_winch as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
}

/// True once per window-size change since the last call.
pub fn resized() -> bool {
    WINCH.swap(false, Ordering::SeqCst)
}

/// Signals `--sig-proxy` forwards to the container, as a bit per signal number.
static PENDING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const PROXIED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

extern "C" fn on_proxied(sig: libc::c_int) {
    if (0..64).contains(&sig) {
        PENDING.fetch_or(1u64 << sig, Ordering::SeqCst);
    }
}

/// Catches the proxied signals instead of dying of them.
pub fn watch_signals() {
    for sig in PROXIED {
        // SAFETY: the handler only updates an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_proxied as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// The signals caught since the last call.
pub fn take_signals() -> Vec<i32> {
    let bits = PENDING.swap(0, Ordering::SeqCst);
    (0..64).filter(|s| bits & (1u64 << s) != 0).collect()
}
