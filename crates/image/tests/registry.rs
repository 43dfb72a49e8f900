//! The registry client against a real Debian `docker-registry` on 127.0.0.1 (push,
//! pull, chunked and monolithic uploads, cross-repository mounts, htpasswd auth), and
//! against a scripted misbehaving HTTP server on 127.0.0.1 (bearer tokens, 401, 404,
//! 429, 5xx, connections cut mid-blob, wrong bytes, mirrors).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_image::digest::Digest;
use berth_image::model::media_type;
use berth_image::registry::client::ClientOptions;
use berth_image::registry::{
    BlobPushOutcome, RegistryClient, RegistryConfig, RetryPolicy, UploadPolicy,
};
use berth_image::ImageError;

// ---------------------------------------------------------------- real registry

struct RealRegistry {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl RealRegistry {
    fn start() -> Self {
        Self::start_with_auth(None)
    }

    /// With `Some((user, password))`, the registry requires htpasswd basic auth.
    fn start_with_auth(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash(password, 4).unwrap();
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let registry = RealRegistry {
            child,
            address,
            _dir: dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(&self.address) {
                let _ = write!(
                    stream,
                    "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.address
                );
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 401") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap();
        panic!("docker-registry did not come up on {}: {log}", self.address);
    }
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

fn client_with(config: RegistryConfig, upload: UploadPolicy) -> RegistryClient {
    RegistryClient::with_options(
        config,
        ClientOptions {
            retry: quick_retries(),
            upload,
        },
    )
}

fn client() -> RegistryClient {
    client_with(RegistryConfig::new(), UploadPolicy::default())
}

/// A one-layer image made here: (layer tar.gz, config JSON, manifest JSON).
struct TestImage {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn make_image(content: &[u8]) -> TestImage {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "hello.txt", content).unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let layer = gz.finish().unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created_by": "berth test"}],
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::DOCKER_MANIFEST,
        "config": {
            "mediaType": media_type::DOCKER_CONFIG,
            "digest": Digest::of(&config).to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": media_type::DOCKER_LAYER_GZIP,
            "digest": Digest::of(&layer).to_string(),
            "size": layer.len(),
        }],
    }))
    .unwrap();
    TestImage {
        layer,
        config,
        manifest,
    }
}

fn push_bytes(
    registry: &berth_image::registry::Registry,
    repo: &str,
    data: &[u8],
    mount_from: Option<&str>,
) -> BlobPushOutcome {
    let mut reader = data;
    registry
        .push_blob(
            repo,
            &Digest::of(data),
            data.len() as u64,
            &mut reader,
            mount_from,
            &mut |_, _| {},
        )
        .unwrap()
}

fn fetch(registry: &berth_image::registry::Registry, repo: &str, digest: &Digest) -> Vec<u8> {
    let mut out = Vec::new();
    registry
        .fetch_blob(repo, digest, None, &mut out, &mut |_, _| {})
        .unwrap();
    out
}

/// A reader that fails the test if it is read: for pushes that must not upload.
struct MustNotRead;
impl Read for MustNotRead {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        panic!("the blob was read although it needed no upload")
    }
}

