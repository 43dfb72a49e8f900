//! Tests for this module change the identity of the process they run in, so each runs
//! its body in a forked child and reports the outcome through a pipe.

use std::io::{Read, Write};

/// Run `body` in a forked child; its `Err` text (or a panic) comes back as `Err`.
pub(crate) fn in_child(body: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only runs the test body and then `_exit`s; glibc keeps malloc
    // usable in the child of a multi-threaded parent.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(read_end);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
            .unwrap_or_else(|_| Err("test body panicked".to_string()));
        let code = match outcome {
            Ok(()) => 0,
            Err(text) => {
                let mut file = std::fs::File::from(write_end);
                let _ = file.write_all(text.as_bytes());
                1
            }
        };
        // SAFETY: leave the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(write_end);
    let mut text = String::new();
    let mut file = std::fs::File::from(read_end);
    let _ = file.read_to_string(&mut text);
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else if libc::WIFSIGNALED(status) {
        Err(format!("child killed by signal {}", libc::WTERMSIG(status)))
    } else {
        Err(text)
    }
}
