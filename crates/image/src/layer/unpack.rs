//! Applying a layer tar to a directory: the tar crate parses headers (PAX, GNU long
//! names, sparse maps); every filesystem write is ours, made relative to a directory fd
//! reached by `openat(O_NOFOLLOW)` from the target, one component at a time.

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use tar::{Archive, EntryType};

use super::fs;
use super::stream::{self, StreamState};
use super::{
    DevicePolicy, UnpackOptions, UnpackStats, AUFS_META_PREFIX, OPAQUE_WHITEOUT,
    OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX,
};
use crate::digest::HashingReader;
use crate::error::{ImageError, Result};

const COPY_BUFFER: usize = 256 << 10;

/// Unpacks the layer blob read from `reader` (gzip, zstd or plain tar, detected by its
/// magic bytes) into `target`, which must exist (normally empty). One pass: decompress,
/// hash (diff ID) and write. On error the target holds a partial layer: the caller
/// removes it with [`super::remove_partial`]. Nothing outside `target` is written.
pub fn unpack_layer<R: Read + 'static>(
    reader: R,
    target: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats> {
    let started = Instant::now();
    let root = fs::open_dir_path(target)
        .map_err(|e| ImageError::io(format!("opening layer target {}", target.display()), e))?;
    let state = Rc::new(RefCell::new(StreamState::default()));
    let source = Rc::new(RefCell::new(HashingReader::new(reader)));
    let stream_error = |e: io::Error, state: &StreamState, compression: &str| -> ImageError {
        if state.limit_exceeded {
            opts.bad(format!(
                "uncompressed size exceeds the limit of {} bytes (decompression bomb?)",
                opts.max_uncompressed_size
            ))
        } else if let Some(msg) = &state.decode_error {
            opts.bad(format!(
                "reading the {compression} stream: {msg} (truncated or corrupt layer)"
            ))
        } else {
            opts.bad(format!("reading the layer tar: {e}"))
        }
    };
    let (compression, stage) = stream::open(
        source.clone(),
        opts.media_type.as_deref(),
        opts.max_uncompressed_size,
        state.clone(),
    )
    .map_err(|e| stream_error(e, &state.borrow(), "layer"))?;

    let mut stats = UnpackStats {
        compression,
        ..UnpackStats::default()
    };
    let mut archive = Archive::new(io::BufReader::with_capacity(COPY_BUFFER, stage));
    let mut unpacker = Unpacker {
        opts,
        root,
        cached_parent: None,
        dir_times: Vec::new(),
        buf: vec![0u8; COPY_BUFFER],
    };
    {
        let entries = archive
            .entries()
            .map_err(|e| stream_error(e, &state.borrow(), compression.name()))?;
        for entry in entries {
            let entry = entry.map_err(|e| stream_error(e, &state.borrow(), compression.name()))?;
            unpacker.apply(entry, &mut stats).map_err(|e| match e {
                EntryError::Stream(e) => stream_error(e, &state.borrow(), compression.name()),
                EntryError::Image(e) => e,
            })?;
        }
    }
    unpacker.finish_dirs()?;

    // The tar end marker may be followed by padding; the diff ID covers all of it, and
    // the compressed digest needs the decoder's trailer read.
    let mut stage = archive.into_inner();
    io::copy(&mut stage, &mut io::sink())
        .map_err(|e| stream_error(e, &state.borrow(), compression.name()))?;
    let stage = stage.into_inner();
    {
        let mut src = source.borrow_mut();
        io::copy(&mut *src, &mut io::sink())
            .map_err(|e| opts.bad(format!("reading the layer blob: {e}")))?;
    }
    stats.uncompressed_bytes = stage.hasher.len();
    let diff_id = stage.hasher.clone().finish();
    drop(stage);
    let src = Rc::try_unwrap(source)
        .map_err(|_| ImageError::Other("layer source still shared".into()))?
        .into_inner();
    stats.compressed_bytes = src.hasher.len();
    let digest = src.hasher.finish();

    if let Some(expected) = &opts.expected_digest {
        if *expected != digest {
            return Err(ImageError::DigestMismatch {
                image: opts.image.clone(),
                digest: expected.clone(),
                actual: digest,
            });
        }
    }
    if let Some(expected) = &opts.expected_diff_id {
        if *expected != diff_id {
            return Err(ImageError::DiffIdMismatch {
                image: opts.image.clone(),
                layer: opts
                    .expected_digest
                    .clone()
                    .unwrap_or_else(|| digest.clone()),
                expected: expected.clone(),
                actual: diff_id,
            });
        }
    }
    stats.diff_id = Some(diff_id);
    stats.digest = Some(digest);
    let st = state.borrow();
    stats.decompress_time = st.decompress_time;
    stats.hash_time = st.hash_time;
    stats.total_time = started.elapsed();
    stats.write_time = stats
        .total_time
        .saturating_sub(st.decompress_time + st.hash_time);
    Ok(stats)
}