#[test]
fn push_then_pull_by_tag_and_digest() {
    let server = RealRegistry::start();
    let client = client();
    let registry = client.registry(&server.address);
    registry.ping().unwrap();
    let image = make_image(b"hello from berth\n");
    let repo = "berth/test";

    assert_eq!(
        push_bytes(&registry, repo, &image.layer, None),
        BlobPushOutcome::Uploaded
    );
    assert_eq!(
        push_bytes(&registry, repo, &image.config, None),
        BlobPushOutcome::Uploaded
    );
    let digest = registry
        .put_manifest(repo, "v1", &image.manifest, media_type::DOCKER_MANIFEST)
        .unwrap();
    assert_eq!(digest, Digest::of(&image.manifest));

    // A second push finds everything there and reads nothing.
    let layer_digest = Digest::of(&image.layer);
    let outcome = registry
        .push_blob(
            repo,
            &layer_digest,
            image.layer.len() as u64,
            &mut MustNotRead,
            None,
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(outcome, BlobPushOutcome::AlreadyExists);
    assert_eq!(
        registry.blob_exists(repo, &layer_digest).unwrap(),
        Some(image.layer.len() as u64)
    );
    assert_eq!(
        registry.blob_exists(repo, &Digest::of(b"absent")).unwrap(),
        None
    );

    // Pull back on a fresh client (no cached state).
    let client = self::client();
    let registry = client.registry(&server.address);
    let by_tag = registry.get_manifest(repo, "v1").unwrap();
    assert_eq!(by_tag.bytes, image.manifest);
    assert_eq!(by_tag.digest, digest);
    assert_eq!(by_tag.media_type, media_type::DOCKER_MANIFEST);
    let by_digest = registry.get_manifest(repo, &digest.to_string()).unwrap();
    assert_eq!(by_digest.bytes, image.manifest);
    let head = registry.head_manifest(repo, "v1").unwrap();
    assert_eq!(head.digest, digest);
    assert_eq!(head.size, image.manifest.len() as u64);
    assert_eq!(head.media_type, media_type::DOCKER_MANIFEST);

    let mut seen = Vec::new();
    let mut layer = Vec::new();
    let written = registry
        .fetch_blob(
            repo,
            &layer_digest,
            Some(image.layer.len() as u64),
            &mut layer,
            &mut |current, total| seen.push((current, total)),
        )
        .unwrap();
    assert_eq!(written, image.layer.len() as u64);
    assert_eq!(layer, image.layer);
    assert_eq!(
        seen.last(),
        Some(&(written, Some(image.layer.len() as u64)))
    );
    assert_eq!(
        fetch(&registry, repo, &Digest::of(&image.config)),
        image.config
    );
    assert_eq!(registry.list_tags(repo).unwrap(), vec!["v1".to_string()]);

    match registry.get_manifest(repo, "nope") {
        Err(ImageError::ManifestUnknown { reference, .. }) => {
            assert!(reference.contains("berth/test:nope"), "{reference}")
        }
        other => panic!("expected ManifestUnknown, got {other:?}"),
    }
    let wrong = Digest::of(b"not a manifest");
    assert!(matches!(
        registry.get_manifest(repo, &wrong.to_string()),
        Err(ImageError::ManifestUnknown { .. })
    ));
}

#[test]
fn chunked_and_monolithic_uploads() {
    let server = RealRegistry::start();
    let client = client_with(
        RegistryConfig::new(),
        UploadPolicy {
            monolithic_max: 10_000,
            chunk_size: 16 << 10,
        },
    );
    let registry = client.registry(&server.address);
    let big: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let small = b"small blob".to_vec();
    let mut pushed = Vec::new();
    let mut reader = &big[..];
    let outcome = registry
        .push_blob(
            "chunks/big",
            &Digest::of(&big),
            big.len() as u64,
            &mut reader,
            None,
            &mut |current, _| pushed.push(current),
        )
        .unwrap();
    assert_eq!(outcome, BlobPushOutcome::Uploaded);
    // 100 000 bytes in 16 KiB chunks: seven PATCHes.
    assert_eq!(pushed.len(), 7);
    assert_eq!(pushed.last(), Some(&100_000));
    assert_eq!(
        push_bytes(&registry, "chunks/small", &small, None),
        BlobPushOutcome::Uploaded
    );
    assert_eq!(fetch(&registry, "chunks/big", &Digest::of(&big)), big);
    assert_eq!(fetch(&registry, "chunks/small", &Digest::of(&small)), small);

    // Bytes that do not match the announced digest are refused before commit.
    let mut lying = &b"other bytes!"[..];
    let err = registry
        .push_blob(
            "chunks/small",
            &Digest::of(b"what was announced"),
            12,
            &mut lying,
            None,
            &mut |_, _| {},
        )
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    let mut short = &b"short"[..];
    let err = registry
        .push_blob(
            "chunks/small",
            &Digest::of(b"short"),
            6,
            &mut short,
            None,
            &mut |_, _| {},
        )
        .unwrap_err();
    assert!(matches!(err, ImageError::SizeMismatch { .. }), "{err}");
}

#[test]
fn cross_repository_mount() {
    let server = RealRegistry::start();
    let client = client();
    let registry = client.registry(&server.address);
    let blob = b"shared base layer".to_vec();
    let digest = Digest::of(&blob);
    push_bytes(&registry, "base/image", &blob, None);
    let outcome = registry
        .push_blob(
            "app/image",
            &digest,
            blob.len() as u64,
            &mut MustNotRead,
            Some("base/image"),
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(
        outcome,
        BlobPushOutcome::Mounted {
            from: "base/image".into()
        }
    );
    assert_eq!(fetch(&registry, "app/image", &digest), blob);
    // A mount from a repository without the blob falls back to an upload.
    let other = b"not in base".to_vec();
    assert_eq!(
        push_bytes(&registry, "app/image", &other, Some("base/image")),
        BlobPushOutcome::Uploaded
    );
}

fn write_docker_config(dir: &Path, registry: &str, user: &str, password: &str) -> PathBuf {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    path
}

#[test]
fn htpasswd_basic_auth() {
    let server = RealRegistry::start_with_auth(Some(("alice", "s3cret")));
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_docker_config(dir.path(), &server.address, "alice", "s3cret");
    let config = RegistryConfig::new()
        .with_docker_config(&config_path)
        .unwrap();
    let client = client_with(config, UploadPolicy::default());
    let registry = client.registry(&server.address);
    let image = make_image(b"private");
    push_bytes(&registry, "private/app", &image.layer, None);
    push_bytes(&registry, "private/app", &image.config, None);
    registry
        .put_manifest(
            "private/app",
            "latest",
            &image.manifest,
            media_type::DOCKER_MANIFEST,
        )
        .unwrap();
    assert_eq!(
        registry
            .get_manifest("private/app", "latest")
            .unwrap()
            .bytes,
        image.manifest
    );

    // No credentials: 401 becomes Unauthorized, naming the registry.
    let anonymous = client_with(RegistryConfig::new(), UploadPolicy::default());
    match anonymous
        .registry(&server.address)
        .get_manifest("private/app", "latest")
    {
        Err(ImageError::Unauthorized { registry, message }) => {
            assert_eq!(registry, server.address);
            assert!(message.contains("private/app"), "{message}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // Wrong password: also Unauthorized, after one authenticated try.
    let bad_path = write_docker_config(dir.path(), &server.address, "alice", "wrong");
    let bad = client_with(
        RegistryConfig::new().with_docker_config(&bad_path).unwrap(),
        UploadPolicy::default(),
    );
    assert!(matches!(
        bad.registry(&server.address).fetch_blob(
            "private/app",
            &Digest::of(&image.layer),
            None,
            &mut Vec::new(),
            &mut |_, _| {}
        ),
        Err(ImageError::Unauthorized { .. })
    ));
}

// ---------------------------------------------------------------- scripted server

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

enum Reply {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Announces `announced` bytes, sends `body`, then closes the connection.
    Cut {
        status: u16,
        headers: Vec<(String, String)>,
        announced: usize,
        body: Vec<u8>,
    },
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
    Reply::Full {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.into(),
    }
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// A real HTTP/1.1 server on 127.0.0.1 answering from a script; every request is
/// recorded. One connection per request (`Connection: close`).
struct ScriptedServer {
    address: String,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedServer {
    fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let requests = requests.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = serve_one(stream, &requests, &*handler);
                }
            })
        };
        ScriptedServer {
            address,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .count()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_one(
    stream: TcpStream,
    requests: &Mutex<Vec<Request>>,
    handler: &Handler,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(()); // not HTTP (e.g. a TLS handshake): just close
    };
    if !version.starts_with("HTTP/1.") {
        return Ok(());
    }
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::io::copy(&mut (&mut reader).take(length as u64), &mut std::io::sink())?;
    let request = Request {
        method: method.to_string(),
        path: path.to_string(),
        headers,
    };
    let index = {
        let mut all = requests.lock().unwrap();
        all.push(request.clone());
        all.len() - 1
    };
    let mut stream = stream;
    let (status, headers, announced, body) = match handler(&request, index) {
        Reply::Full {
            status,
            headers,
            body,
        } => (status, headers, body.len(), body),
        Reply::Cut {
            status,
            headers,
            announced,
            body,
        } => (status, headers, announced, body),
    };
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    if method != "HEAD" || !headers.iter().any(|(k, _)| k == "Content-Length") {
        head.push_str(&format!("Content-Length: {announced}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(&body)?;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}

fn manifest_reply(manifest: &[u8]) -> Reply {
    reply(
        200,
        &[
            ("Content-Type", media_type::DOCKER_MANIFEST),
            ("Docker-Content-Digest", &Digest::of(manifest).to_string()),
        ],
        manifest,
    )
}

#[test]
fn bearer_token_flow_and_cache() {
    let image = make_image(b"bearer");
    let manifest = image.manifest.clone();
    let port = Arc::new(Mutex::new(String::new()));
    let address = port.clone();
    let server = ScriptedServer::start(move |request, _| {
        let realm = format!("http://{}/token", address.lock().unwrap());
        if request.path.starts_with("/token") {
            let creds = base64::engine::general_purpose::STANDARD.encode("bob:pw");
            let authed = request.header("authorization") == Some(&format!("Basic {creds}"));
            let scoped = request.path.contains("scope=repository:team/app:pull")
                && request.path.contains("service=fake-registry");
            return if authed && scoped {
                reply(
                    200,
                    &[],
                    r#"{"access_token": "tok-123", "expires_in": 300}"#,
                )
            } else {
                reply(401, &[], "bad credentials")
            };
        }
        if request.header("authorization") != Some("Bearer tok-123") {
            let challenge = format!(
                r#"Bearer realm="{realm}",service="fake-registry",scope="repository:team/app:pull""#
            );
            return reply(
                401,
                &[("WWW-Authenticate", &challenge)],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
        }
        if request.path == "/v2/team/app/manifests/v1" {
            manifest_reply(&manifest)
        } else {
            reply(404, &[], r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#)
        }
    });
    *port.lock().unwrap() = server.address.clone();
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_docker_config(dir.path(), &server.address, "bob", "pw");
    let client = client_with(
        RegistryConfig::new()
            .with_docker_config(&config_path)
            .unwrap(),
        UploadPolicy::default(),
    );
    let registry = client.registry(&server.address);
    for _ in 0..3 {
        let fetched = registry.get_manifest("team/app", "v1").unwrap();
        assert_eq!(fetched.bytes, image.manifest);
    }
    // One token for the three fetches; one 401 in all (to the first `GET /v2/`, which
    // taught the client to authenticate up front).
    assert_eq!(server.count("GET", "/token"), 1);
    let unauthenticated = server
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v2/") && r.header("authorization").is_none())
        .count();
    assert_eq!(unauthenticated, 1);
    assert!(matches!(
        registry.get_manifest("team/app", "missing"),
        Err(ImageError::ManifestUnknown { .. })
    ));

    // Without credentials the token server refuses: Unauthorized.
    let anonymous = client_with(RegistryConfig::new(), UploadPolicy::default());
    match anonymous
        .registry(&server.address)
        .get_manifest("team/app", "v1")
    {
        Err(ImageError::Unauthorized { message, .. }) => {
            assert!(message.contains("team/app"), "{message}")
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[test]
fn token_accepted_but_still_401_is_unauthorized() {
    let address = Arc::new(Mutex::new(String::new()));
    let realm_address = address.clone();
    let server = ScriptedServer::start(move |request, _| {
        if request.path.starts_with("/token") {
            return reply(200, &[], r#"{"token": "useless"}"#);
        }
        let challenge = format!(
            r#"Bearer realm="http://{}/token",service="s""#,
            realm_address.lock().unwrap()
        );
        reply(401, &[("WWW-Authenticate", &challenge)], "")
    });
    *address.lock().unwrap() = server.address.clone();
    let registry = client().registry(&server.address);
    let err = registry.get_manifest("a/b", "latest").unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    // The token obtained up front is refused: final, no loop.
    assert_eq!(server.count("GET", "/v2/a/b"), 1);
    assert_eq!(server.count("GET", "/token"), 1);
}

#[test]
fn retries_429_with_retry_after_then_succeeds() {
    let image = make_image(b"busy");
    let manifest = image.manifest.clone();
    let server = ScriptedServer::start(move |request, _| {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        if request.path == "/v2/" {
            return reply(200, &[], "{}");
        }
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            reply(
                429,
                &[("Retry-After", "1")],
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            )
        } else {
            manifest_reply(&manifest)
        }
    });
    let registry = client().registry(&server.address);
    let start = Instant::now();
    let fetched = registry.get_manifest("x/y", "latest").unwrap();
    assert_eq!(fetched.bytes, image.manifest);
    assert!(start.elapsed() >= Duration::from_millis(950));
    assert_eq!(server.count("GET", "/v2/x/y/manifests/latest"), 2);
}

#[test]
fn persistent_500_gives_registry_error_after_bounded_tries() {
    let server = ScriptedServer::start(|request, _| {
        if request.path == "/v2/" {
            return reply(200, &[], "{}");
        }
        reply(
            500,
            &[],
            r#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#,
        )
    });
    let registry = client().registry(&server.address);
    let digest = Digest::of(b"blob");
    match registry.fetch_blob("x/y", &digest, Some(4), &mut Vec::new(), &mut |_, _| {}) {
        Err(ImageError::Registry {
            registry: name,
            status,
            message,
        }) => {
            assert_eq!(name, server.address);
            assert_eq!(status, 500);
            assert!(message.contains("disk on fire"), "{message}");
            assert!(message.contains(&digest.to_string()), "{message}");
            assert!(message.contains("x/y"), "{message}");
        }
        other => panic!("expected Registry error, got {other:?}"),
    }
    assert_eq!(server.count("GET", "/v2/x/y/blobs/"), 3);
}

#[test]
fn transient_503_and_502_recover() {
    let blob = b"eventually".to_vec();
    let served = blob.clone();
    let server = ScriptedServer::start(move |request, _| {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        if request.path == "/v2/" {
            return reply(200, &[], "{}");
        }
        match CALLS.fetch_add(1, Ordering::SeqCst) {
            0 => reply(503, &[], "unavailable"),
            1 => reply(502, &[], "bad gateway"),
            _ => reply(200, &[], served.clone()),
        }
    });
    let registry = client().registry(&server.address);
    assert_eq!(fetch(&registry, "x/y", &Digest::of(&blob)), blob);
}

fn blob_data() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn connection_cut_mid_blob_resumes_with_range() {
    let blob = blob_data();
    let served = blob.clone();
    let server = ScriptedServer::start(move |request, _| {
        if request.path == "/v2/" {
            return reply(200, &[], "{}");
        }
        match request.header("range") {
            None => Reply::Cut {
                status: 200,
                headers: vec![],
                announced: served.len(),
                body: served[..100_000].to_vec(),
            },
            Some(range) => {
                let start: usize = range
                    .trim_start_matches("bytes=")
                    .trim_end_matches('-')
                    .parse()
                    .unwrap();
                let content_range = format!("bytes {start}-{}/{}", served.len() - 1, served.len());
                reply(
                    206,
                    &[("Content-Range", &content_range)],
                    served[start..].to_vec(),
                )
            }
        }
    });
    let registry = client().registry(&server.address);
    let digest = Digest::of(&blob);
    let mut out = Vec::new();
    registry
        .fetch_blob(
            "x/y",
            &digest,
            Some(blob.len() as u64),
            &mut out,
            &mut |_, _| {},
        )
        .unwrap();
    assert!(out == blob, "resumed blob differs");
    let ranges: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_string))
        .collect();
    assert_eq!(ranges.len(), 1);
    let resumed_at: usize = ranges[0]
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(resumed_at > 0 && resumed_at <= 100_000, "{resumed_at}");
}

#[test]
fn connection_cut_mid_blob_without_range_support_restarts() {
    let blob = blob_data();
    let served = blob.clone();
    let server = ScriptedServer::start(move |request, _| {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        if request.path == "/v2/" {
            return reply(200, &[], "{}");
        }
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::Cut {
                status: 200,
                headers: vec![],
                announced: served.len(),
                body: served[..123_457].to_vec(),
            }
        } else {
            // Ignores Range: the whole blob again.
            reply(200, &[], served.clone())
        }
    });
    let registry = client().registry(&server.address);
    let mut out = Vec::new();
    let mut last = 0;
    registry
        .fetch_blob(
            "x/y",
            &Digest::of(&blob),
            Some(blob.len() as u64),
            &mut out,
            &mut |current, _| {
                assert!(current >= last, "progress went backwards");
                last = current;
            },
        )
        .unwrap();
    assert!(out == blob, "restarted blob differs");
    assert_eq!(last, blob.len() as u64);
}

#[test]
fn connection_cut_every_time_gives_transport_error() {
    let blob = blob_data();
    let served = blob.clone();
    let server = ScriptedServer::start(move |request, _| {
        if request.path == "/v2/" {
            return reply(200, &[], "{}");
        }
        Reply::Cut {
            status: 200,
            headers: vec![],
            announced: served.len(),
            body: served[..10].to_vec(),
        }
    });
    let registry = client().registry(&server.address);
    let digest = Digest::of(&blob);
    match registry.fetch_blob("x/y", &digest, None, &mut Vec::new(), &mut |_, _| {}) {
        Err(ImageError::Transport { registry, message }) => {
            assert_eq!(registry, server.address);
            assert!(message.contains(&digest.to_string()), "{message}");
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert_eq!(server.count("GET", "/v2/x/y/blobs/"), 3);
}

#[test]
fn wrong_bytes_and_wrong_size_are_caught() {
    let server = ScriptedServer::start(|request, _| {
        if request.path == "/v2/" {
            return reply(200, &[], "{}");
        }
        if request.path.contains("/manifests/") {
            // Claims a digest its body does not have.
            return reply(
                200,
                &[
                    ("Content-Type", media_type::OCI_MANIFEST),
                    ("Docker-Content-Digest", &Digest::of(b"other").to_string()),
                ],
                r#"{"schemaVersion":2,"config":{},"layers":[]}"#,
            );
        }
        reply(200, &[], "evil bytes")
    });
    let registry = client().registry(&server.address);
    let wanted = Digest::of(b"good bytes");
    assert!(matches!(
        registry.fetch_blob("x/y", &wanted, None, &mut Vec::new(), &mut |_, _| {}),
        Err(ImageError::DigestMismatch { ref digest, .. }) if *digest == wanted
    ));
    assert!(matches!(
        registry.fetch_blob("x/y", &wanted, Some(4), &mut Vec::new(), &mut |_, _| {}),
        Err(ImageError::SizeMismatch {
            expected: 4,
            actual: 10,
            ..
        })
    ));
    assert!(matches!(
        registry.fetch_blob("x/y", &wanted, Some(100), &mut Vec::new(), &mut |_, _| {}),
        Err(ImageError::SizeMismatch { expected: 100, .. }) | Err(ImageError::Transport { .. })
    ));
    assert!(matches!(
        registry.get_manifest("x/y", "latest"),
        Err(ImageError::DigestMismatch { .. })
    ));
    assert!(matches!(
        registry.get_manifest("x/y", &wanted.to_string()),
        Err(ImageError::DigestMismatch { .. })
    ));
}

#[test]
fn nothing_listening_is_a_transport_error() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let registry = client().registry(&address);
    match registry.get_manifest("x/y", "latest") {
        Err(ImageError::Transport { registry, .. }) => assert_eq!(registry, address),
        other => panic!("expected Transport, got {other:?}"),
    }
}

#[test]
fn docker_hub_mirrors_tried_in_order() {
    let image = make_image(b"mirrored");
    let broken = ScriptedServer::start(|_, _| reply(500, &[], "mirror down"));
    let manifest = image.manifest.clone();
    let layer = image.layer.clone();
    let good = ScriptedServer::start(move |request, _| {
        if request.path == "/v2/library/busybox/manifests/latest" {
            manifest_reply(&manifest)
        } else if request.path.starts_with("/v2/library/busybox/blobs/") {
            reply(200, &[], layer.clone())
        } else {
            reply(404, &[], "")
        }
    });
    let config = RegistryConfig::new()
        .with_mirrors(&[
            format!("http://{}", broken.address),
            format!("http://{}/", good.address),
        ])
        .unwrap();
    let client = client_with(config, UploadPolicy::default());
    let hub = client.registry("index.docker.io");
    assert_eq!(hub.name(), "docker.io");
    let fetched = hub.get_manifest("library/busybox", "latest").unwrap();
    assert_eq!(fetched.bytes, image.manifest);
    assert_eq!(
        fetch(&hub, "library/busybox", &Digest::of(&image.layer)),
        image.layer
    );
    assert!(broken.count("GET", "/v2/library/busybox/manifests/latest") >= 1);
    assert_eq!(good.count("GET", "/v2/library/busybox/manifests/latest"), 1);
}

#[test]
fn tags_follow_link_pagination() {
    let server = ScriptedServer::start(|request, _| match request.path.as_str() {
        "/v2/" => reply(200, &[], "{}"),
        "/v2/x/y/tags/list" => reply(
            200,
            &[("Link", r#"</v2/x/y/tags/list?last=b&n=2>; rel="next""#)],
            r#"{"name":"x/y","tags":["a","b"]}"#,
        ),
        _ => reply(200, &[], r#"{"name":"x/y","tags":["c"]}"#),
    });
    let registry = client().registry(&server.address);
    assert_eq!(registry.list_tags("x/y").unwrap(), ["a", "b", "c"]);
}

#[test]
fn invalid_names_never_reach_the_network() {
    let registry = client().registry("127.0.0.1:1");
    assert!(matches!(
        registry.get_manifest("../etc", "latest"),
        Err(ImageError::InvalidReference { .. })
    ));
    assert!(matches!(
        registry.get_manifest("a/b", "x?y=1"),
        Err(ImageError::InvalidReference { .. })
    ));
}

#[test]
fn blob_redirect_is_followed_without_leaking_credentials() {
    let blob = b"stored elsewhere".to_vec();
    let served = blob.clone();
    let storage = ScriptedServer::start(move |_, _| reply(200, &[], served.clone()));
    let location = format!("http://{}/bucket/object?sig=1", storage.address);
    let server = ScriptedServer::start(move |request, _| {
        if request.header("authorization").is_none() {
            return reply(401, &[("WWW-Authenticate", r#"Basic realm="r""#)], "");
        }
        if request.path == "/v2/" {
            return reply(200, &[], "{}");
        }
        reply(307, &[("Location", &location)], "")
    });
    let client = client_with(
        RegistryConfig::new().with_credentials(
            &server.address,
            berth_image::registry::Credentials {
                username: "u".into(),
                password: "p".into(),
            },
        ),
        UploadPolicy::default(),
    );
    let registry = client.registry(&server.address);
    assert_eq!(fetch(&registry, "x/y", &Digest::of(&blob)), blob);
    let at_storage = storage.requests();
    assert_eq!(at_storage.len(), 1);
    assert_eq!(at_storage[0].path, "/bucket/object?sig=1");
    assert!(at_storage[0].header("authorization").is_none());
}

#[test]
fn refused_cached_token_is_refreshed_and_challenge_scope_added() {
    let image = make_image(b"rotating");
    let manifest = image.manifest.clone();
    let address = Arc::new(Mutex::new(String::new()));
    let realm_address = address.clone();
    let server = ScriptedServer::start(move |request, _| {
        static ISSUED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let realm = format!("http://{}/token", realm_address.lock().unwrap());
        if request.path.starts_with("/token") {
            // Each token is good for one request; the manifest also needs "extra".
            let n = ISSUED.fetch_add(1, Ordering::SeqCst);
            let extra = request.path.contains("scope=extra");
            return reply(200, &[], format!(r#"{{"token": "t{n}-{extra}"}}"#));
        }
        static USED: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let token = request
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::to_string);
        let fresh = token.as_ref().is_some_and(|t| {
            let mut used = USED.lock().unwrap();
            let ok = !used.contains(t) && t.ends_with("-true");
            used.push(t.clone());
            ok
        });
        if !fresh {
            let challenge =
                format!(r#"Bearer realm="{realm}",service="s",scope="repository:a/b:pull extra""#);
            return reply(401, &[("WWW-Authenticate", &challenge)], "");
        }
        manifest_reply(&manifest)
    });
    *address.lock().unwrap() = server.address.clone();
    let registry = client().registry(&server.address);
    for _ in 0..2 {
        assert_eq!(
            registry.get_manifest("a/b", "v1").unwrap().bytes,
            image.manifest
        );
    }
}

#[test]
fn chunked_push_to_scripted_server_sends_content_ranges() {
    let server = ScriptedServer::start(|request, _| {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/v2/") => reply(200, &[], "{}"),
            ("HEAD", _) => reply(404, &[], ""),
            ("POST", _) => reply(202, &[("Location", "/upload/1?_state=abc")], ""),
            ("PATCH", _) => reply(202, &[("Location", "/upload/1?_state=next")], ""),
            ("PUT", path) if path.starts_with("/upload/1?_state=next&digest=sha256:") => {
                reply(201, &[], "")
            }
            _ => reply(400, &[], "unexpected"),
        }
    });
    let client = client_with(
        RegistryConfig::new(),
        UploadPolicy {
            monolithic_max: 10,
            chunk_size: 10,
        },
    );
    let registry = client.registry(&server.address);
    let data = b"twenty-five bytes of data".to_vec();
    assert_eq!(
        push_bytes(&registry, "x/y", &data, None),
        BlobPushOutcome::Uploaded
    );
    let ranges: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.header("content-range").unwrap_or_default().to_string())
        .collect();
    assert_eq!(ranges, ["0-9", "10-19", "20-24"]);
}
