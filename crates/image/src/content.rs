//! The content store: blobs addressed by digest under `<data-root>/content`, on the model
//! of containerd's `core/content` (an Ingester that writes, a Provider that reads).
//!
//! ```text
//! content/
//!   blobs/sha256/<hex>   committed blobs; a file here always matches its name
//!   ingest/              blobs being written; anything left here by a crash is removed
//!                        at open, unless a live writer (of any process) still holds it
//! ```
//!
//! A blob reaches `blobs/` only through [`Ingest::commit`]: size and digest verified,
//! data fsynced, renamed, directory fsynced. So a crash at any point leaves either no
//! blob or the whole blob under its name. This module owns those two directories and
//! nothing else; which blobs are still wanted is [`crate::store`]'s business.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::digest::{Digest, Hasher};
use crate::error::{ImageError, Result};

const BLOBS_DIR: &str = "blobs/sha256";
const INGEST_DIR: &str = "ingest";
/// Large enough that the per-write cost of hashing and the syscall is amortised when
/// a caller writes small pieces (tar headers, JSON).
const WRITE_BUFFER: usize = 256 * 1024;

/// Unique ingest file names within this process; the pid makes them unique across
/// processes sharing a data root.
static INGEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let context = context.into();
    move |e| ImageError::io(context, e)
}

/// What [`ContentStore::fetch_once`] did to make the blob present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The blob was already in the store; nothing was fetched ("Already exists").
    AlreadyExists,
    /// This call fetched and committed it.
    Fetched,
    /// Another caller was fetching it; this one waited and shares its result.
    Shared,
}

/// The content store. Cheap to clone: clones share the in-flight and lease tables.
#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    in_flight: Mutex<HashMap<Digest, Arc<Flight>>>,
    /// Digests (blobs or chain IDs) that garbage collection must not remove, with a
    /// count of the leases holding each.
    leased: Mutex<HashMap<Digest, usize>>,
}

/// One in-progress fetch that others may wait on.
#[derive(Debug, Default)]
struct Flight {
    result: Mutex<Option<std::result::Result<(), SharedError>>>,
    done: Condvar,
}

/// Enough of an [`ImageError`] to rebuild it for every waiter (the error is not Clone).
#[derive(Debug, Clone)]
enum SharedError {
    Digest {
        image: String,
        digest: Digest,
        actual: Digest,
    },
    Size {
        image: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    Other(String),
}

impl SharedError {
    fn from_error(e: &ImageError) -> Self {
        match e {
            ImageError::DigestMismatch {
                image,
                digest,
                actual,
            } => SharedError::Digest {
                image: image.clone(),
                digest: digest.clone(),
                actual: actual.clone(),
            },
            ImageError::SizeMismatch {
                image,
                digest,
                expected,
                actual,
            } => SharedError::Size {
                image: image.clone(),
                digest: digest.clone(),
                expected: *expected,
                actual: *actual,
            },
            other => SharedError::Other(other.to_string()),
        }
    }

