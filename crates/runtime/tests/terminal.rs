//! `terminal: true` with `--console-socket`: the runtime sends the pty master over the
//! unix socket (SCM_RIGHTS); the test reads what the container prints on its terminal.

mod common;

use common::*;
use serde_json::json;
use std::fs::File;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Accepts one connection on `path` and returns the fd it carries.
fn receive_master(path: &Path) -> JoinHandle<File> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut name = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        for cmsg in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = cmsg {
                // SAFETY: the fd was just received over SCM_RIGHTS and nothing else owns it.
                return unsafe { File::from_raw_fd(fds[0]) };
            }
        }
        panic!("no fd received on the console socket");
    })
}

/// Reads the pty master until `needle` shows up, EOF/EIO, or 10 s.
fn read_until(master: &mut File, needle: &str) -> String {
    let fd = master.as_raw_fd();
    let mut seen = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let mut fds = [nix::poll::PollFd::new(
            // SAFETY: `master` outlives this borrow.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if String::from_utf8_lossy(&seen).contains(needle) {
            break;
        }
    }
    String::from_utf8_lossy(&seen).to_string()
}

#[test]
fn console_socket_receives_the_pty_master() {
    let t = Test::new("console");
    let socket = t.dir.join("console.sock");
    let receiver = receive_master(&socket);
    let mut b = t.bundle();
    b.config["process"]["terminal"] = json!(true);
    b.sh("tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys; echo ok; sleep 1000");
    t.prepare(&mut b, "c1");
    t.rt(&[
        "create",
        "--console-socket",
        socket.to_str().unwrap(),
        "--bundle",
        b.path.to_str().unwrap(),
        "c1",
    ])
    .ok();
    let mut master = receiver.join().unwrap();
    t.rt(&["start", "c1"]).ok();
    let out = read_until(&mut master, "ok\r\n");
    // The pty turns "\n" into "\r\n": proof the output went through a terminal.
    assert!(out.contains("/dev/pts/0\r\nall-ttys\r\nok\r\n"), "{out:?}");
    t.delete("c1", true);
}

#[test]
fn terminal_without_console_socket_fails() {
    let t = Test::new("noconsole");
    let mut b = t.bundle();
    b.config["process"]["terminal"] = json!(true);
    b.sh("true");
    let out = t.create(&mut b, "c1").failed();
    assert!(out.stderr.contains("console"), "{out}");
    t.assert_nothing_left("c1");
}

#[test]
fn exec_with_terminal_and_console_socket() {
    let t = Test::new("exectty");
    let mut b = t.bundle();
    t.start_background(&mut b, "c1", "exec sleep 1000");
    let socket = t.dir.join("exec-console.sock");
    let receiver = receive_master(&socket);
    t.rt(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        socket.to_str().unwrap(),
        "c1",
        "sh",
        "-c",
        "tty; echo exec-ok; sleep 2",
    ])
    .ok();
    let mut master = receiver.join().unwrap();
    let out = read_until(&mut master, "exec-ok\r\n");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("exec-ok\r\n"), "{out:?}");
    t.delete("c1", true);
}
