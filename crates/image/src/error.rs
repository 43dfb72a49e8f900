//! Image errors. Each carries the object it concerns so that the engine can turn it
//! into Docker's status code and message in one place.

use std::path::PathBuf;

use crate::digest::Digest;

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid reference format: {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("blob {digest} of {image}: digest mismatch (got {actual})")]
    DigestMismatch {
        image: String,
        digest: Digest,
        actual: Digest,
    },
    #[error("blob {digest} of {image}: size mismatch (expected {expected} bytes, got {actual})")]
    SizeMismatch {
        image: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error(
        "layer {layer} of {image}: uncompressed digest {actual} does not match diff ID {expected}"
    )]
    DiffIdMismatch {
        image: String,
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {0} not found in the content store")]
    BlobNotFound(Digest),
    #[error("No such image: {0}")]
    ImageNotFound(String),
    #[error("manifest for {reference} not found: {message}")]
    ManifestUnknown { reference: String, message: String },
    #[error("no matching manifest for {platform} in the manifest list entries of {reference}")]
    NoMatchingPlatform { reference: String, platform: String },
    #[error("unsupported media type {media_type:?} in {context}")]
    UnsupportedMediaType { media_type: String, context: String },
    #[error("layer {layer} of {image}: unsafe entry {path:?}: {reason}")]
    UnsafeLayerEntry {
        image: String,
        layer: String,
        path: PathBuf,
        reason: String,
    },
    #[error("layer {layer} of {image}: {message}")]
    BadLayer {
        image: String,
        layer: String,
        message: String,
    },
    #[error("registry {registry}: {status}: {message}")]
    Registry {
        registry: String,
        status: u16,
        message: String,
    },
    #[error("unauthorized: authentication required for {registry} ({message})")]
    Unauthorized { registry: String, message: String },
    #[error("registry {registry}: {message}")]
    Transport { registry: String, message: String },
    #[error("{context}: {message}")]
    InvalidData { context: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// `docker rmi` refusals (Docker's 409 "conflict: unable to delete …").
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}

impl ImageError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn invalid(context: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ImageError::InvalidData {
            context: context.into(),
            message: message.to_string(),
        }
    }
}
