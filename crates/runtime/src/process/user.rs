//! The container user: uid, gid, additional gids, umask; and PATH lookup of `args[0]`.
//!
//! Not owned here: capabilities. [`apply`] only keeps the permitted set across the uid
//! change; [`super::capabilities::apply_process_sets`] then sets the sets.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::User;

use crate::error::{Result, RuntimeError};

/// execvp's default when the environment has no PATH (and runc's).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Switch to the spec's user, keeping capabilities across the uid change so that
/// [`super::capabilities::apply_process_sets`] can set them afterwards.
pub fn apply(user: &User) -> Result<()> {
    let (uid, gid) = (user.uid(), user.gid());
    let additional = user.additional_gids().as_deref().unwrap_or(&[]);
    set_groups(additional)?;
    // Without this the permitted set is emptied when the uid leaves 0; the effective set
    // is emptied regardless and refilled by capset. Execve clears the flag.
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(RuntimeError::sys(
            "prctl(PR_SET_KEEPCAPS)",
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: setresgid with plain integer ids.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(RuntimeError::sys(
            format!("setresgid to gid {gid}"),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: setresuid with plain integer ids.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(RuntimeError::sys(
            format!("setresuid to uid {uid}"),
            nix::errno::Errno::last(),
        ));
    }
    if let Some(mask) = user.umask() {
        // SAFETY: umask cannot fail; the mode is masked to permission bits.
        unsafe { libc::umask((mask & 0o777) as libc::mode_t) };
    }
    Ok(())
}

/// Supplementary groups: exactly the additional gids, as runc sets them (an empty list
/// clears the runtime's own groups). The primary gid is not added: Docker's engine puts
/// it first in `additionalGids` itself, and a plain OCI bundle run by runc has only
/// what it lists.
fn set_groups(additional: &[u32]) -> Result<()> {
    // SAFETY: `additional` holds `additional.len()` valid gids and outlives the call.
    if unsafe { libc::setgroups(additional.len(), additional.as_ptr()) } == 0 {
        return Ok(());
    }
    let errno = nix::errno::Errno::last();
    // In a user namespace whose setgroups is denied (rootless) the call cannot work;
    // when the spec asks for no groups, runc goes on with the ones the process has.
    if errno == nix::errno::Errno::EPERM && additional.is_empty() && setgroups_denied() {
        return Ok(());
    }
    Err(RuntimeError::sys(
        format!("setgroups to {additional:?}"),
        errno,
    ))
}

fn setgroups_denied() -> bool {
    std::fs::read("/proc/self/setgroups")
        .map(|content| content.trim_ascii() == b"deny")
        .unwrap_or(false)
}

/// Resolve `args[0]` against `PATH` from the process env (as execvp would, but
/// before exec so that a missing binary is reported while the runtime still listens).
/// Relative results are made absolute against `cwd`, since the caller may not have
/// changed into it yet. Errors read as runc's, which Docker maps to exit codes 126/127.
pub fn find_executable(arg0: &str, env: &[String], cwd: &str) -> Result<CString> {
    if arg0.is_empty() {
        return Err(not_found(arg0));
    }
    let found = if arg0.contains('/') {
        let path = in_cwd(Path::new(arg0), cwd);
        check_executable(&path).map_err(|reason| {
            RuntimeError::Other(format!("exec: {arg0:?}: {}", describe(&path, reason)))
        })?;
        path
    } else {
        let search = env
            .iter()
            .rev()
            .find_map(|entry| entry.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        search
            .split(':')
            .map(|dir| {
                // An empty entry means the current directory, as for execvp.
                let dir = if dir.is_empty() { "." } else { dir };
                in_cwd(&Path::new(dir).join(arg0), cwd)
            })
            .find(|candidate| check_executable(candidate).is_ok())
            .ok_or_else(|| not_found(arg0))?
    };
    CString::new(found.into_os_string().into_encoded_bytes())
        .map_err(|_| RuntimeError::invalid("process.args[0]", format!("{arg0:?} contains NUL")))
}

fn in_cwd(path: &Path, cwd: &str) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        Path::new(cwd).join(path)
    }
}

enum NotExecutable {
    Missing(std::io::Error),
    NoPermission,
}

fn check_executable(path: &Path) -> std::result::Result<(), NotExecutable> {
    let metadata = std::fs::metadata(path).map_err(NotExecutable::Missing)?;
    if metadata.is_file() && metadata.permissions().mode() & 0o111 != 0 {
        Ok(())
    } else {
        Err(NotExecutable::NoPermission)
    }
}

fn describe(path: &Path, reason: NotExecutable) -> String {
    match reason {
        NotExecutable::Missing(e) => {
            let text = match e.raw_os_error() {
                Some(code) => nix::errno::Errno::from_raw(code).desc().to_lowercase(),
                None => e.to_string(),
            };
            format!("stat {}: {text}", path.display())
        }
        NotExecutable::NoPermission => "permission denied".to_string(),
    }
}

fn not_found(arg0: &str) -> RuntimeError {
    RuntimeError::Other(format!(
        "exec: {arg0:?}: executable file not found in $PATH"
    ))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use oci_spec::runtime::UserBuilder;

    use super::*;
    use crate::process::test_support::in_child;

    fn executable(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn lookup(arg0: &str, env: &[&str], cwd: &Path) -> Result<String> {
        let env: Vec<String> = env.iter().map(|e| e.to_string()).collect();
        find_executable(arg0, &env, cwd.to_str().unwrap()).map(|c| c.into_string().unwrap())
    }

    #[test]
    fn searches_path_in_order_and_skips_non_executables() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        executable(&first, "tool", 0o644);
        std::fs::create_dir(first.join("dir")).unwrap();
        let wanted = executable(&second, "tool", 0o755);
        executable(&second, "dir", 0o755);
        let path = format!("PATH={}:{}", first.display(), second.display());
        let env = ["PATH=/nowhere", path.as_str()];
        assert_eq!(
            lookup("tool", &env, dir.path()).unwrap(),
            wanted.to_str().unwrap()
        );
        assert_eq!(
            lookup("dir", &env, dir.path()).unwrap(),
            second.join("dir").to_str().unwrap()
        );
        let err = lookup("missing", &env, dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"exec: "missing": executable file not found in $PATH"#
        );
    }

    #[test]
    fn relative_path_entries_and_names_resolve_against_cwd() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let wanted = executable(&dir.path().join("bin"), "run", 0o700);
        let want = wanted.to_str().unwrap();
        assert_eq!(lookup("run", &["PATH=bin"], dir.path()).unwrap(), want);
        assert_eq!(
            lookup("./bin/run", &[], dir.path()).unwrap(),
            format!("{}/./bin/run", dir.path().display())
        );
        assert_eq!(lookup(want, &[], Path::new("/")).unwrap(), want);
    }

    #[test]
    fn default_path_finds_sh() {
        let found = lookup("sh", &["HOME=/root"], Path::new("/")).unwrap();
        assert!(found.ends_with("/sh"), "{found}");
    }

    #[test]
    fn errors_read_as_runc_s() {
        let dir = tempfile::tempdir().unwrap();
        executable(dir.path(), "plain", 0o644);
        let err = lookup("./plain", &[], dir.path()).unwrap_err().to_string();
        assert_eq!(err, r#"exec: "./plain": permission denied"#);
        let err = lookup("/no/such/file", &[], dir.path())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            r#"exec: "/no/such/file": stat /no/such/file: no such file or directory"#
        );
    }

    #[test]
    fn switches_uid_gid_groups_and_umask() {
        let user = UserBuilder::default()
            .uid(1234u32)
            .gid(2345u32)
            .additional_gids(vec![10u32, 2345, 20])
            .umask(0o027u32)
            .build()
            .unwrap();
        let outcome = in_child(|| {
            apply(&user).map_err(|e| e.to_string())?;
            let (mut r, mut e, mut s) = (0, 0, 0);
            // SAFETY: valid out-pointers.
            unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
            if (r, e, s) != (1234, 1234, 1234) {
                return Err(format!("uids {r} {e} {s}"));
            }
            // SAFETY: valid out-pointers.
            unsafe { libc::getresgid(&mut r, &mut e, &mut s) };
            if (r, e, s) != (2345, 2345, 2345) {
                return Err(format!("gids {r} {e} {s}"));
            }
            let mut groups = [0u32; 8];
            // SAFETY: `groups` has room for 8 entries.
            let count = unsafe { libc::getgroups(8, groups.as_mut_ptr()) };
            let mut got = groups[..count.max(0) as usize].to_vec();
            got.sort_unstable();
            if got != [10, 20, 2345] {
                return Err(format!("groups {got:?}"));
            }
            // SAFETY: umask cannot fail; this child exits right after.
            let mask = unsafe { libc::umask(0) };
            if mask != 0o027 {
                return Err(format!("umask {mask:o}"));
            }
            Ok(())
        });
        assert_eq!(outcome, Ok(()));
    }

    #[test]
    fn empty_additional_gids_clear_the_groups() {
        let user = UserBuilder::default().uid(0u32).gid(0u32).build().unwrap();
        let outcome = in_child(|| {
            let some = [3u32, 4];
            // SAFETY: `some` holds two gids.
            unsafe { libc::setgroups(2, some.as_ptr()) };
            apply(&user).map_err(|e| e.to_string())?;
            // SAFETY: a zero-sized query of the group count.
            let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
            if count != 0 {
                return Err(format!("{count} groups left"));
            }
            Ok(())
        });
        assert_eq!(outcome, Ok(()));
    }

    #[test]
    fn denied_setgroups_is_skipped_only_when_no_groups_are_asked() {
        let outcome = in_child(|| {
            // SAFETY: unshare in this single-threaded child.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
                return Err("unshare(CLONE_NEWUSER) failed".into());
            }
            for (file, content) in [
                ("/proc/self/setgroups", "deny"),
                ("/proc/self/uid_map", "0 0 1"),
                ("/proc/self/gid_map", "0 0 1"),
            ] {
                std::fs::write(file, content).map_err(|e| format!("{file}: {e}"))?;
            }
            let plain = UserBuilder::default().uid(0u32).gid(0u32).build().unwrap();
            apply(&plain).map_err(|e| e.to_string())?;
            let with_groups = UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .additional_gids(vec![0u32])
                .build()
                .unwrap();
            match apply(&with_groups) {
                Err(e) if e.to_string().contains("setgroups") => Ok(()),
                other => Err(format!("with groups: {other:?}")),
            }
        });
        assert_eq!(outcome, Ok(()));
    }
}
