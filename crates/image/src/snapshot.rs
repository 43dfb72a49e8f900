//! Overlay snapshots under `<data-root>/snapshots`, on the model of containerd's
//! snapshotter (Prepare, Commit, Mounts, Remove, Walk, Usage): unpacked layers keyed by
//! chain ID, and container snapshots (an upper and a work dir over a chain of layers).
//! This module owns that directory and the overlay mounts made from it; what goes into a
//! layer's files is [`crate::layer`]'s business.
//!
//! ```text
//! snapshots/
//!   <chain-id hex>/fs        a committed layer's files
//!   <chain-id hex>/link      its short id: l/<short id> -> ../<chain-id hex>/fs
//!   <key>/{fs,work,merged}   a container's upper, work and mount point
//!   <key>/parent             the container's layer chain (JSON, lowest first)
//!   l/                       short symlinks, for lowerdir lists past a page of mount data
//!   tmp/                     layers being unpacked (cleared on open)
//! ```

use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;
use crate::error::{ImageError, Result};

const LINKS_DIR: &str = "l";
const TMP_DIR: &str = "tmp";
const LAYER_MARKER: &str = "link";
const PARENT_FILE: &str = "parent";

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let context = context.into();
    move |e| ImageError::io(context, e)
}

/// The overlay snapshot store.
#[derive(Clone, Debug)]
pub struct Snapshotter {
    root: PathBuf,
}

/// A layer being unpacked: unpack into [`PreparedLayer::fs_dir`], then
/// [`Snapshotter::commit_layer`] or [`Snapshotter::abort_layer`].
#[derive(Debug)]
pub struct PreparedLayer {
    pub chain_id: Digest,
    dir: PathBuf,
}

impl PreparedLayer {
    pub fn fs_dir(&self) -> PathBuf {
        self.dir.join("fs")
    }

    /// The same unpacked files, to be committed under another chain ID (an import
    /// learns its layer's diff ID only once the layer is unpacked).
    pub fn rekey(self, chain_id: Digest) -> PreparedLayer {
        PreparedLayer {
            chain_id,
            dir: self.dir,
        }
    }
}

/// Disk use of a snapshot, as containerd's `Usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of disk blocks allocated (hardlinked files counted once).
    pub size: u64,
    pub inodes: u64,
}

/// An overlay mount of a container snapshot.
#[derive(Clone, Debug)]
pub struct OverlayMount {
    /// Layer directories, topmost first (overlayfs' lowerdir order).
    pub lower_dirs: Vec<PathBuf>,
    /// The same layers as short names inside `links_dir`, for the long-chain fallback.
    pub short_lowers: Vec<String>,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
    /// Where berth mounts the container's root filesystem by default.
    pub merged_dir: PathBuf,
    pub links_dir: PathBuf,
    /// `<key>` relative to `links_dir`'s parent, for the relative upper and work dirs.
    key: String,
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| ImageError::invalid(p.display().to_string(), "path contains NUL"))
}

