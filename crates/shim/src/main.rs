//! berth-shim: the per-container monitor that berthd spawns, one per running
//! container (what containerd-shim and conmon are elsewhere).
//!
//! Start-up: fork (the parent exits at once, so the shim is re-parented away from
//! berthd), setsid, become child subreaper, move into the state directory, write
//! shim.pid, create and release the container, then report `{"pid":N}` or
//! `{"error":…}` on fd 3 and serve shim.sock until the container is gone.
//!
//! The shim's private memory is a budgeted figure: no async runtime, no threads,
//! small buffers, and the container's parsed spec dropped once it runs.

mod args;
mod client;
mod error;
mod logfile;
mod process;
mod server;
mod status;
mod sys;

use std::io::Write;
use std::os::fd::OwnedFd;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::args::Options;
use crate::error::ShimError;
use crate::server::Shim;

/// The readiness pipe berthd hands us.
const READY_FD: i32 = 3;
const PID_FILE: &str = "shim.pid";

fn main() {
    // berthd hands the readiness pipe over as our stdout (`--ready-stdout`: then it
    // can start us with posix_spawn, without a fork of its whole address space), other
    // callers as fd 3.
    let ready = if std::env::args().any(|a| a == "--ready-stdout") {
        sys::take_stdout_as_fd()
    } else {
        sys::take_inherited_fd(READY_FD)
    };
    sys::close_inherited_from(READY_FD as u32 + 1);
    let opts = match args::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => fail(ready, &e, 2),
    };
    if let Err(e) = sys::fork_away() {
        fail(ready, &e, 1);
    }
    match start(&opts) {
        Ok(shim) => {
            report(ready, &serde_json::json!({"pid": shim.init_pid()}));
            sys::trim_heap();
            sys::drop_startup_pages();
            shim.run()
        }
        Err(e) => {
            let _ = std::fs::remove_file(opts.state_dir.join(PID_FILE));
            fail(ready, &e, 1)
        }
    }
}

fn start(opts: &Options) -> Result<Shim, ShimError> {
    // Our own session: berthd's terminal or process group signals are not ours.
    let _ = nix::unistd::setsid();
    // Exec processes are grandchildren (the runtime's intermediate process exits):
    // they must be re-parented to us, so that we reap them and keep their status.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| ShimError::sys("set child subreaper", e))?;
    std::fs::create_dir_all(&opts.state_dir)
        .map_err(|e| ShimError::io(format!("create {}", opts.state_dir.display()), e))?;
    // Relative names from here on keep socket paths short of the 108-byte limit.
    std::env::set_current_dir(&opts.state_dir)
        .map_err(|e| ShimError::io(format!("chdir {}", opts.state_dir.display()), e))?;
    berth_runtime::state::write_atomic(
        &opts.state_dir.join(PID_FILE),
        std::process::id().to_string().as_bytes(),
    )?;
    let null = sys::open_null()?;
    let _ = nix::unistd::dup2_stdin(&null);
    let _ = nix::unistd::dup2_stdout(&null);
    Shim::start(opts, signal_setup()?)
}

/// SIGCHLD is read from a signalfd. SIGPIPE goes back to its default action (Rust
/// ignores it, and an ignored signal would be inherited by the container's
/// processes) but stays blocked here, so a write to a closed pipe or socket is an
/// EPIPE error for us. The init and exec processes reset the mask; pending
/// signals are not inherited.
fn signal_setup() -> Result<SignalFd, ShimError> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_DFL runs no handler code of ours.
    unsafe { sigaction(Signal::SIGPIPE, &default) }
        .map_err(|e| ShimError::sys("reset SIGPIPE", e))?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGPIPE);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| ShimError::sys("block signals", e))?;
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| ShimError::sys("signalfd", e))
}

/// Write one JSON line on the readiness pipe and close it.
fn report(ready: Option<OwnedFd>, value: &serde_json::Value) {
    if let Some(fd) = ready {
        let mut pipe = std::fs::File::from(fd);
        let _ = pipe.write_all(format!("{value}\n").as_bytes());
    }
}

fn fail(ready: Option<OwnedFd>, error: &ShimError, code: i32) -> ! {
    eprintln!("berth-shim: {error}");
    report(ready, &serde_json::json!({"error": error.to_string()}));
    std::process::exit(code)
}
