//! Resolve a container path inside the rootfs so that it can never leave it.
//!
//! The walk goes one component at a time from an `O_PATH` descriptor of the root:
//! `..` at the root stays at the root, a symlink (absolute or relative) is read and
//! its target resolved again inside the root, and every step opens with `O_NOFOLLOW`
//! so the kernel never follows a link on our behalf. Missing components can be
//! created on the way (directories, or an empty file for the last one).
//!
//! `openat2(RESOLVE_IN_ROOT)` would do the lookup in one call, but it cannot create
//! and we need creation for almost every mount destination, so one walk serves both.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};

/// Linux's own limit on symlinks followed in one lookup (MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// What to do when a component of the path does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Fail with ENOENT.
    Nothing,
    /// Create every missing component as a directory.
    Dir,
    /// Create missing parents as directories and the last component as an empty file.
    File,
}

#[derive(Debug, thiserror::Error)]
pub enum SafePathError {
    #[error("cannot open rootfs {root:?}: {source}")]
    Root { root: PathBuf, source: Errno },
    #[error("{path:?} (inside the rootfs): {source}")]
    Component { path: PathBuf, source: Errno },
    #[error("{path:?} (inside the rootfs): too many levels of symbolic links")]
    TooManySymlinks { path: PathBuf },
    #[error("{path:?} (inside the rootfs): not a directory")]
    NotDirectory { path: PathBuf },
    #[error("{path:?} resolved to {real:?}, outside the rootfs {root:?}")]
    Escaped {
        path: PathBuf,
        real: PathBuf,
        root: PathBuf,
    },
}

impl SafePathError {
    /// The errno behind the failure, for callers that tolerate e.g. ENOENT.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            SafePathError::Root { source, .. } | SafePathError::Component { source, .. } => {
                Some(*source)
            }
            SafePathError::TooManySymlinks { .. } => Some(Errno::ELOOP),
            SafePathError::NotDirectory { .. } => Some(Errno::ENOTDIR),
            SafePathError::Escaped { .. } => None,
        }
    }
}

/// A path resolved inside a root.
#[derive(Debug)]
pub struct Resolved {
    /// `O_PATH` descriptor of the object the path names.
    pub fd: OwnedFd,
    /// The path as it lies inside the root, absolute, symlinks and `..` resolved.
    pub inner: PathBuf,
    /// The same object's path on the host (`root` joined with `inner`).
    pub host: PathBuf,
    /// Whether the object is a directory.
    pub is_dir: bool,
}

/// Lexically clean an absolute path inside a root: drop `.`, apply `..` without ever
/// going above `/`. Used where no filesystem is consulted (messages, the test double).
pub fn clean_inner(path: &Path) -> PathBuf {
    let mut parts: Vec<&OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => parts.push(name),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut out = PathBuf::from("/");
    out.extend(parts);
    out
}

fn push_components_front(pending: &mut VecDeque<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    for part in parts.into_iter().rev() {
        pending.push_front(part);
    }
}

fn inner_path(stack: &[(OwnedFd, OsString)]) -> PathBuf {
    let mut out = PathBuf::from("/");
    out.extend(stack.iter().map(|(_, name)| name));
    out
}

fn open_path(dir: impl AsFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn file_type(fd: impl AsFd) -> nix::Result<SFlag> {
    let st = fstat(fd)?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
}

/// Resolve `path` (taken as absolute inside `root`, whatever its form) to an object
/// inside `root`, creating missing components as `create` says.
pub fn resolve_in_root(
    root: &Path,
    path: &Path,
    create: Create,
) -> Result<Resolved, SafePathError> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| SafePathError::Root {
        root: root.to_path_buf(),
        source,
    })?;

    let mut pending = VecDeque::new();
    push_components_front(&mut pending, path);
    // Directories entered below the root, with the name they were entered by.
    let mut stack: Vec<(OwnedFd, OsString)> = Vec::new();
    let mut symlinks = 0usize;
    // Bounds create-then-reopen retries should another process race us.
    let mut creations = 0usize;

    while let Some(name) = pending.pop_front() {
        if name == ".." {
            stack.pop();
            continue;
        }
        let is_last = pending.is_empty();
        let dir_fd = stack.last().map(|(fd, _)| fd).unwrap_or(&root_fd);
        let component_path = || inner_path(&stack).join(&name);
        match open_path(dir_fd, &name) {
            Ok(fd) => {
                let kind = file_type(&fd).map_err(|source| SafePathError::Component {
                    path: component_path(),
                    source,
                })?;
                if kind == SFlag::S_IFLNK {
                    symlinks += 1;
                    if symlinks > MAX_SYMLINKS {
                        return Err(SafePathError::TooManySymlinks {
                            path: component_path(),
                        });
                    }
                    let target = readlinkat(dir_fd, name.as_os_str()).map_err(|source| {
                        SafePathError::Component {
                            path: component_path(),
                            source,
                        }
                    })?;
                    let target = PathBuf::from(target);
                    if target.is_absolute() {
                        stack.clear();
                    }
                    push_components_front(&mut pending, &target);
                    continue;
                }
                if !is_last && kind != SFlag::S_IFDIR {
                    return Err(SafePathError::NotDirectory {
                        path: component_path(),
                    });
                }
                stack.push((fd, name));
            }
            Err(Errno::ENOENT) if create != Create::Nothing && creations < MAX_SYMLINKS => {
                creations += 1;
                let made = if is_last && create == Create::File {
                    openat(
                        dir_fd,
                        name.as_os_str(),
                        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                } else {
                    mkdirat(dir_fd, name.as_os_str(), Mode::from_bits_truncate(0o755))
                };
                match made {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(source) => {
                        return Err(SafePathError::Component {
                            path: component_path(),
                            source,
                        })
                    }
                }
                // Open what we made through the normal path, so a racing symlink
                // is treated as any other.
                pending.push_front(name);
            }
            Err(source) => {
                return Err(SafePathError::Component {
                    path: component_path(),
                    source,
                })
            }
        }
    }

    let inner = inner_path(&stack);
    let fd = match stack.pop() {
        Some((fd, _)) => fd,
        None => root_fd,
    };
    let is_dir = file_type(&fd).map_err(|source| SafePathError::Component {
        path: inner.clone(),
        source,
    })? == SFlag::S_IFDIR;
    if create == Create::Dir && !is_dir {
        return Err(SafePathError::NotDirectory { path: inner });
    }
    let host = root.join(inner.strip_prefix("/").unwrap_or(&inner));
    check_inside(root, &fd, &inner)?;
    Ok(Resolved {
        fd,
        inner,
        host,
        is_dir,
    })
}