impl OverlayMount {
    /// The mount data with absolute paths, as `mount -t overlay -o` takes it.
    pub fn options(&self) -> String {
        let lowers: Vec<String> = self
            .lower_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            self.upper_dir.display(),
            self.work_dir.display()
        )
    }

    /// The mount data relative to `links_dir`, used when [`Self::options`] does not fit
    /// in one page (mount(2) copies at most a page of data): Docker's overlay2 does the
    /// same with its `l/` directory.
    pub fn short_options(&self) -> String {
        format!(
            "lowerdir={},upperdir=../{}/fs,workdir=../{}/work",
            self.short_lowers.join(":"),
            self.key,
            self.key
        )
    }

    /// What Docker reports as `GraphDriver.Data` for the overlay2 driver.
    pub fn graph_driver_data(&self) -> BTreeMap<String, String> {
        let lowers: Vec<String> = self
            .lower_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        BTreeMap::from([
            ("LowerDir".to_string(), lowers.join(":")),
            (
                "MergedDir".to_string(),
                self.merged_dir.display().to_string(),
            ),
            ("UpperDir".to_string(), self.upper_dir.display().to_string()),
            ("WorkDir".to_string(), self.work_dir.display().to_string()),
        ])
    }

    /// Mounts the overlay on `target`.
    pub fn mount(&self, target: &Path) -> Result<()> {
        self.mount_with(target, false)
    }

    /// Mounts the overlay on `target`; `volatile` (for a container that goes with its
    /// exit, `--rm`) makes overlayfs skip every sync of the upper dir, the one at
    /// unmount included. After a crash such an upper dir cannot be mounted again,
    /// which a removed container never is. Kernels without the option (before 5.10)
    /// get a plain mount.
    pub fn mount_with(&self, target: &Path, volatile: bool) -> Result<()> {
        if volatile {
            match self.mount_data(target, ",volatile") {
                Err(ImageError::Io { source, .. })
                    if source.raw_os_error() == Some(libc::EINVAL) => {}
                done => return done,
            }
        }
        self.mount_data(target, "")
    }

    fn mount_data(&self, target: &Path, extra: &str) -> Result<()> {
        let limit = page_size() - 1;
        let target_c = cpath(target)?;
        let full = self.options() + extra;
        if full.len() <= limit {
            return mount_overlay(&target_c, &full, None).map_err(|e| {
                ImageError::io(format!("mounting overlay on {}", target.display()), e)
            });
        }
        let short = self.short_options() + extra;
        if short.len() > limit {
            return Err(ImageError::invalid(
                format!("overlay mount on {}", target.display()),
                format!(
                    "{} layers do not fit in the mount data even as short links",
                    self.lower_dirs.len()
                ),
            ));
        }
        mount_overlay(&target_c, &short, Some(&self.links_dir)).map_err(|e| {
            ImageError::io(
                format!("mounting overlay (short lowerdirs) on {}", target.display()),
                e,
            )
        })
    }

    /// Unmounts `target`.
    pub fn unmount(target: &Path) -> Result<()> {
        let c = cpath(target)?;
        // SAFETY: `c` is a NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), 0) } < 0 {
            return Err(ImageError::io(
                format!("unmounting {}", target.display()),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

/// mount(2) of an overlay. With `cwd`, the mount runs on a thread that first leaves
/// the process' shared filesystem context (`unshare(CLONE_FS)`) and changes directory
/// there, so relative lowerdirs resolve against `cwd` without moving the working
/// directory of every other thread of berthd.
fn mount_overlay(target: &CString, data: &str, cwd: Option<&Path>) -> std::io::Result<()> {
    let data = CString::new(data).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let do_mount = move |target: &CString, data: &CString| -> std::io::Result<()> {
        // SAFETY: all pointers are NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                target.as_ptr(),
                c"overlay".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let Some(cwd) = cwd else {
        return do_mount(target, &data);
    };
    let cwd = CString::new(cwd.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let target = target.clone();
    std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: unshare(CLONE_FS) only detaches this thread's cwd/root/umask.
        if unsafe { libc::unshare(libc::CLONE_FS) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: NUL-terminated path; affects only this thread after the unshare.
        if unsafe { libc::chdir(cwd.as_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        do_mount(&target, &data)
    })
    .join()
    .map_err(|_| std::io::Error::other("mount thread panicked"))?
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key != LINKS_DIR
        && key != TMP_DIR
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Snapshotter {
    /// Opens (creating) the snapshot directory and clears layers left half-unpacked by a
    /// crash.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for d in [root.clone(), root.join(LINKS_DIR)] {
            std::fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let tmp = root.join(TMP_DIR);
        crate::layer::remove_partial(&tmp)?;
        std::fs::create_dir_all(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
        Ok(Snapshotter { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn layer_root(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex())
    }

    /// The directory holding a committed layer's files.
    pub fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.layer_root(chain_id).join("fs")
    }

    pub fn has_layer(&self, chain_id: &Digest) -> bool {
        self.layer_root(chain_id).join(LAYER_MARKER).is_file()
    }

    /// A fresh private directory to unpack the layer `chain_id` into.
    pub fn prepare_layer(&self, chain_id: &Digest) -> Result<PreparedLayer> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(TMP_DIR).join(format!(
            "{}-{}-{n}",
            chain_id.short(),
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("fs"))
            .map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(PreparedLayer {
            chain_id: chain_id.clone(),
            dir,
        })
    }

    pub fn abort_layer(&self, prepared: PreparedLayer) -> Result<()> {
        crate::layer::remove_partial(&prepared.dir)
    }

    /// Moves an unpacked layer into place with one rename. When another unpack of the
    /// same chain ID committed first, that one wins and this one is discarded; returns
    /// whether this call's copy is the one kept.
    pub fn commit_layer(&self, prepared: PreparedLayer) -> Result<bool> {
        let hex = prepared.chain_id.hex().to_string();
        let short = self.ensure_link(&hex)?;
        write_synced(&prepared.dir.join(LAYER_MARKER), short.as_bytes())?;
        let dest = self.layer_root(&prepared.chain_id);
        match std::fs::rename(&prepared.dir, &dest) {
            Ok(()) => {
                sync_dir(&self.root)?;
                Ok(true)
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                crate::layer::remove_partial(&prepared.dir)?;
                Ok(false)
            }
            Err(e) => Err(ImageError::io(
                format!("committing layer {}", prepared.chain_id),
                e,
            )),
        }
    }

    /// Picks and creates the short link of a layer: the shortest prefix of its hex
    /// that is free or already ours.
    fn ensure_link(&self, hex: &str) -> Result<String> {
        let target = PathBuf::from(format!("../{hex}/fs"));
        for len in [12, 16, 20, 26, 32, 64] {
            let short = &hex[..len];
            let link = self.root.join(LINKS_DIR).join(short);
            match std::os::unix::fs::symlink(&target, &link) {
                Ok(()) => return Ok(short.to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if std::fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
                        return Ok(short.to_string());
                    }
                }
                Err(e) => return Err(ImageError::io(format!("creating {}", link.display()), e)),
            }
        }
        Err(ImageError::Other(format!(
            "no free short link for layer {hex}"
        )))
    }

    fn short_link(&self, chain_id: &Digest) -> Result<String> {
        let path = self.layer_root(chain_id).join(LAYER_MARKER);
        let short = std::fs::read_to_string(&path)
            .map_err(io_err(format!("reading {}", path.display())))?;
        let link = self.root.join(LINKS_DIR).join(short.trim());
        if std::fs::symlink_metadata(&link).is_err() {
            return self.ensure_link(chain_id.hex());
        }
        Ok(short.trim().to_string())
    }

    /// Removes a committed layer. The caller (the image store's GC) knows that no image
    /// or container uses it any more. The directory is first renamed into `tmp/` so a
    /// crash never leaves a half-removed layer under its chain ID.
    pub fn remove_layer(&self, chain_id: &Digest) -> Result<()> {
        let dir = self.layer_root(chain_id);
        if !dir.exists() {
            return Ok(());
        }
        if let Ok(short) = std::fs::read_to_string(dir.join(LAYER_MARKER)) {
            let _ = std::fs::remove_file(self.root.join(LINKS_DIR).join(short.trim()));
        }
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let doomed = self.root.join(TMP_DIR).join(format!(
            "rm-{}-{}-{n}",
            chain_id.short(),
            std::process::id()
        ));
        std::fs::rename(&dir, &doomed).map_err(io_err(format!("removing layer {chain_id}")))?;
        crate::layer::remove_partial(&doomed)
    }

    /// Chain IDs of all committed layers.
    pub fn layers(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.root)
            .map_err(io_err(format!("listing {}", self.root.display())))?
        {
            let e = e.map_err(io_err(format!("listing {}", self.root.display())))?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Ok(d) = Digest::from_hex(name) {
                if e.path().join(LAYER_MARKER).is_file() {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Keys of all container snapshots (containerd's Walk).
    pub fn containers(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.root)
            .map_err(io_err(format!("listing {}", self.root.display())))?
        {
            let e = e.map_err(io_err(format!("listing {}", self.root.display())))?;
            if e.path().join(PARENT_FILE).is_file() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Creates the snapshot `key` (upper, work and merged dirs) over `parent_chain`
    /// (chain IDs, lowest layer first) and returns its mount.
    pub fn prepare_container(&self, key: &str, parent_chain: &[Digest]) -> Result<OverlayMount> {
        if !valid_key(key) || Digest::from_hex(key).is_ok_and(|d| self.has_layer(&d)) {
            return Err(ImageError::invalid(
                format!("snapshot key {key:?}"),
                "invalid or taken",
            ));
        }
        for chain_id in parent_chain {
            if !self.has_layer(chain_id) {
                return Err(ImageError::invalid(
                    format!("snapshot {key}"),
                    format!("parent layer {chain_id} is not unpacked"),
                ));
            }
        }
        let dir = self.root.join(key);
        if dir.exists() {
            return Err(ImageError::invalid(
                format!("snapshot {key}"),
                "already exists",
            ));
        }
        for sub in ["fs", "work", "merged"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(io_err(format!("creating snapshot {key}")))?;
        }
        if parent_chain.is_empty() {
            // overlayfs needs a lowerdir; a container from an image without layers
            // gets an empty one.
            std::fs::create_dir_all(dir.join("empty"))
                .map_err(io_err(format!("creating snapshot {key}")))?;
        }
        self.write_parent(key, parent_chain)?;
        self.container_mount(key)
    }

    /// Writes a container snapshot's layer chain (temp file, rename), without an fsync:
    /// it is on every first start's path. Should a power loss leave it empty or
    /// missing, [`Snapshots::repair_container`] writes it again from the image.
    fn write_parent(&self, key: &str, parent_chain: &[Digest]) -> Result<()> {
        let parent = serde_json::to_vec(parent_chain)
            .map_err(|e| ImageError::invalid(format!("snapshot {key}"), e))?;
        let dir = self.root.join(key);
        let tmp = dir.join(format!(".{PARENT_FILE}.tmp"));
        std::fs::write(&tmp, &parent)
            .and_then(|_| std::fs::rename(&tmp, dir.join(PARENT_FILE)))
            .map_err(io_err(format!("writing snapshot {key}")))
    }

    /// A container snapshot whose upper dir exists but whose layer chain cannot be
    /// read (a power loss right after its first start): writes the chain again and
    /// returns the mount. Fails if there is no such snapshot.
    pub fn repair_container(&self, key: &str, parent_chain: &[Digest]) -> Result<OverlayMount> {
        if !valid_key(key) || !self.root.join(key).join("fs").is_dir() {
            return Err(ImageError::invalid(
                format!("snapshot {key:?}"),
                "no such container snapshot",
            ));
        }
        self.write_parent(key, parent_chain)?;
        self.container_mount(key)
    }

    /// The layer chain under a container snapshot (chain IDs, lowest first).
    pub fn container_chain(&self, key: &str) -> Result<Vec<Digest>> {
        if !valid_key(key) {
            return Err(ImageError::invalid(
                format!("snapshot key {key:?}"),
                "invalid",
            ));
        }
        let parent_path = self.root.join(key).join(PARENT_FILE);
        let parent =
            std::fs::read(&parent_path).map_err(io_err(format!("reading snapshot {key}")))?;
        serde_json::from_slice(&parent)
            .map_err(|e| ImageError::invalid(parent_path.display().to_string(), e))
    }

    /// The mount of an existing container snapshot (containerd's Mounts).
    pub fn container_mount(&self, key: &str) -> Result<OverlayMount> {
        if !valid_key(key) {
            return Err(ImageError::invalid(
                format!("snapshot key {key:?}"),
                "invalid",
            ));
        }
        let dir = self.root.join(key);
        let chain = self.container_chain(key)?;
        let mut lower_dirs = Vec::new();
        let mut short_lowers = Vec::new();
        for chain_id in chain.iter().rev() {
            lower_dirs.push(self.layer_dir(chain_id));
            short_lowers.push(self.short_link(chain_id)?);
        }
        if chain.is_empty() {
            lower_dirs.push(dir.join("empty"));
            short_lowers.push(format!("../{key}/empty"));
        }
        Ok(OverlayMount {
            lower_dirs,
            short_lowers,
            upper_dir: dir.join("fs"),
            work_dir: dir.join("work"),
            merged_dir: dir.join("merged"),
            links_dir: self.root.join(LINKS_DIR),
            key: key.to_string(),
        })
    }

    /// Removes a container snapshot; its merged dir must be unmounted.
    pub fn remove_container(&self, key: &str) -> Result<()> {
        if !valid_key(key) || !self.root.join(key).join(PARENT_FILE).is_file() {
            return Err(ImageError::invalid(
                format!("snapshot {key:?}"),
                "no such container snapshot",
            ));
        }
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let doomed = self
            .root
            .join(TMP_DIR)
            .join(format!("rm-{key}-{}-{n}", std::process::id()));
        std::fs::rename(self.root.join(key), &doomed)
            .map_err(io_err(format!("removing snapshot {key}")))?;
        crate::layer::remove_partial(&doomed)
    }

    /// Disk use of a container's upper dir (what `docker ps -s` shows as SIZE).
    pub fn usage(&self, key: &str) -> Result<Usage> {
        if !valid_key(key) {
            return Err(ImageError::invalid(
                format!("snapshot key {key:?}"),
                "invalid",
            ));
        }
        dir_usage(&self.root.join(key).join("fs"))
    }

    /// Disk use of a committed layer.
    pub fn layer_usage(&self, chain_id: &Digest) -> Result<Usage> {
        dir_usage(&self.layer_dir(chain_id))
    }
}

/// Sums allocated blocks below `dir`, counting each inode once.
pub fn dir_usage(dir: &Path) -> Result<Usage> {
    let mut usage = Usage::default();
    let mut seen = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(io_err(format!("listing {}", d.display())))?;
        for e in rd {
            let e = e.map_err(io_err(format!("listing {}", d.display())))?;
            let m = match std::fs::symlink_metadata(e.path()) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if seen.insert((m.dev(), m.ino())) {
                usage.size += m.blocks() * 512;
                usage.inodes += 1;
            }
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(usage)
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).map_err(io_err(format!("writing {}", path.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io_err(format!("writing {}", path.display())))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("syncing {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(valid_key("abc123"));
        assert!(!valid_key("l"));
        assert!(!valid_key("tmp"));
        assert!(!valid_key("../x"));
        assert!(!valid_key(".hidden"));
        assert!(!valid_key(""));
    }

    #[test]
    fn commit_race_keeps_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::open(dir.path().join("snapshots")).unwrap();
        let chain = Digest::of(b"layer");
        let a = s.prepare_layer(&chain).unwrap();
        let b = s.prepare_layer(&chain).unwrap();
        std::fs::write(a.fs_dir().join("f"), b"a").unwrap();
        std::fs::write(b.fs_dir().join("f"), b"b").unwrap();
        assert!(s.commit_layer(a).unwrap());
        assert!(!s.commit_layer(b).unwrap());
        assert_eq!(std::fs::read(s.layer_dir(&chain).join("f")).unwrap(), b"a");
        assert_eq!(s.layers().unwrap(), vec![chain.clone()]);
        assert_eq!(
            std::fs::read_dir(dir.path().join("snapshots/tmp"))
                .unwrap()
                .count(),
            0
        );
        s.remove_layer(&chain).unwrap();
        assert!(!s.has_layer(&chain));
        assert!(s.layers().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("snapshots/l"))
                .unwrap()
                .count(),
            0
        );
    }
}
