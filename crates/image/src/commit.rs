//! `docker commit`: a container's upper directory becomes the top layer of a new image
//! over the container's image. The engine decides the new image's run-time config
//! (the container's, with `--change` applied); this module stores the layer, writes
//! the config and manifest, and registers the image with its parent.

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::layer;
use crate::model::{media_type, ContainerConfig, Descriptor, History, Manifest};
use crate::reference::Reference;
use crate::service::{Images, Registration};
use crate::store::ImageRecord;

/// What `docker commit` takes besides the container.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `repo[:tag]` to name the image, if any.
    pub reference: Option<String>,
    /// The new image's config; the parent's when `None`.
    pub config: Option<ContainerConfig>,
    /// `--message`.
    pub comment: Option<String>,
    /// `--author`.
    pub author: Option<String>,
    /// The history line's `created_by` (Docker puts the container's command there).
    pub created_by: Option<String>,
}

impl Images {
    /// Commits the container snapshot `key`, made over image `parent`.
    pub fn commit(
        &self,
        key: &str,
        parent: &Digest,
        options: &CommitOptions,
    ) -> Result<ImageRecord> {
        let parent_record = self
            .store()
            .get(parent)
            .ok_or_else(|| ImageError::ImageNotFound(parent.to_string()))?;
        let tags = match &options.reference {
            Some(r) => vec![Reference::parse(r)?.to_string()],
            None => Vec::new(),
        };
        let name = options
            .reference
            .clone()
            .unwrap_or_else(|| format!("commit of {key}"));
        let mount = self.snapshots().container_mount(key)?;
        let parent_manifest = self.image_manifest(&parent_record)?;
        let mut config = self.config(parent)?;
        let mut lease = self.lease();

        // The layer is stored as the plain tar of the upper dir: its digest is its
        // diff ID (push compresses it).
        let mut ingest = self.content().writer(None, None)?;
        ingest.set_context(&name);
        let ingest = layer::write_diff(&mount.upper_dir, ingest)?;
        let size = ingest.written();
        let diff_id = ingest.commit()?;
        lease.protect(&diff_id);

        let created = crate::now_rfc3339();
        config.created = Some(created.clone());
        if options.author.is_some() {
            config.author = options.author.clone();
        }
        if let Some(c) = &options.config {
            config.config = Some(c.clone());
        }
        config.rootfs.diff_ids.push(diff_id.clone());
        config.history.push(History {
            created: Some(created),
            created_by: options.created_by.clone(),
            author: options.author.clone(),
            comment: options.comment.clone(),
            empty_layer: None,
        });
        let (config_digest, config_size) = self.put_json(&config)?;
        lease.protect(&config_digest);

        let mut layers = parent_manifest.manifest.layers.clone();
        layers.push(Descriptor::new(media_type::OCI_LAYER, diff_id, size));
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            config: Descriptor::new(media_type::OCI_CONFIG, config_digest.clone(), config_size),
            layers: layers.clone(),
            annotations: None,
        };
        let (manifest_digest, _) = self.put_json(&manifest)?;
        lease.protect(&manifest_digest);
        let record = self.register(&Registration {
            image: &name,
            config_digest: &config_digest,
            layers: &layers,
            manifest: Some(&manifest_digest),
            repo_tags: tags,
            repo_digests: Vec::new(),
            parallel: 1,
        })?;
        let mut with_parent = ImageRecord::new(record.id.clone(), record.diff_ids.clone());
        with_parent.parent = Some(parent.clone());
        self.store().add(with_parent)
    }
}
