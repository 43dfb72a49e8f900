//! OCI hooks: run each program with the container's state JSON on stdin, its args and
//! env, and kill it when its timeout passes.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Result, RuntimeError};

/// Run `hooks` in order; the first failure stops the rest.
pub fn run(phase: &'static str, hooks: &[Hook], state_json: &[u8]) -> Result<()> {
    for hook in hooks {
        run_one(phase, hook, state_json)?;
    }
    Ok(())
}

fn run_one(phase: &'static str, hook: &Hook, state_json: &[u8]) -> Result<()> {
    let fail = |message: String| RuntimeError::Hook {
        phase,
        path: hook.path().clone(),
        message,
    };
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((arg0, rest)) = args.split_first() {
            cmd.arg0(arg0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin; that is not an error.
        let _ = stdin.write_all(state_json);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = match deadline {
        None => child.wait().map_err(|e| fail(format!("wait: {e}")))?,
        Some(deadline) => {
            let mut pause = Duration::from_millis(1);
            loop {
                if let Some(status) = child.try_wait().map_err(|e| fail(format!("wait: {e}")))? {
                    break status;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!(
                        "timed out after {} s",
                        hook.timeout().unwrap_or_default()
                    )));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    };
    if !status.success() {
        return Err(fail(format!("exited with {status}")));
    }
    Ok(())
}
