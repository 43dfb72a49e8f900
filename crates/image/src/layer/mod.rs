//! Layers: unpacking a (compressed) layer blob into a directory in one streaming pass,
//! and the reverse, turning an overlay upper directory or a whole root filesystem back
//! into a layer tar. This module owns the on-disk form of one layer's files; where the
//! directories live and how they are mounted is [`crate::snapshot`]'s business.
//!
//! Safety rule: a layer is hostile input. Nothing in it may cause a write outside the
//! target directory: paths are cleaned lexically, `..` escapes are refused, and every
//! parent is opened with `openat(O_NOFOLLOW)` from the target's fd, so a symlink planted
//! by the layer is never followed.

mod diff;
pub(crate) mod fs;
mod stream;
mod unpack;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

pub use diff::{archive_entry, changes, export, write_diff, Change, ChangeKind};
pub use stream::Compression;
pub use unpack::unpack_layer;

use crate::digest::Digest;
use crate::error::{ImageError, Result};

/// Overlayfs marks a deleted lower file with a character device 0:0 of the same name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// In a layer tar, this entry makes its directory opaque (hides all lower contents).
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// AUFS bookkeeping names (hardlink dirs); meaningless outside AUFS, skipped.
pub const AUFS_META_PREFIX: &str = ".wh..wh.";
/// The xattr overlayfs reads to treat a directory as opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What to do with character and block device entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePolicy {
    /// mknod them (needs root); as non-root this fails like `Error`.
    Create,
    /// Leave them out and count them in [`UnpackStats::skipped_devices`].
    Skip,
    /// Refuse the layer.
    Error,
}

/// Options for [`unpack_layer`]. `image` and `layer` only name things in errors.
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    pub image: String,
    pub layer: String,
    /// The descriptor's media type, used when the magic bytes say nothing (plain tar).
    pub media_type: Option<String>,
    /// When set, the uncompressed stream must hash to this diff ID.
    pub expected_diff_id: Option<Digest>,
    /// When set, the compressed stream must hash to this blob digest.
    pub expected_digest: Option<Digest>,
    /// Refuse a layer whose uncompressed tar is larger than this (decompression bombs).
    pub max_uncompressed_size: u64,
    pub devices: DevicePolicy,
    /// lchown entries to their uid/gid (only meaningful as root).
    pub preserve_ownership: bool,
    /// Refuse to replace an existing directory with a non-directory or the other way
    /// round (`docker cp`'s `noOverwriteDirNonDir`); layers replace freely.
    pub no_overwrite_dir_non_dir: bool,
    /// Read `.wh.` entries as overlay whiteouts (layers); `docker cp` uploads are
    /// plain archives, where such names are files like any other.
    pub whiteouts: bool,
}

/// 64 GiB: larger than any real image layer, small enough to stop a bomb before it
/// fills a disk.
pub const DEFAULT_MAX_UNCOMPRESSED: u64 = 64 << 30;

impl UnpackOptions {
    pub fn new(image: impl Into<String>, layer: impl Into<String>) -> Self {
        let root = fs::is_root();
        UnpackOptions {
            image: image.into(),
            layer: layer.into(),
            media_type: None,
            expected_diff_id: None,
            expected_digest: None,
            max_uncompressed_size: DEFAULT_MAX_UNCOMPRESSED,
            devices: if root {
                DevicePolicy::Create
            } else {
                DevicePolicy::Error
            },
            preserve_ownership: root,
            no_overwrite_dir_non_dir: false,
            whiteouts: true,
        }
    }

    pub(crate) fn bad(&self, message: impl Into<String>) -> ImageError {
        ImageError::BadLayer {
            image: self.image.clone(),
            layer: self.layer.clone(),
            message: message.into(),
        }
    }

    pub(crate) fn unsafe_entry(&self, path: &[u8], reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeLayerEntry {
            image: self.image.clone(),
            layer: self.layer.clone(),
            path: Path::new(std::ffi::OsStr::from_bytes(path)).to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// What an unpack did, and where its time went.
#[derive(Clone, Debug, Default)]
pub struct UnpackStats {
    pub compression: Compression,
    /// sha256 of the uncompressed tar: the layer's diff ID.
    pub diff_id: Option<Digest>,
    /// sha256 of the stream as given (the blob digest).
    pub digest: Option<Digest>,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub entries: u64,
    pub files: u64,
    pub file_bytes: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub devices: u64,
    pub whiteouts: u64,
    pub skipped_devices: u64,
    /// Time inside the decompressor (including reading the source).
    pub decompress_time: Duration,
    /// Time hashing the uncompressed stream.
    pub hash_time: Duration,
    /// Everything else: tar parsing and filesystem writes.
    pub write_time: Duration,
    pub total_time: Duration,
}

impl UnpackStats {
    /// The diff ID; always present after a successful unpack.
    pub fn diff_id(&self) -> Result<&Digest> {
        self.diff_id
            .as_ref()
            .ok_or_else(|| ImageError::Other("unpack did not finish".into()))
    }
}

/// Removes what a failed unpack left in `target`. Never follows symlinks, so a partial
/// layer that contains `x -> /` cannot make this delete anything outside `target`.
pub fn remove_partial(target: &Path) -> Result<()> {
    match std::fs::remove_dir_all(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io(
            format!("removing partial layer {}", target.display()),
            e,
        )),
    }
}
