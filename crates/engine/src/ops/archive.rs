//! `docker cp`: `HEAD/GET/PUT /containers/{id}/archive?path=`. Every path is resolved
//! inside the container's root by the runtime library's safe resolution (one
//! component at a time, `..` stopping at the root, symlinks re-resolved inside the
//! root), and the copy then works on the descriptor it found, so neither `..` nor a
//! symlink planted by the container can lead a read or a write onto the host. Works on
//! stopped containers too (their rootfs is mounted for the call).

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_runtime::rootfs::safe_path::{proc_fd_path, resolve_in_root, Create, Resolved};
use serde::Serialize;

use crate::engine::{Engine, EngineError, Result};

/// `X-Docker-Container-Path-Stat`: what the CLI needs to know about the path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits (type bits high, permissions low), as the CLI reads them.
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Go's `os.FileMode` of a `st_mode`.
pub fn go_file_mode(st_mode: u32) -> u32 {
    const MODE_DIR: u32 = 1 << 31;
    const MODE_SYMLINK: u32 = 1 << 27;
    const MODE_DEVICE: u32 = 1 << 26;
    const MODE_NAMED_PIPE: u32 = 1 << 25;
    const MODE_SOCKET: u32 = 1 << 24;
    const MODE_SETUID: u32 = 1 << 23;
    const MODE_SETGID: u32 = 1 << 22;
    const MODE_CHAR_DEVICE: u32 = 1 << 21;
    const MODE_STICKY: u32 = 1 << 20;
    let mut mode = st_mode & 0o777;
    mode |= match st_mode & libc::S_IFMT {
        libc::S_IFDIR => MODE_DIR,
        libc::S_IFLNK => MODE_SYMLINK,
        libc::S_IFBLK => MODE_DEVICE,
        libc::S_IFCHR => MODE_DEVICE | MODE_CHAR_DEVICE,
        libc::S_IFIFO => MODE_NAMED_PIPE,
        libc::S_IFSOCK => MODE_SOCKET,
        _ => 0,
    };
    if st_mode & libc::S_ISUID != 0 {
        mode |= MODE_SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        mode |= MODE_SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        mode |= MODE_STICKY;
    }
    mode
}

/// How a request path names its object: the directory it is in, the entry's name
/// there, and the name its tar entries carry. A path ending in `/.` (and the root)
/// names the directory itself, archived as `.` so that the CLI copies its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub parent: PathBuf,
    pub name: Option<String>,
    pub as_name: String,
}

pub fn split_path(path: &str) -> Split {
    let abs = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let clean = berth_runtime::rootfs::safe_path::clean_inner(Path::new(&abs));
    // Only `/.` names the directory's contents; a trailing `/` is the directory.
    let dot = abs.ends_with("/.");
    match (dot, clean.file_name()) {
        (false, Some(name)) => Split {
            parent: clean
                .parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
            name: Some(name.to_string_lossy().into_owned()),
            as_name: name.to_string_lossy().into_owned(),
        },
        _ => Split {
            parent: clean,
            name: None,
            as_name: ".".into(),
        },
    }
}

fn rfc3339(secs: i64, nanos: i64) -> String {
    berth_runtime::state::format_rfc3339(secs, nanos.clamp(0, 999_999_999) as u32)
}

/// The parent directory, resolved inside `root`.
fn resolve_parent(root: &Path, split: &Split, shown: &str, container: &str) -> Result<Resolved> {
    let not_found = || {
        EngineError::NotFound(format!(
            "Could not find the file {shown} in container {container}"
        ))
    };
    let r = resolve_in_root(root, &split.parent, Create::Nothing).map_err(|e| match e.errno() {
        Some(nix_errno)
            if nix_errno as i32 == libc::ENOENT || nix_errno as i32 == libc::ENOTDIR =>
        {
            not_found()
        }
        _ => EngineError::Invalid(format!("{shown}: {e}")),
    })?;
    if !r.is_dir {
        return Err(not_found());
    }
    Ok(r)
}

fn stat_in(root: &Path, path: &str, container: &str) -> Result<(Resolved, Split, PathStat)> {
    let mut split = split_path(path);
    // A trailing `/` follows a symlink in the last component (as a kernel lookup
    // would); the entries keep the name the user gave.
    if path.ends_with('/') && split.name.is_some() {
        let full = split.parent.join(split.name.as_deref().unwrap_or(""));
        if let Ok(r) = resolve_in_root(root, &full, Create::Nothing) {
            let as_name = split.as_name.clone();
            split = split_path(&r.inner.display().to_string());
            if split.name.is_some() {
                split.as_name = as_name;
            }
        }
    }
    let parent = resolve_parent(root, &split, path, container)?;
    let dir = proc_fd_path(&parent.fd);
    let (meta, name) = match &split.name {
        Some(n) => (std::fs::symlink_metadata(dir.join(n)), n.clone()),
        // The directory itself, through its descriptor's magic link (followed).
        None => (
            std::fs::metadata(&dir),
            parent
                .inner
                .file_name()
                .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned()),
        ),
    };
    let meta = meta.map_err(|_| {
        EngineError::NotFound(format!(
            "Could not find the file {path} in container {container}"
        ))
    })?;
    let link_target = if meta.file_type().is_symlink() {
        let full = parent.inner.join(split.name.as_deref().unwrap_or(""));
        resolve_in_root(root, &full, Create::Nothing)
            .map(|r| r.inner.display().to_string())
            .unwrap_or_else(|_| {
                std::fs::read_link(dir.join(&name))
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            })
    } else {
        String::new()
    };
    let stat = PathStat {
        name,
        size: meta.size() as i64,
        mode: go_file_mode(meta.mode()),
        mtime: rfc3339(meta.mtime(), meta.mtime_nsec()),
        link_target,
    };
    Ok((parent, split, stat))
}

