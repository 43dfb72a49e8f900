//! `docker save` and `docker load` tarballs.
//!
//! Saving writes what Docker 25+ writes: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) that is also a Docker archive (`manifest.json`
//! naming the config and layer blobs by path, and `repositories`). Loading reads
//! that, the older Docker format (`<id>/layer.tar`, `<id>.json`, layers repeated as
//! symlinks) and plain OCI layouts (`index.json` only). The tar is read in one pass:
//! every file that is not small metadata goes straight into the content store.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::layer::Compression;
use crate::model::{media_type, select_manifest, Descriptor, Index, Manifest};
use crate::push::read_head;
use crate::reference::Reference;
use crate::service::{Images, Registration, MAX_METADATA_BLOB};
use crate::store::ImageRecord;

/// `manifest.json`: one entry per image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchiveManifestEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

/// An image `docker load` brought in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: Digest,
    /// As `docker images` shows them (`busybox:latest`).
    pub repo_tags: Vec<String>,
}

/// All the JSON an archive may hold in memory while it loads (configs of the legacy
/// format, `manifest.json`, `index.json`): far above any real archive's.
const MAX_ARCHIVE_METADATA: u64 = 64 << 20;

const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

impl Images {
    /// `docker save NAME…`: each name is a tag, a repository (all its tags) or an ID.
    pub fn save(&self, names: &[String], out: &mut dyn Write) -> Result<()> {
        // Images in the order first named, each with the tags asked for.
        let mut images: Vec<(ImageRecord, Vec<Reference>)> = Vec::new();
        for name in names {
            let record = self.store().resolve(name)?;
            let hex = name.strip_prefix("sha256:").unwrap_or(name);
            let by_id = !hex.is_empty() && record.id.hex().starts_with(hex);
            let tags: Vec<Reference> = match Reference::parse_named(name) {
                _ if by_id => Vec::new(),
                Ok(r) if r.tag().is_some() => vec![r],
                Ok(r) if r.digest().is_none() => {
                    let prefix = format!("{}:", r.name());
                    record
                        .repo_tags
                        .iter()
                        .filter(|t| t.starts_with(&prefix))
                        .filter_map(|t| Reference::parse(t).ok())
                        .collect()
                }
                _ => Vec::new(),
            };
            match images.iter_mut().find(|(r, _)| r.id == record.id) {
                Some((_, known)) => {
                    for t in tags {
                        if !known.contains(&t) {
                            known.push(t);
                        }
                    }
                }
                None => images.push((record, tags)),
            }
        }
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        append_dir(&mut tar, "blobs/")?;
        append_dir(&mut tar, "blobs/sha256/")?;
        let mut written = std::collections::HashSet::new();
        let mut index = Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.into()),
            manifests: Vec::new(),
            annotations: None,
        };
        let mut entries = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (record, tags) in &images {
            let stored = self.image_manifest(record)?;
            let blobs = std::iter::once(&stored.digest)
                .chain(std::iter::once(&stored.manifest.config.digest))
                .chain(stored.manifest.layers.iter().map(|l| &l.digest));
            for digest in blobs {
                if written.insert(digest.clone()) {
                    self.append_blob(&mut tar, digest)?;
                }
            }
            let descriptor = Descriptor::new(
                &stored.media_type,
                stored.digest.clone(),
                stored.bytes.len() as u64,
            );
            if tags.is_empty() {
                index.manifests.push(descriptor.clone());
            }
            for tag in tags {
                let mut d = descriptor.clone();
                let mut annotations = BTreeMap::new();
                annotations.insert(ANNOTATION_IMAGE_NAME.to_string(), tag.to_string());
                annotations.insert(
                    ANNOTATION_REF_NAME.to_string(),
                    tag.tag().unwrap_or("latest").to_string(),
                );
                d.annotations = Some(annotations);
                index.manifests.push(d);
                if let (Some(t), Some(top)) = (tag.tag(), stored.manifest.layers.last()) {
                    repositories
                        .entry(tag.familiar_name())
                        .or_default()
                        .insert(t.to_string(), top.digest.hex().to_string());
                }
            }
            entries.push(ArchiveManifestEntry {
                config: blob_path(&stored.manifest.config.digest),
                repo_tags: (!tags.is_empty())
                    .then(|| tags.iter().map(Reference::familiar).collect()),
                layers: stored
                    .manifest
                    .layers
                    .iter()
                    .map(|l| blob_path(&l.digest))
                    .collect(),
            });
        }
        append_json(&mut tar, "index.json", &index)?;
        append_json(&mut tar, "manifest.json", &entries)?;
        append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        if !repositories.is_empty() {
            append_json(&mut tar, "repositories", &repositories)?;
        }
        let out = tar
            .into_inner()
            .map_err(|e| ImageError::io("finishing the image archive", e))?;
        out.flush()
            .map_err(|e| ImageError::io("writing the image archive", e))
    }

    /// Writes the images as an OCI image layout directory (what `skopeo copy oci:DIR`
    /// and `umoci` read): the archive of [`Images::save`], unpacked into `dir`.
    pub fn save_oci_layout(&self, names: &[String], dir: &Path) -> Result<()> {
        let mut tar = Vec::new();
        self.save(names, &mut tar)?;
        std::fs::create_dir_all(dir)
            .map_err(|e| ImageError::io(format!("creating {}", dir.display()), e))?;
        tar::Archive::new(&tar[..])
            .unpack(dir)
            .map_err(|e| ImageError::io(format!("writing the layout {}", dir.display()), e))
    }

    /// Loads every image of an OCI image layout directory (`index.json`, `blobs/`), or
    /// of an unpacked `docker save` archive.
    pub fn load_oci_layout(&self, dir: &Path) -> Result<Vec<LoadedImage>> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(16);
        let root = dir.to_path_buf();
        // The directory is read as the tar it would be, on a thread, into `load`.
        let writer = std::thread::spawn(move || {
            let mut tar = tar::Builder::new(ChannelWriter { tx: tx.clone() });
            tar.follow_symlinks(false);
            let result = tar.append_dir_all(".", &root).and_then(|()| tar.finish());
            if let Err(e) = result {
                let _ = tx.send(Err(e));
            }
        });
        let mut reader = ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        };
        let loaded = self.load(&mut reader);
        drop(reader);
        let _ = writer.join();
        loaded
    }

    fn append_blob(&self, tar: &mut tar::Builder<&mut dyn Write>, digest: &Digest) -> Result<()> {
        let size = self.content().size(digest)?;
        let file = self.content().open_blob(digest)?;
        let mut header = file_header(size);
        tar.append_data(&mut header, blob_path(digest), file)
            .map_err(|e| ImageError::io(format!("writing blob {digest} to the archive"), e))
    }

    /// `docker load`: every image of the archive, registered under its tags.
    pub fn load(&self, reader: &mut dyn Read) -> Result<Vec<LoadedImage>> {
        let mut lease = self.lease();
        let mut small: HashMap<PathBuf, Vec<u8>> = HashMap::new();
        let mut blobs: HashMap<PathBuf, Digest> = HashMap::new();
        let mut links: HashMap<PathBuf, PathBuf> = HashMap::new();
        let mut metadata_bytes = 0u64;
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| ImageError::io("reading the image archive", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ImageError::io("reading the image archive", e))?;
            let raw = entry
                .path()
                .map_err(|e| ImageError::io("reading the image archive", e))?
                .into_owned();
            let path = archive_path(&raw)?;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(|e| ImageError::io("reading the image archive", e))?
                    .ok_or_else(|| ImageError::invalid("image archive", "link without target"))?
                    .into_owned();
                let target = if kind.is_symlink() {
                    path.parent().unwrap_or(Path::new("")).join(target)
                } else {
                    target
                };
                links.insert(path, archive_path(&target)?);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            if is_metadata(&path) {
                let size = entry.header().size().unwrap_or(u64::MAX);
                metadata_bytes = metadata_bytes.saturating_add(size);
                if size > MAX_METADATA_BLOB || metadata_bytes > MAX_ARCHIVE_METADATA {
                    return Err(ImageError::invalid(
                        format!("image archive: {}", path.display()),
                        format!("{size} bytes is too large"),
                    ));
                }
                let mut data = Vec::with_capacity(size as usize);
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| ImageError::io("reading the image archive", e))?;
                small.insert(path, data);
            } else {
                let mut ingest = self.content().writer(None, None)?;
                ingest.set_context("image archive");
                std::io::copy(&mut entry, &mut ingest).map_err(|e| {
                    ImageError::io(
                        format!("storing {} of the image archive", path.display()),
                        e,
                    )
                })?;
                let digest = ingest.commit()?;
                lease.protect(&digest);
                blobs.insert(path, digest);
            }
        }
        let files = ArchiveFiles {
            small,
            blobs,
            links,
        };
        if let Some(manifest) = files.small.get(Path::new("manifest.json")) {
            let entries: Vec<ArchiveManifestEntry> = serde_json::from_slice(manifest)
                .map_err(|e| ImageError::invalid("manifest.json of the image archive", e))?;
            let index = match files.small.get(Path::new("index.json")) {
                Some(bytes) => Some(
                    serde_json::from_slice::<Index>(bytes)
                        .map_err(|e| ImageError::invalid("index.json of the image archive", e))?,
                ),
                None => None,
            };
            let mut loaded = Vec::new();
            for entry in &entries {
                loaded.push(self.load_docker_entry(&files, entry, index.as_ref(), &mut lease)?);
            }
            Ok(loaded)
        } else if let Some(bytes) = files.small.get(Path::new("index.json")) {
            let index: Index = serde_json::from_slice(bytes)
                .map_err(|e| ImageError::invalid("index.json of the image archive", e))?;
            let mut loaded = Vec::new();
            for d in &index.manifests {
                loaded.push(self.load_oci_entry(d)?);
            }
            Ok(loaded)
        } else {
            Err(ImageError::invalid(
                "image archive",
                "neither manifest.json nor index.json found",
            ))
        }
    }

    fn load_docker_entry(
        &self,
        files: &ArchiveFiles,
        entry: &ArchiveManifestEntry,
        index: Option<&Index>,
        lease: &mut crate::content::Lease,
    ) -> Result<LoadedImage> {
        let config_digest = match files.small.get(&archive_path(Path::new(&entry.config))?) {
            Some(bytes) => {
                let d = self.content().write_blob(bytes)?;
                lease.protect(&d);
                d
            }
            None => files.blob(&entry.config)?,
        };
        let mut layers = Vec::new();
        for path in &entry.layers {
            let digest = files.blob(path)?;
            layers.push(self.layer_descriptor(&digest)?);
        }
        // The archive's own manifest when its index has one for this config.
        let mut manifest_digest = None;
        for d in index.iter().flat_map(|i| &i.manifests) {
            if !media_type::is_manifest(&d.media_type) {
                continue;
            }
            if let Ok(bytes) = self.content().read_blob(&d.digest, MAX_METADATA_BLOB) {
                if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                    let same_layers = m
                        .layers
                        .iter()
                        .map(|l| &l.digest)
                        .eq(layers.iter().map(|l| &l.digest));
                    if m.config.digest == config_digest && same_layers {
                        layers = m.layers.clone();
                        manifest_digest = Some(d.digest.clone());
                        break;
                    }
                }
            }
        }
        let manifest_digest = match manifest_digest {
            Some(d) => d,
            None => {
                let config_size = self.content().size(&config_digest)?;
                let manifest = Manifest {
                    schema_version: 2,
                    media_type: Some(media_type::OCI_MANIFEST.into()),
                    config: Descriptor::new(
                        media_type::OCI_CONFIG,
                        config_digest.clone(),
                        config_size,
                    ),
                    layers: layers.clone(),
                    annotations: None,
                };
                let (d, _) = self.put_json(&manifest)?;
                d
            }
        };
        lease.protect(&manifest_digest);
        let mut tags = Vec::new();
        for t in entry.repo_tags.iter().flatten() {
            tags.push(Reference::parse(t)?.to_string());
        }
        let name = tags
            .first()
            .cloned()
            .unwrap_or_else(|| config_digest.to_string());
        let record = self.register(&Registration {
            image: &name,
            config_digest: &config_digest,
            layers: &layers,
            manifest: Some(&manifest_digest),
            repo_tags: tags.clone(),
            repo_digests: Vec::new(),
            parallel: crate::pull::DEFAULT_CONCURRENT_DOWNLOADS,
        })?;
        Ok(LoadedImage {
            id: record.id,
            repo_tags: tags
                .iter()
                .filter_map(|t| Reference::parse(t).ok())
                .map(|r| r.familiar())
                .collect(),
        })
    }

    /// An entry of a plain OCI layout's `index.json`.
    fn load_oci_entry(&self, descriptor: &Descriptor) -> Result<LoadedImage> {
        let annotations = descriptor.annotations.clone().unwrap_or_default();
        let name = annotations.get(ANNOTATION_IMAGE_NAME).cloned().or_else(|| {
            annotations
                .get(ANNOTATION_REF_NAME)
                .filter(|r| Reference::parse(r).is_ok_and(|p| p.tag().is_some() && r.contains(':')))
                .cloned()
        });
        let bytes = self
            .content()
            .read_blob(&descriptor.digest, MAX_METADATA_BLOB)?;
        let (manifest_digest, bytes) = if media_type::is_index(&descriptor.media_type) {
            let index: Index = serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::invalid(format!("index {}", descriptor.digest), e))?;
            let chosen = select_manifest(&index, None, &descriptor.digest.to_string())?;
            (
                chosen.digest.clone(),
                self.content()
                    .read_blob(&chosen.digest, MAX_METADATA_BLOB)?,
            )
        } else {
            (descriptor.digest.clone(), bytes)
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::invalid(format!("manifest {manifest_digest}"), e))?;
        let tags = match &name {
            Some(n) => vec![Reference::parse(n)?.to_string()],
            None => Vec::new(),
        };
        let shown = name
            .clone()
            .unwrap_or_else(|| manifest.config.digest.to_string());
        let record = self.register(&Registration {
            image: &shown,
            config_digest: &manifest.config.digest,
            layers: &manifest.layers,
            manifest: Some(&manifest_digest),
            repo_tags: tags.clone(),
            repo_digests: Vec::new(),
            parallel: crate::pull::DEFAULT_CONCURRENT_DOWNLOADS,
        })?;
        Ok(LoadedImage {
            id: record.id,
            repo_tags: tags
                .iter()
                .filter_map(|t| Reference::parse(t).ok())
                .map(|r| r.familiar())
                .collect(),
        })
    }

    /// A layer blob's descriptor, its media type from its first bytes.
    fn layer_descriptor(&self, digest: &Digest) -> Result<Descriptor> {
        let size = self.content().size(digest)?;
        let mut file = self.content().open_blob(digest)?;
        let mut head = [0u8; 6];
        let n = read_head(&mut file, &mut head)
            .map_err(|e| ImageError::io(format!("reading blob {digest}"), e))?;
        let typ = match Compression::detect(&head[..n], None) {
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
            Compression::None => media_type::OCI_LAYER,
        };
        Ok(Descriptor::new(typ, digest.clone(), size))
    }
}

