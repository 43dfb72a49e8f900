//! The image store: which images exist (by ID, the config digest), the names they go
//! by (RepoTags, RepoDigests), the blobs and layers each one needs, and garbage
//! collection of the blobs and layers no image or container needs any more.
//!
//! ```text
//! image/
//!   images.json          every image record, tags inside: one file, replaced atomically
//!   images.json.tmp-*    a replacement being written (removed at open)
//! ```
//!
//! One file, rewritten whole (temp + fsync + rename + directory fsync) on every change,
//! so that a tag and the image it names can never disagree after a crash: an
//! acknowledged change is on disk, an unacknowledged one is wholly absent. Removal
//! writes the index first and deletes blobs and layers after (in [`ImageStore::gc`]);
//! a crash in between leaves unreferenced blobs, which the next GC removes, and never
//! an image whose blobs are gone. The image counts are hundreds, not millions, so the
//! rewrite costs less than the fsync it comes with.
//!
//! This module decides what is referenced; the blobs themselves are the content
//! store's ([`crate::content`]) and the layers the snapshotter's, reached through
//! [`LayerStore`].

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::content::{sync_dir, ContentStore};
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::model::chain_ids;
use crate::reference::{is_full_hex_id, Reference};
use crate::snapshot::Snapshotter;

const INDEX_FILE: &str = "images.json";
const INDEX_TMP_PREFIX: &str = "images.json.tmp-";
const INDEX_VERSION: u32 = 1;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Unpacked layers, keyed by chain ID, as garbage collection sees them. The
/// snapshotter implements it; tests use a fake.
pub trait LayerStore {
    fn layers(&self) -> Result<Vec<Digest>>;
    fn remove_layer(&self, chain_id: &Digest) -> Result<()>;
}

impl LayerStore for Snapshotter {
    fn layers(&self) -> Result<Vec<Digest>> {
        Snapshotter::layers(self)
    }
    fn remove_layer(&self, chain_id: &Digest) -> Result<()> {
        Snapshotter::remove_layer(self, chain_id)
    }
}

/// One image. Names are kept normalised (`docker.io/library/busybox:latest`); the
/// `familiar_*` methods give them as `docker images` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image ID: the digest of its config blob.
    pub id: Digest,
    /// Manifests and indexes it was pulled or loaded by (kept for push and save).
    #[serde(default)]
    pub manifest_digests: Vec<Digest>,
    /// The layer blobs (compressed, as the manifest lists them).
    #[serde(default)]
    pub layer_digests: Vec<Digest>,
    #[serde(default)]
    pub repo_tags: Vec<String>,
    #[serde(default)]
    pub repo_digests: Vec<String>,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
    #[serde(default)]
    pub chain_ids: Vec<Digest>,
    /// The config's `created`, RFC 3339.
    #[serde(default)]
    pub created: Option<String>,
    /// Bytes of its unpacked layers.
    #[serde(default)]
    pub size: u64,
    /// The image it was built or committed on, if any (`docker rmi` refuses to remove
    /// a parent).
    #[serde(default)]
    pub parent: Option<Digest>,
}

impl ImageRecord {
    /// A record with its chain IDs computed from `diff_ids`.
    pub fn new(id: Digest, diff_ids: Vec<Digest>) -> Self {
        ImageRecord {
            chain_ids: chain_ids(&diff_ids),
            id,
            manifest_digests: Vec::new(),
            layer_digests: Vec::new(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            diff_ids,
            created: None,
            size: 0,
            parent: None,
        }
    }

    pub fn familiar_repo_tags(&self) -> Vec<String> {
        familiar_all(&self.repo_tags)
    }

    pub fn familiar_repo_digests(&self) -> Vec<String> {
        familiar_all(&self.repo_digests)
    }

    fn references(&self) -> Vec<Reference> {
        self.repo_tags
            .iter()
            .chain(&self.repo_digests)
            .filter_map(|s| Reference::parse_named(s).ok())
            .collect()
    }

    /// Blobs this image needs.
    fn blobs(&self) -> impl Iterator<Item = &Digest> {
        std::iter::once(&self.id)
            .chain(&self.manifest_digests)
            .chain(&self.layer_digests)
    }
}

fn familiar_all(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|s| {
            Reference::parse_named(s)
                .map(|r| r.familiar())
                .unwrap_or_else(|_| s.clone())
        })
        .collect()
}

