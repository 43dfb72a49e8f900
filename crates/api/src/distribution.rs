//! The image routes that move images in and out of the engine: pull
//! (`POST /images/create?fromImage=`), push, save (`GET /images/get`), load, and
//! `POST /auth`. Progress is streamed as Docker's JSON lines; an error before the
//! first line is an HTTP error, one after it an `{"errorDetail": …}` line, as dockerd
//! does.

use std::io::Write;
use std::sync::Arc;

use berth_engine::engine::Engine;

use base64::Engine as _;
use berth_image::pull::PullOptions;
use berth_image::push::PushOptions;
use berth_image::reference::Reference;
use berth_image::registry::progress::Message;
use berth_image::registry::{Credentials, RegistryClient, RegistryConfig};
use berth_image::Images;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::images::message;
use crate::server::{Request, Response};

/// The daemon's registry settings (`insecure-registries`, `registry-mirrors`,
/// `max-concurrent-downloads`, `max-concurrent-uploads`) and its shared client.
#[derive(Clone)]
pub struct RegistrySettings {
    pub config: RegistryConfig,
    pub client: RegistryClient,
    pub max_concurrent_downloads: usize,
    pub max_concurrent_uploads: usize,
}

impl RegistrySettings {
    pub fn new(
        config: RegistryConfig,
        max_concurrent_downloads: usize,
        max_concurrent_uploads: usize,
    ) -> Self {
        RegistrySettings {
            client: RegistryClient::new(config.clone()),
            config,
            max_concurrent_downloads: max_concurrent_downloads.max(1),
            max_concurrent_uploads: max_concurrent_uploads.max(1),
        }
    }

    /// The shared client, or one that also holds the request's credentials.
    fn client_for(&self, registry: &str, auth: Option<AuthConfig>) -> RegistryClient {
        match auth.and_then(AuthConfig::credentials) {
            Some(credentials) => {
                RegistryClient::new(self.config.clone().with_credentials(registry, credentials))
            }
            None => self.client.clone(),
        }
    }
}

/// `/info`'s `RegistryConfig`, as dockerd shows it: the insecure CIDRs (loopback
/// always), one `IndexConfigs` entry per insecure registry and Docker Hub's with its
/// mirrors, and the mirrors with a trailing slash.
pub fn registry_info(insecure: &[String], mirrors: &[String]) -> Value {
    let mirrors: Vec<String> = mirrors
        .iter()
        .map(|m| format!("{}/", m.trim_end_matches('/')))
        .collect();
    let mut cidrs = Vec::new();
    let mut indexes = serde_json::Map::new();
    for entry in insecure {
        let entry = entry
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        if entry.contains('/') {
            cidrs.push(entry.to_string());
        } else {
            indexes.insert(
                entry.to_string(),
                json!({"Name": entry, "Mirrors": [], "Secure": false, "Official": false}),
            );
        }
    }
    if !cidrs.iter().any(|c| c == "127.0.0.0/8") {
        cidrs.push("127.0.0.0/8".into());
    }
    indexes.insert(
        "docker.io".into(),
        json!({"Name": "docker.io", "Mirrors": mirrors, "Secure": true, "Official": true}),
    );
    json!({
        "AllowNondistributableArtifactsCIDRs": null,
        "AllowNondistributableArtifactsHostnames": null,
        "InsecureRegistryCIDRs": cidrs,
        "IndexConfigs": indexes,
        "Mirrors": mirrors,
    })
}

/// Docker's `AuthConfig` (the `X-Registry-Auth` header, the `/auth` body).
#[derive(Debug, Default, serde::Deserialize)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    serveraddress: String,
}

impl AuthConfig {
    fn credentials(self) -> Option<Credentials> {
        (!self.username.is_empty()).then_some(Credentials {
            username: self.username,
            password: self.password,
        })
    }
}

/// `X-Registry-Auth`: base64url JSON (the CLI pads it; other clients may not).
fn registry_auth(req: &Request) -> Result<Option<AuthConfig>, ApiError> {
    let Some(raw) = req.headers.get("x-registry-auth").filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let raw = raw.trim();
    let decoded = base64::engine::general_purpose::URL_SAFE
        .decode(raw)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(raw))
        .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Auth header: {e}")))?;
    if decoded.iter().all(|b| b.is_ascii_whitespace()) || decoded == b"{}" {
        return Ok(None);
    }
    serde_json::from_slice(&decoded)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Auth header: {e}")))
}

/// What a streaming job sends: a chunk of the body, or its failure.
type Item = Result<Bytes, ApiError>;

