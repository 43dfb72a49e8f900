//! berth's image side: everything between a registry (or an archive) and an
//! unpacked, mountable root filesystem. No HTTP server and no engine state here:
//! berthd calls this library.
//!
//! - [`digest`]: content digests and hashing while streaming.
//! - [`model`]: OCI and Docker manifests, indexes, image configs, platforms, chain IDs.
//! - [`content`]: the content store (blobs by digest, verified ingests).
//! - [`reference`]: image references, normalised as Docker does.
//! - [`store`]: the image index (IDs, RepoTags, RepoDigests) and garbage collection.
//! - [`error`]: the typed errors, each naming the image, layer or blob concerned.
//! - [`registry`]: the Distribution API v2 client (pull, push, auth, mirrors).
//! - [`layer`]: unpacking layer blobs safely; diffs, `docker diff` and `docker export`.
//! - [`service`]: [`Images`], the facade berthd uses: register, import, rootfs, GC.
//! - [`pull`], [`push`]: `docker pull` and `docker push` over the registry client.
//! - [`archive`]: `docker save` and `docker load` tarballs.
//! - [`snapshot`]: overlay snapshots of layers and containers under `snapshots/`.

pub mod archive;
pub mod content;
pub mod digest;
pub mod error;
pub mod layer;
pub mod model;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod service;
pub mod snapshot;
pub mod store;

pub use digest::Digest;
pub use error::{ImageError, Result};
pub use service::{Images, ImportOptions};

/// Now, as Docker writes times in image configs (RFC 3339, UTC, nanoseconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}
