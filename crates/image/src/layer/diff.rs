//! From a directory back to a layer tar: the diff of a container's overlay upper
//! directory (whiteout devices become `.wh.<name>`, opaque directories get
//! `.wh..wh..opq`), the `docker diff` change list, and `docker export` of a whole root
//! filesystem. Walks by directory fd with `O_NOFOLLOW`, so a symlink made inside the
//! container never leads the walk out of the tree.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, CString, OsStr};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tar::{Builder, EntryType, Header};

use super::fs;
use super::{OPAQUE_WHITEOUT, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
use crate::error::{ImageError, Result};

/// The kind of a `docker diff` line, numbered as the Engine API numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

impl ChangeKind {
    /// The letter `docker diff` prints.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modified => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

impl Serialize for ChangeKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

/// One change of a container's filesystem, as the Engine API's `/containers/{id}/changes`
/// returns it: `{"Path": "/etc/hosts", "Kind": 0}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    #[serde(rename = "Path")]
    pub path: String,
    #[serde(rename = "Kind")]
    pub kind: ChangeKind,
}

fn is_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn io_at(path: &Path, what: &str, e: io::Error) -> ImageError {
    ImageError::io(format!("{what} {}", path.display()), e)
}

fn is_opaque(parent: BorrowedFd<'_>, name: &CStr) -> io::Result<bool> {
    let key = fs::cstring(OVERLAY_OPAQUE_XATTR.as_ref())?;
    Ok(fs::get_xattr_at(parent, name, &key)?.as_deref() == Some(b"y"))
}

/// Writes `tar` entries for a directory tree.
struct TarWriter<W: Write> {
    builder: Builder<W>,
    /// (dev, ino) of multiply-linked files already written → their tar path.
    links: HashMap<(u64, u64), PathBuf>,
    /// Turn overlay whiteouts and opaque markers into their tar forms.
    overlay: bool,
    root: PathBuf,
}

impl<W: Write> TarWriter<W> {
    fn walk(&mut self, dir: BorrowedFd<'_>, rel: &Path) -> Result<()> {
        let names =
            fs::read_dir_names(dir).map_err(|e| io_at(&self.root.join(rel), "listing", e))?;
        for name in names {
            let path = rel.join(OsStr::from_bytes(name.to_bytes()));
            let Some(st) =
                fs::lstat_at(dir, &name).map_err(|e| io_at(&self.root.join(&path), "lstat", e))?
            else {
                continue;
            };
            self.entry(dir, &name, &path, &st)?;
            if is_dir(&st) {
                let sub = fs::open_dir_at(dir, &name)
                    .map_err(|e| io_at(&self.root.join(&path), "opening", e))?;
                self.walk(sub.as_fd(), &path)?;
            }
        }
        Ok(())
    }

    fn header(&self, st: &libc::stat, kind: EntryType) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    fn pax_xattrs(&mut self, dir: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<()> {
        let xattrs =
            fs::list_xattrs_at(dir, name).map_err(|e| io_at(&self.root.join(path), "xattrs", e))?;
        let mut records = Vec::new();
        for (key, value) in xattrs {
            if key.to_bytes().starts_with(b"trusted.overlay.") {
                continue;
            }
            let mut body = b"SCHILY.xattr.".to_vec();
            body.extend_from_slice(key.to_bytes());
            body.push(b'=');
            body.extend_from_slice(&value);
            body.push(b'\n');
            // A PAX record is "<len> <body>" where len counts itself too.
            let mut len = body.len() + 2;
            while len.to_string().len() + 1 + body.len() != len {
                len = len.to_string().len() + 1 + body.len();
            }
            records.extend_from_slice(format!("{len} ").as_bytes());
            records.extend_from_slice(&body);
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(records.len() as u64);
        let pax_name = format!("PaxHeaders/{}", path.display());
        let short: String = pax_name.chars().take(99).collect();
        h.set_path(&short)
            .map_err(|e| io_at(path, "tar header", e))?;
        h.set_cksum();
        self.builder
            .append(&h, records.as_slice())
            .map_err(|e| io_at(path, "writing tar", e))
    }

    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        path: &Path,
        st: &libc::stat,
    ) -> Result<()> {
        let write_err = |e: io::Error| io_at(path, "writing tar entry", e);
        let fmt = st.st_mode & libc::S_IFMT;
        if self.overlay && is_whiteout(st) {
            let mut wh_name = WHITEOUT_PREFIX.as_bytes().to_vec();
            wh_name.extend_from_slice(name.to_bytes());
            let wh_path = path.with_file_name(OsStr::from_bytes(&wh_name));
            let mut h = self.header(st, EntryType::Regular);
            h.set_mode(0o600);
            return self
                .builder
                .append_data(&mut h, &wh_path, io::empty())
                .map_err(write_err);
        }
        match fmt {
            libc::S_IFDIR => {
                self.pax_xattrs(dir, name, path)?;
                let mut h = self.header(st, EntryType::Directory);
                self.builder
                    .append_data(&mut h, path, io::empty())
                    .map_err(write_err)?;
                if self.overlay && is_opaque(dir, name).map_err(|e| io_at(path, "xattr", e))? {
                    let mut h = self.header(st, EntryType::Regular);
                    h.set_mode(0o600);
                    self.builder
                        .append_data(&mut h, path.join(OPAQUE_WHITEOUT), io::empty())
                        .map_err(write_err)?;
                }
            }
            libc::S_IFREG => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        let first = first.clone();
                        let mut h = self.header(st, EntryType::Link);
                        return self
                            .builder
                            .append_link(&mut h, path, &first)
                            .map_err(write_err);
                    }
                    self.links.insert(key, path.to_path_buf());
                }
                self.pax_xattrs(dir, name, path)?;
                let file = fs::open_file_at(dir, name).map_err(|e| io_at(path, "opening", e))?;
                let mut h = self.header(st, EntryType::Regular);
                h.set_size(st.st_size as u64);
                // A file that changes size while being read would corrupt the tar: cap
                // what is read at the size in the header (the builder pads short reads
                // with an error, which is what we want then).
                use std::io::Read;
                self.builder
                    .append_data(&mut h, path, file.take(st.st_size as u64))
                    .map_err(write_err)?;
            }
            libc::S_IFLNK => {
                let target = fs::readlink_at(dir, name).map_err(|e| io_at(path, "readlink", e))?;
                let target = OsStr::from_bytes(&target);
                let mut h = self.header(st, EntryType::Symlink);
                self.builder
                    .append_link(&mut h, path, target)
                    .map_err(write_err)?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                let kind = match fmt {
                    libc::S_IFCHR => EntryType::Char,
                    libc::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let mut h = self.header(st, kind);
                if fmt != libc::S_IFIFO {
                    h.set_device_major(libc::major(st.st_rdev))
                        .map_err(write_err)?;
                    h.set_device_minor(libc::minor(st.st_rdev))
                        .map_err(write_err)?;
                }
                self.builder
                    .append_data(&mut h, path, io::empty())
                    .map_err(write_err)?;
            }
            // Sockets cannot be carried in a tar; Docker leaves them out too.
            _ => {}
        }
        Ok(())
    }
}