/// A container's claim on an image, for `docker rmi`'s conflict rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    pub container_id: String,
    pub image_id: Digest,
    pub running: bool,
}

/// One line of `docker rmi`'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteItem {
    /// A name removed, familiar form (`busybox:latest`).
    Untagged(String),
    /// The image removed.
    Deleted(Digest),
}

/// What [`ImageStore::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed_blobs: Vec<Digest>,
    pub removed_layers: Vec<Digest>,
    /// Bytes of the removed blobs.
    pub reclaimed: u64,
}

#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<ImageRecord>,
}

type Images = BTreeMap<Digest, ImageRecord>;

/// The image index. Mutations are serialised by one lock and each is persisted before
/// it returns.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    images: Mutex<Images>,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let context = context.into();
    move |e| ImageError::io(context, e)
}

fn conflict(message: String) -> ImageError {
    ImageError::Conflict(message)
}

impl ImageStore {
    /// Opens (creating) the index under `root` (`<data-root>/image`), removing any
    /// replacement a crash left half-written.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err(format!("creating {}", root.display())))?;
        for entry in fs::read_dir(&root).map_err(io_err(format!("reading {}", root.display())))? {
            let entry = entry.map_err(io_err(format!("reading {}", root.display())))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(INDEX_TMP_PREFIX))
            {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
            }
        }
        let path = root.join(INDEX_FILE);
        let images = match fs::read(&path) {
            Ok(data) => {
                let file: IndexFile = serde_json::from_slice(&data)
                    .map_err(|e| ImageError::invalid(path.display().to_string(), e))?;
                if file.version != INDEX_VERSION {
                    return Err(ImageError::invalid(
                        path.display().to_string(),
                        format!("unknown index version {}", file.version),
                    ));
                }
                file.images.into_iter().map(|r| (r.id.clone(), r)).collect()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Images::new(),
            Err(e) => return Err(ImageError::io(format!("reading {}", path.display()), e)),
        };
        Ok(ImageStore {
            root,
            images: Mutex::new(images),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Images> {
        // Mutations change a copy and swap it in only after it is persisted, so a
        // panic never leaves a half-changed map behind the lock.
        self.images
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to a copy of the index, persists the copy, then installs it.
    fn mutate<T>(&self, change: impl FnOnce(&mut Images) -> Result<T>) -> Result<T> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        let out = change(&mut next)?;
        if next != *guard {
            self.persist(&next)?;
            *guard = next;
        }
        Ok(out)
    }

    fn persist(&self, images: &Images) -> Result<()> {
        let file = IndexFile {
            version: INDEX_VERSION,
            images: images.values().cloned().collect(),
        };
        let data =
            serde_json::to_vec_pretty(&file).map_err(|e| ImageError::invalid("image index", e))?;
        let tmp = self.root.join(format!(
            "{INDEX_TMP_PREFIX}{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            fs::rename(&tmp, self.root.join(INDEX_FILE))
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(ImageError::io("writing the image index", e));
        }
        sync_dir(&self.root)
    }

    /// Adds an image, or merges into the one with the same ID. Its tags and digests
    /// move to it from any image that held them, as `docker pull` and `docker load`
    /// move a tag. Names are normalised; an invalid one fails the whole call.
    pub fn add(&self, record: ImageRecord) -> Result<ImageRecord> {
        let tags = normalise_all(&record.repo_tags, false)?;
        let digests = normalise_all(&record.repo_digests, true)?;
        self.mutate(|images| {
            let id = record.id.clone();
            let entry = images.entry(id.clone()).or_insert_with(|| ImageRecord {
                repo_tags: Vec::new(),
                repo_digests: Vec::new(),
                ..record.clone()
            });
            merge(&mut entry.manifest_digests, &record.manifest_digests);
            merge(&mut entry.layer_digests, &record.layer_digests);
            // A later pull or load of the same image may know more (its size once
            // unpacked, its parent once committed); never forget what was known.
            if record.size != 0 {
                entry.size = record.size;
            }
            if entry.created.is_none() {
                entry.created = record.created.clone();
            }
            if entry.parent.is_none() {
                entry.parent = record.parent.clone();
            }
            if entry.diff_ids.is_empty() {
                entry.diff_ids = record.diff_ids.clone();
                entry.chain_ids = chain_ids(&record.diff_ids);
            }
            for tag in tags {
                attach(images, &id, tag, false);
            }
            for digest in digests {
                attach(images, &id, digest, true);
            }
            Ok(images[&id].clone())
        })
    }

    pub fn get(&self, id: &Digest) -> Option<ImageRecord> {
        self.lock().get(id).cloned()
    }

    /// All images, by ID.
    pub fn list(&self) -> Vec<ImageRecord> {
        self.lock().values().cloned().collect()
    }

    /// Finds an image as Docker's `GetImage` does: a full ID (`sha256:…` or 64 hex),
    /// else a name (`busybox` meaning `busybox:latest`, or `name@digest`), else a
    /// unique ID prefix.
    pub fn resolve(&self, ref_or_id: &str) -> Result<ImageRecord> {
        let images = self.lock();
        resolve_in(&images, ref_or_id).cloned()
    }

    /// `docker tag SOURCE TARGET`: TARGET (a name, `:latest` by default) now names
    /// SOURCE's image, leaving whichever image had it.
    pub fn tag(&self, source: &str, target: &str) -> Result<ImageRecord> {
        let target_ref = Reference::parse(target)?;
        if target_ref.digest().is_some() {
            return Err(ImageError::InvalidReference {
                reference: target.to_string(),
                reason: "refusing to create a tag with a digest reference".into(),
            });
        }
        self.mutate(|images| {
            let id = resolve_in(images, source)?.id.clone();
            attach(images, &id, target_ref.to_string(), false);
            Ok(images[&id].clone())
        })
    }

    /// Removes one name (a tag, or a `name@digest`), leaving the image. Returns the
    /// image it named.
    pub fn untag(&self, reference: &str) -> Result<Digest> {
        let r = Reference::parse(reference)?;
        self.mutate(|images| {
            detach_any(images, &r).ok_or_else(|| ImageError::ImageNotFound(r.familiar()))
        })
    }

    /// `docker rmi`: by name, removes the name and deletes the image only if it was
    /// its last; by ID, deletes the image with its names, refusing without `force`
    /// when names span several repositories or a stopped container uses it, and even
    /// with `force` when a running container uses it or it has child images. Blobs
    /// and layers are left for [`ImageStore::gc`].
    pub fn remove(
        &self,
        ref_or_id: &str,
        force: bool,
        users: &[ImageUser],
    ) -> Result<Vec<DeleteItem>> {
        self.mutate(|images| remove_in(images, ref_or_id, force, users))
    }

    /// Blobs and chain IDs some image references.
    pub fn referenced(&self) -> (HashSet<Digest>, HashSet<Digest>) {
        let images = self.lock();
        let blobs = images.values().flat_map(|r| r.blobs().cloned()).collect();
        let chains = images
            .values()
            .flat_map(|r| r.chain_ids.iter().cloned())
            .collect();
        (blobs, chains)
    }

    /// Removes the blobs and layers that no image references, that are not in
    /// `in_use_chain_ids` (the whole layer chains of containers), and that no lease
    /// holds. Whatever writes blobs or layers for an image not yet added holds a
    /// [`crate::content::Lease`] on them until [`ImageStore::add`] returns.
    pub fn gc(
        &self,
        content: &ContentStore,
        layers: &dyn LayerStore,
        in_use_chain_ids: &HashSet<Digest>,
    ) -> Result<GcReport> {
        let (blobs, mut chains) = self.referenced();
        chains.extend(in_use_chain_ids.iter().cloned());
        let mut report = GcReport::default();
        for blob in content.list()? {
            if blobs.contains(&blob) {
                continue;
            }
            let size = content.size(&blob).unwrap_or(0);
            if let Some(removed) = content.unless_leased(&blob, || content.delete(&blob)) {
                if removed? {
                    report.reclaimed += size;
                    report.removed_blobs.push(blob);
                }
            }
        }
        for chain in layers.layers()? {
            if chains.contains(&chain) {
                continue;
            }
            if let Some(removed) = content.unless_leased(&chain, || layers.remove_layer(&chain)) {
                removed?;
                report.removed_layers.push(chain);
            }
        }
        Ok(report)
    }
}

fn merge(into: &mut Vec<Digest>, from: &[Digest]) {
    for d in from {
        if !into.contains(d) {
            into.push(d.clone());
        }
    }
}

fn normalise_all(names: &[String], digested: bool) -> Result<Vec<String>> {
    names
        .iter()
        .map(|n| {
            let r = Reference::parse(n)?;
            match (digested, r.digest()) {
                // A RepoDigest is `name@digest`, without a tag.
                (true, Some(d)) => Ok(r.repository().with_digest(d).to_string()),
                (false, None) => Ok(r.to_string()),
                (true, None) => Err(ImageError::InvalidReference {
                    reference: n.clone(),
                    reason: "a repo digest needs a digest".into(),
                }),
                (false, Some(_)) => Err(ImageError::InvalidReference {
                    reference: n.clone(),
                    reason: "a tag cannot carry a digest".into(),
                }),
            }
        })
        .collect()
}

/// Points the normalised `name` at image `id`, taking it from any other image.
fn attach(images: &mut Images, id: &Digest, name: String, digested: bool) {
    for record in images.values_mut() {
        let list = if digested {
            &mut record.repo_digests
        } else {
            &mut record.repo_tags
        };
        if record.id != *id {
            list.retain(|n| *n != name);
        } else if !list.contains(&name) {
            list.push(name.clone());
        }
    }
}

/// Removes the name `r` from whichever image has it; returns that image's ID.
fn detach_any(images: &mut Images, r: &Reference) -> Option<Digest> {
    let (name, digested) = name_of(r);
    for record in images.values_mut() {
        let list = if digested {
            &mut record.repo_digests
        } else {
            &mut record.repo_tags
        };
        if let Some(pos) = list.iter().position(|n| *n == name) {
            list.remove(pos);
            return Some(record.id.clone());
        }
    }
    None
}

/// The stored form of a name: `name@digest` for digested references (tag dropped),
/// `name:tag` otherwise.
fn name_of(r: &Reference) -> (String, bool) {
    match r.digest() {
        Some(d) => (r.repository().with_digest(d).to_string(), true),
        None => (r.to_string(), false),
    }
}

fn not_found(ref_or_id: &str) -> ImageError {
    // Docker names the image as it understood it: `busybox` is "busybox:latest".
    match Reference::parse(ref_or_id) {
        Ok(r) => ImageError::ImageNotFound(r.familiar()),
        Err(_) => ImageError::ImageNotFound(ref_or_id.to_string()),
    }
}

fn resolve_in<'a>(images: &'a Images, ref_or_id: &str) -> Result<&'a ImageRecord> {
    if is_full_hex_id(ref_or_id) || ref_or_id.starts_with("sha256:") {
        let hex = ref_or_id.strip_prefix("sha256:").unwrap_or(ref_or_id);
        if let Ok(id) = Digest::from_hex(hex) {
            return images.get(&id).ok_or_else(|| not_found(ref_or_id));
        }
        // A short `sha256:abc` prefix: an ID search, below.
        return search_id(images, hex).ok_or_else(|| not_found(ref_or_id));
    }
    let named = Reference::parse_named(ref_or_id)?;
    if let Some(digest) = named.digest() {
        let wanted = named.repository().with_digest(digest).to_string();
        if let Some(r) = images.values().find(|r| r.repo_digests.contains(&wanted)) {
            return Ok(r);
        }
        // Pulled by tag, asked for by the manifest digest of another name in the
        // same repository: the manifest pins the image all the same.
        let repo = named.name();
        if let Some(r) = images.values().find(|r| {
            (r.manifest_digests.contains(digest) || r.id == *digest)
                && r.references().iter().any(|x| x.name() == repo)
        }) {
            return Ok(r);
        }
        return Err(not_found(ref_or_id));
    }
    let tagged = Reference::parse(ref_or_id)?.to_string();
    if let Some(r) = images.values().find(|r| r.repo_tags.contains(&tagged)) {
        return Ok(r);
    }
    search_id(images, ref_or_id).ok_or_else(|| not_found(ref_or_id))
}

/// The one image whose ID starts with `prefix` (hex); none when zero or several do.
fn search_id<'a>(images: &'a Images, prefix: &str) -> Option<&'a ImageRecord> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut found = images.values().filter(|r| r.id.hex().starts_with(prefix));
    match (found.next(), found.next()) {
        (Some(r), None) => Some(r),
        _ => None,
    }
}

