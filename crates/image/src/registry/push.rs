//! The push side: blob uploads (existence check first, then a cross-repository mount,
//! then a monolithic or chunked upload chosen by size) and manifest uploads. Pushes go
//! to the registry itself, never to a mirror.

use std::io::{self, Read};

use ureq::http::Method;

use super::client::{
    check_reference, check_repository, encode_query, header_digest, pull_scope, push_scope,
    resolve_location, Call, Registry,
};
use crate::digest::{Digest, Hasher};
use crate::error::{ImageError, Result};

/// When to upload in one request and how large chunked uploads' chunks are. A chunk
/// is held in memory so that it can be sent again after a transient failure.
#[derive(Debug, Clone)]
pub struct UploadPolicy {
    /// Blobs up to this size go in a single `PUT`.
    pub monolithic_max: u64,
    pub chunk_size: usize,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy {
            monolithic_max: 16 << 20,
            chunk_size: 16 << 20,
        }
    }
}

/// How a blob came to be in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobPushOutcome {
    /// The repository already had it; nothing was read.
    AlreadyExists,
    /// Mounted from another repository of the same registry; nothing was read.
    Mounted {
        from: String,
    },
    Uploaded,
}

const OCTET_STREAM: &str = "application/octet-stream";

impl Registry {
    /// Makes `digest` (of `size` bytes, read from `reader` only if it must be sent)
    /// present in `repo`. With `mount_from`, first asks the registry to mount it from
    /// that repository. The bytes are checked against `size` and `digest` while they
    /// are sent; a mismatch cancels the upload.
    pub fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        reader: &mut dyn Read,
        mount_from: Option<&str>,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<BlobPushOutcome> {
        check_repository(repo)?;
        if let Some(from) = mount_from {
            check_repository(from)?;
        }
        if self
            .blob_exists_with_scope(repo, digest, push_scope(repo))?
            .is_some()
        {
            return Ok(BlobPushOutcome::AlreadyExists);
        }
        let endpoint = self.origin();
        let base = self.base_url(endpoint)?;
        let what = format!("blob {digest} of {}/{repo}", self.name);
        let mut scopes = vec![push_scope(repo)];
        let mut url = format!("{base}/v2/{repo}/blobs/uploads/");
        if let Some(from) = mount_from.filter(|from| *from != repo) {
            scopes.push(pull_scope(from));
            url.push_str(&format!(
                "?mount={}&from={}",
                encode_query(&digest.to_string()),
                encode_query(from)
            ));
        }
        let call = Call::new(Method::POST, url, scopes.clone(), what.clone());
        let response = self.send(endpoint, &call)?;
        let location = match response.status().as_u16() {
            201 if mount_from.is_some() => {
                return Ok(BlobPushOutcome::Mounted {
                    from: mount_from.unwrap_or_default().to_string(),
                })
            }
            202 => response
                .headers()
                .get("Location")
                .and_then(|v| v.to_str().ok())
                .map(|l| resolve_location(&base, l))
                .ok_or_else(|| self.transport(&what, "upload started without a Location"))?,
            _ => return Err(self.status_error(response, &what)),
        };
        let upload = Upload {
            registry: self,
            repo,
            digest,
            size,
            what: &what,
            scopes,
            location,
        };
        let result = if size <= self.shared.upload.monolithic_max {
            upload.monolithic(reader, progress)
        } else {
            upload.chunked(reader, progress)
        };
        result.map(|()| BlobPushOutcome::Uploaded)
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; returns the manifest's digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest> {
        check_repository(repo)?;
        let digest = Digest::of(bytes);
        let what = format!("manifest {}/{repo}:{reference}", self.name);
        if let Some(wanted) = check_reference(reference)? {
            if wanted != digest {
                return Err(ImageError::DigestMismatch {
                    image: format!("{}/{repo}", self.name),
                    digest: wanted,
                    actual: digest,
                });
            }
        }
        let endpoint = self.origin();
        let base = self.base_url(endpoint)?;
        let mut call = Call::new(
            Method::PUT,
            format!("{base}/v2/{repo}/manifests/{reference}"),
            vec![push_scope(repo)],
            what.clone(),
        );
        call.headers.push(("Content-Type", media_type.to_string()));
        call.body = bytes;
        let response = self.send(endpoint, &call)?;
        if !matches!(response.status().as_u16(), 200..=202) {
            return Err(self.status_error(response, &what));
        }
        match header_digest(response.headers()) {
            Some(served) if served != digest => Err(ImageError::DigestMismatch {
                image: format!("{}/{repo}", self.name),
                digest,
                actual: served,
            }),
            _ => Ok(digest),
        }
    }
}