    fn to_error(&self, digest: &Digest) -> ImageError {
        match self.clone() {
            SharedError::Digest {
                image,
                digest,
                actual,
            } => ImageError::DigestMismatch {
                image,
                digest,
                actual,
            },
            SharedError::Size {
                image,
                digest,
                expected,
                actual,
            } => ImageError::SizeMismatch {
                image,
                digest,
                expected,
                actual,
            },
            SharedError::Other(message) => ImageError::Other(format!(
                "blob {digest}: the concurrent download this pull shared failed: {message}"
            )),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind (maps of
    // digests), never a half-updated invariant, so the poison can be ignored.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ContentStore {
    /// Opens (creating) the store at `root` (`<data-root>/content`) and removes the
    /// ingest files a crashed writer left behind. Files still locked by a live writer,
    /// in this or another process, are kept.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let blobs = root.join(BLOBS_DIR);
        let ingest = root.join(INGEST_DIR);
        fs::create_dir_all(&blobs).map_err(io_err(format!("creating {}", blobs.display())))?;
        fs::create_dir_all(&ingest).map_err(io_err(format!("creating {}", ingest.display())))?;
        let store = ContentStore {
            root,
            shared: Arc::default(),
        };
        store.clean_ingest()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn clean_ingest(&self) -> Result<()> {
        let dir = self.root.join(INGEST_DIR);
        let entries = fs::read_dir(&dir).map_err(io_err(format!("reading {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("reading {}", dir.display())))?;
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir {
                fs::remove_dir_all(&path)
                    .map_err(io_err(format!("removing {}", path.display())))?;
                continue;
            }
            // A writer holds an exclusive flock on its ingest file for its whole life;
            // if we can take the lock nobody is writing it any more.
            let held = match File::open(&path) {
                Ok(file) => matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ImageError::io(format!("opening {}", path.display()), e)),
            };
            if !held {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(ImageError::io(format!("removing {}", path.display()), e))
                    }
                }
            }
        }
        Ok(())
    }

    /// Where the blob lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join(BLOBS_DIR).join(digest.hex())
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn size(&self, digest: &Digest) -> Result<u64> {
        match fs::metadata(self.path(digest)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ImageError::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(ImageError::io(format!("blob {digest}"), e)),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        match File::open(self.path(digest)) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ImageError::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(ImageError::io(format!("opening blob {digest}"), e)),
        }
    }

    /// Reads a small blob (a manifest, index or config) whole, refusing blobs larger
    /// than `max_size` so that a hostile "manifest" cannot exhaust memory, and
    /// checking its digest, since what is parsed next must be what was verified.
    pub fn read_blob(&self, digest: &Digest, max_size: u64) -> Result<Vec<u8>> {
        let file = self.open_blob(digest)?;
        let len = file
            .metadata()
            .map_err(io_err(format!("blob {digest}")))?
            .len();
        if len > max_size {
            return Err(ImageError::invalid(
                format!("blob {digest}"),
                format!("{len} bytes, more than the {max_size} allowed"),
            ));
        }
        let mut data = Vec::with_capacity(len as usize);
        file.take(max_size + 1)
            .read_to_end(&mut data)
            .map_err(io_err(format!("reading blob {digest}")))?;
        let actual = Digest::of(&data);
        if actual != *digest {
            return Err(ImageError::DigestMismatch {
                image: "content store".into(),
                digest: digest.clone(),
                actual,
            });
        }
        Ok(data)
    }

    /// Starts writing a blob. With `expected`, commit verifies the digest; with
    /// `expected_size`, writes past that size fail at once and commit verifies it.
    pub fn writer(&self, expected: Option<&Digest>, expected_size: Option<u64>) -> Result<Ingest> {
        let n = INGEST_COUNTER.fetch_add(1, Ordering::Relaxed);
        let label = expected.map(|d| d.hex()).unwrap_or("blob");
        let path = self
            .root
            .join(INGEST_DIR)
            .join(format!("{label}-{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(format!("creating {}", path.display())))?;
        // Held until the Ingest is dropped; tells a concurrent `open` (of another
        // process sharing the data root) that this file is alive.
        file.lock()
            .map_err(io_err(format!("locking {}", path.display())))?;
        Ok(Ingest {
            blobs_dir: self.root.join(BLOBS_DIR),
            path,
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            hasher: Hasher::new(),
            expected: expected.cloned(),
            expected_size,
            overflow: false,
            context: String::new(),
        })
    }

    /// Stores `data` and returns its digest.
    pub fn write_blob(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        if self.exists(&digest) {
            return Ok(digest);
        }
        let mut ingest = self.writer(Some(&digest), Some(data.len() as u64))?;
        ingest
            .write_all(data)
            .map_err(io_err(format!("writing blob {digest}")))?;
        ingest.commit()
    }

    /// Makes the blob `digest` present, running `fetch` to write it at most once at a
    /// time per digest in this process: concurrent callers for the same digest wait
    /// for the one that runs and share its result. `context` names the image, for
    /// errors.
    pub fn fetch_once<F>(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
        context: &str,
        fetch: F,
    ) -> Result<FetchOutcome>
    where
        F: FnOnce(&mut Ingest) -> Result<()>,
    {
        let flight = {
            let mut in_flight = lock(&self.shared.in_flight);
            if let Some(flight) = in_flight.get(digest) {
                Some(flight.clone())
            } else if self.exists(digest) {
                return Ok(FetchOutcome::AlreadyExists);
            } else {
                in_flight.insert(digest.clone(), Arc::default());
                None
            }
        };
        if let Some(flight) = flight {
            let mut result = lock(&flight.result);
            while result.is_none() {
                result = flight
                    .done
                    .wait(result)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            return match result.as_ref() {
                Some(Ok(())) => Ok(FetchOutcome::Shared),
                Some(Err(e)) => Err(e.to_error(digest)),
                None => Err(ImageError::Other(format!("blob {digest}: fetch lost"))),
            };
        }

        // Publishes the outcome and clears the entry even if `fetch` panics, so that
        // waiters are never left blocked.
        let mut leader = Leader {
            store: self,
            digest,
            outcome: None,
        };
        let result = (|| {
            let mut ingest = self.writer(Some(digest), expected_size)?;
            ingest.set_context(context);
            fetch(&mut ingest)?;
            ingest.commit().map(|_| ())
        })();
        leader.outcome = Some(match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(SharedError::from_error(e)),
        });
        drop(leader);
        result.map(|()| FetchOutcome::Fetched)
    }

    /// Removes a blob. Returns whether it was there.
    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        match fs::remove_file(self.path(digest)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ImageError::io(format!("removing blob {digest}"), e)),
        }
    }

    /// All committed blobs. Names that are not digests (nothing we wrote) are skipped.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join(BLOBS_DIR);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(format!("reading {}", dir.display())))? {
            let entry = entry.map_err(io_err(format!("reading {}", dir.display())))?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|name| Digest::from_hex(name).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// A lease: digests (blobs or layer chain IDs) that garbage collection leaves
    /// alone while it lives. A pull takes one before fetching its first blob and drops
    /// it after the image record is written, so that a GC running meanwhile does not
    /// remove what is not yet referenced.
    pub fn lease(&self) -> Lease {
        Lease {
            shared: self.shared.clone(),
            held: Vec::new(),
        }
    }

    /// Runs `f` with the lease table locked if `digest` is not leased, so that a
    /// check-then-delete cannot race a lease taken between the two.
    pub(crate) fn unless_leased<T>(&self, digest: &Digest, f: impl FnOnce() -> T) -> Option<T> {
        let leased = lock(&self.shared.leased);
        if leased.contains_key(digest) {
            None
        } else {
            Some(f())
        }
    }

    /// The digests leased now.
    pub fn leased(&self) -> HashSet<Digest> {
        lock(&self.shared.leased).keys().cloned().collect()
    }
}

struct Leader<'a> {
    store: &'a ContentStore,
    digest: &'a Digest,
    outcome: Option<std::result::Result<(), SharedError>>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let flight = lock(&self.store.shared.in_flight).remove(self.digest);
        if let Some(flight) = flight {
            let outcome = self.outcome.take().unwrap_or_else(|| {
                Err(SharedError::Other(
                    "the fetching thread panicked".to_string(),
                ))
            });
            *lock(&flight.result) = Some(outcome);
            flight.done.notify_all();
        }
    }
}

/// Digests protected from garbage collection until dropped. See [`ContentStore::lease`].
#[derive(Debug)]
pub struct Lease {
    shared: Arc<Shared>,
    held: Vec<Digest>,
}

impl Lease {
    pub fn protect(&mut self, digest: &Digest) {
        *lock(&self.shared.leased).entry(digest.clone()).or_insert(0) += 1;
        self.held.push(digest.clone());
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut leased = lock(&self.shared.leased);
        for digest in self.held.drain(..) {
            if let Some(count) = leased.get_mut(&digest) {
                *count -= 1;
                if *count == 0 {
                    leased.remove(&digest);
                }
            }
        }
    }
}

/// A blob being written: hashes as it goes; [`Ingest::commit`] makes it a blob.
/// Dropped without commit, its temporary file is removed.
pub struct Ingest {
    blobs_dir: PathBuf,
    path: PathBuf,
    file: Option<BufWriter<File>>,
    hasher: Hasher,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    overflow: bool,
    context: String,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("path", &self.path)
            .field("written", &self.hasher.len())
            .field("expected", &self.expected)
            .field("expected_size", &self.expected_size)
            .finish()
    }
}

