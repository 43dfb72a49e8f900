//! `run`: create and start in one step; in the foreground, wait for the container
//! to exit (forwarding signals), delete it, and exit with its code.

use nix::sys::signal::{sigprocmask, SigmaskHow};

use super::create::{self, CreateOptions, Mode};
use std::os::fd::AsRawFd;

use nix::sys::signal::Signal;

use super::{delete, forwarding_mask, start, tty, wait_forwarding, wait_forwarding_with, Global};
use crate::error::{Result, RuntimeError};
use crate::sync::Message;

/// Returns the exit code for the runtime process.
pub fn run(global: &Global, opts: &CreateOptions, detach: bool, keep: bool) -> Result<i32> {
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
    let terminal = wants_own_console(opts)?;
    let listener = if terminal {
        Some(tty::ConsoleListener::bind(&global.root)?)
    } else {
        None
    };
    let mut opts = opts.clone();
    if let Some(l) = &listener {
        opts.console_socket = Some(l.path().to_path_buf());
    }
    let created = create::create(global, &opts, Mode::Run)?;
    let pid = created.state.pid;
    let console = match &listener {
        Some(l) => {
            let master = l.receive_master()?;
            tty::copy_window_size(master.as_raw_fd());
            let raw = tty::RawMode::enter();
            let done = tty::start_copy(&master)?;
            Some((master, raw, done))
        }
        None => None,
    };
    drop(listener);
    created.channel.send(&Message::Proceed)?;
    // The channel is close-on-exec in the init: EOF means the user's program is
    // running; a message means exec (or a startContainer hook) failed.
    if let Ok(Some(Message::Error(text))) = created.channel.recv() {
        drop(console);
        let _ = wait_forwarding(pid, &mask);
        let _ = delete::delete(global, &opts.id, true);
        return Err(crate::error::RuntimeError::Init(text));
    }
    // The init is released; a failing poststart hook is reported but the container
    // keeps running, as the spec says.
    if let Err(e) = start::run_poststart(&created.state) {
        eprintln!("berth-runtime: warning: {e}");
    }
    let code = match &console {
        Some((master, _, _)) => {
            let fd = master.as_raw_fd();
            wait_forwarding_with(pid, &mask, &|sig| {
                if sig == Signal::SIGWINCH {
                    tty::copy_window_size(fd);
                    return true;
                }
                false
            })?
        }
        None => wait_forwarding(pid, &mask)?,
    };
    if let Some((_, raw, done)) = console {
        tty::drain(&done);
        drop(raw);
    }
    if !keep {
        delete::delete(global, &opts.id, true)?;
    }
    Ok(code)
}

/// A foreground `run` of a spec with `terminal: true` and no `--console-socket`:
/// we are the console.
fn wants_own_console(opts: &CreateOptions) -> Result<bool> {
    if opts.console_socket.is_some() {
        return Ok(false);
    }
    let bundle = crate::bundle::load(&opts.bundle)?;
    Ok(bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false))
}