/// Runs `job` on a blocking thread and streams what it sends. If it fails before
/// sending anything the failure is the HTTP answer; later failures go through
/// `late_error` (a JSON error line for progress streams, nothing for archives).
async fn stream<F>(
    content_type: &'static str,
    late_error: fn(&ApiError) -> Option<Bytes>,
    job: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(&mpsc::Sender<Item>) -> Result<(), ApiError> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Item>(64);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = job(&tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let first = match rx.recv().await {
        Some(Err(e)) => return Err(e),
        other => other,
    };
    let (out, body) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut next = first;
        while let Some(item) = next {
            let chunk = match item {
                Ok(chunk) => Some(chunk),
                Err(e) => late_error(&e),
            };
            if let Some(chunk) = chunk {
                if out.send(chunk).await.is_err() {
                    return;
                }
            }
            next = rx.recv().await;
        }
    });
    Ok(Response::Stream {
        status: 200,
        content_type,
        body,
    })
}

fn json_error(e: &ApiError) -> Option<Bytes> {
    Some(message(json!({
        "errorDetail": {"message": e.message},
        "error": e.message,
    })))
}

fn send_line(tx: &mpsc::Sender<Item>, line: Value) {
    let _ = tx.blocking_send(Ok(message(line)));
}

/// `POST /images/create?fromImage=&tag=&platform=`: `docker pull`.
pub async fn pull(
    engine: &Arc<Engine>,
    images: &Arc<Images>,
    registry: &Arc<RegistrySettings>,
    req: &Request,
) -> Result<Response, ApiError> {
    let from = req.query.get("fromImage").cloned().unwrap_or_default();
    let tag = req.query.get("tag").cloned().unwrap_or_default();
    // `tag` overrides a tag in `fromImage`, as dockerd does; a digest pins it.
    let named = Reference::parse_named(&from)?;
    let parsed = if tag.is_empty() {
        Reference::parse(&from)?
    } else if tag.contains(':') {
        named.with_digest(&tag.parse::<berth_image::Digest>()?)
    } else {
        named.with_tag(&tag)?
    };
    let reference = parsed.to_string();
    let platform = match req.query.get("platform").filter(|p| !p.is_empty()) {
        Some(p) => Some(berth_image::model::Platform::parse(p)?),
        None => None,
    };
    let client = registry.client_for(parsed.domain(), registry_auth(req)?);
    let options = PullOptions {
        platform,
        max_concurrent_downloads: registry.max_concurrent_downloads,
    };
    // No tag and none in the name: `docker pull --all-tags`.
    let all_tags = tag.is_empty() && named.tag().is_none() && named.digest().is_none();
    let (images, engine) = (images.clone(), engine.clone());
    stream("application/json", json_error, move |tx| {
        let progress = |m: Message| send_line(tx, m.to_json());
        if all_tags {
            images.pull_all_tags(&client, &reference, &options, &progress)?;
        } else {
            images.pull(&client, &reference, &options, &progress)?;
        }
        image_event(&engine, "pull", &reference);
        Ok(())
    })
    .await
}

