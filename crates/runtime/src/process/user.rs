//! The container user: uid, gid, additional gids, umask; and PATH lookup of args[0].
//!
//! STUB: being written.

use std::ffi::CString;

use oci_spec::runtime::User;

use crate::error::Result;

/// Switch to the spec's user, keeping capabilities across the uid change so that
/// [`super::capabilities::apply_process_sets`] can set them afterwards.
pub fn apply(user: &User) -> Result<()> {
    let _ = user;
    Ok(())
}

/// Resolve `args[0]` against `PATH` from the process env (as execvp would, but
/// before exec so that a missing binary is reported while the runtime still listens).
pub fn find_executable(arg0: &str, env: &[String], cwd: &str) -> Result<CString> {
    let _ = (env, cwd);
    CString::new(arg0).map_err(|_| crate::RuntimeError::invalid("process.args[0]", "contains NUL"))
}
