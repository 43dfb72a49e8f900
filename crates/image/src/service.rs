//! The image side as berthd uses it: one object over the content store, the image
//! index and the snapshotter, with the operations that touch more than one of them
//! (registering an image whose blobs are in the content store, import of a rootfs
//! tarball, container root filesystems, removal with garbage collection).
//!
//! Pull, push and archives build on [`Images::register`]: get the blobs into the
//! content store under a lease, then register; registration unpacks what is missing and
//! adds the record in one step, so a crash leaves either no record or a usable image.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::content::{ContentStore, Lease};
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::layer::{self, Compression, UnpackOptions, UnpackStats};
use crate::model::{
    chain_ids, host_platform, media_type, ContainerConfig, Descriptor, History, ImageConfig,
    Manifest, RootFs,
};
use crate::reference::Reference;
use crate::snapshot::{OverlayMount, Snapshotter};
use crate::store::{DeleteItem, GcReport, ImageRecord, ImageStore, ImageUser};

/// Manifests and configs larger than this are refused (Docker's limit for manifests is
/// 4 MiB; configs with long histories stay far below 8 MiB).
pub const MAX_METADATA_BLOB: u64 = 8 << 20;

/// The image side of one data-root.
#[derive(Debug)]
pub struct Images {
    data_root: PathBuf,
    content: ContentStore,
    store: ImageStore,
    snapshots: Snapshotter,
}

/// What `docker import` takes besides the tarball.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `repo[:tag]` to name the image, if any.
    pub reference: Option<String>,
    /// The image's run-time defaults (from `--change`).
    pub config: Option<ContainerConfig>,
    /// `--message`: the history entry's comment.
    pub message: Option<String>,
    /// Where the tarball came from, for the default comment (`-` for stdin, a URL).
    pub source: Option<String>,
    /// `--platform`, else the host's.
    pub platform: Option<crate::model::Platform>,
}

/// One layer as [`Images::register`] takes it: a blob in the content store and the
/// diff ID the config gives it.
#[derive(Debug, Clone)]
pub struct LayerSource {
    pub blob: Descriptor,
    pub diff_id: Digest,
}

/// What [`Images::register`] takes.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    /// Names the image in errors.
    pub image: &'a str,
    pub config_digest: &'a Digest,
    /// The layer blobs, lowest first, as the manifest lists them.
    pub layers: &'a [Descriptor],
    /// The manifest (or index) it came by, if any.
    pub manifest: Option<&'a Digest>,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Layers unpacked at once.
    pub parallel: usize,
}

impl Images {
    /// Opens (creating) `content/`, `image/` and `snapshots/` under `data_root`,
    /// clearing what a crash left half-done in each.
    pub fn open(data_root: impl Into<PathBuf>) -> Result<Self> {
        let data_root = data_root.into();
        Ok(Images {
            content: ContentStore::open(data_root.join("content"))?,
            store: ImageStore::open(data_root.join("image"))?,
            snapshots: Snapshotter::open(data_root.join("snapshots"))?,
            data_root,
        })
    }

    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    pub fn snapshots(&self) -> &Snapshotter {
        &self.snapshots
    }

    /// Looks an image up as Docker does (name, full ID, or unique ID prefix).
    pub fn resolve(&self, ref_or_id: &str) -> Result<ImageRecord> {
        self.store.resolve(ref_or_id)
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        self.store.list()
    }

    /// The image's config blob, parsed.
    pub fn config(&self, id: &Digest) -> Result<ImageConfig> {
        let data = self.content.read_blob(id, MAX_METADATA_BLOB)?;
        serde_json::from_slice(&data).map_err(|e| ImageError::invalid(format!("config {id}"), e))
    }

    /// The config blob as stored (what `docker inspect` and `save` need verbatim).
    pub fn config_bytes(&self, id: &Digest) -> Result<Vec<u8>> {
        self.content.read_blob(id, MAX_METADATA_BLOB)
    }

