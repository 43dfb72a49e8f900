//! A synchronous client of the Distribution API v2 (what `docker pull` and `docker push`
//! speak): anonymous, bearer-token and basic auth, HTTPS with the system roots, plain
//! HTTP for insecure registries, Docker Hub mirrors, streaming and resumable blob
//! downloads verified by size and digest, blob and manifest uploads, and retries with
//! back-off. It owns no storage: blobs go into the `Write` the caller gives, and the
//! pull orchestration (manifest → config → layers → snapshots) lives above it.
//!
//! - [`config`]: insecure registries, mirrors, credentials from `config.json`.
//! - [`auth`]: `WWW-Authenticate` parsing and the token cache.
//! - [`client`]: the HTTP core, retries, and the pull-side operations.
//! - [`push`]: blob uploads (existence check, cross-repo mount, monolithic, chunked)
//!   and manifest uploads.
//! - [`progress`]: the per-layer progress events the engine turns into Docker's JSON.

pub mod auth;
pub mod client;
pub mod config;
pub mod progress;
pub mod push;

pub use client::{
    ClientOptions, FetchedManifest, ManifestHead, Registry, RegistryClient, RetryPolicy,
};
pub use config::{Credentials, RegistryConfig};
pub use progress::{Phase, ProgressEvent};
pub use push::{BlobPushOutcome, UploadPolicy};
