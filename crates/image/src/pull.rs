//! `docker pull`: reference → manifest (an index picks the platform's manifest) →
//! config → layers downloaded into the content store (verified by size and digest,
//! at most `max_concurrent_downloads` at once) and unpacked into snapshots as each
//! arrives → the image registered with its tag and `repo@sha256:…` digest.
//!
//! Progress is reported as Docker's JSON lines ([`Message`]); what is already here
//! (blobs in the content store, layers unpacked) is not fetched again.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::content::FetchOutcome;
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::layer::{self, UnpackOptions, UnpackStats};
use crate::model::{
    chain_ids, media_type, select_manifest, Descriptor, ImageConfig, Index, Manifest, Platform,
};
use crate::reference::Reference;
use crate::registry::progress::{Message, Progress};
use crate::registry::{Phase, Registry, RegistryClient};
use crate::service::{Images, Registration, MAX_METADATA_BLOB};
use crate::store::ImageRecord;

/// Docker's default `max-concurrent-downloads`.
pub const DEFAULT_CONCURRENT_DOWNLOADS: usize = 3;

/// Progress bars are redrawn at most this often per layer (Docker: 100 ms).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// What `docker pull` takes besides the reference.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// `--platform`, else the host's.
    pub platform: Option<Platform>,
    pub max_concurrent_downloads: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            max_concurrent_downloads: DEFAULT_CONCURRENT_DOWNLOADS,
        }
    }
}

/// How a pull ended.
#[derive(Debug, Clone)]
pub struct PullResult {
    pub image: ImageRecord,
    /// The digest the reference resolved to (an index's when the tag names one).
    pub digest: Digest,
    /// False when the tag already named this image ("Image is up to date").
    pub downloaded: bool,
    /// The layers this pull fetched or unpacked, in the order they finished.
    pub layers: Vec<LayerReport>,
    /// Wall time from the first layer started to the last one done.
    pub layers_elapsed: Duration,
}

/// Where one layer's time went.
#[derive(Debug, Clone)]
pub struct LayerReport {
    pub digest: Digest,
    /// Compressed bytes.
    pub size: u64,
    /// Downloaded by this pull (and unpacked as it arrived), rather than found in the
    /// content store and unpacked from there.
    pub downloaded: bool,
    pub elapsed: Duration,
    /// Decompression (including waiting for bytes when streamed), hashing and writes.
    pub unpack: UnpackStats,
}

/// One layer of the pull and where it stands.
struct LayerJob {
    index: usize,
    blob: Descriptor,
    diff_id: Digest,
    chain_id: Digest,
}

impl Images {
    /// Pulls `reference` (`busybox`, `127.0.0.1:5000/app:1`, `app@sha256:…`).
    pub fn pull(
        &self,
        client: &RegistryClient,
        reference: &str,
        options: &PullOptions,
        progress: Progress<'_>,
    ) -> Result<PullResult> {
        let reference = Reference::parse(reference)?;
        let result = self.pull_reference(client, &reference, options, progress)?;
        progress(Message::status(status_line(
            result.downloaded,
            &reference.familiar(),
        )));
        Ok(result)
    }

    /// `docker pull --all-tags`: every tag of the repository, one status at the end.
    pub fn pull_all_tags(
        &self,
        client: &RegistryClient,
        repository: &str,
        options: &PullOptions,
        progress: Progress<'_>,
    ) -> Result<Vec<PullResult>> {
        let repo = Reference::parse_named(repository)?.repository();
        let registry = client.registry(repo.domain());
        let mut tags = registry.list_tags(repo.path())?;
        tags.sort();
        if tags.is_empty() {
            return Err(ImageError::ManifestUnknown {
                reference: repo.familiar(),
                message: "the repository has no tags".into(),
            });
        }
        let mut results = Vec::new();
        for tag in tags {
            let reference = repo.with_tag(&tag)?;
            results.push(self.pull_reference(client, &reference, options, progress)?);
        }
        let downloaded = results.iter().any(|r| r.downloaded);
        progress(Message::status(status_line(downloaded, &repo.familiar())));
        Ok(results)
    }