/// One upload session, from its first `Location` to the closing `PUT`.
struct Upload<'a> {
    registry: &'a Registry,
    repo: &'a str,
    digest: &'a Digest,
    size: u64,
    what: &'a str,
    scopes: Vec<String>,
    location: String,
}

impl Upload<'_> {
    fn monolithic(
        mut self,
        reader: &mut dyn Read,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<()> {
        let mut hasher = Hasher::new();
        // One byte more than announced, to notice a reader that is too long.
        let mut data = Vec::with_capacity(self.size as usize);
        if let Err(e) = reader.take(self.size + 1).read_to_end(&mut data) {
            self.cancel();
            return Err(ImageError::io(format!("reading {}", self.what), e));
        }
        hasher.update(&data);
        self.verify(hasher)?;
        let url = self.with_digest();
        self.put(url, &data)?;
        progress(self.size, Some(self.size));
        self.location.clear();
        Ok(())
    }

    fn chunked(
        mut self,
        reader: &mut dyn Read,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<()> {
        let registry = self.registry;
        let endpoint = registry.origin();
        let base = registry.base_url(endpoint)?;
        let mut hasher = Hasher::new();
        let mut chunk = vec![0u8; registry.shared.upload.chunk_size.max(1)];
        loop {
            let n = match read_full(reader, &mut chunk) {
                Ok(n) => n,
                Err(e) => {
                    self.cancel();
                    return Err(ImageError::io(format!("reading {}", self.what), e));
                }
            };
            if n == 0 {
                break;
            }
            let start = hasher.len();
            hasher.update(&chunk[..n]);
            if hasher.len() > self.size {
                break;
            }
            let mut call = Call::new(
                Method::PATCH,
                self.location.clone(),
                self.scopes.clone(),
                self.what.to_string(),
            );
            call.headers.push(("Content-Type", OCTET_STREAM.into()));
            call.headers
                .push(("Content-Range", format!("{start}-{}", hasher.len() - 1)));
            call.body = &chunk[..n];
            let response = registry.send(endpoint, &call)?;
            if response.status().as_u16() != 202 {
                let error = registry.status_error(response, self.what);
                self.cancel();
                return Err(error);
            }
            if let Some(next) = response
                .headers()
                .get("Location")
                .and_then(|v| v.to_str().ok())
            {
                self.location = resolve_location(&base, next);
            }
            progress(hasher.len(), Some(self.size));
        }
        self.verify(hasher)?;
        let url = self.with_digest();
        self.put(url, &[])?;
        self.location.clear();
        Ok(())
    }

    /// Size and digest of what was read, before the registry is asked to commit it.
    fn verify(&mut self, hasher: Hasher) -> Result<()> {
        let read = hasher.len();
        if read != self.size {
            self.cancel();
            return Err(ImageError::SizeMismatch {
                image: format!("{}/{}", self.registry.name, self.repo),
                digest: self.digest.clone(),
                expected: self.size,
                actual: read,
            });
        }
        let actual = hasher.finish();
        if actual != *self.digest {
            self.cancel();
            return Err(ImageError::DigestMismatch {
                image: format!("{}/{}", self.registry.name, self.repo),
                digest: self.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    fn with_digest(&self) -> String {
        let separator = if self.location.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}digest={}",
            self.location,
            encode_query(&self.digest.to_string())
        )
    }

    fn put(&mut self, url: String, body: &[u8]) -> Result<()> {
        let registry = self.registry;
        let endpoint = registry.origin();
        let mut call = Call::new(Method::PUT, url, self.scopes.clone(), self.what.to_string());
        call.headers.push(("Content-Type", OCTET_STREAM.into()));
        call.body = body;
        let response = registry.send(endpoint, &call)?;
        match response.status().as_u16() {
            201 | 204 => {}
            _ => {
                let error = registry.status_error(response, self.what);
                self.cancel();
                return Err(error);
            }
        }
        match header_digest(response.headers()) {
            Some(served) if served != *self.digest => Err(ImageError::DigestMismatch {
                image: format!("{}/{}", registry.name, self.repo),
                digest: self.digest.clone(),
                actual: served,
            }),
            _ => Ok(()),
        }
    }

    /// Best effort: the registry expires abandoned uploads anyway.
    fn cancel(&mut self) {
        if self.location.is_empty() {
            return;
        }
        let registry = self.registry;
        let call = Call::new(
            Method::DELETE,
            std::mem::take(&mut self.location),
            self.scopes.clone(),
            self.what.to_string(),
        );
        let _ = registry.send(registry.origin(), &call);
    }
}

/// Reads until `buf` is full or the reader ends.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
