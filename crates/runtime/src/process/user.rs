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
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let found = if arg0.contains('/') {
        let p = if arg0.starts_with('/') {
            std::path::PathBuf::from(arg0)
        } else {
            std::path::Path::new(cwd).join(arg0)
        };
        runnable(&p).then_some(p)
    } else {
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':')
            .map(|dir| std::path::Path::new(if dir.is_empty() { "." } else { dir }).join(arg0))
            .find(|p| runnable(p))
    };
    let p = found.ok_or_else(|| {
        crate::RuntimeError::Other(format!(
            "exec: \"{arg0}\": executable file not found in $PATH"
        ))
    })?;
    CString::new(p.into_os_string().into_encoded_bytes())
        .map_err(|_| crate::RuntimeError::invalid("process.args[0]", "contains NUL"))
}