    /// Unpacks the layers of an image that are not unpacked yet. Each layer is
    /// independent of the ones below it (overlayfs stacks them), so they unpack in
    /// parallel, at most `parallel` at once. Returns the stats of the layers unpacked.
    pub fn unpack_layers(
        &self,
        image: &str,
        layers: &[LayerSource],
        parallel: usize,
    ) -> Result<Vec<UnpackStats>> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        let todo: Vec<(usize, &LayerSource, &Digest)> = layers
            .iter()
            .zip(&chains)
            .enumerate()
            .filter(|(_, (_, chain))| !self.snapshots.has_layer(chain))
            .map(|(i, (l, c))| (i, l, c))
            .collect();
        let parallel = parallel.max(1);
        let mut stats = Vec::new();
        for batch in todo.chunks(parallel) {
            let results: Vec<Result<UnpackStats>> = std::thread::scope(|s| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|(i, l, chain)| s.spawn(move || self.unpack_one(image, *i, l, chain)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(ImageError::Other("a layer unpack thread panicked".into()))
                        })
                    })
                    .collect()
            });
            for r in results {
                stats.push(r?);
            }
        }
        Ok(stats)
    }

    fn unpack_one(
        &self,
        image: &str,
        index: usize,
        layer: &LayerSource,
        chain: &Digest,
    ) -> Result<UnpackStats> {
        let file = self.content.open_blob(&layer.blob.digest)?;
        let mut opts = UnpackOptions::new(image, format!("{} ({})", layer.blob.digest, index + 1));
        opts.media_type = Some(layer.blob.media_type.clone());
        opts.expected_diff_id = Some(layer.diff_id.clone());
        let prepared = self.snapshots.prepare_layer(chain)?;
        match layer::unpack_layer(
            std::io::BufReader::with_capacity(256 << 10, file),
            &prepared.fs_dir(),
            &opts,
        ) {
            Ok(stats) => {
                self.snapshots.commit_layer(prepared)?;
                Ok(stats)
            }
            Err(e) => {
                let _ = self.snapshots.abort_layer(prepared);
                Err(e)
            }
        }
    }

    /// Makes an image of blobs already in the content store (held by a lease):
    /// checks the config against the layers, unpacks what is missing and adds the
    /// record, in that order, so a crash leaves no record of an unusable image.
    pub fn register(&self, reg: &Registration<'_>) -> Result<ImageRecord> {
        let Registration {
            image,
            config_digest,
            layers,
            manifest,
            parallel,
            ..
        } = *reg;
        let config = self.config(config_digest)?;
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(ImageError::invalid(
                format!("image {image}"),
                format!(
                    "the config lists {} layers but the manifest {}",
                    config.rootfs.diff_ids.len(),
                    layers.len()
                ),
            ));
        }
        let sources: Vec<LayerSource> = layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(blob, diff_id)| LayerSource {
                blob: blob.clone(),
                diff_id: diff_id.clone(),
            })
            .collect();
        let mut lease = self.content.lease();
        for chain in chain_ids(&config.rootfs.diff_ids) {
            lease.protect(&chain);
        }
        self.unpack_layers(image, &sources, parallel)?;
        let mut record = ImageRecord::new(config_digest.clone(), config.rootfs.diff_ids.clone());
        record.layer_digests = layers.iter().map(|d| d.digest.clone()).collect();
        record.manifest_digests = manifest.into_iter().cloned().collect();
        record.repo_tags = reg.repo_tags.clone();
        record.repo_digests = reg.repo_digests.clone();
        record.created = config.created.clone();
        record.size = record
            .chain_ids
            .iter()
            .map(|c| self.snapshots.layer_usage(c).map(|u| u.size).unwrap_or(0))
            .sum();
        let added = self.store.add(record)?;
        drop(lease);
        Ok(added)
    }

    /// Writes a small JSON blob (config, manifest) into the content store.
    pub fn put_json<T: serde::Serialize>(&self, value: &T) -> Result<(Digest, u64)> {
        let data =
            serde_json::to_vec(value).map_err(|e| ImageError::invalid("serialising a blob", e))?;
        let digest = self.content.write_blob(&data)?;
        Ok((digest, data.len() as u64))
    }

    /// `docker import`: the tarball (plain, gzip or zstd) becomes the one layer of a
    /// new image, stored as given. Returns the record (its ID is the config digest).
    pub fn import(&self, reader: &mut dyn Read, opts: &ImportOptions) -> Result<ImageRecord> {
        let name = opts
            .reference
            .clone()
            .unwrap_or_else(|| "imported image".into());
        let reference = match &opts.reference {
            Some(r) => Some(Reference::parse(r)?),
            None => None,
        };
        let mut lease = self.content.lease();
        // Store the tarball first; its digest is the layer blob's.
        let mut ingest = self.content.writer(None, None)?;
        ingest.set_context(&name);
        let mut head = [0u8; 6];
        let mut head_len = 0;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ImageError::io(format!("reading the tarball for {name}"), e)),
            };
            while head_len < head.len() && head_len < n {
                head[head_len] = buf[head_len];
                head_len += 1;
            }
            ingest
                .write_all(&buf[..n])
                .map_err(|e| ImageError::io(format!("storing the tarball for {name}"), e))?;
        }
        let size = ingest.written();
        let blob = ingest.commit()?;
        lease.protect(&blob);
        let layer_type = match Compression::detect(&head[..head_len], None) {
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
            Compression::None => media_type::OCI_LAYER,
        };
        // Unpack once to learn the diff ID (the uncompressed digest).
        let file = self.content.open_blob(&blob)?;
        let tmp_chain = blob.clone();
        let mut uopts = UnpackOptions::new(&name, blob.to_string());
        uopts.media_type = Some(layer_type.to_string());
        let prepared = self.snapshots.prepare_layer(&tmp_chain)?;
        let stats = match layer::unpack_layer(
            std::io::BufReader::with_capacity(256 << 10, file),
            &prepared.fs_dir(),
            &uopts,
        ) {
            Ok(s) => s,
            Err(e) => {
                let _ = self.snapshots.abort_layer(prepared);
                return Err(e);
            }
        };
        let diff_id = stats.diff_id()?.clone();
        // A single-layer image's chain ID is its diff ID.
        let prepared = crate::snapshot::PreparedLayer::rekey(prepared, diff_id.clone());
        lease.protect(&diff_id);
        self.snapshots.commit_layer(prepared)?;

        let platform = opts.platform.clone().unwrap_or_else(host_platform);
        let created = crate::now_rfc3339();
        let comment = opts
            .message
            .clone()
            .unwrap_or_else(|| format!("Imported from {}", opts.source.as_deref().unwrap_or("-")));
        let config = ImageConfig {
            created: Some(created.clone()),
            author: None,
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: Some(opts.config.clone().unwrap_or_default()),
            rootfs: RootFs {
                typ: "layers".into(),
                diff_ids: vec![diff_id],
            },
            history: vec![History {
                created: Some(created),
                created_by: None,
                author: None,
                comment: Some(comment),
                empty_layer: None,
            }],
            other: Default::default(),
        };
        let (config_digest, config_size) = self.put_json(&config)?;
        lease.protect(&config_digest);
        let layer_desc = Descriptor::new(layer_type, blob, size);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            config: Descriptor::new(media_type::OCI_CONFIG, config_digest.clone(), config_size),
            layers: vec![layer_desc.clone()],
            annotations: None,
        };
        let (manifest_digest, _) = self.put_json(&manifest)?;
        lease.protect(&manifest_digest);
        let tags = reference.map(|r| vec![r.to_string()]).unwrap_or_default();
        self.register(&Registration {
            image: &name,
            config_digest: &config_digest,
            layers: &[layer_desc],
            manifest: Some(&manifest_digest),
            repo_tags: tags,
            repo_digests: Vec::new(),
            parallel: 1,
        })
    }

    /// Creates a container's snapshot (upper dir over the image's layers).
    pub fn prepare_rootfs(&self, key: &str, image: &Digest) -> Result<OverlayMount> {
        let record = self
            .store
            .get(image)
            .ok_or_else(|| ImageError::ImageNotFound(image.to_string()))?;
        match self.snapshots.container_mount(key) {
            Ok(m) => Ok(m),
            Err(_) => self
                .snapshots
                .repair_container(key, &record.chain_ids)
                .or_else(|_| self.snapshots.prepare_container(key, &record.chain_ids)),
        }
    }

    /// Removes images (`docker rmi`), then the blobs and layers nothing uses any more.
    /// `in_use_chain_ids`: the layers under containers' snapshots.
    pub fn remove(
        &self,
        ref_or_id: &str,
        force: bool,
        users: &[ImageUser],
        prune: bool,
    ) -> Result<Vec<DeleteItem>> {
        let items = self.store.remove(ref_or_id, force, users)?;
        if prune {
            self.gc()?;
        }
        Ok(items)
    }

    /// Garbage collection: blobs and layers no image, container snapshot or lease uses.
    pub fn gc(&self) -> Result<GcReport> {
        let mut in_use = HashSet::new();
        for key in self.snapshots.containers()? {
            // A chain that cannot be read could be using any layer: collect nothing
            // rather than pull layers from under a container.
            in_use.extend(self.snapshots.container_chain(&key)?);
        }
        self.store.gc(&self.content, &self.snapshots, &in_use)
    }

    /// A lease on the content store, for pulls and loads in progress.
    pub fn lease(&self) -> Lease {
        self.content.lease()
    }
}
