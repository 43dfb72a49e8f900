//! The HTTP core of the registry client (endpoint choice, authentication round trips,
//! retries with back-off) and the pull-side operations: ping, manifests, blobs, tags.
//!
//! ureq is used because it is blocking and small: the image library is synchronous and
//! berthd calls it from blocking threads, so an async stack would only add a runtime.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use ureq::config::RedirectAuthHeaders;
use ureq::http::{self, Method, Response};
use ureq::tls::{RootCerts, TlsConfig};
use ureq::{Agent, Body};

use super::auth::{parse_challenge, AuthCache, AuthScheme, Challenge, TokenResponse};
use super::config::DOCKER_HUB_ORIGIN;
use super::config::{canonical_registry, Credentials, RegistryConfig, DOCKER_HUB};
use super::push::UploadPolicy;
use crate::digest::{Digest, HashingWriter};
use crate::error::{ImageError, Result};
use crate::model::media_type;

/// Manifests and indexes larger than this are refused: real ones are a few KiB, and the
/// whole document is held in memory.
pub const MAX_MANIFEST_SIZE: u64 = 8 << 20;
/// Token and error bodies are small; more is a misbehaving server.
const MAX_SMALL_BODY: u64 = 1 << 20;
const COPY_BUFFER: usize = 256 << 10;

/// How transient failures are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Settings of a client beyond the registry configuration.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub retry: RetryPolicy,
    pub upload: UploadPolicy,
}

pub(crate) struct Shared {
    pub config: RegistryConfig,
    secure_agent: Agent,
    insecure_agent: Agent,
    pub auth: AuthCache,
    pub retry: RetryPolicy,
    pub upload: UploadPolicy,
}

/// One client per engine: holds the connection pools and the token cache. Cheap to
/// clone; safe to use from many threads at once.
#[derive(Clone)]
pub struct RegistryClient {
    shared: Arc<Shared>,
}

impl RegistryClient {
    pub fn new(config: RegistryConfig) -> Self {
        Self::with_options(config, ClientOptions::default())
    }

    pub fn with_options(config: RegistryConfig, options: ClientOptions) -> Self {
        RegistryClient {
            shared: Arc::new(Shared {
                config,
                secure_agent: make_agent(false),
                insecure_agent: make_agent(true),
                auth: AuthCache::default(),
                retry: options.retry,
                upload: options.upload,
            }),
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.shared.config
    }

    /// A handle on one registry, by the name references carry (`docker.io`,
    /// `localhost:5000`, `registry.example.com`).
    pub fn registry(&self, name: &str) -> Registry {
        let name = canonical_registry(name).to_string();
        let config = &self.shared.config;
        let mut endpoints = Vec::new();
        if name == DOCKER_HUB {
            for mirror in config.mirrors() {
                let host = url_authority(mirror).to_string();
                endpoints.push(Endpoint {
                    insecure: config.is_insecure(&host),
                    credentials: config.credentials(&host).cloned(),
                    host,
                    candidates: vec![mirror.clone()],
                    resolved: Mutex::new(Some(mirror.clone())),
                    mirror: true,
                });
            }
        }
        let origin = if name == DOCKER_HUB {
            DOCKER_HUB_ORIGIN.to_string()
        } else {
            name.clone()
        };
        let insecure = config.is_insecure(&name);
        // Docker tries TLS first even for an insecure registry, then plain HTTP.
        let mut candidates = vec![format!("https://{origin}")];
        if insecure {
            candidates.push(format!("http://{origin}"));
        }
        endpoints.push(Endpoint {
            resolved: Mutex::new((candidates.len() == 1).then(|| candidates[0].clone())),
            candidates,
            host: origin,
            insecure,
            credentials: config.credentials(&name).cloned(),
            mirror: false,
        });
        Registry {
            shared: self.shared.clone(),
            name,
            endpoints: Arc::new(endpoints),
        }
    }
}

fn make_agent(insecure: bool) -> Agent {
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::PlatformVerifier)
        // Docker skips verification for insecure registries that do speak TLS.
        .disable_verification(insecure)
        .build();
    Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .max_redirects(8)
        // Never: ureq's "same host" ignores the port, and blob redirects go to storage
        // (S3, a CDN) with signed URLs that need no registry credentials.
        .redirect_auth_headers(RedirectAuthHeaders::Never)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// A place a registry's API is served: a mirror or the registry itself.
pub(crate) struct Endpoint {
    /// `host[:port]`: key of the auth cache.
    pub host: String,
    candidates: Vec<String>,
    /// The base URL that answered, once known.
    resolved: Mutex<Option<String>>,
    pub insecure: bool,
    pub credentials: Option<Credentials>,
    pub mirror: bool,
}

/// A registry: its mirrors (Docker Hub only) and its origin.
#[derive(Clone)]
pub struct Registry {
    pub(crate) shared: Arc<Shared>,
    pub(crate) name: String,
    pub(crate) endpoints: Arc<Vec<Endpoint>>,
}

/// A manifest or index as fetched.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// What a `HEAD` on a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// One HTTP exchange as the retry loop sees it.
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: &'a [u8],
    pub scopes: Vec<String>,
    /// "blob sha256:… of library/busybox": the object errors must name.
    pub what: String,
}