/// An entry failed either because the stream under it broke (reported as a stream
/// error) or because of the entry itself.
enum EntryError {
    Stream(io::Error),
    Image(ImageError),
}

impl From<ImageError> for EntryError {
    fn from(e: ImageError) -> Self {
        EntryError::Image(e)
    }
}

/// An entry's path, cleaned: no empty, `.` or `..` components.
type Components = Vec<Vec<u8>>;

/// Cleans a tar path as Docker does: a leading `/` is dropped (layers made by old tools
/// carry absolute names), `.` and empty components vanish, `..` pops a component and is
/// refused when it would climb above the root.
pub(crate) fn clean_path(raw: &[u8]) -> std::result::Result<Components, &'static str> {
    let mut out: Components = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("path escapes the layer root with '..'");
                }
            }
            c => {
                if c.contains(&0) {
                    return Err("path contains a NUL byte");
                }
                out.push(c.to_vec());
            }
        }
    }
    Ok(out)
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

fn cname(b: &[u8]) -> CString {
    // clean_path refused NUL bytes, so this cannot fail; keep a total function anyway.
    CString::new(b).unwrap_or_default()
}

/// A directory and the (atime, mtime) it gets once its contents are written.
type DirTimes = (Components, (i64, i64), (i64, i64));

struct Metadata {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, i64),
    atime: Option<(i64, i64)>,
    xattrs: Vec<(CString, Vec<u8>)>,
}

struct Unpacker<'o> {
    opts: &'o UnpackOptions,
    root: OwnedFd,
    /// The last parent directory opened, by path: consecutive entries mostly share one.
    cached_parent: Option<(Components, OwnedFd)>,
    /// Directories whose mtimes are set at the end, after their contents were written.
    dir_times: Vec<DirTimes>,
    buf: Vec<u8>,
}

fn parse_pax_time(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += (c.to_digit(10)? as i64) * 10i64.pow(8 - i as u32);
    }
    if secs < 0 && nanos > 0 {
        return Some((secs - 1, 1_000_000_000 - nanos));
    }
    Some((secs, nanos))
}