/// Docker's `isImageIDPrefix`.
fn is_id_prefix(id: &Digest, s: &str) -> bool {
    let full = id.to_string();
    full.starts_with(s) || id.hex().starts_with(s)
}

/// Docker's `isSingleReference`: at most one tag, and every name in one repository.
fn is_single_reference(refs: &[Reference]) -> bool {
    let tags = refs.iter().filter(|r| r.digest().is_none()).count();
    let first = refs.first().map(|r| r.name());
    tags <= 1 && refs.iter().all(|r| Some(r.name()) == first)
}

fn remove_in(
    images: &mut Images,
    ref_or_id: &str,
    force: bool,
    users: &[ImageUser],
) -> Result<Vec<DeleteItem>> {
    let id = resolve_in(images, ref_or_id)?.id.clone();
    let mut items = Vec::new();
    let users: Vec<&ImageUser> = users.iter().filter(|u| u.image_id == id).collect();
    let refs = images[&id].references();

    if !is_id_prefix(&id, ref_or_id) {
        // By name: remove that name; the image goes only with its last name.
        if !force && is_single_reference(&refs) {
            if let Some(user) = users.first() {
                return Err(conflict(format!(
                    "unable to remove repository reference {ref_or_id:?} (must force) - \
                     container {} is using its referenced image {}",
                    short(&user.container_id),
                    id.short()
                )));
            }
        }
        let parsed = Reference::parse(ref_or_id)?;
        let record = images.get_mut(&id).ok_or_else(|| not_found(ref_or_id))?;
        let (name, digested) = name_of(&parsed);
        if digested {
            record.repo_digests.retain(|n| *n != name);
        } else {
            record.repo_tags.retain(|n| *n != name);
        }
        items.push(DeleteItem::Untagged(parsed.familiar()));
        // Without a tag left in the repository, its digests go too.
        if !digested {
            let repo = parsed.name();
            let tag_left = record
                .repo_tags
                .iter()
                .filter_map(|t| Reference::parse_named(t).ok())
                .any(|t| t.name() == repo);
            if !tag_left {
                let (gone, kept): (Vec<String>, Vec<String>) = record
                    .repo_digests
                    .drain(..)
                    .partition(|d| Reference::parse_named(d).is_ok_and(|r| r.name() == repo));
                record.repo_digests = kept;
                items.extend(gone.iter().map(|d| DeleteItem::Untagged(familiar_one(d))));
            }
        }
        if !record.repo_tags.is_empty() || !record.repo_digests.is_empty() {
            return Ok(items);
        }
    } else if is_single_reference(&refs) {
        // By ID with names in one repository: they go with it, unless a container
        // holds the image.
        check_conflicts(images, &id, &users, force, false)?;
        let record = images.get_mut(&id).ok_or_else(|| not_found(ref_or_id))?;
        items.extend(
            record
                .repo_tags
                .drain(..)
                .chain(record.repo_digests.drain(..))
                .map(|n| DeleteItem::Untagged(familiar_one(&n))),
        );
    }

    check_conflicts(images, &id, &users, force, true)?;
    if let Some(record) = images.remove(&id) {
        items.extend(
            record
                .repo_tags
                .iter()
                .chain(&record.repo_digests)
                .map(|n| DeleteItem::Untagged(familiar_one(n))),
        );
    }
    items.push(DeleteItem::Deleted(id));
    Ok(items)
}

