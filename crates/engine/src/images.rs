//! What the engine needs from the image side, as a small interface: crates/image
//! implements it in the daemon (and tests may use a plain directory).

use crate::container::RootfsInfo;
use crate::spec::ImageDefaults;

#[derive(Debug, thiserror::Error)]
pub enum ImageServiceError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
}

/// An image as the engine uses it.
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    /// sha256:… (the config digest).
    pub id: String,
    pub defaults: ImageDefaults,
    pub user: String,
    pub stop_signal: Option<String>,
    pub healthcheck: Option<serde_json::Value>,
    pub labels: std::collections::HashMap<String, String>,
    /// The image's `VOLUME`s: each gets an anonymous volume unless mounted over.
    pub volumes: Vec<String>,
    /// The image's `EXPOSE`d ports (`80/tcp`): the container's too, as dockerd merges them.
    pub exposed_ports: Vec<String>,
}

pub trait ImageService: Send + Sync {
    /// The unpacked size of an image, in bytes (`SizeRootFs` adds it), if known.
    fn size(&self, _image_id: &str) -> Option<u64> {
        None
    }
    /// Look an image up by name, ID or ID prefix.
    fn resolve(&self, reference: &str) -> Result<ImageInfo, ImageServiceError>;
    /// Prepare and mount the container's root filesystem (image layers plus a
    /// writable upper dir); idempotent. `volatile`: the container goes at its exit
    /// (`--rm`), its upper dir need never reach the disk.
    fn mount_rootfs(
        &self,
        container_id: &str,
        image_id: &str,
        volatile: bool,
    ) -> Result<RootfsInfo, ImageServiceError>;
    /// Unmount it (the upper dir stays until `remove_rootfs`).
    fn unmount_rootfs(&self, container_id: &str) -> Result<(), ImageServiceError>;
    /// Remove the container's writable layer.
    fn remove_rootfs(&self, container_id: &str) -> Result<(), ImageServiceError>;
    /// The containers that have a writable layer (for the sweep at start).
    fn container_rootfs_ids(&self) -> Vec<String> {
        Vec::new()
    }
}
