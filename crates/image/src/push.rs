//! `docker push`: an image's layers, then its config, then its manifest, to the
//! repository its name gives. Blobs the repository has are not sent again ("Layer
//! already exists"); layers go at most `max_concurrent_uploads` at once.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::layer::Compression;
use crate::model::{media_type, Descriptor, Manifest};
use crate::reference::Reference;
use crate::registry::progress::{Message, Progress};
use crate::registry::{BlobPushOutcome, Phase, Registry, RegistryClient};
use crate::service::{Images, MAX_METADATA_BLOB};
use crate::store::ImageRecord;

/// Docker's default `max-concurrent-uploads`.
pub const DEFAULT_CONCURRENT_UPLOADS: usize = 5;

const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct PushOptions {
    pub max_concurrent_uploads: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            max_concurrent_uploads: DEFAULT_CONCURRENT_UPLOADS,
        }
    }
}

/// One tag pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedTag {
    pub tag: String,
    pub digest: Digest,
    pub size: u64,
}

/// An image's manifest as it is pushed and saved: the bytes and their type.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub manifest: Manifest,
}

impl Images {
    /// Pushes `repository` at `tag` (every tag of the repository when `tag` is
    /// `None`), as `POST /images/{name}/push?tag=` does.
    pub fn push(
        &self,
        client: &RegistryClient,
        repository: &str,
        tag: Option<&str>,
        options: &PushOptions,
        progress: Progress<'_>,
    ) -> Result<Vec<PushedTag>> {
        let named = Reference::parse_named(repository)?;
        if named.digest().is_some() {
            return Err(ImageError::InvalidReference {
                reference: repository.to_string(),
                reason: "cannot push a digest reference".into(),
            });
        }
        let repo = named.repository();
        let targets: Vec<Reference> = match tag.or(named.tag()) {
            Some(t) => vec![repo.with_tag(t)?],
            None => {
                let prefix = format!("{}:", repo.name());
                let mut all: Vec<Reference> = self
                    .list()
                    .iter()
                    .flat_map(|r| r.repo_tags.iter())
                    .filter(|t| t.starts_with(&prefix))
                    .filter_map(|t| Reference::parse(t).ok())
                    .collect();
                all.sort();
                if all.is_empty() {
                    return Err(ImageError::ImageNotFound(repo.familiar()));
                }
                all
            }
        };
        progress(Message::status(format!(
            "The push refers to repository [{}]",
            repo.familiar_name()
        )));
        let registry = client.registry(repo.domain());
        let mut pushed = Vec::new();
        for target in targets {
            let record = self
                .store()
                .resolve(&target.to_string())
                .map_err(|_| ImageError::ImageNotFound(target.familiar()))?;
            pushed.push(self.push_one(&registry, &target, &record, options, progress)?);
        }
        Ok(pushed)
    }