fn write_tree<W: Write>(root: &Path, writer: W, overlay: bool) -> Result<W> {
    let dir = fs::open_dir_path(root).map_err(|e| io_at(root, "opening", e))?;
    let mut w = TarWriter {
        builder: Builder::new(writer),
        links: HashMap::new(),
        overlay,
        root: root.to_path_buf(),
    };
    w.walk(dir.as_fd(), Path::new(""))?;
    w.builder
        .into_inner()
        .map_err(|e| io_at(root, "finishing tar", e))
}

/// Writes the layer tar of an overlay upper directory: what a container changed, in the
/// form `docker commit` and `docker build` store it.
pub fn write_diff<W: Write>(upper: &Path, writer: W) -> Result<W> {
    write_tree(upper, writer, true)
}

/// Writes a whole root filesystem (e.g. a container's mounted merged dir) as one tar,
/// as `docker export` does.
pub fn export<W: Write>(rootfs: &Path, writer: W) -> Result<W> {
    write_tree(rootfs, writer, false)
}

/// `docker cp` out of a container: the object `name` in the directory `parent` (a
/// file, a link, a device, or a whole tree), written into the tar as `as_name`. The
/// object itself is never followed if it is a symlink; the walk below it is by fd.
pub fn archive_entry<W: Write>(
    parent: &Path,
    name: &OsStr,
    as_name: &Path,
    writer: W,
) -> Result<W> {
    let dir = fs::open_dir_path(parent).map_err(|e| io_at(parent, "opening", e))?;
    let cname = fs::cstring(name).map_err(|e| io_at(parent, "naming", e))?;
    let st = fs::lstat_at(dir.as_fd(), &cname)
        .map_err(|e| io_at(&parent.join(name), "lstat", e))?
        .ok_or_else(|| {
            io_at(
                &parent.join(name),
                "lstat",
                io::Error::from(io::ErrorKind::NotFound),
            )
        })?;
    let mut w = TarWriter {
        builder: Builder::new(writer),
        links: HashMap::new(),
        overlay: false,
        root: parent.to_path_buf(),
    };
    w.entry(dir.as_fd(), &cname, as_name, &st)?;
    if is_dir(&st) {
        let sub = fs::open_dir_at(dir.as_fd(), &cname)
            .map_err(|e| io_at(&parent.join(name), "opening", e))?;
        w.walk(sub.as_fd(), as_name)?;
    }
    w.builder
        .into_inner()
        .map_err(|e| io_at(parent, "finishing tar", e))
}

