//! [`ImageService`] over crates/image: images resolved in the image index, container
//! root filesystems as overlay snapshots under `<data-root>/snapshots`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use berth_image::{Digest, ImageError, Images};

use crate::container::RootfsInfo;
use crate::images::{ImageInfo, ImageService, ImageServiceError};
use crate::spec::ImageDefaults;

/// The image side of a data-root, as the engine sees it.
pub struct LocalImages {
    images: Arc<Images>,
}

impl LocalImages {
    pub fn new(images: Arc<Images>) -> Self {
        LocalImages { images }
    }

    pub fn images(&self) -> &Arc<Images> {
        &self.images
    }
}

fn other(e: ImageError) -> ImageServiceError {
    match e {
        ImageError::ImageNotFound(r) => ImageServiceError::NotFound(r),
        e => ImageServiceError::Other(e.to_string()),
    }
}

/// Whether `dir` is a mount point (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    let (Ok(me), Some(Ok(parent))) = (
        std::fs::symlink_metadata(dir),
        dir.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    me.dev() != parent.dev()
}

impl ImageService for LocalImages {
    fn size(&self, image_id: &str) -> Option<u64> {
        self.images.resolve(image_id).ok().map(|r| r.size)
    }

    fn resolve(&self, reference: &str) -> Result<ImageInfo, ImageServiceError> {
        let record = match self.images.resolve(reference) {
            Ok(r) => r,
            Err(ImageError::ImageNotFound(_)) | Err(ImageError::InvalidReference { .. }) => {
                return Err(ImageServiceError::NotFound(reference.to_string()))
            }
            Err(e) => return Err(other(e)),
        };
        let config = self.images.config(&record.id).map_err(other)?;
        let c = config.config.unwrap_or_default();
        Ok(ImageInfo {
            id: record.id.to_string(),
            defaults: ImageDefaults {
                entrypoint: c.entrypoint,
                cmd: c.cmd,
                env: c.env.unwrap_or_default(),
                working_dir: c.working_dir.unwrap_or_default(),
            },
            user: c.user.unwrap_or_default(),
            stop_signal: c.stop_signal,
            healthcheck: c.healthcheck,
            labels: c.labels.unwrap_or_default(),
            volumes: c.volumes.unwrap_or_default().into_keys().collect(),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
        })
    }

    fn mount_rootfs(
        &self,
        container_id: &str,
        image_id: &str,
        volatile: bool,
    ) -> Result<RootfsInfo, ImageServiceError> {
        let digest = image_id.parse::<Digest>().map_err(other)?;
        let mount = self
            .images
            .prepare_rootfs(container_id, &digest)
            .map_err(other)?;
        if !is_mount_point(&mount.merged_dir) {
            mount
                .mount_with(&mount.merged_dir, volatile)
                .map_err(other)?;
        }
        Ok(RootfsInfo {
            merged_dir: mount.merged_dir.display().to_string(),
            upper_dir: mount.upper_dir.display().to_string(),
            work_dir: mount.work_dir.display().to_string(),
            lower_dir: mount
                .lower_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        })
    }

    fn unmount_rootfs(&self, container_id: &str) -> Result<(), ImageServiceError> {
        let Ok(mount) = self.images.snapshots().container_mount(container_id) else {
            return Ok(());
        };
        if is_mount_point(&mount.merged_dir) {
            berth_image::snapshot::OverlayMount::unmount(&mount.merged_dir).map_err(other)?;
        }
        Ok(())
    }

    fn container_rootfs_ids(&self) -> Vec<String> {
        self.images.snapshots().containers().unwrap_or_default()
    }

    fn remove_rootfs(&self, container_id: &str) -> Result<(), ImageServiceError> {
        if self
            .images
            .snapshots()
            .container_mount(container_id)
            .is_err()
        {
            return Ok(());
        }
        self.unmount_rootfs(container_id)?;
        self.images
            .snapshots()
            .remove_container(container_id)
            .map_err(other)
    }
}