impl Ingest {
    /// Names the image the blob belongs to, for the errors commit returns.
    pub fn set_context(&mut self, context: &str) {
        self.context = context.to_string();
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Verifies size and digest, syncs, and moves the blob under its digest.
    pub fn commit(mut self) -> Result<Digest> {
        let written = self.hasher.len();
        let actual = std::mem::take(&mut self.hasher).finish();
        let what = self.expected.clone().unwrap_or_else(|| actual.clone());
        let image = if self.context.is_empty() {
            "content store".to_string()
        } else {
            self.context.clone()
        };
        if let Some(expected) = self.expected_size {
            if written != expected || self.overflow {
                // The overflowing write was refused, so `written` undercounts; say so.
                return Err(ImageError::SizeMismatch {
                    image,
                    digest: what,
                    expected,
                    actual: if self.overflow {
                        written.max(expected + 1)
                    } else {
                        written
                    },
                });
            }
        }
        if let Some(expected) = &self.expected {
            if *expected != actual {
                return Err(ImageError::DigestMismatch {
                    image,
                    digest: expected.clone(),
                    actual,
                });
            }
        }
        let Some(writer) = self.file.take() else {
            return Err(ImageError::Other(format!(
                "blob {actual}: ingest already closed"
            )));
        };
        let file = writer
            .into_inner()
            .map_err(|e| ImageError::io(format!("writing blob {actual}"), e.into_error()))?;
        file.sync_all()
            .map_err(io_err(format!("syncing blob {actual}")))?;
        let target = self.blobs_dir.join(actual.hex());
        // Renaming over an existing blob (a concurrent writer in another process
        // committed the same digest) swaps identical content: harmless.
        fs::rename(&self.path, &target).map_err(io_err(format!("committing blob {actual}")))?;
        // The temp file is gone; keep Drop from trying to remove the committed name.
        self.path = PathBuf::new();
        drop(file);
        sync_dir(&self.blobs_dir)?;
        Ok(actual)
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(limit) = self.expected_size {
            if self.hasher.len() + buf.len() as u64 > limit {
                self.overflow = true;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob larger than the expected {limit} bytes"),
                ));
            }
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("ingest closed"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Close (and unlock) before unlinking; errors here have nobody to go to, and
        // open() removes whatever is left.
        drop(self.file.take());
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// fsyncs a directory, so that a rename into it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path().join("content")).unwrap();
        let d = store.write_blob(b"hello").unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert!(store.exists(&d));
        assert_eq!(store.size(&d).unwrap(), 5);
        assert_eq!(store.read_blob(&d, 100).unwrap(), b"hello");
        assert!(store.read_blob(&d, 4).is_err());
        assert_eq!(store.list().unwrap(), vec![d.clone()]);
        assert!(store.delete(&d).unwrap());
        assert!(!store.delete(&d).unwrap());
        assert!(matches!(store.size(&d), Err(ImageError::BlobNotFound(_))));
    }

    #[test]
    fn overflow_is_refused_while_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = Digest::of(b"abc");
        let mut w = store.writer(Some(&d), Some(3)).unwrap();
        assert!(w.write_all(b"abcd").is_err());
        assert!(matches!(
            w.commit(),
            Err(ImageError::SizeMismatch { expected: 3, .. })
        ));
        assert_eq!(
            fs::read_dir(dir.path().join(INGEST_DIR)).unwrap().count(),
            0
        );
    }

    #[test]
    fn lease_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        let mut a = store.lease();
        let mut b = store.lease();
        a.protect(&d);
        b.protect(&d);
        drop(a);
        assert!(store.unless_leased(&d, || ()).is_none());
        drop(b);
        assert!(store.unless_leased(&d, || ()).is_some());
    }
}
