//! berth's image side: everything between a registry (or an archive) and an
//! unpacked, mountable root filesystem. No HTTP server and no engine state here:
//! berthd calls this library.
//!
//! - [`digest`]: content digests and hashing while streaming.
//! - [`model`]: OCI and Docker manifests, indexes, image configs, platforms, chain IDs.
//! - [`error`]: the typed errors, each naming the image, layer or blob concerned.
//! - [`registry`]: the Distribution API v2 client (pull, push, auth, mirrors).
//! - [`layer`]: unpacking layer blobs safely; diffs, `docker diff` and `docker export`.
//! - [`snapshot`]: overlay snapshots of layers and containers under `snapshots/`.

pub mod digest;
pub mod error;
pub mod layer;
pub mod model;
pub mod registry;
pub mod snapshot;

pub use digest::Digest;
pub use error::{ImageError, Result};