impl Call<'_> {
    pub fn new(method: Method, url: String, scopes: Vec<String>, what: String) -> Self {
        Call {
            method,
            url,
            headers: Vec::new(),
            body: &[],
            scopes,
            what,
        }
    }
}

pub(crate) fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

pub(crate) fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

impl Registry {
    /// The canonical registry name (`docker.io` for Docker Hub).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn origin(&self) -> &Endpoint {
        // `RegistryClient::registry` always pushes the origin last.
        &self.endpoints[self.endpoints.len() - 1]
    }

    /// `GET /v2/`: reachable and speaking the API. A 401 counts as success (the
    /// challenge is remembered so later calls authenticate up front).
    pub fn ping(&self) -> Result<()> {
        let endpoint = self.origin();
        let base = self.base_url(endpoint)?;
        let what = "ping".to_string();
        let response = self.send_unauthenticated(endpoint, &format!("{base}/v2/"), &what)?;
        let status = response.status().as_u16();
        if status == 200 || status == 401 {
            return Ok(());
        }
        Err(self.status_error(response, &what))
    }

    /// `docker login`: `GET /v2/` with this registry's credentials (a token without
    /// scope where the registry wants bearer tokens). Unauthorized if refused.
    pub fn login(&self) -> Result<()> {
        let endpoint = self.origin();
        let base = self.base_url(endpoint)?;
        let what = format!("login to {}", self.name);
        let call = Call::new(Method::GET, format!("{base}/v2/"), Vec::new(), what.clone());
        let response = self.send(endpoint, &call)?;
        match response.status().as_u16() {
            200 => Ok(()),
            _ => Err(self.status_error(response, &what)),
        }
    }

    /// Fetches a manifest or index by tag or digest, verified against the digest asked
    /// for and against `Docker-Content-Digest`.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        check_repository(repo)?;
        let by_digest = check_reference(reference)?;
        let what = self.manifest_what(repo, reference);
        self.on_pull_endpoints(|endpoint| {
            let base = self.base_url(endpoint)?;
            let mut call = Call::new(
                Method::GET,
                format!("{base}/v2/{repo}/manifests/{reference}"),
                vec![pull_scope(repo)],
                what.clone(),
            );
            call.headers.push(("Accept", manifest_accept()));
            let (response, bytes) =
                self.send_and_read(endpoint, &call, MAX_MANIFEST_SIZE, |s| s == 200)?;
            let header_type = content_type(&response.headers);
            let served_digest = header_digest(&response.headers);
            let media_type =
                manifest_media_type(header_type.as_deref(), &bytes).ok_or_else(|| {
                    ImageError::UnsupportedMediaType {
                        media_type: header_type.unwrap_or_default(),
                        context: what.clone(),
                    }
                })?;
            let digest = Digest::of(&bytes);
            for expected in by_digest.iter().chain(served_digest.iter()) {
                if *expected != digest {
                    return Err(ImageError::DigestMismatch {
                        image: format!("{}/{repo}", self.name),
                        digest: expected.clone(),
                        actual: digest,
                    });
                }
            }
            Ok(FetchedManifest {
                bytes,
                media_type,
                digest,
            })
        })
    }

    /// `HEAD` on a manifest: its digest, type and size without its body. Falls back to
    /// a `GET` when the registry does not send `Docker-Content-Digest`.
    pub fn head_manifest(&self, repo: &str, reference: &str) -> Result<ManifestHead> {
        check_repository(repo)?;
        check_reference(reference)?;
        let what = self.manifest_what(repo, reference);
        let head = self.on_pull_endpoints(|endpoint| {
            let base = self.base_url(endpoint)?;
            let mut call = Call::new(
                Method::HEAD,
                format!("{base}/v2/{repo}/manifests/{reference}"),
                vec![pull_scope(repo)],
                what.clone(),
            );
            call.headers.push(("Accept", manifest_accept()));
            let response = self.send(endpoint, &call)?;
            match response.status().as_u16() {
                200 => Ok(
                    header_digest(response.headers()).map(|digest| ManifestHead {
                        digest,
                        media_type: content_type(response.headers()).unwrap_or_default(),
                        size: content_length(response.headers()).unwrap_or(0),
                    }),
                ),
                404 => Err(self.manifest_unknown(repo, reference, "manifest unknown".into())),
                _ => Err(self.status_error(response, &what)),
            }
        })?;
        match head {
            Some(head)
                if media_type::is_manifest(&head.media_type)
                    || media_type::is_index(&head.media_type) =>
            {
                Ok(head)
            }
            _ => {
                let fetched = self.get_manifest(repo, reference)?;
                Ok(ManifestHead {
                    size: fetched.bytes.len() as u64,
                    digest: fetched.digest,
                    media_type: fetched.media_type,
                })
            }
        }
    }

    /// Streams a blob into `sink`, verifying its size (when `expected_size` is given,
    /// also never taking more) and digest as it goes; nothing is buffered. A connection
    /// lost mid-blob is resumed with a `Range` request, or, where the server ignores
    /// ranges, by downloading again and skipping what `sink` already has. On error the
    /// bytes in `sink` are garbage: the caller discards its ingest.
    /// `progress(bytes_so_far, total)` is called as data arrives.
    pub fn fetch_blob(
        &self,
        repo: &str,
        digest: &Digest,
        expected_size: Option<u64>,
        sink: &mut dyn Write,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<u64> {
        check_repository(repo)?;
        let what = format!("blob {digest} of {}/{repo}", self.name);
        let mut state = BlobDownload {
            sink: HashingWriter::new(sink),
            expected_size,
            total: expected_size,
            failures: 0,
        };
        let result = self.on_pull_endpoints(|endpoint| {
            self.fetch_blob_from(endpoint, repo, digest, &what, &mut state, progress)
        });
        let written = result?;
        let actual = std::mem::take(&mut state.sink.hasher).finish();
        if let Some(expected) = expected_size {
            if written != expected {
                return Err(ImageError::SizeMismatch {
                    image: format!("{}/{repo}", self.name),
                    digest: digest.clone(),
                    expected,
                    actual: written,
                });
            }
        }
        if actual != *digest {
            return Err(ImageError::DigestMismatch {
                image: format!("{}/{repo}", self.name),
                digest: digest.clone(),
                actual,
            });
        }
        Ok(written)
    }

    fn fetch_blob_from(
        &self,
        endpoint: &Endpoint,
        repo: &str,
        digest: &Digest,
        what: &str,
        state: &mut BlobDownload<'_>,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<u64> {
        let base = self.base_url(endpoint)?;
        let retry = &self.shared.retry;
        let mut buffer = vec![0u8; COPY_BUFFER];
        loop {
            let offset = state.sink.hasher.len();
            let mut call = Call::new(
                Method::GET,
                format!("{base}/v2/{repo}/blobs/{digest}"),
                vec![pull_scope(repo)],
                what.to_string(),
            );
            if offset > 0 {
                call.headers.push(("Range", format!("bytes={offset}-")));
            }
            let response = self.send(endpoint, &call)?;
            let status = response.status().as_u16();
            let mut skip = 0u64;
            match status {
                200 => {
                    // A full body: what the sink already has is skipped, not rewritten.
                    skip = offset;
                    if state.total.is_none() {
                        state.total = content_length(response.headers());
                    }
                }
                206 if offset > 0 => {
                    let range = response
                        .headers()
                        .get(http::header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_content_range);
                    match range {
                        Some((start, total)) if start == offset => {
                            if state.total.is_none() {
                                state.total = total;
                            }
                        }
                        _ => {
                            return Err(self.transport(
                                what,
                                format!("resume at byte {offset}: bad Content-Range"),
                            ))
                        }
                    }
                }
                404 => {
                    return Err(ImageError::Registry {
                        registry: self.name.clone(),
                        status,
                        message: format!("{what}: blob unknown to registry"),
                    })
                }
                _ => return Err(self.status_error(response, what)),
            }
            let mut body = response.into_body().into_reader();
            let interrupted = loop {
                let n = match body.read(&mut buffer) {
                    Ok(0) => break None,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => break Some(e),
                };
                let mut chunk = &buffer[..n];
                if skip > 0 {
                    let drop = skip.min(n as u64) as usize;
                    skip -= drop as u64;
                    chunk = &chunk[drop..];
                }
                if chunk.is_empty() {
                    continue;
                }
                let so_far = state.sink.hasher.len() + chunk.len() as u64;
                if let Some(expected) = state.expected_size {
                    if so_far > expected {
                        return Err(ImageError::SizeMismatch {
                            image: format!("{}/{repo}", self.name),
                            digest: digest.clone(),
                            expected,
                            actual: so_far,
                        });
                    }
                }
                state
                    .sink
                    .write_all(chunk)
                    .map_err(|e| ImageError::io(format!("writing {what}"), e))?;
                progress(so_far, state.total);
            };
            let received = state.sink.hasher.len();
            let complete = match state.expected_size.or(state.total) {
                Some(total) => received >= total,
                None => interrupted.is_none(),
            };
            if complete {
                // An error after the last byte (a trailing chunk marker) loses nothing.
                return Ok(received);
            }
            state.failures += 1;
            let reason = match interrupted {
                Some(e) => e.to_string(),
                None => format!("connection closed after {received} bytes"),
            };
            if state.failures >= retry.attempts {
                return Err(self.transport(
                    what,
                    format!("download interrupted {} times: {reason}", state.failures),
                ));
            }
            std::thread::sleep(retry.backoff(state.failures - 1));
        }
    }

    /// `GET /v2/<repo>/tags/list`, following `Link` pagination.
    pub fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        check_repository(repo)?;
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let what = format!("tags of {}/{repo}", self.name);
        self.on_pull_endpoints(|endpoint| {
            let base = self.base_url(endpoint)?;
            let mut url = format!("{base}/v2/{repo}/tags/list");
            let mut tags = Vec::new();
            for _page in 0..10_000 {
                let call = Call::new(
                    Method::GET,
                    url.clone(),
                    vec![pull_scope(repo)],
                    what.clone(),
                );
                let (response, bytes) =
                    self.send_and_read(endpoint, &call, MAX_MANIFEST_SIZE, |s| s == 200)?;
                let page: TagList = serde_json::from_slice(&bytes)
                    .map_err(|e| ImageError::invalid(what.clone(), e))?;
                tags.extend(page.tags.unwrap_or_default());
                match next_link(&response) {
                    Some(next) => url = resolve_location(&base, &next),
                    None => return Ok(tags),
                }
            }
            Err(ImageError::invalid(what.clone(), "too many pages"))
        })
    }

    /// `HEAD /v2/<repo>/blobs/<digest>` on the registry itself: the blob's size if it
    /// is there.
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        self.blob_exists_with_scope(repo, digest, pull_scope(repo))
    }

    pub(crate) fn blob_exists_with_scope(
        &self,
        repo: &str,
        digest: &Digest,
        scope: String,
    ) -> Result<Option<u64>> {
        check_repository(repo)?;
        let endpoint = self.origin();
        let base = self.base_url(endpoint)?;
        let what = format!("blob {digest} of {}/{repo}", self.name);
        let call = Call::new(
            Method::HEAD,
            format!("{base}/v2/{repo}/blobs/{digest}"),
            vec![scope],
            what.clone(),
        );
        let response = self.send(endpoint, &call)?;
        match response.status().as_u16() {
            200 => Ok(Some(content_length(response.headers()).unwrap_or(0))),
            404 => Ok(None),
            _ => Err(self.status_error(response, &what)),
        }
    }

    // ----- the HTTP core -----

    /// Runs `f` on each pull endpoint in turn (mirrors, then the registry), returning
    /// the first success. Errors that concern the data rather than the endpoint stop
    /// the walk.
    fn on_pull_endpoints<T>(&self, mut f: impl FnMut(&Endpoint) -> Result<T>) -> Result<T> {
        let mut last = None;
        for endpoint in self.endpoints.iter() {
            match f(endpoint) {
                Ok(value) => return Ok(value),
                Err(e) if !endpoint.mirror => return Err(e),
                Err(
                    e @ (ImageError::DigestMismatch { .. }
                    | ImageError::SizeMismatch { .. }
                    | ImageError::Io { .. }),
                ) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ImageError::Other(format!("{}: no endpoint", self.name))))
    }

    /// The endpoint's base URL; for an insecure registry, the first of HTTPS and HTTP
    /// that answers at all, found once.
    pub(crate) fn base_url(&self, endpoint: &Endpoint) -> Result<String> {
        let mut resolved = endpoint.resolved.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(base) = resolved.as_ref() {
            return Ok(base.clone());
        }
        let mut last_error = None;
        for candidate in &endpoint.candidates {
            // One try each: a TLS handshake against a plain-HTTP server fails for good.
            let request = http::Request::get(format!("{candidate}/v2/"))
                .body(())
                .map_err(|e| self.transport("ping", e))?;
            match self.agent(endpoint).run(request) {
                Ok(response) => {
                    self.learn_challenge(endpoint, &response);
                    *resolved = Some(candidate.clone());
                    return Ok(candidate.clone());
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(self.transport(
            &format!("no usable endpoint for {}", endpoint.host),
            last_error.map(|e| e.to_string()).unwrap_or_default(),
        ))
    }

    fn send_unauthenticated(
        &self,
        endpoint: &Endpoint,
        url: &str,
        what: &str,
    ) -> Result<Response<Body>> {
        let call = Call::new(Method::GET, url.to_string(), Vec::new(), what.to_string());
        let response = self.with_retries(what, || {
            let request = build_request(&call, None).map_err(|e| self.transport(what, e))?;
            Ok(self.agent(endpoint).run(request))
        })?;
        if response.status().as_u16() == 401 {
            self.learn_challenge(endpoint, &response);
        }
        Ok(response)
    }

    fn learn_challenge(&self, endpoint: &Endpoint, response: &Response<Body>) -> Option<Challenge> {
        if response.status().as_u16() != 401 {
            return None;
        }
        let challenge = response
            .headers()
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge)?;
        let scheme = match &challenge {
            Challenge::Basic { .. } => AuthScheme::Basic,
            Challenge::Bearer { realm, service, .. } => AuthScheme::Bearer {
                realm: realm.clone(),
                service: service.clone(),
            },
        };
        self.shared.auth.set_scheme(&endpoint.host, scheme);
        Some(challenge)
    }

    /// Sends a call: authenticates up front when the registry's scheme is known,
    /// answers a 401 challenge once, and retries transient failures (connection
    /// errors, 429, 500, 502, 503, 504) with back-off. The response returned may have
    /// any status but 401.
    pub(crate) fn send(&self, endpoint: &Endpoint, call: &Call<'_>) -> Result<Response<Body>> {
        let mut scopes = call.scopes.clone();
        let mut challenged = false;
        loop {
            let (authorization, fresh) =
                self.authorization(endpoint, &scopes, challenged, &call.what)?;
            let authorization = authorization.filter(|_| same_origin(endpoint, &call.url));
            let response = self.with_retries(&call.what, || {
                let request = build_request(call, authorization.as_deref())
                    .map_err(|e| self.transport(&call.what, e))?;
                Ok(self.agent(endpoint).run(request))
            })?;
            if response.status().as_u16() != 401 {
                return Ok(response);
            }
            let scope_key = scopes.join(" ");
            self.shared.auth.forget_token(&endpoint.host, &scope_key);
            if challenged {
                let message = error_message(response);
                return Err(self.unauthorized(&call.what, message));
            }
            challenged = true;
            // A 401 to credentials obtained just now is final, unless the challenge
            // names a scope the token lacked.
            let final_answer = match self.learn_challenge(endpoint, &response) {
                None => true,
                Some(Challenge::Basic { .. }) => fresh || endpoint.credentials.is_none(),
                Some(Challenge::Bearer { scope, .. }) => {
                    let mut added = false;
                    for s in scope.as_deref().unwrap_or_default().split(' ') {
                        if !s.is_empty() && !scopes.iter().any(|have| have == s) {
                            scopes.push(s.to_string());
                            added = true;
                        }
                    }
                    fresh && !added
                }
            };
            if final_answer {
                let message = error_message(response);
                return Err(self.unauthorized(&call.what, message));
            }
        }
    }

    /// The `Authorization` value to send, and whether it was obtained just now (a 401
    /// in answer to fresh credentials is final). `refresh` skips the token cache: the
    /// registry has just refused what we sent.
    fn authorization(
        &self,
        endpoint: &Endpoint,
        scopes: &[String],
        refresh: bool,
        what: &str,
    ) -> Result<(Option<String>, bool)> {
        match self.shared.auth.scheme(&endpoint.host) {
            None => Ok((None, false)),
            Some(AuthScheme::Basic) => Ok((endpoint.credentials.as_ref().map(basic_header), true)),
            Some(AuthScheme::Bearer { realm, service }) => {
                let key = scopes.join(" ");
                if !refresh {
                    if let Some(token) = self.shared.auth.token(&endpoint.host, &key) {
                        return Ok((Some(format!("Bearer {token}")), false));
                    }
                }
                let (token, lifetime) =
                    self.fetch_token(endpoint, &realm, service.as_deref(), scopes, what)?;
                self.shared
                    .auth
                    .set_token(&endpoint.host, &key, token.clone(), lifetime);
                Ok((Some(format!("Bearer {token}")), true))
            }
        }
    }

    fn fetch_token(
        &self,
        endpoint: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        what: &str,
    ) -> Result<(String, Duration)> {
        let mut url = realm.to_string();
        let mut separator = if url.contains('?') { '&' } else { '?' };
        let mut add = |key: &str, value: &str| {
            url.push(separator);
            url.push_str(key);
            url.push('=');
            url.push_str(&encode_query(value));
            separator = '&';
        };
        if let Some(service) = service {
            add("service", service);
        }
        for scope in scopes {
            add("scope", scope);
        }
        let what = format!("token for {what}");
        let agent = if self.shared.config.is_insecure(url_authority(realm)) {
            &self.shared.insecure_agent
        } else {
            &self.shared.secure_agent
        };
        let authorization = endpoint.credentials.as_ref().map(basic_header);
        let response = self.with_retries(&what, || {
            let mut request = http::Request::get(url.as_str());
            if let Some(authorization) = &authorization {
                request = request.header("Authorization", authorization.as_str());
            }
            let request = request.body(()).map_err(|e| self.transport(&what, e))?;
            Ok(agent.run(request))
        })?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => {
                let message = error_message(response);
                return Err(self.unauthorized(&what, message));
            }
            _ => return Err(self.status_error(response, &what)),
        }
        let bytes = read_limited(response, MAX_SMALL_BODY).map_err(|e| self.transport(&what, e))?;
        let parsed: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::invalid(what.clone(), e))?;
        parsed
            .into_token()
            .ok_or_else(|| ImageError::invalid(what, "token server sent no token"))
    }

    /// Retries `run` while it fails in a transient way. `run` returns the ureq result
    /// so that connection errors and retryable statuses are judged here.
    fn with_retries(
        &self,
        what: &str,
        mut run: impl FnMut() -> Result<Result<Response<Body>, ureq::Error>>,
    ) -> Result<Response<Body>> {
        let policy = &self.shared.retry;
        let mut retry = 0;
        loop {
            let last_try = retry + 1 >= policy.attempts;
            match run()? {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if !matches!(status, 429 | 500 | 502 | 503 | 504) || last_try {
                        return Ok(response);
                    }
                    let delay = match retry_after(&response) {
                        Some(wait) if wait > policy.max_retry_after => return Ok(response),
                        Some(wait) => wait,
                        None => policy.backoff(retry),
                    };
                    std::thread::sleep(delay);
                }
                Err(e) if is_transient(&e) && !last_try => {
                    std::thread::sleep(policy.backoff(retry));
                }
                Err(e) => return Err(self.transport(what, e)),
            }
            retry += 1;
        }
    }

    /// Sends and reads a small body (manifest, tag list), retrying when the body is
    /// cut short. `ok` says which statuses carry the wanted body.
    pub(crate) fn send_and_read(
        &self,
        endpoint: &Endpoint,
        call: &Call<'_>,
        limit: u64,
        ok: impl Fn(u16) -> bool,
    ) -> Result<(http::response::Parts, Vec<u8>)> {
        let policy = &self.shared.retry;
        let mut retry = 0;
        loop {
            let response = self.send(endpoint, call)?;
            let status = response.status().as_u16();
            if !ok(status) {
                if status == 404 && call.what.starts_with("manifest ") {
                    let message = error_message(response);
                    return Err(ImageError::ManifestUnknown {
                        reference: call.what.trim_start_matches("manifest ").to_string(),
                        message,
                    });
                }
                return Err(self.status_error(response, &call.what));
            }
            let (parts, body) = response.into_parts();
            match body.into_with_config().limit(limit).read_to_vec() {
                Ok(bytes) => return Ok((parts, bytes)),
                Err(ureq::Error::BodyExceedsLimit(_)) => {
                    return Err(ImageError::invalid(
                        call.what.clone(),
                        format!("response larger than {limit} bytes"),
                    ))
                }
                Err(e) if is_transient(&e) && retry + 1 < policy.attempts => {
                    std::thread::sleep(policy.backoff(retry));
                    retry += 1;
                }
                Err(e) => return Err(self.transport(&call.what, e)),
            }
        }
    }

    fn agent(&self, endpoint: &Endpoint) -> &Agent {
        if endpoint.insecure {
            &self.shared.insecure_agent
        } else {
            &self.shared.secure_agent
        }
    }

    // ----- errors naming registry, repository and object -----

    fn manifest_what(&self, repo: &str, reference: &str) -> String {
        let separator = if reference.contains(':') { '@' } else { ':' };
        format!("manifest {}/{repo}{separator}{reference}", self.name)
    }

    fn manifest_unknown(&self, repo: &str, reference: &str, message: String) -> ImageError {
        ImageError::ManifestUnknown {
            reference: self
                .manifest_what(repo, reference)
                .trim_start_matches("manifest ")
                .to_string(),
            message,
        }
    }

    pub(crate) fn transport(&self, what: &str, error: impl std::fmt::Display) -> ImageError {
        ImageError::Transport {
            registry: self.name.clone(),
            message: format!("{what}: {error}"),
        }
    }

    pub(crate) fn unauthorized(&self, what: &str, message: String) -> ImageError {
        ImageError::Unauthorized {
            registry: self.name.clone(),
            message: format!("{what}: {message}"),
        }
    }

    /// An unexpected status, with the registry's own error code and message.
    pub(crate) fn status_error(&self, response: Response<Body>, what: &str) -> ImageError {
        let status = response.status().as_u16();
        if status == 401 {
            return self.unauthorized(what, error_message(response));
        }
        ImageError::Registry {
            registry: self.name.clone(),
            status,
            message: format!("{what}: {}", error_message(response)),
        }
    }
}