impl Engine {
    /// `HEAD /containers/{id}/archive`.
    pub fn archive_stat(&self, key: &str, path: &str) -> Result<PathStat> {
        self.with_rootfs(key, |_, rootfs| {
            stat_in(Path::new(&rootfs.merged_dir), path, key).map(|(_, _, s)| s)
        })
    }

    /// `GET /containers/{id}/archive`: calls `start` with the path's stat once it is
    /// known to exist (so the API can answer its headers, or its error), then writes
    /// the tar into the writer `start` gives back.
    pub fn archive_get<W: Write>(
        &self,
        key: &str,
        path: &str,
        start: impl FnOnce(&PathStat) -> W,
    ) -> Result<W> {
        self.with_rootfs(key, |c, rootfs| {
            let (parent, split, stat) = stat_in(Path::new(&rootfs.merged_dir), path, key)?;
            self.container_event(c, "archive-path", &[]);
            let out = start(&stat);
            let dir = proc_fd_path(&parent.fd);
            let result = match &split.name {
                Some(n) => berth_image::layer::archive_entry(
                    &dir,
                    OsStr::new(n),
                    Path::new(&split.as_name),
                    out,
                ),
                // The directory itself: its own "." entry, then what it holds.
                None => {
                    berth_image::layer::archive_entry(&dir, OsStr::new("."), Path::new("."), out)
                }
            };
            result.map_err(|e| EngineError::Internal(format!("archiving {path}: {e}")))
        })
    }

    /// `PUT /containers/{id}/archive`: unpacks the tar read from `body` into the
    /// directory at `path`. `copy_uid_gid` keeps the archive's owners; otherwise
    /// everything belongs to the container's root, as dockerd does.
    /// `no_overwrite_dir_non_dir` refuses to replace a directory by a file or the
    /// other way round. Names starting `.wh.` are plain files here, not whiteouts.
    pub fn archive_put(
        &self,
        key: &str,
        path: &str,
        body: impl Read + 'static,
        copy_uid_gid: bool,
        no_overwrite_dir_non_dir: bool,
    ) -> Result<()> {
        self.with_rootfs(key, |c, rootfs| {
            if c.host_config.readonly_rootfs {
                return Err(EngineError::Invalid(
                    "container rootfs is marked read-only".into(),
                ));
            }
            let root = Path::new(&rootfs.merged_dir);
            let abs = if path.starts_with('/') {
                PathBuf::from(path)
            } else {
                Path::new("/").join(path)
            };
            let target = resolve_in_root(root, &abs, Create::Nothing).map_err(|e| {
                match e.errno().map(|n| n as i32) {
                    Some(libc::ENOENT) | Some(libc::ENOTDIR) => EngineError::NotFound(format!(
                        "Could not find the file {path} in container {key}"
                    )),
                    _ => EngineError::Invalid(format!("{path}: {e}")),
                }
            })?;
            if !target.is_dir {
                return Err(EngineError::Invalid(
                    "extraction point is not a directory".into(),
                ));
            }
            let mut opts =
                berth_image::layer::UnpackOptions::new(format!("container {key}"), "upload");
            opts.preserve_ownership = copy_uid_gid;
            opts.no_overwrite_dir_non_dir = no_overwrite_dir_non_dir;
            opts.whiteouts = false;
            self.container_event(c, "extract-to-dir", &[]);
            berth_image::layer::unpack_layer(body, &proc_fd_path(&target.fd), &opts)
                .map(drop)
                .map_err(|e| match e {
                    berth_image::ImageError::Other(m) => EngineError::Invalid(m),
                    e => EngineError::Invalid(format!("copying into {path}: {e}")),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_as_docker_rebases_them() {
        let s = split_path("/etc/hostname");
        assert_eq!(s.parent, PathBuf::from("/etc"));
        assert_eq!(s.name.as_deref(), Some("hostname"));
        assert_eq!(s.as_name, "hostname");
        let s = split_path("/tmp/d/.");
        assert_eq!(s.parent, PathBuf::from("/tmp/d"));
        assert_eq!(s.name, None);
        assert_eq!(s.as_name, ".");
        let s = split_path("/tmp/d/");
        assert_eq!(s.name.as_deref(), Some("d"));
        assert_eq!(s.as_name, "d");
        let s = split_path("../../etc/passwd");
        assert_eq!(s.parent, PathBuf::from("/etc"));
        assert_eq!(split_path("/").name, None);
    }

    #[test]
    fn go_modes() {
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFREG | 0o644), 0o644);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
    }
}
