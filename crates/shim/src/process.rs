//! The processes the shim parents — the container's init and its exec processes —
//! with the ends of their stdio that the shim holds: output sources it reads, the
//! stdin it writes, the pty master it resizes.

use std::os::fd::OwnedFd;
use std::time::Instant;

use nix::errno::Errno;

use crate::logfile::LineSplitter;
use crate::status::Exit;

/// Names a process for the life of the shim: 0 is the init, execs count up.
pub type Key = u64;
pub const INIT: Key = 0;

pub struct Process {
    pub key: Key,
    /// Empty for the init.
    pub exec_id: String,
    pub pid: i32,
    pub tty: bool,
    pub master: Option<OwnedFd>,
    pub stdin: Option<StdinSink>,
    pub exit: Option<Exit>,
    /// When the exit was seen: remaining output is read until EOF or a deadline.
    pub exited: Option<Instant>,
    /// Exited and its streams closed; only its record remains.
    pub finished: bool,
}

impl Process {
    pub fn new(key: Key, exec_id: String, pid: i32, tty: bool) -> Self {
        Process {
            key,
            exec_id,
            pid,
            tty,
            master: None,
            stdin: None,
            exit: None,
            exited: None,
            finished: false,
        }
    }
}

/// The container side's stdin, written without blocking. What it does not take
/// at once waits in `pending`, and the clients feeding it are not read meanwhile.
pub struct StdinSink {
    fd: OwnedFd,
    pending: Vec<u8>,
    close_when_flushed: bool,
    /// A pty master: EOF is a ^D, not a close (the master also carries output).
    tty: bool,
}

pub enum SinkState {
    Open,
    Closed,
}

impl StdinSink {
    pub fn new(fd: OwnedFd, tty: bool) -> Self {
        StdinSink {
            fd,
            pending: Vec::new(),
            close_when_flushed: false,
            tty,
        }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn write(&mut self, data: &[u8]) -> SinkState {
        self.pending.extend_from_slice(data);
        self.flush()
    }

    pub fn flush(&mut self) -> SinkState {
        let mut written = 0;
        while written < self.pending.len() {
            match nix::unistd::write(&self.fd, &self.pending[written..]) {
                Ok(n) => written += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                // EPIPE: the container closed its stdin; nothing more will be read.
                Err(_) => return SinkState::Closed,
            }
        }
        self.pending.drain(..written);
        if self.pending.is_empty() {
            if self.pending.capacity() > 64 * 1024 {
                self.pending = Vec::new();
            }
            if self.close_when_flushed {
                return SinkState::Closed;
            }
        }
        SinkState::Open
    }

    /// The input has ended: the container gets EOF once the pending bytes are in.
    pub fn end(&mut self) -> SinkState {
        if self.tty {
            // The line discipline turns VEOF at the start of a line into EOF for
            // the reader, which is what closing a pipe is for a non-tty.
            self.pending.push(0x04);
        }
        self.close_when_flushed = true;
        self.flush()
    }
}

/// One output stream of a process that the shim reads.
pub struct Source {
    pub fd: OwnedFd,
    /// 1 stdout, 2 stderr (the stdcopy stream byte).
    pub stream: u8,
    pub owner: Key,
    /// The init's output goes to the log, line by line.
    pub lines: Option<LineSplitter>,
    pub done: bool,
}

pub fn stream_name(stream: u8) -> &'static str {
    if stream == 2 {
        "stderr"
    } else {
        "stdout"
    }
}