/// What a read archive holds, by normalised path.
struct ArchiveFiles {
    small: HashMap<PathBuf, Vec<u8>>,
    blobs: HashMap<PathBuf, Digest>,
    links: HashMap<PathBuf, PathBuf>,
}

impl ArchiveFiles {
    /// The blob stored for `path`, following the archive's links.
    fn blob(&self, path: &str) -> Result<Digest> {
        let mut path = archive_path(Path::new(path))?;
        for _ in 0..16 {
            if let Some(d) = self.blobs.get(&path) {
                return Ok(d.clone());
            }
            match self.links.get(&path) {
                Some(next) => path = next.clone(),
                None => break,
            }
        }
        Err(ImageError::invalid(
            "image archive",
            format!("{} is named by manifest.json but missing", path.display()),
        ))
    }
}

/// Metadata kept in memory while loading: the archive's own files and legacy configs.
fn is_metadata(path: &Path) -> bool {
    let name = path.to_string_lossy();
    matches!(
        name.as_ref(),
        "manifest.json" | "index.json" | "repositories" | "oci-layout"
    ) || name.ends_with(".json")
        || name.ends_with("/json")
        || name.ends_with("/VERSION")
}

/// An archive member's path, relative and without `.` or `..`.
fn archive_path(raw: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir if out.pop() => {}
            _ => {
                return Err(ImageError::invalid(
                    "image archive",
                    format!("unsafe path {}", raw.display()),
                ))
            }
        }
    }
    Ok(out)
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(0);
    header
}

fn append_dir(tar: &mut tar::Builder<&mut dyn Write>, path: &str) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(0);
    header.set_mode(0o755);
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mtime(0);
    tar.append_data(&mut header, path, std::io::empty())
        .map_err(|e| ImageError::io(format!("writing {path} to the archive"), e))
}

fn append_bytes(tar: &mut tar::Builder<&mut dyn Write>, path: &str, data: &[u8]) -> Result<()> {
    let mut header = file_header(data.len() as u64);
    tar.append_data(&mut header, path, data)
        .map_err(|e| ImageError::io(format!("writing {path} to the archive"), e))
}

fn append_json<T: Serialize>(
    tar: &mut tar::Builder<&mut dyn Write>,
    path: &str,
    value: &T,
) -> Result<()> {
    let data = serde_json::to_vec(value)
        .map_err(|e| ImageError::invalid(format!("serialising {path}"), e))?;
    append_bytes(tar, path, &data)
}

/// The writing side of [`Images::load_oci_layout`]'s pipe.
struct ChannelWriter {
    tx: std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.tx
            .send(Ok(data.to_vec()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "load stopped"))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The reading side: end of stream when the writer is done, its error if it failed.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