    fn push_one(
        &self,
        registry: &Registry,
        target: &Reference,
        record: &ImageRecord,
        options: &PushOptions,
        progress: Progress<'_>,
    ) -> Result<PushedTag> {
        let repo = target.path().to_string();
        let tag = target.tag().unwrap_or(crate::reference::DEFAULT_TAG);
        let stored = self.distributable_manifest(record)?;
        let manifest = &stored.manifest;
        // A repository of the same registry this image came from or went to: its
        // blobs can be mounted rather than sent ("Mounted from …").
        let mount_from = record
            .repo_digests
            .iter()
            .chain(&record.repo_tags)
            .filter_map(|r| Reference::parse_named(r).ok())
            .find(|r| r.domain() == target.domain() && r.path() != target.path())
            .map(|r| r.path().to_string());
        // Docker shows pushed layers by their diff ID, top layer first.
        let mut jobs: VecDeque<(String, Descriptor)> = VecDeque::new();
        for (i, blob) in manifest.layers.iter().enumerate().rev() {
            let id = record
                .diff_ids
                .get(i)
                .unwrap_or(&blob.digest)
                .short()
                .to_string();
            progress(Message::layer(&id, &Phase::Preparing));
            jobs.push_back((id, blob.clone()));
        }
        let workers = options.max_concurrent_uploads.clamp(1, 64).min(jobs.len());
        for (id, _) in jobs.iter().skip(workers) {
            progress(Message::layer(id, &Phase::Waiting));
        }
        let queue = Mutex::new(jobs);
        let failure: Mutex<Option<ImageError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    if lock(&failure).is_some() {
                        return;
                    }
                    let Some((id, blob)) = lock(&queue).pop_front() else {
                        return;
                    };
                    let from = mount_from.as_deref();
                    match self.push_layer(registry, &repo, from, &id, &blob, progress) {
                        Ok(()) => {}
                        Err(e) => {
                            lock(&failure).get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = lock(&failure).take() {
            return Err(e);
        }
        let config = &manifest.config;
        let mut reader = self.content().open_blob(&config.digest)?;
        registry.push_blob(
            &repo,
            &config.digest,
            config.size,
            &mut reader,
            None,
            &mut |_, _| {},
        )?;
        let digest = registry.put_manifest(&repo, tag, &stored.bytes, &stored.media_type)?;
        let size = stored.bytes.len() as u64;
        let mut line = Message::status(format!("{tag}: digest: {digest} size: {size}"));
        progress(line.clone());
        line.status = String::new();
        line.aux = Some(serde_json::json!({
            "Tag": tag,
            "Digest": digest.to_string(),
            "Size": size,
        }));
        progress(line);
        // As Docker does, the image now also answers to repo@digest.
        let mut digests = ImageRecord::new(record.id.clone(), record.diff_ids.clone());
        digests.repo_digests = vec![target.repository().with_digest(&digest).to_string()];
        digests.manifest_digests = vec![stored.digest.clone()];
        self.store().add(digests)?;
        Ok(PushedTag {
            tag: tag.to_string(),
            digest,
            size,
        })
    }

    fn push_layer(
        &self,
        registry: &Registry,
        repo: &str,
        mount_from: Option<&str>,
        id: &str,
        blob: &Descriptor,
        progress: Progress<'_>,
    ) -> Result<()> {
        let mut reader = self.content().open_blob(&blob.digest)?;
        let mut last = Instant::now() - PROGRESS_INTERVAL;
        let mut on_bytes = |current: u64, total: Option<u64>| {
            if last.elapsed() >= PROGRESS_INTERVAL || Some(current) == total {
                last = Instant::now();
                progress(Message::layer(id, &Phase::Pushing { current, total }));
            }
        };
        let outcome = registry.push_blob(
            repo,
            &blob.digest,
            blob.size,
            &mut reader,
            mount_from,
            &mut on_bytes,
        )?;
        let phase = match outcome {
            BlobPushOutcome::AlreadyExists => Phase::LayerAlreadyExists,
            BlobPushOutcome::Mounted { from } => Phase::MountedFrom { repository: from },
            BlobPushOutcome::Uploaded => Phase::Pushed,
        };
        progress(Message::layer(id, &phase));
        Ok(())
    }

    /// The manifest an image was pulled, loaded or imported with; for an image that
    /// has none (a legacy `docker load`), one is written now from its blobs.
    pub fn image_manifest(&self, record: &ImageRecord) -> Result<StoredManifest> {
        for digest in &record.manifest_digests {
            if let Some(stored) = self.stored_manifest(record, digest) {
                return Ok(stored);
            }
        }
        self.write_manifest(record)
    }

    /// The manifest to push: layers compressed, as `docker push` sends them. An image
    /// whose layers are plain tars (imported, committed, loaded from Docker's archive)
    /// gets its layers gzipped once; the manifest of those is kept with the image.
    pub fn distributable_manifest(&self, record: &ImageRecord) -> Result<StoredManifest> {
        let stored = self.image_manifest(record)?;
        if !stored.manifest.layers.iter().any(is_plain_layer) {
            return Ok(stored);
        }
        for digest in &record.manifest_digests {
            if let Some(candidate) = self.stored_manifest(record, digest) {
                if !candidate.manifest.layers.iter().any(is_plain_layer) {
                    return Ok(candidate);
                }
            }
        }
        let mut lease = self.lease();
        let mut layers = Vec::new();
        for layer in &stored.manifest.layers {
            if !is_plain_layer(layer) {
                layers.push(layer.clone());
                continue;
            }
            let mut source = self.content().open_blob(&layer.digest)?;
            let ingest = self.content().writer(None, None)?;
            let mut gzip = flate2::write::GzEncoder::new(ingest, flate2::Compression::default());
            std::io::copy(&mut source, &mut gzip)
                .map_err(|e| ImageError::io(format!("compressing layer {}", layer.digest), e))?;
            let ingest = gzip
                .finish()
                .map_err(|e| ImageError::io(format!("compressing layer {}", layer.digest), e))?;
            let size = ingest.written();
            let digest = ingest.commit()?;
            lease.protect(&digest);
            layers.push(Descriptor::new(media_type::OCI_LAYER_GZIP, digest, size));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            config: stored.manifest.config.clone(),
            layers,
            annotations: None,
        };
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ImageError::invalid("serialising a manifest", e))?;
        let digest = self.content().write_blob(&bytes)?;
        let mut with_manifest = ImageRecord::new(record.id.clone(), record.diff_ids.clone());
        with_manifest.manifest_digests = vec![digest.clone()];
        with_manifest.layer_digests = manifest.layers.iter().map(|l| l.digest.clone()).collect();
        self.store().add(with_manifest)?;
        drop(lease);
        Ok(StoredManifest {
            digest,
            bytes,
            media_type: media_type::OCI_MANIFEST.into(),
            manifest,
        })
    }

    /// The manifest `digest` if it is one of `record`'s image.
    fn stored_manifest(&self, record: &ImageRecord, digest: &Digest) -> Option<StoredManifest> {
        let bytes = self.content().read_blob(digest, MAX_METADATA_BLOB).ok()?;
        let manifest = serde_json::from_slice::<Manifest>(&bytes).ok()?;
        if manifest.config.digest != record.id || manifest.layers.len() != record.diff_ids.len() {
            return None;
        }
        let media_type = manifest.media_type.clone().unwrap_or_else(|| {
            if manifest.config.media_type == media_type::DOCKER_CONFIG {
                media_type::DOCKER_MANIFEST.to_string()
            } else {
                media_type::OCI_MANIFEST.to_string()
            }
        });
        Some(StoredManifest {
            digest: digest.clone(),
            bytes,
            media_type,
            manifest,
        })
    }

    /// Writes an OCI manifest for an image from its config and layer blobs.
    fn write_manifest(&self, record: &ImageRecord) -> Result<StoredManifest> {
        if record.layer_digests.len() < record.diff_ids.len() {
            return Err(ImageError::invalid(
                format!("image {}", record.id),
                "its layer blobs are not known",
            ));
        }
        let mut layers = Vec::new();
        // The first ones are the image's own; compressed copies made for a push follow.
        for digest in &record.layer_digests[..record.diff_ids.len()] {
            let size = self.content().size(digest)?;
            let mut head = [0u8; 6];
            let mut file = self.content().open_blob(digest)?;
            let n = read_head(&mut file, &mut head)
                .map_err(|e| ImageError::io(format!("reading blob {digest}"), e))?;
            let typ = match Compression::detect(&head[..n], None) {
                Compression::Gzip => media_type::OCI_LAYER_GZIP,
                Compression::Zstd => media_type::OCI_LAYER_ZSTD,
                Compression::None => media_type::OCI_LAYER,
            };
            layers.push(Descriptor::new(typ, digest.clone(), size));
        }
        let config_size = self.content().size(&record.id)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            config: Descriptor::new(media_type::OCI_CONFIG, record.id.clone(), config_size),
            layers,
            annotations: None,
        };
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ImageError::invalid("serialising a manifest", e))?;
        let digest = self.content().write_blob(&bytes)?;
        let mut with_manifest = ImageRecord::new(record.id.clone(), record.diff_ids.clone());
        with_manifest.manifest_digests = vec![digest.clone()];
        self.store().add(with_manifest)?;
        Ok(StoredManifest {
            digest,
            bytes,
            media_type: media_type::OCI_MANIFEST.into(),
            manifest,
        })
    }
}

/// Reads up to `buf.len()` bytes (fewer only at end of file).
pub(crate) fn read_head(reader: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A layer sent as a plain tar.
fn is_plain_layer(layer: &Descriptor) -> bool {
    layer.media_type == media_type::OCI_LAYER
        || layer.media_type == "application/vnd.docker.image.rootfs.diff.tar"
}