/// Defence in depth: ask the kernel where the descriptor really points. A directory
/// moved out of the root while we walked would show here.
fn check_inside(root: &Path, fd: &OwnedFd, inner: &Path) -> Result<(), SafePathError> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let Ok(real) = std::fs::read_link(&link) else {
        // No /proc (early boot, tests in odd sandboxes): the walk alone must do.
        return Ok(());
    };
    let root_real = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    if real.starts_with(&root_real) {
        Ok(())
    } else {
        Err(SafePathError::Escaped {
            path: inner.to_path_buf(),
            real,
            root: root_real,
        })
    }
}

/// The path through which the kernel reaches an `O_PATH` descriptor; mounting on
/// it mounts on exactly the object we resolved, whatever happens to the names.
pub fn proc_fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        dir
    }

    #[test]
    fn dotdot_stays_in_root() {
        let root = rootfs();
        let r = resolve_in_root(root.path(), Path::new("../../etc"), Create::Nothing).unwrap();
        assert_eq!(r.inner, Path::new("/etc"));
        assert_eq!(r.host, root.path().join("etc"));
        let r = resolve_in_root(root.path(), Path::new("/usr/../../../"), Create::Nothing).unwrap();
        assert_eq!(r.inner, Path::new("/"));
    }

    #[test]
    fn creates_inside_root_never_outside() {
        let root = rootfs();
        let name = format!("berth-safe-path-{}", std::process::id());
        let dest = format!("../../../tmp/../etc/{name}");
        let r = resolve_in_root(root.path(), Path::new(&dest), Create::File).unwrap();
        assert_eq!(r.inner, Path::new("/etc").join(&name));
        assert!(root.path().join("etc").join(&name).is_file());
        assert!(!Path::new("/etc").join(&name).exists());
    }

    #[test]
    fn absolute_symlink_resolves_in_root() {
        let root = rootfs();
        symlink("/etc", root.path().join("evil")).unwrap();
        let r = resolve_in_root(root.path(), Path::new("/evil/sub/x"), Create::Dir).unwrap();
        assert_eq!(r.inner, Path::new("/etc/sub/x"));
        assert!(root.path().join("etc/sub/x").is_dir());
        assert!(!Path::new("/etc/sub/x").exists());
    }

    #[test]
    fn relative_symlink_climbing_out_is_clamped() {
        let root = rootfs();
        symlink("../../../../../../usr", root.path().join("etc/up")).unwrap();
        let r = resolve_in_root(root.path(), Path::new("/etc/up/lib"), Create::Nothing).unwrap();
        assert_eq!(r.inner, Path::new("/usr/lib"));
        assert!(r.is_dir);
    }

    #[test]
    fn dangling_symlink_in_last_component_creates_target_inside() {
        let root = rootfs();
        symlink("/etc/target-file", root.path().join("link")).unwrap();
        let r = resolve_in_root(root.path(), Path::new("/link"), Create::File).unwrap();
        assert_eq!(r.inner, Path::new("/etc/target-file"));
        assert!(root.path().join("etc/target-file").is_file());
        assert!(!r.is_dir);
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let root = rootfs();
        symlink("b", root.path().join("a")).unwrap();
        symlink("a", root.path().join("b")).unwrap();
        let err = resolve_in_root(root.path(), Path::new("/a/x"), Create::Dir).unwrap_err();
        assert!(
            matches!(err, SafePathError::TooManySymlinks { .. }),
            "{err}"
        );
        symlink("self", root.path().join("self")).unwrap();
        let err = resolve_in_root(root.path(), Path::new("/self"), Create::Nothing).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::ELOOP));
    }

    #[test]
    fn missing_without_create_is_enoent_and_file_in_middle_is_enotdir() {
        let root = rootfs();
        let err = resolve_in_root(root.path(), Path::new("/nope/x"), Create::Nothing).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::ENOENT));
        std::fs::write(root.path().join("etc/file"), b"").unwrap();
        let err = resolve_in_root(root.path(), Path::new("/etc/file/x"), Create::Dir).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::ENOTDIR));
        let err = resolve_in_root(root.path(), Path::new("/etc/file"), Create::Dir).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::ENOTDIR));
    }

    #[test]
    fn clean_inner_is_lexical_and_clamped() {
        assert_eq!(clean_inner(Path::new("../../etc/./x")), Path::new("/etc/x"));
        assert_eq!(clean_inner(Path::new("/a/b/../../..")), Path::new("/"));
    }
}
