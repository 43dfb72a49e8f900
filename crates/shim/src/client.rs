//! One connection on shim.sock: its request line, what it is waiting for or
//! streaming, and the output not yet taken by a slow reader.
//!
//! Sockets are non-blocking; output that the client does not read at once is kept
//! up to [`MAX_BACKLOG`], beyond which the client is dropped rather than allowed
//! to stall the container or grow the shim.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::process::Key;

pub const MAX_REQUEST: usize = 1 << 20;
pub const MAX_BACKLOG: usize = 1 << 20;

/// What a streaming connection is attached to.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    pub owner: Key,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Raw bytes (a tty) rather than stdcopy frames.
    pub raw: bool,
}

impl Stream {
    pub fn wants(&self, stream: u8) -> bool {
        match stream {
            1 => self.stdout,
            _ => self.stderr,
        }
    }
}

#[derive(Debug)]
pub enum ClientState {
    /// Reading the request line.
    Request,
    /// `wait`: answered when the container has exited.
    Waiting,
    Stream(Stream),
    /// Answered; closed once the output is flushed.
    Closing(Instant),
}

pub struct Client {
    pub sock: UnixStream,
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    pub state: ClientState,
    /// The client has shut down its write side.
    pub read_closed: bool,
    pub dead: bool,
}

/// How long a closing client may take to read its last output.
pub const CLOSING_GRACE: Duration = Duration::from_secs(10);

impl Client {
    pub fn new(sock: UnixStream) -> Self {
        Client {
            sock,
            input: Vec::new(),
            output: Vec::new(),
            state: ClientState::Request,
            read_closed: false,
            dead: false,
        }
    }

    /// Queue a JSON response line and try to send it.
    pub fn respond(&mut self, value: &serde_json::Value) {
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        self.send(&line);
    }

    /// Queue one chunk of container output, framed unless raw.
    pub fn send_output(&mut self, stream: u8, data: &[u8], raw: bool) {
        if !raw {
            self.output
                .extend_from_slice(&frame_header(stream, data.len()));
        }
        self.send(data);
    }

    pub fn send(&mut self, data: &[u8]) {
        if self.dead {
            return;
        }
        self.output.extend_from_slice(data);
        self.flush();
        if self.output.len() > MAX_BACKLOG {
            eprintln!("berth-shim: dropping a client that does not read its output");
            self.dead = true;
        }
    }

    /// Write what the socket takes now.
    pub fn flush(&mut self) {
        let mut written = 0;
        while written < self.output.len() {
            match self.sock.write(&self.output[written..]) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        self.output.drain(..written);
        if self.output.is_empty() && self.output.capacity() > 64 * 1024 {
            self.output = Vec::new();
        }
        if matches!(self.state, ClientState::Closing(_)) && self.output.is_empty() {
            self.dead = true;
        }
    }

    /// Read what is there into `buf`; `Some(0)` at end of input, `None` if nothing
    /// (or the connection failed, which marks it dead).
    pub fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            match self.sock.read(buf) {
                Ok(n) => return Some(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(_) => {
                    self.dead = true;
                    return None;
                }
            }
        }
    }

    pub fn close_after_flush(&mut self) {
        self.state = ClientState::Closing(Instant::now());
        if self.output.is_empty() {
            self.dead = true;
        }
    }

    /// Last chance before the shim exits: send what is queued, blocking a little.
    pub fn flush_blocking(&mut self) {
        if self.dead || self.output.is_empty() {
            return;
        }
        let _ = self.sock.set_nonblocking(false);
        let _ = self.sock.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = self.sock.write_all(&self.output);
        self.output.clear();
    }
}

/// Docker's stdcopy header: stream byte, three zero bytes, big-endian length.
pub fn frame_header(stream: u8, len: usize) -> [u8; 8] {
    let n = (len as u32).to_be_bytes();
    [stream, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header() {
        assert_eq!(frame_header(2, 0x0102_0304), [2, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(frame_header(1, 5), [1, 0, 0, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn slow_reader_is_dropped() {
        let (a, _b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut c = Client::new(a);
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..40 {
            c.send_output(1, &chunk, false);
        }
        assert!(c.dead);
    }
}
