//! The channel between the runtime and the container process it is setting up:
//! a SOCK_SEQPACKET socketpair carrying small tagged messages, so each side can wait
//! for the other at the points the OCI lifecycle fixes (maps written, cgroup joined,
//! createRuntime hooks run, created, start).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

use crate::error::{Result, RuntimeError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Parent → child: go on to the next stage.
    Proceed,
    /// Child → parent: write my uid/gid maps (I am in a new user namespace).
    NeedMaps,
    /// Child → parent: the PID of the container's init, when it is not the child itself.
    InitPid(i32),
    /// Child → parent: mounts done, run createRuntime/prestart hooks now.
    RunCreateRuntimeHooks,
    /// Child → parent: everything is set up; waiting for start.
    Created,
    /// Child → parent: setup failed.
    Error(String),
}

pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| RuntimeError::sys("socketpair", e))?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn send(&self, msg: &Message) -> Result<()> {
        let mut buf = Vec::with_capacity(16);
        match msg {
            Message::Proceed => buf.push(1),
            Message::NeedMaps => buf.push(2),
            Message::InitPid(pid) => {
                buf.push(3);
                buf.extend_from_slice(&pid.to_le_bytes());
            }
            Message::RunCreateRuntimeHooks => buf.push(4),
            Message::Created => buf.push(5),
            Message::Error(text) => {
                buf.push(6);
                buf.extend_from_slice(text.as_bytes());
            }
        }
        send(self.fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL)
            .map_err(|e| RuntimeError::sys("sync send", e))?;
        Ok(())
    }

    /// Receive one message; `None` when the other side is gone.
    pub fn recv(&self) -> Result<Option<Message>> {
        let mut buf = vec![0u8; 65536];
        let n = loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other.map_err(|e| RuntimeError::sys("sync receive", e))?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let body = &buf[1..n];
        Ok(Some(match buf[0] {
            1 => Message::Proceed,
            2 => Message::NeedMaps,
            3 => {
                let bytes: [u8; 4] = body
                    .try_into()
                    .map_err(|_| RuntimeError::Init("short InitPid message".into()))?;
                Message::InitPid(i32::from_le_bytes(bytes))
            }
            4 => Message::RunCreateRuntimeHooks,
            5 => Message::Created,
            6 => Message::Error(String::from_utf8_lossy(body).into_owned()),
            t => return Err(RuntimeError::Init(format!("unknown sync message {t}"))),
        }))
    }

    /// Receive and require a particular message; an `Error` from the child becomes ours.
    pub fn expect(&self, want: &Message) -> Result<()> {
        match self.recv()? {
            Some(m) if &m == want => Ok(()),
            Some(Message::Error(text)) => Err(RuntimeError::Init(text)),
            Some(other) => Err(RuntimeError::Init(format!(
                "expected {want:?}, got {other:?}"
            ))),
            None => Err(RuntimeError::Init(format!(
                "container process exited before {want:?}"
            ))),
        }
    }
}