impl Unpacker<'_> {
    fn io_err(&self, path: &[u8], what: &str, e: io::Error) -> EntryError {
        EntryError::Image(
            self.opts
                .bad(format!("{}: {what}: {e}", String::from_utf8_lossy(path))),
        )
    }

    /// Opens (creating when `create`) the directory `comps` below the root without
    /// following any symlink.
    fn open_dir(&mut self, comps: &[Vec<u8>], create: bool) -> Result<OwnedFd, EntryError> {
        if let Some((cached, fd)) = &self.cached_parent {
            if cached.as_slice() == comps {
                return fd
                    .try_clone()
                    .map_err(|e| self.io_err(&join(comps), "dup", e));
            }
        }
        let mut cur = self
            .root
            .try_clone()
            .map_err(|e| self.io_err(b".", "dup", e))?;
        for (i, comp) in comps.iter().enumerate() {
            let name = cname(comp);
            let next = match fs::open_dir_at(cur.as_fd(), &name) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    // Docker creates missing parents 0755 owned by root.
                    match fs::mkdir_at(cur.as_fd(), &name, 0o755) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(self.io_err(&join(&comps[..=i]), "mkdir", e)),
                    }
                    fs::open_dir_at(cur.as_fd(), &name)
                        .map_err(|e| self.unsafe_parent(&comps[..=i], e))?
                }
                Err(e) => return Err(self.unsafe_parent(&comps[..=i], e)),
            };
            cur = next;
        }
        if let Ok(dup) = cur.try_clone() {
            self.cached_parent = Some((comps.to_vec(), dup));
        }
        Ok(cur)
    }

    fn unsafe_parent(&self, comps: &[Vec<u8>], e: io::Error) -> EntryError {
        let path = join(comps);
        match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => EntryError::Image(self.opts.unsafe_entry(
                &path,
                "a parent component is a symlink or not a directory (writes through a \
                 layer's own symlinks are refused)",
            )),
            _ => self.io_err(&path, "opening parent directory", e),
        }
    }

    fn apply<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        stats: &mut UnpackStats,
    ) -> Result<(), EntryError> {
        stats.entries += 1;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_path = entry.path_bytes().into_owned();
        let comps = clean_path(&raw_path)
            .map_err(|reason| EntryError::Image(self.opts.unsafe_entry(&raw_path, reason)))?;
        let Some((name, parent)) = comps.split_last() else {
            // The root itself ("./"): its metadata belongs to the snapshot, not the layer.
            return Ok(());
        };
        let name = name.clone();
        let parent = parent.to_vec();
        // AUFS hardlink directories and everything below them.
        if self.opts.whiteouts
            && comps.iter().any(|c| {
                c.starts_with(AUFS_META_PREFIX.as_bytes())
                    && c.as_slice() != OPAQUE_WHITEOUT.as_bytes()
            })
        {
            return Ok(());
        }

        let meta = self.metadata(&mut entry)?;
        let parent_fd = self.open_dir(&parent, true)?;

        if self.opts.whiteouts && name == OPAQUE_WHITEOUT.as_bytes() {
            stats.whiteouts += 1;
            let key = cname(OVERLAY_OPAQUE_XATTR.as_bytes());
            return fs::fsetxattr(parent_fd.as_fd(), &key, b"y")
                .map_err(|e| self.io_err(&raw_path, "marking directory opaque", e));
        }
        if let Some(hidden) = name
            .strip_prefix(WHITEOUT_PREFIX.as_bytes())
            .filter(|_| self.opts.whiteouts)
        {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(EntryError::Image(
                    self.opts
                        .unsafe_entry(&raw_path, "whiteout of an invalid name"),
                ));
            }
            stats.whiteouts += 1;
            let hidden = cname(hidden);
            self.clear(parent_fd.as_fd(), &hidden, false, &raw_path)?;
            return fs::mknod_at(parent_fd.as_fd(), &hidden, libc::S_IFCHR, 0).map_err(|e| {
                self.io_err(
                    &raw_path,
                    "creating the overlay whiteout (a 0:0 character device; needs root)",
                    e,
                )
            });
        }

        let cname_ = cname(&name);
        let is_dir = kind == EntryType::Directory;
        self.clear(parent_fd.as_fd(), &cname_, is_dir, &raw_path)?;
        let p = parent_fd.as_fd();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut file = fs::create_file_at(p, &cname_)
                    .map_err(|e| self.io_err(&raw_path, "create", e))?;
                let sparse = kind == EntryType::GNUSparse;
                let written = self.copy_data(&mut entry, &mut file, sparse, &raw_path)?;
                stats.files += 1;
                stats.file_bytes += written;
                self.apply_fd_meta(file.as_fd(), &meta, &raw_path)?;
                drop(file);
                self.set_times(p, &cname_, &meta, &raw_path)?;
            }
            EntryType::Directory => {
                match fs::mkdir_at(p, &cname_, 0o700) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(self.io_err(&raw_path, "mkdir", e)),
                }
                let dir = fs::open_dir_at(p, &cname_).map_err(|e| self.unsafe_parent(&comps, e))?;
                stats.dirs += 1;
                self.apply_fd_meta(dir.as_fd(), &meta, &raw_path)?;
                self.dir_times
                    .push((comps.clone(), meta.atime.unwrap_or(meta.mtime), meta.mtime));
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                let target = target
                    .filter(|t| !t.is_empty() && !t.contains(&0))
                    .ok_or_else(|| {
                        EntryError::Image(self.opts.bad(format!(
                            "{}: symlink without a target",
                            String::from_utf8_lossy(&raw_path)
                        )))
                    })?;
                fs::symlink_at(&cname(&target), p, &cname_)
                    .map_err(|e| self.io_err(&raw_path, "symlink", e))?;
                stats.symlinks += 1;
                if self.opts.preserve_ownership {
                    fs::lchown_at(p, &cname_, meta.uid as u32, meta.gid as u32)
                        .map_err(|e| self.io_err(&raw_path, "lchown", e))?;
                }
                for (key, value) in &meta.xattrs {
                    self.set_xattr(|| fs::lsetxattr_at(p, &cname_, key, value), key, &raw_path)?;
                }
                self.set_times(p, &cname_, &meta, &raw_path)?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let link_comps = clean_path(&link).map_err(|reason| {
                    EntryError::Image(self.opts.unsafe_entry(
                        &raw_path,
                        format!(
                            "hardlink target {:?}: {reason}",
                            String::from_utf8_lossy(&link)
                        ),
                    ))
                })?;
                let Some((link_name, link_parent)) = link_comps.split_last() else {
                    return Err(EntryError::Image(
                        self.opts
                            .unsafe_entry(&raw_path, "hardlink to the layer root"),
                    ));
                };
                let link_parent_fd = self.open_dir(link_parent, false).map_err(|e| {
                    let why = match e {
                        EntryError::Image(e) => e.to_string(),
                        EntryError::Stream(e) => e.to_string(),
                    };
                    EntryError::Image(self.opts.unsafe_entry(
                        &raw_path,
                        format!(
                            "hardlink target {:?} is not inside this layer ({why})",
                            String::from_utf8_lossy(&link)
                        ),
                    ))
                })?;
                let link_name = cname(link_name);
                match fs::lstat_at(link_parent_fd.as_fd(), &link_name) {
                    Ok(Some(st)) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => {}
                    Ok(_) => {
                        return Err(EntryError::Image(self.opts.unsafe_entry(
                            &raw_path,
                            format!(
                                "hardlink target {:?} is not a file earlier in this layer",
                                String::from_utf8_lossy(&link)
                            ),
                        )))
                    }
                    Err(e) => return Err(self.io_err(&link, "stat hardlink target", e)),
                }
                fs::link_at(link_parent_fd.as_fd(), &link_name, p, &cname_)
                    .map_err(|e| self.io_err(&raw_path, "link", e))?;
                stats.hardlinks += 1;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = if kind == EntryType::Fifo {
                    0
                } else {
                    let h = entry.header();
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    match self.opts.devices {
                        DevicePolicy::Skip => {
                            stats.skipped_devices += 1;
                            return Ok(());
                        }
                        DevicePolicy::Error => {
                            return Err(EntryError::Image(self.opts.bad(format!(
                                "{}: device node {major}:{minor} refused (device nodes are not \
                                 allowed by the unpack options)",
                                String::from_utf8_lossy(&raw_path)
                            ))))
                        }
                        DevicePolicy::Create if !fs::is_root() => {
                            return Err(EntryError::Image(self.opts.bad(format!(
                                "{}: cannot create device node {major}:{minor} as a non-root \
                                 user (mknod needs CAP_MKNOD; unpack as root or skip devices)",
                                String::from_utf8_lossy(&raw_path)
                            ))))
                        }
                        DevicePolicy::Create => fs::makedev(major, minor),
                    }
                };
                fs::mknod_at(p, &cname_, file_type | (meta.mode & 0o7777), dev)
                    .map_err(|e| self.io_err(&raw_path, "mknod", e))?;
                stats.devices += 1;
                if self.opts.preserve_ownership {
                    fs::lchown_at(p, &cname_, meta.uid as u32, meta.gid as u32)
                        .map_err(|e| self.io_err(&raw_path, "lchown", e))?;
                }
                self.set_times(p, &cname_, &meta, &raw_path)?;
            }
            // Unknown types (sockets never appear in tar; vendor extensions) are skipped
            // as Docker skips them.
            _ => {}
        }
        Ok(())
    }

    /// Makes room for `name`: an existing directory stays when a directory is coming
    /// (its contents are merged), anything else is removed.
    fn clear(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        keep_dir: bool,
        raw_path: &[u8],
    ) -> Result<(), EntryError> {
        let existing = fs::lstat_at(dir, name).map_err(|e| self.io_err(raw_path, "lstat", e))?;
        let Some(st) = existing else { return Ok(()) };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(());
        }
        if self.opts.no_overwrite_dir_non_dir && is_dir != keep_dir {
            let shown = String::from_utf8_lossy(raw_path);
            return Err(EntryError::Image(ImageError::Other(if is_dir {
                format!("cannot overwrite directory {shown:?} with non-directory")
            } else {
                format!("cannot overwrite non-directory {shown:?} with directory")
            })));
        }
        if is_dir {
            // A cached fd may point into what is being removed.
            self.cached_parent = None;
        }
        fs::remove_all_at(dir, name).map_err(|e| self.io_err(raw_path, "removing existing", e))
    }

    fn metadata<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Metadata, EntryError> {
        let h = entry.header();
        let mut meta = Metadata {
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mtime: (h.mtime().unwrap_or(0) as i64, 0),
            atime: None,
            xattrs: Vec::new(),
        };
        let path = entry.path_bytes().into_owned();
        let pax = entry
            .pax_extensions()
            .map_err(|e| self.io_err(&path, "reading PAX header", e))?;
        if let Some(pax) = pax {
            for ext in pax {
                let ext = ext.map_err(|e| self.io_err(&path, "reading PAX header", e))?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                if let Some(xkey) = key.strip_prefix(b"SCHILY.xattr.") {
                    if !xkey.is_empty() && !xkey.contains(&0) {
                        meta.xattrs.push((cname(xkey), value.to_vec()));
                    }
                } else if key == b"mtime" {
                    if let Some(t) = parse_pax_time(value) {
                        meta.mtime = t;
                    }
                } else if key == b"atime" {
                    meta.atime = parse_pax_time(value);
                } else if key == b"uid" || key == b"gid" {
                    if let Some(v) = std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        if key == b"uid" {
                            meta.uid = v;
                        } else {
                            meta.gid = v;
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    /// Ownership first (chown clears setuid bits and file capabilities), then mode,
    /// then xattrs (security.capability must come after chown).
    fn apply_fd_meta(
        &self,
        fd: BorrowedFd<'_>,
        meta: &Metadata,
        path: &[u8],
    ) -> Result<(), EntryError> {
        if self.opts.preserve_ownership {
            fs::fchown(fd, meta.uid as u32, meta.gid as u32)
                .map_err(|e| self.io_err(path, "chown", e))?;
        }
        fs::fchmod(fd, meta.mode).map_err(|e| self.io_err(path, "chmod", e))?;
        for (key, value) in &meta.xattrs {
            self.set_xattr(|| fs::fsetxattr(fd, key, value), key, path)?;
        }
        Ok(())
    }

    fn set_xattr(
        &self,
        set: impl FnOnce() -> io::Result<()>,
        key: &CStr,
        path: &[u8],
    ) -> Result<(), EntryError> {
        match set() {
            Ok(()) => Ok(()),
            // tmpfs and some filesystems have no user.* xattrs; Docker ignores that too.
            Err(e)
                if e.raw_os_error() == Some(libc::EOPNOTSUPP)
                    && key.to_bytes().starts_with(b"user.") =>
            {
                Ok(())
            }
            Err(e) => {
                Err(self.io_err(path, &format!("setting xattr {}", key.to_string_lossy()), e))
            }
        }
    }

    fn set_times(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        meta: &Metadata,
        path: &[u8],
    ) -> Result<(), EntryError> {
        fs::set_times_at(dir, name, meta.atime.unwrap_or(meta.mtime), meta.mtime)
            .map_err(|e| self.io_err(path, "setting times", e))
    }

    /// Copies an entry's data. For GNU sparse entries the tar crate yields the holes as
    /// zeros; all-zero blocks are skipped with a seek so the holes stay holes.
    fn copy_data<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        file: &mut std::fs::File,
        sparse: bool,
        path: &[u8],
    ) -> Result<u64, EntryError> {
        let mut total = 0u64;
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            loop {
                let n = match entry.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(EntryError::Stream(e)),
                };
                if sparse && buf[..n].iter().all(|b| *b == 0) {
                    file.seek(SeekFrom::Current(n as i64))
                        .map_err(|e| self.io_err(path, "seek", e))?;
                } else {
                    file.write_all(&buf[..n])
                        .map_err(|e| self.io_err(path, "write", e))?;
                }
                total += n as u64;
            }
            if sparse {
                file.set_len(total)
                    .map_err(|e| self.io_err(path, "truncate", e))?;
            }
            Ok(total)
        })();
        self.buf = buf;
        result
    }

    /// Sets directory mtimes last, deepest first, as writing their contents moved them.
    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dir_times);
        for (comps, atime, mtime) in dirs.into_iter().rev() {
            let Some((name, parent)) = comps.split_last() else {
                continue;
            };
            let parent_fd = match self.open_dir(parent, false) {
                Ok(fd) => fd,
                // Replaced by a later entry of the layer: nothing to set.
                Err(_) => continue,
            };
            match fs::set_times_at(parent_fd.as_fd(), &cname(name), atime, mtime) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => {
                    return Err(self.opts.bad(format!(
                        "{}: setting times: {e}",
                        String::from_utf8_lossy(&join(&comps))
                    )))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        let c = |s: &str| clean_path(s.as_bytes()).map(|v| join(&v));
        assert_eq!(c("/etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(c("./a/./b/").unwrap(), b"a/b");
        assert_eq!(c("a/../b").unwrap(), b"b");
        assert!(c("../x").is_err());
        assert!(c("a/../../x").is_err());
        assert!(c("/../x").is_err());
        assert_eq!(c("./").unwrap(), b"");
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time(b"7"), Some((7, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