/// Where a blob download stands across retries and endpoints.
struct BlobDownload<'a> {
    sink: HashingWriter<&'a mut dyn Write>,
    expected_size: Option<u64>,
    total: Option<u64>,
    failures: u32,
}

fn build_request<'a>(
    call: &Call<'a>,
    authorization: Option<&str>,
) -> std::result::Result<http::Request<&'a [u8]>, http::Error> {
    let mut request = http::Request::builder()
        .method(call.method.clone())
        .uri(call.url.as_str());
    for (name, value) in &call.headers {
        request = request.header(*name, value.as_str());
    }
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    request.body(call.body)
}

fn basic_header(credentials: &Credentials) -> String {
    let raw = format!("{}:{}", credentials.username, credentials.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Credentials go only to the endpoint they belong to, never to a host an upload
/// `Location` points elsewhere.
fn same_origin(endpoint: &Endpoint, url: &str) -> bool {
    url_authority(url) == endpoint.host
}

/// `https://host:port/path` → `host:port`.
pub(crate) fn url_authority(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    rest.split(['/', '?']).next().unwrap_or_default()
}

fn is_transient(error: &ureq::Error) -> bool {
    matches!(
        error,
        ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_)
            | ureq::Error::BodyStalled
    )
}

fn retry_after(response: &Response<Body>) -> Option<Duration> {
    let value = response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

pub(crate) fn content_type(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or(value).trim().to_string())
}

pub(crate) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(crate) fn header_digest(headers: &http::HeaderMap) -> Option<Digest> {
    headers
        .get("Docker-Content-Digest")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `bytes 100-199/200` → (100, Some(200)).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// `<url>; rel="next"` from a `Link` header.
fn next_link(parts: &http::response::Parts) -> Option<String> {
    let link = parts.headers.get(http::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// Resolves an upload `Location` or `Link` (absolute, or relative to the host).
pub(crate) fn resolve_location(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/{location}")
    }
}

fn read_limited(response: Response<Body>, limit: u64) -> std::result::Result<Vec<u8>, ureq::Error> {
    response
        .into_body()
        .into_with_config()
        .limit(limit)
        .read_to_vec()
}

/// The registry's `{"errors": [{"code", "message"}]}`, or the start of the body.
pub(crate) fn error_message(response: Response<Body>) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let status = response.status();
    let bytes = read_limited(response, 64 << 10).unwrap_or_default();
    if let Ok(parsed) = serde_json::from_slice::<Errors>(&bytes) {
        if !parsed.errors.is_empty() {
            return parsed
                .errors
                .iter()
                .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                    (false, false) => {
                        format!("{}: {}", e.code.to_lowercase().replace('_', " "), e.message)
                    }
                    (false, true) => e.code.to_lowercase().replace('_', " "),
                    _ => e.message.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ");
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        status.to_string()
    } else {
        text.chars().take(200).collect()
    }
}

fn manifest_accept() -> String {
    [
        media_type::OCI_INDEX,
        media_type::OCI_MANIFEST,
        media_type::DOCKER_MANIFEST_LIST,
        media_type::DOCKER_MANIFEST,
    ]
    .join(", ")
}

/// The manifest's type: the `Content-Type` if it names a manifest or index, else the
/// document's `mediaType`, else its shape (OCI documents may omit `mediaType`).
fn manifest_media_type(header: Option<&str>, bytes: &[u8]) -> Option<String> {
    if let Some(header) = header {
        if media_type::is_manifest(header) || media_type::is_index(header) {
            return Some(header.to_string());
        }
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(declared) = value.get("mediaType").and_then(|v| v.as_str()) {
        return (media_type::is_manifest(declared) || media_type::is_index(declared))
            .then(|| declared.to_string());
    }
    if value.get("manifests").is_some() {
        Some(media_type::OCI_INDEX.to_string())
    } else if value.get("config").is_some() && value.get("layers").is_some() {
        Some(media_type::OCI_MANIFEST.to_string())
    } else {
        None
    }
}

/// Percent-encodes a query value, keeping the characters scopes and services use.
pub(crate) fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Repository names as the Distribution spec allows them: lowercase path components of
/// `[a-z0-9]` separated by `.`, `_`, `__` or dashes. Checked so that nothing else can
/// reach a URL path.
pub fn check_repository(repo: &str) -> Result<()> {
    let bad = |reason: &str| ImageError::InvalidReference {
        reference: repo.to_string(),
        reason: reason.to_string(),
    };
    if repo.is_empty() || repo.len() > 255 {
        return Err(bad("repository name must be 1 to 255 characters"));
    }
    for component in repo.split('/') {
        let bytes = component.as_bytes();
        let edge_ok =
            |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !edge_ok(bytes.first()) || !edge_ok(bytes.last()) {
            return Err(bad("each path component must start and end with [a-z0-9]"));
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
        {
            return Err(bad("only [a-z0-9._-] and / are allowed"));
        }
    }
    Ok(())
}

/// A tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest; returns the digest if it is
/// one.
pub fn check_reference(reference: &str) -> Result<Option<Digest>> {
    if reference.contains(':') {
        return reference.parse().map(Some);
    }
    let bytes = reference.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b));
    if valid {
        Ok(None)
    } else {
        Err(ImageError::InvalidReference {
            reference: reference.to_string(),
            reason: "invalid tag".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_references() {
        assert!(check_repository("library/busybox").is_ok());
        assert!(check_repository("a/b-c/d.e_f").is_ok());
        for bad in ["", "A", "a//b", "/a", "a/", "a/../b", "a?b", "a b", "-a"] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
        assert_eq!(check_reference("latest").unwrap(), None);
        assert!(check_reference(&Digest::of(b"").to_string())
            .unwrap()
            .is_some());
        for bad in ["", ".x", "a/b", "a?b", "sha256:zz"] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_helpers() {
        assert_eq!(parse_content_range("bytes 10-19/20"), Some((10, Some(20))));
        assert_eq!(parse_content_range("bytes 10-19/*"), Some((10, None)));
        assert_eq!(parse_content_range("10-19"), None);
        assert_eq!(
            encode_query("repository:a/b:pull,push x"),
            "repository:a/b:pull,push%20x"
        );
        assert_eq!(
            resolve_location("http://h:1", "/v2/x?y=1"),
            "http://h:1/v2/x?y=1"
        );
        assert_eq!(
            resolve_location("http://h:1", "https://o/v2/"),
            "https://o/v2/"
        );
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(0), Duration::from_millis(250));
        assert_eq!(policy.backoff(2), Duration::from_secs(1));
        assert_eq!(policy.backoff(30), Duration::from_secs(8));
    }

    #[test]
    fn manifest_type_sniffing() {
        assert_eq!(
            manifest_media_type(Some(media_type::DOCKER_MANIFEST), b"{}").as_deref(),
            Some(media_type::DOCKER_MANIFEST)
        );
        assert_eq!(
            manifest_media_type(Some("application/json"), br#"{"manifests": []}"#).as_deref(),
            Some(media_type::OCI_INDEX)
        );
        assert_eq!(
            manifest_media_type(None, br#"{"mediaType": "text/html"}"#),
            None
        );
    }
}