    fn pull_reference(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        options: &PullOptions,
        progress: Progress<'_>,
    ) -> Result<PullResult> {
        let image = reference.to_string();
        let registry = client.registry(reference.domain());
        let repo = reference.path().to_string();
        let mut lease = self.lease();

        let top = registry.get_manifest(&repo, &reference.manifest_reference())?;
        let repo_digest = top.digest.clone();
        let mut manifests = vec![top.digest.clone()];
        self.content().write_blob(&top.bytes)?;
        lease.protect(&top.digest);
        let (manifest_bytes, manifest_digest) = if media_type::is_index(&top.media_type) {
            let index: Index = serde_json::from_slice(&top.bytes)
                .map_err(|e| ImageError::invalid(format!("manifest list of {image}"), e))?;
            let chosen = select_manifest(&index, options.platform.as_ref(), &image)?;
            let fetched = registry.get_manifest(&repo, &chosen.digest.to_string())?;
            if !media_type::is_manifest(&fetched.media_type) {
                return Err(ImageError::UnsupportedMediaType {
                    media_type: fetched.media_type,
                    context: format!("the platform manifest of {image}"),
                });
            }
            self.content().write_blob(&fetched.bytes)?;
            lease.protect(&fetched.digest);
            manifests.push(fetched.digest.clone());
            (fetched.bytes, fetched.digest)
        } else if media_type::is_manifest(&top.media_type) {
            (top.bytes, top.digest)
        } else {
            return Err(ImageError::UnsupportedMediaType {
                media_type: top.media_type,
                context: format!("manifest of {image}"),
            });
        };
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            ImageError::invalid(format!("manifest {manifest_digest} of {image}"), e)
        })?;

        let shown = match (reference.tag(), reference.digest()) {
            (_, Some(d)) => d.to_string(),
            (Some(t), None) => t.to_string(),
            (None, None) => crate::reference::DEFAULT_TAG.to_string(),
        };
        progress(Message::with_id(
            format!("Pulling from {}", reference.path()),
            shown,
        ));

        // The config first: it gives the diff IDs the layers must unpack to.
        let config_desc = &manifest.config;
        if config_desc.size > MAX_METADATA_BLOB {
            return Err(ImageError::invalid(
                format!("config {} of {image}", config_desc.digest),
                format!("{} bytes is too large", config_desc.size),
            ));
        }
        lease.protect(&config_desc.digest);
        self.fetch_blob_once(&registry, &repo, &image, config_desc, &mut |_, _| {})?;
        let config = self.config(&config_desc.digest)?;
        check_config(&image, &config, &manifest)?;
        // A plain manifest names no platform: its config says, and an explicit
        // `--platform` must match it (dockerd refuses the same way).
        if let (Some(wanted), false) = (&options.platform, manifests.len() > 1) {
            let have = Platform {
                architecture: config.architecture.clone(),
                os: config.os.clone(),
                variant: config.variant.clone(),
                ..Default::default()
            };
            if !wanted.accepts(&have) {
                return Err(ImageError::NoMatchingPlatform {
                    reference: image.clone(),
                    platform: wanted.normalized().to_string(),
                });
            }
        }

        let tags: Vec<String> = match reference.tag() {
            Some(_) if reference.digest().is_none() => vec![reference.to_string()],
            _ => Vec::new(),
        };
        let repo_digests = vec![reference.repository().with_digest(&repo_digest).to_string()];
        let up_to_date = self.store().get(&config_desc.digest).is_some_and(|r| {
            tags.iter().all(|t| r.repo_tags.contains(t))
                && repo_digests.iter().all(|d| r.repo_digests.contains(d))
        });

        let chains = chain_ids(&config.rootfs.diff_ids);
        let mut jobs = VecDeque::new();
        for (index, ((blob, diff_id), chain_id)) in manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .zip(&chains)
            .enumerate()
        {
            lease.protect(&blob.digest);
            lease.protect(chain_id);
            let id = blob.digest.short().to_string();
            if self.snapshots().has_layer(chain_id) {
                progress(Message::layer(&id, &Phase::AlreadyExists));
                continue;
            }
            progress(Message::layer(&id, &Phase::PullingFsLayer));
            jobs.push_back(LayerJob {
                index,
                blob: blob.clone(),
                diff_id: diff_id.clone(),
                chain_id: chain_id.clone(),
            });
        }
        let workers = options
            .max_concurrent_downloads
            .clamp(1, 64)
            .min(jobs.len());
        for job in jobs.iter().skip(workers) {
            progress(Message::layer(job.blob.digest.short(), &Phase::Waiting));
        }
        let queue = Mutex::new(jobs);
        let failure: Mutex<Option<ImageError>> = Mutex::new(None);
        let reports: Mutex<Vec<LayerReport>> = Mutex::new(Vec::new());
        let layers_started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    if lock(&failure).is_some() {
                        return;
                    }
                    let Some(job) = lock(&queue).pop_front() else {
                        return;
                    };
                    match self.pull_layer(&registry, &repo, &image, &job, progress) {
                        Ok(report) => lock(&reports).push(report),
                        Err(e) => {
                            lock(&failure).get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        let layers_elapsed = layers_started.elapsed();
        if let Some(e) = lock(&failure).take() {
            return Err(e);
        }

        let record = self.register(&Registration {
            image: &image,
            config_digest: &config_desc.digest,
            layers: &manifest.layers,
            manifest: Some(&manifest_digest),
            repo_tags: tags,
            repo_digests,
            parallel: options.max_concurrent_downloads.max(1),
        })?;
        // The index is kept too (save writes it; GC must not take it).
        let record = if manifests.len() > 1 {
            let mut with_index = ImageRecord::new(record.id.clone(), record.diff_ids.clone());
            with_index.manifest_digests = manifests;
            self.store().add(with_index)?
        } else {
            record
        };
        drop(lease);
        progress(Message::status(format!("Digest: {repo_digest}")));
        Ok(PullResult {
            image: record,
            digest: repo_digest,
            downloaded: !up_to_date,
            layers: reports.into_inner().unwrap_or_else(|p| p.into_inner()),
            layers_elapsed,
        })
    }

    /// Makes the blob present in the content store, downloading it at most once
    /// however many pulls want it at the same time.
    fn fetch_blob_once(
        &self,
        registry: &Registry,
        repo: &str,
        image: &str,
        blob: &Descriptor,
        on_bytes: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<FetchOutcome> {
        self.content()
            .fetch_once(&blob.digest, Some(blob.size), image, |ingest| {
                registry
                    .fetch_blob(repo, &blob.digest, Some(blob.size), ingest, on_bytes)
                    .map(|_| ())
            })
    }

    /// Downloads one layer (unless its blob is here) and unpacks it into its snapshot.
    fn pull_layer(
        &self,
        registry: &Registry,
        repo: &str,
        image: &str,
        job: &LayerJob,
        progress: Progress<'_>,
    ) -> Result<LayerReport> {
        let started = Instant::now();
        let id = job.blob.digest.short().to_string();
        let mut last = Instant::now() - PROGRESS_INTERVAL;
        let mut on_bytes = |current: u64, total: Option<u64>| {
            if last.elapsed() >= PROGRESS_INTERVAL || Some(current) == total {
                last = Instant::now();
                progress(Message::layer(&id, &Phase::Downloading { current, total }));
            }
        };
        let streamed = if self.content().exists(&job.blob.digest) {
            None
        } else {
            self.stream_layer(registry, repo, image, job, &mut on_bytes)?
        };
        if let Some(stats) = streamed {
            let total = job.blob.size;
            progress(Message::layer(&id, &Phase::Verifying));
            progress(Message::layer(&id, &Phase::DownloadComplete));
            let phase = Phase::Extracting {
                current: total,
                total: Some(total),
            };
            progress(Message::layer(&id, &phase));
            progress(Message::layer(&id, &Phase::PullComplete));
            return Ok(LayerReport {
                digest: job.blob.digest.clone(),
                size: job.blob.size,
                downloaded: true,
                elapsed: started.elapsed(),
                unpack: stats,
            });
        }
        // Already here, or fetched meanwhile by another pull: unpack from the store,
        // unless that pull unpacked it too.
        self.fetch_blob_once(registry, repo, image, &job.blob, &mut on_bytes)?;
        progress(Message::layer(&id, &Phase::Verifying));
        progress(Message::layer(&id, &Phase::DownloadComplete));
        if self.snapshots().has_layer(&job.chain_id) {
            progress(Message::layer(&id, &Phase::PullComplete));
            return Ok(LayerReport {
                digest: job.blob.digest.clone(),
                size: job.blob.size,
                downloaded: false,
                elapsed: started.elapsed(),
                unpack: UnpackStats::default(),
            });
        }

        let file = self.content().open_blob(&job.blob.digest)?;
        let total = job.blob.size;
        let count = Arc::new(AtomicU64::new(0));
        let reader = CountingReader {
            inner: file,
            count: count.clone(),
        };
        let opts = layer_options(image, job);
        let prepared = self.snapshots().prepare_layer(&job.chain_id)?;
        // The unpacker wants a 'static reader, so the bar is drawn from beside it.
        let done = AtomicBool::new(false);
        let unpacked = std::thread::scope(|scope| {
            let reporter = scope.spawn(|| {
                let mut shown = u64::MAX;
                while !done.load(Ordering::Acquire) {
                    let current = count.load(Ordering::Relaxed);
                    if current != shown {
                        shown = current;
                        let phase = Phase::Extracting {
                            current,
                            total: Some(total),
                        };
                        progress(Message::layer(&id, &phase));
                    }
                    std::thread::park_timeout(PROGRESS_INTERVAL);
                }
            });
            let result = layer::unpack_layer(
                std::io::BufReader::with_capacity(256 << 10, reader),
                &prepared.fs_dir(),
                &opts,
            );
            done.store(true, Ordering::Release);
            reporter.thread().unpark();
            result
        });
        let stats = match unpacked {
            Ok(stats) => {
                progress(Message::layer(
                    &id,
                    &Phase::Extracting {
                        current: total,
                        total: Some(total),
                    },
                ));
                self.snapshots().commit_layer(prepared)?;
                stats
            }
            Err(e) => {
                let _ = self.snapshots().abort_layer(prepared);
                return Err(e);
            }
        };
        progress(Message::layer(&id, &Phase::PullComplete));
        Ok(LayerReport {
            digest: job.blob.digest.clone(),
            size: job.blob.size,
            downloaded: false,
            elapsed: started.elapsed(),
            unpack: stats,
        })
    }
}

fn status_line(downloaded: bool, familiar: &str) -> String {
    if downloaded {
        format!("Status: Downloaded newer image for {familiar}")
    } else {
        format!("Status: Image is up to date for {familiar}")
    }
}

/// How a pulled layer is unpacked: named in errors, its diff ID checked.
fn layer_options(image: &str, job: &LayerJob) -> UnpackOptions {
    let mut opts = UnpackOptions::new(image, format!("{} ({})", job.blob.digest, job.index + 1));
    opts.media_type = Some(job.blob.media_type.clone());
    opts.expected_diff_id = Some(job.diff_id.clone());
    opts
}

impl Images {
    /// Downloads a layer into the content store and unpacks it in the same pass: the
    /// bytes go to the ingest and, through a bounded channel, to an unpacking thread
    /// (decompress, diff ID, files), so download and unpack overlap. Returns `None`,
    /// having changed nothing, when another pull fetched the blob meanwhile.
    fn stream_layer(
        &self,
        registry: &Registry,
        repo: &str,
        image: &str,
        job: &LayerJob,
        on_bytes: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<Option<UnpackStats>> {
        let opts = layer_options(image, job);
        let prepared = self.snapshots().prepare_layer(&job.chain_id)?;
        let fs_dir = prepared.fs_dir();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(STREAM_CHUNKS);
        let reader = ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        };
        let (fetched, unpacked) = std::thread::scope(|scope| {
            let unpacker = scope.spawn(move || {
                layer::unpack_layer(
                    std::io::BufReader::with_capacity(256 << 10, reader),
                    &fs_dir,
                    &opts,
                )
            });
            let fetched =
                self.content()
                    .fetch_once(&job.blob.digest, Some(job.blob.size), image, |ingest| {
                        let mut sink = TeeWriter { ingest, tx: &tx };
                        registry
                            .fetch_blob(
                                repo,
                                &job.blob.digest,
                                Some(job.blob.size),
                                &mut sink,
                                on_bytes,
                            )
                            .map(|_| ())
                    });
            // End of stream for the unpacker, whatever happened.
            drop(tx);
            let unpacked = unpacker.join().unwrap_or_else(|_| {
                Err(ImageError::Other("a layer unpack thread panicked".into()))
            });
            (fetched, unpacked)
        });
        match (fetched, unpacked) {
            (Ok(FetchOutcome::Fetched), Ok(stats)) => {
                self.snapshots().commit_layer(prepared)?;
                Ok(Some(stats))
            }
            (Ok(FetchOutcome::Fetched), Err(unpack)) => {
                let _ = self.snapshots().abort_layer(prepared);
                Err(unpack)
            }
            (Ok(_), _) => {
                let _ = self.snapshots().abort_layer(prepared);
                Ok(None)
            }
            (Err(fetch), unpack) => {
                let _ = self.snapshots().abort_layer(prepared);
                // The unpacker stopping first shows as a broken pipe to the download:
                // its own error is the one that says what is wrong.
                match (fetch, unpack) {
                    (ImageError::Io { .. }, Err(unpack)) => Err(unpack),
                    (fetch, _) => Err(fetch),
                }
            }
        }
    }
}

/// Chunks in flight between a download and its unpacker.
const STREAM_CHUNKS: usize = 32;

/// Writes to the ingest and sends a copy to the unpacker.
struct TeeWriter<'a, W> {
    ingest: W,
    tx: &'a std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl<W: std::io::Write> std::io::Write for TeeWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.ingest.write(data)?;
        self.tx.send(data[..n].to_vec()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the layer unpacker stopped")
        })?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.ingest.flush()
    }
}

/// The unpacker's side of the channel: end of stream when the sender is gone.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The config must describe as many layers as the manifest lists.
fn check_config(image: &str, config: &ImageConfig, manifest: &Manifest) -> Result<()> {
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::invalid(
            format!("image {image}"),
            format!(
                "the config lists {} layers but the manifest {}",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        ));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts the bytes read through it, for the `Extracting` bar.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