/// Docker's `checkImageDeleteConflict`: child images and running containers always
/// block; remaining names and stopped containers block unless forced.
fn check_conflicts(
    images: &Images,
    id: &Digest,
    users: &[&ImageUser],
    force: bool,
    names_block: bool,
) -> Result<()> {
    let hard = |why: String| {
        conflict(format!(
            "unable to delete {} (cannot be forced) - {why}",
            id.short()
        ))
    };
    let soft = |why: String| {
        conflict(format!(
            "unable to delete {} (must be forced) - {why}",
            id.short()
        ))
    };
    if images.values().any(|r| r.parent.as_ref() == Some(id)) {
        return Err(hard("image has dependent child images".into()));
    }
    if let Some(user) = users.iter().find(|u| u.running) {
        return Err(hard(format!(
            "image is being used by running container {}",
            short(&user.container_id)
        )));
    }
    if force {
        return Ok(());
    }
    if names_block {
        if let Some(record) = images.get(id) {
            if !record.repo_tags.is_empty() || !record.repo_digests.is_empty() {
                return Err(soft("image is referenced in multiple repositories".into()));
            }
        }
    }
    if let Some(user) = users.first() {
        return Err(soft(format!(
            "image is being used by stopped container {}",
            short(&user.container_id)
        )));
    }
    Ok(())
}

fn familiar_one(name: &str) -> String {
    Reference::parse_named(name)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| name.to_string())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