/// `docker diff`: the changes an upper directory makes over its lower layers
/// (`lowers` topmost first), sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    let dir = fs::open_dir_path(upper).map_err(|e| io_at(upper, "opening", e))?;
    changes_in(dir.as_fd(), upper, Path::new("/"), lowers, &mut out)?;
    out.sort();
    Ok(out)
}

fn lower_stat(lowers: &[PathBuf], path: &Path) -> Option<std::fs::Metadata> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    lowers
        .iter()
        .find_map(|l| std::fs::symlink_metadata(l.join(rel)).ok())
        .filter(|m| {
            // A whiteout in a lower layer means the path is gone there.
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            !(m.file_type().is_char_device() && m.rdev() == 0)
        })
}

fn changes_in(
    dir: BorrowedFd<'_>,
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    out: &mut Vec<Change>,
) -> Result<()> {
    let names = fs::read_dir_names(dir).map_err(|e| io_at(upper, "listing", e))?;
    for name in &names {
        let os = OsStr::from_bytes(name.to_bytes());
        let path = rel.join(os);
        let Some(st) = fs::lstat_at(dir, name).map_err(|e| io_at(&path, "lstat", e))? else {
            continue;
        };
        let show = path.to_string_lossy().into_owned();
        if is_whiteout(&st) {
            out.push(Change {
                path: show,
                kind: ChangeKind::Deleted,
            });
            continue;
        }
        let lower = lower_stat(lowers, &path);
        match &lower {
            None => out.push(Change {
                path: show,
                kind: ChangeKind::Added,
            }),
            Some(m) => {
                use std::os::unix::fs::MetadataExt;
                // A directory copied up only because something below changed is not
                // itself a change unless its own metadata moved.
                let unchanged_dir = is_dir(&st)
                    && m.is_dir()
                    && m.mtime() == st.st_mtime
                    && m.mode() == st.st_mode
                    && !is_opaque(dir, name).unwrap_or(false);
                if !unchanged_dir {
                    out.push(Change {
                        path: show,
                        kind: ChangeKind::Modified,
                    });
                }
            }
        }
        if is_dir(&st) {
            let sub = fs::open_dir_at(dir, name).map_err(|e| io_at(&path, "opening", e))?;
            let opaque = is_opaque(dir, name).unwrap_or(false);
            if lower.is_none() {
                // Everything below a new directory is new.
                changes_in(sub.as_fd(), upper, &path, &[], out)?;
            } else {
                changes_in(sub.as_fd(), upper, &path, lowers, out)?;
                if opaque {
                    deleted_by_opaque(&sub, &path, lowers, out);
                }
            }
        }
    }
    Ok(())
}

/// An opaque directory hides every lower entry it does not itself contain.
fn deleted_by_opaque(
    upper_dir: &impl AsFd,
    path: &Path,
    lowers: &[PathBuf],
    out: &mut Vec<Change>,
) {
    let present: BTreeSet<CString> = fs::read_dir_names(upper_dir.as_fd())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let rel = path.strip_prefix("/").unwrap_or(path);
    let mut hidden = BTreeSet::new();
    for lower in lowers {
        if let Ok(rd) = std::fs::read_dir(lower.join(rel)) {
            for e in rd.flatten() {
                if let Ok(c) = fs::cstring(&e.file_name()) {
                    if !present.contains(&c) {
                        hidden.insert(e.file_name());
                    }
                }
            }
        }
    }
    for name in hidden {
        out.push(Change {
            path: path.join(name).to_string_lossy().into_owned(),
            kind: ChangeKind::Deleted,
        });
    }
}