/// `POST /images/{name}/push?tag=`: `docker push`.
pub async fn push(
    engine: &Arc<Engine>,
    images: &Arc<Images>,
    registry: &Arc<RegistrySettings>,
    req: &Request,
    name: &str,
) -> Result<Response, ApiError> {
    let tag = req.query.get("tag").cloned().filter(|t| !t.is_empty());
    let named = Reference::parse_named(name)?;
    let client = registry.client_for(named.domain(), registry_auth(req)?);
    let options = PushOptions {
        max_concurrent_uploads: registry.max_concurrent_uploads,
    };
    let (images, name, engine) = (images.clone(), name.to_string(), engine.clone());
    stream("application/json", json_error, move |tx| {
        let result = images.push(&client, &name, tag.as_deref(), &options, &|m: Message| {
            send_line(tx, m.to_json())
        });
        match result {
            Ok(_) => {
                let pushed = match &tag {
                    Some(t) => format!("{name}:{t}"),
                    None => name.clone(),
                };
                image_event(&engine, "push", &pushed);
                Ok(())
            }
            Err(berth_image::ImageError::ImageNotFound(n)) => Err(ApiError::not_found(format!(
                "An image does not exist locally with the tag: {n}"
            ))),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// Sends what is written to it as body chunks of up to 256 KiB.
struct ChannelWriter<'a> {
    tx: &'a mpsc::Sender<Item>,
    buffer: Vec<u8>,
}

const CHUNK: usize = 256 << 10;

impl Write for ChannelWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

/// `GET /images/{name}/get` and `GET /images/get?names=…`: `docker save`.
pub async fn save(images: &Arc<Images>, names: Vec<String>) -> Result<Response, ApiError> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given"));
    }
    let images = images.clone();
    stream(
        "application/x-tar",
        |_| None,
        move |tx| {
            // Unknown names fail before the first byte, as a 404.
            for name in &names {
                images
                    .resolve(name)
                    .map_err(|_| ApiError::not_found(format!("No such image: {name}")))?;
            }
            let mut out = ChannelWriter {
                tx,
                buffer: Vec::with_capacity(CHUNK),
            };
            images.save(&names, &mut out)?;
            out.flush()
                .map_err(|e| ApiError::internal(format!("sending the archive: {e}")))
        },
    )
    .await
}

/// `POST /images/load?quiet=`: `docker load`.
pub async fn load(
    engine: &Arc<Engine>,
    images: &Arc<Images>,
    req: &Request,
) -> Result<Response, ApiError> {
    let mut upload = req
        .take_upload()
        .ok_or_else(|| ApiError::bad_request("load needs a request body"))?;
    let (images, engine) = (images.clone(), engine.clone());
    stream("application/json", json_error, move |tx| {
        let loaded = images.load(&mut upload)?;
        for image in loaded {
            let mut attrs = std::collections::BTreeMap::new();
            attrs.insert(
                "name".to_string(),
                image.repo_tags.first().cloned().unwrap_or_default(),
            );
            engine
                .events
                .publish("image", "load", &image.id.to_string(), attrs);
            if image.repo_tags.is_empty() {
                send_line(
                    tx,
                    json!({"stream": format!("Loaded image ID: {}\n", image.id)}),
                );
            }
            for tag in image.repo_tags {
                send_line(tx, json!({"stream": format!("Loaded image: {tag}\n")}));
            }
        }
        Ok(())
    })
    .await
}

/// A `pull` or `push` event: the reference is the actor, as dockerd reports it.
fn image_event(engine: &Engine, action: &str, reference: &str) {
    let mut attrs = std::collections::BTreeMap::new();
    attrs.insert("name".to_string(), reference.to_string());
    engine.events.publish("image", action, reference, attrs);
}

/// `POST /auth`: `docker login` checks the credentials against the registry.
pub async fn auth(registry: &Arc<RegistrySettings>, req: &Request) -> Result<Response, ApiError> {
    let config: AuthConfig = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("invalid auth configuration: {e}")))?;
    let address = config
        .serveraddress
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let host = match address.as_str() {
        "" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    };
    let client = registry.client_for(&host, Some(config));
    tokio::task::spawn_blocking(move || client.registry(&host).login())
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
        .map_err(|e| match e {
            berth_image::ImageError::Unauthorized { .. } => ApiError::new(401, e.to_string()),
            other => other.into(),
        })?;
    Ok(Response::Json(
        200,
        json!({"Status": "Login Succeeded", "IdentityToken": ""}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn request_with_auth(header: Option<&str>) -> Request {
        let mut headers = HashMap::new();
        if let Some(h) = header {
            headers.insert("x-registry-auth".to_string(), h.to_string());
        }
        Request {
            method: "POST".into(),
            path: "/images/create".into(),
            query: HashMap::new(),
            query_pairs: Vec::new(),
            api_version: (1, 50),
            headers,
            body: Bytes::new(),
            upload: std::sync::Mutex::new(None),
        }
    }

    #[test]
    fn registry_auth_header_in_the_encodings_clients_send() {
        let json = r#"{"username":"u","password":"p?>","serveraddress":"127.0.0.1:5000"}"#;
        for engine in [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD,
        ] {
            let header = engine.encode(json);
            let auth = registry_auth(&request_with_auth(Some(&header)))
                .unwrap()
                .unwrap();
            let credentials = auth.credentials().unwrap();
            assert_eq!(credentials.username, "u");
            assert_eq!(credentials.password, "p?>");
        }
        // What the CLI sends when it has no credentials.
        for empty in [None, Some(""), Some("e30="), Some("e30")] {
            let auth = registry_auth(&request_with_auth(empty)).unwrap();
            assert!(
                auth.and_then(AuthConfig::credentials).is_none(),
                "{empty:?}"
            );
        }
        let err = registry_auth(&request_with_auth(Some("!!!"))).unwrap_err();
        assert_eq!(err.status, 400);
    }

    #[test]
    fn registry_info_as_dockerd_shows_it() {
        let info = registry_info(
            &["10.1.0.0/16".into(), "http://myreg:5000/".into()],
            &["https://mirror.example".into()],
        );
        assert_eq!(
            info["InsecureRegistryCIDRs"],
            json!(["10.1.0.0/16", "127.0.0.0/8"])
        );
        assert_eq!(info["IndexConfigs"]["myreg:5000"]["Secure"], false);
        assert_eq!(
            info["IndexConfigs"]["docker.io"]["Mirrors"],
            json!(["https://mirror.example/"])
        );
        assert_eq!(info["Mirrors"], json!(["https://mirror.example/"]));
    }
}
