//! `--user` resolution: `uid`, `uid:gid`, `name`, `name:group` and `--group-add`,
//! looked up in the container's own /etc/passwd and /etc/group. Those files belong
//! to the image, so they are opened with the rootfs as the root of path resolution:
//! a symlinked /etc/passwd cannot make us read the host's.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::spec::ResolvedUser;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("invalid user specification {0:?}")]
    Invalid(String),
}

/// Read a file of the rootfs, resolving every path component inside it.
pub fn read_in_root(rootfs: &Path, path: &str) -> Option<String> {
    let root = CString::new(rootfs.as_os_str().as_bytes()).ok()?;
    let rel = CString::new(path.trim_start_matches('/')).ok()?;
    // SAFETY: open(2) of a NUL-terminated path; the fd is owned below.
    let dirfd = unsafe {
        libc::open(
            root.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dirfd < 0 {
        return None;
    }
    // SAFETY: dirfd was just opened and is owned only here.
    let dir = unsafe { OwnedFd::from_raw_fd(dirfd) };
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: openat2 reads `how` (size given) and the NUL-terminated path.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: openat2 returned a new fd that nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    let mut text = String::new();
    // Bound the read: an image's passwd file is small; a huge one is an attack.
    (&mut file).take(4 << 20).read_to_string(&mut text).ok()?;
    Some(text)
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .collect()
}

fn groups(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolve `spec` (empty means root) and `group_add` for a container whose root
/// filesystem is at `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<ResolvedUser, UserError> {
    let pw = passwd(&read_in_root(rootfs, "/etc/passwd").unwrap_or_default());
    let gr = groups(&read_in_root(rootfs, "/etc/group").unwrap_or_default());
    resolve_with(&pw, &gr, spec, group_add)
}

fn resolve_with(
    pw: &[PasswdEntry],
    gr: &[GroupEntry],
    spec: &str,
    group_add: &[String],
) -> Result<ResolvedUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid, name) = if user_part.is_empty() {
        (0, 0, Some("root".to_string()))
    } else if let Ok(uid) = user_part.parse::<u32>() {
        match pw.iter().find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, Some(e.name.clone())),
            None => (uid, 0, None),
        }
    } else {
        let e = pw
            .iter()
            .find(|e| e.name == user_part)
            .ok_or_else(|| UserError::NoUser(user_part.to_string()))?;
        (e.uid, e.gid, Some(e.name.clone()))
    };
    if let Some(g) = group_part {
        if g.is_empty() {
            return Err(UserError::Invalid(spec.to_string()));
        }
        gid = lookup_group(gr, g)?;
    }
    let mut additional: Vec<u32> = Vec::new();
    if let Some(name) = &name {
        // Supplementary groups the user is a member of, as Docker sets them.
        for g in gr.iter().filter(|g| g.members.iter().any(|m| m == name)) {
            if g.gid != gid && !additional.contains(&g.gid) {
                additional.push(g.gid);
            }
        }
    }
    for g in group_add {
        let id = lookup_group(gr, g)?;
        if !additional.contains(&id) {
            additional.push(id);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

fn lookup_group(gr: &[GroupEntry], g: &str) -> Result<u32, UserError> {
    if let Ok(id) = g.parse::<u32>() {
        return Ok(id);
    }
    gr.iter()
        .find(|e| e.name == g)
        .map(|e| e.gid)
        .ok_or_else(|| UserError::NoGroup(g.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app\n",
        )
        .expect("write");
        let r = |s: &str| resolve(dir.path(), s, &[]);
        assert_eq!(r("").map(|u| (u.uid, u.gid)), Ok((0, 0)));
        assert_eq!(
            r("app").map(|u| (u.uid, u.gid, u.additional_gids)),
            Ok((1000, 1000, vec![10]))
        );
        assert_eq!(r("nobody:app").map(|u| (u.uid, u.gid)), Ok((65534, 1000)));
        assert_eq!(r("1234:5678").map(|u| (u.uid, u.gid)), Ok((1234, 5678)));
        assert_eq!(r("65534").map(|u| (u.uid, u.gid)), Ok((65534, 65534)));
        assert!(matches!(r("ghost"), Err(UserError::NoUser(_))));
        assert!(matches!(r("app:ghosts"), Err(UserError::NoGroup(_))));
        let with_groups = resolve(
            dir.path(),
            "app",
            &["nogroup".to_string(), "42".to_string()],
        );
        assert_eq!(
            with_groups.map(|u| u.additional_gids),
            Ok(vec![10, 65534, 42])
        );
    }

    #[test]
    fn symlinked_passwd_stays_inside_the_rootfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        // An image whose /etc/passwd points at the host's: resolved inside the rootfs,
        // it names a file that does not exist there.
        std::os::unix::fs::symlink("/etc/shadow", dir.path().join("etc/passwd")).expect("symlink");
        assert_eq!(read_in_root(dir.path(), "/etc/passwd"), None);
        std::os::unix::fs::symlink("../../../../etc/hostname", dir.path().join("etc/group"))
            .expect("symlink");
        assert_eq!(read_in_root(dir.path(), "/etc/group"), None);
    }
}
