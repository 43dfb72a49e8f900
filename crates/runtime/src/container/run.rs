//! `run`: create and start in one step; in the foreground, wait for the container
//! to exit (forwarding signals), delete it, and exit with its code.

use nix::sys::signal::{sigprocmask, SigmaskHow};

use super::create::{self, CreateOptions, Mode};
use super::{delete, forwarding_mask, start, wait_forwarding, Global};
use crate::error::{Result, RuntimeError};
use crate::sync::Message;

/// Returns the exit code for the runtime process.
pub fn run(global: &Global, opts: &CreateOptions, detach: bool) -> Result<i32> {
    if detach {
        create::create(global, opts, Mode::Create)?;
        start::start(global, &opts.id)?;
        return Ok(0);
    }
    // We wait for the init, which is our child (or, when a staged spawn forked it,
    // our grandchild: be a subreaper so it is re-parented to us).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mask = forwarding_mask();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| RuntimeError::sys("block signals", e))?;
    let created = create::create(global, opts, Mode::Run)?;
    let pid = created.state.pid;
    created.channel.send(&Message::Proceed)?;
    // The init is released; a failing poststart hook is reported but the container
    // keeps running, as the spec says.
    if let Err(e) = start::run_poststart(&created.state) {
        eprintln!("berth-runtime: {e}");
    }
    let code = wait_forwarding(pid, &mask)?;
    delete::delete(global, &opts.id, true)?;
    Ok(code)
}
