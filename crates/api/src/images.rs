//! `/images/...` routes over crates/image (through the engine for what concerns
//! containers: which images are in use).

use std::sync::Arc;

use berth_engine::engine::Engine;
use berth_image::store::{DeleteItem, ImageRecord, ImageUser};
use berth_image::{ImageError, Images, ImportOptions};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::distribution::{self, RegistrySettings};
use crate::error::ApiError;
use crate::server::{Request, Response};

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        match &e {
            ImageError::ImageNotFound(_) => ApiError::not_found(e.to_string()),
            ImageError::ManifestUnknown { .. } => ApiError::not_found(e.to_string()),
            ImageError::Registry { status: 404, .. } => ApiError::not_found(e.to_string()),
            ImageError::Unauthorized { .. } => ApiError::new(401, e.to_string()),
            ImageError::InvalidReference { .. }
            | ImageError::InvalidDigest(_)
            | ImageError::NoMatchingPlatform { .. } => ApiError::bad_request(e.to_string()),
            ImageError::Conflict(_) => ApiError::conflict(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

/// Run a blocking image call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
}

/// The routes under `/images`; `rest` is the path after `/images/` (names may hold
/// slashes: `/images/localhost:5000/app/json`).
pub async fn handle(
    engine: &Arc<Engine>,
    images: &Arc<Images>,
    registry: &Arc<RegistrySettings>,
    req: &Request,
    rest: &str,
) -> Result<Response, ApiError> {
    let m = req.method.as_str();
    match (m, rest) {
        ("GET", "json") => list(images, req).await,
        ("POST", "create") => create(engine, images, registry, req).await,
        ("POST", "load") => distribution::load(engine, images, req).await,
        ("GET", "get") => distribution::save(images, req.query_all("names")).await,
        ("GET", r) if r.ends_with("/get") => {
            let name = r.trim_end_matches("/get").to_string();
            distribution::save(images, vec![name]).await
        }
        ("POST", r) if r.ends_with("/push") => {
            let name = r.trim_end_matches("/push");
            distribution::push(engine, images, registry, req, name).await
        }
        ("POST", "prune") => prune(engine, images, req).await,
        ("DELETE", name) if !name.is_empty() => remove(engine, images, req, name).await,
        ("GET", r) if r.ends_with("/json") => {
            let name = r.trim_end_matches("/json").to_string();
            let i = images.clone();
            let v = blocking(move || inspect(&i, &name)).await?;
            Ok(Response::Json(200, v))
        }
        ("GET", r) if r.ends_with("/history") => {
            let name = r.trim_end_matches("/history").to_string();
            let i = images.clone();
            let v = blocking(move || history(&i, &name)).await?;
            Ok(Response::Json(200, v))
        }
        ("POST", r) if r.ends_with("/tag") => {
            let name = r.trim_end_matches("/tag").to_string();
            let repo = req.query.get("repo").cloned().unwrap_or_default();
            let tag = req.query.get("tag").cloned().unwrap_or_default();
            if repo.is_empty() {
                return Err(ApiError::bad_request(
                    "repository name must have at least one component",
                ));
            }
            let target = if tag.is_empty() {
                repo
            } else {
                format!("{repo}:{tag}")
            };
            let i = images.clone();
            let id = blocking(move || {
                i.store().tag(&name, &target)?;
                Ok((i.resolve(&target)?.id.to_string(), target))
            })
            .await?;
            image_event(engine, "tag", &id.0, &id.1);
            Ok(Response::Empty(201))
        }
        _ => Err(ApiError::not_found(format!(
            "page not found: {m} /images/{rest}"
        ))),
    }
}

/// An image event as dockerd sends it: the image ID (or reference) and its name.
fn image_event(engine: &Engine, action: &str, id: &str, name: &str) {
    let mut attrs = std::collections::BTreeMap::new();
    attrs.insert("name".to_string(), name.to_string());
    engine.events.publish("image", action, id, attrs);
}

fn secs(t: &Option<String>) -> i64 {
    t.as_deref()
        .and_then(berth_engine::container::parse_rfc3339_secs)
        .unwrap_or(0)
}

fn labels(images: &Images, r: &ImageRecord) -> Value {
    images
        .config(&r.id)
        .ok()
        .and_then(|c| c.config)
        .and_then(|c| c.labels)
        .map(|l| json!(l))
        .unwrap_or_else(|| json!({}))
}

pub(crate) fn summary(images: &Images, r: &ImageRecord) -> Value {
    json!({
        "Id": r.id.to_string(),
        "ParentId": r.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        "RepoTags": r.familiar_repo_tags(),
        "RepoDigests": r.familiar_repo_digests(),
        "Created": secs(&r.created),
        "Size": r.size,
        "VirtualSize": r.size,
        "SharedSize": -1,
        "Labels": labels(images, r),
        "Containers": -1,
    })
}

/// `filters` as Docker sends it: `{"key": ["v", …]}` or the old `{"key": {"v": true}}`.
pub fn parse_filters(req: &Request) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = req.query.get("filters").filter(|f| !f.is_empty()) else {
        return Ok(Vec::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
    let mut out = Vec::new();
    let Some(map) = v.as_object() else {
        return Err(ApiError::bad_request("invalid filter: not an object"));
    };
    for (k, vals) in map {
        match vals {
            Value::Array(a) => out.extend(
                a.iter()
                    .filter_map(|x| x.as_str())
                    .map(|x| (k.clone(), x.to_string())),
            ),
            Value::Object(o) => out.extend(o.keys().map(|x| (k.clone(), x.clone()))),
            _ => return Err(ApiError::bad_request(format!("invalid filter {k:?}"))),
        }
    }
    Ok(out)
}

/// Docker's reference filter: a glob over the familiar name (with and without tag).
fn reference_matches(pattern: &str, r: &ImageRecord) -> bool {
    r.familiar_repo_tags().iter().any(|t| {
        let repo = t.rsplit_once(':').map(|(n, _)| n).unwrap_or(t);
        glob(pattern, t) || glob(pattern, repo)
    })
}

fn glob(pattern: &str, s: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && m(p, &s[1..])),
            (Some(b'?'), Some(c)) if *c != b'/' => m(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    m(pattern.as_bytes(), s.as_bytes())
}

async fn list(images: &Arc<Images>, req: &Request) -> Result<Response, ApiError> {
    let filters = parse_filters(req)?;
    let all = req.query_bool("all");
    let i = images.clone();
    let out = blocking(move || {
        let mut list = i.list();
        list.sort_by_key(|r| std::cmp::Reverse(secs(&r.created)));
        let mut out = Vec::new();
        for r in &list {
            // Without `all`, intermediate images (untagged parents of others) are hidden.
            let mut keep = all
                || !r.repo_tags.is_empty()
                || !list.iter().any(|o| o.parent.as_ref() == Some(&r.id));
            for (k, v) in &filters {
                keep &= match k.as_str() {
                    "reference" => reference_matches(v, r),
                    "dangling" => (v == "true") == r.repo_tags.is_empty(),
                    "label" => {
                        let l = labels(&i, r);
                        match v.split_once('=') {
                            Some((lk, lv)) => l.get(lk).and_then(|x| x.as_str()) == Some(lv),
                            None => l.get(v).is_some(),
                        }
                    }
                    "before" | "since" => match i.resolve(v) {
                        Ok(other) => {
                            let (a, b) = (secs(&r.created), secs(&other.created));
                            if k == "before" {
                                a < b
                            } else {
                                a > b
                            }
                        }
                        Err(_) => false,
                    },
                    other => {
                        return Err(ApiError::bad_request(format!("invalid filter '{other}'")))
                    }
                };
            }
            if keep {
                out.push(summary(&i, r));
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Response::Json(200, Value::Array(out)))
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("No such image: {name}"))
}

fn resolve(images: &Images, name: &str) -> Result<ImageRecord, ApiError> {
    images.resolve(name).map_err(|e| match e {
        ImageError::ImageNotFound(_) | ImageError::InvalidReference { .. } => not_found(name),
        other => other.into(),
    })
}

/// `docker image inspect`'s shape.
pub fn inspect(images: &Images, name: &str) -> Result<Value, ApiError> {
    let r = resolve(images, name)?;
    let config = images.config(&r.id)?;
    let history_comment = config
        .history
        .last()
        .and_then(|h| h.comment.clone())
        .unwrap_or_default();
    let lowers: Vec<String> = r
        .chain_ids
        .iter()
        .rev()
        .map(|c| images.snapshots().layer_dir(c).display().to_string())
        .collect();
    let graph = match lowers.split_first() {
        Some((top, rest)) => {
            let mut data = serde_json::Map::new();
            data.insert("MergedDir".into(), json!(top.replace("/fs", "/merged")));
            data.insert("UpperDir".into(), json!(top));
            data.insert("WorkDir".into(), json!(top.replace("/fs", "/work")));
            if !rest.is_empty() {
                data.insert("LowerDir".into(), json!(rest.join(":")));
            }
            Value::Object(data)
        }
        None => json!({}),
    };
    Ok(json!({
        "Id": r.id.to_string(),
        "RepoTags": r.familiar_repo_tags(),
        "RepoDigests": r.familiar_repo_digests(),
        "Parent": r.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        "Comment": history_comment,
        "Created": config.created.clone().unwrap_or_default(),
        "DockerVersion": config.other.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": config.author.clone().unwrap_or_default(),
        "Config": config.config.clone().map(|c| json!(c)).unwrap_or(Value::Null),
        "Architecture": config.architecture,
        "Variant": config.variant,
        "Os": config.os,
        "Size": r.size,
        "VirtualSize": r.size,
        "GraphDriver": {"Name": "overlay2", "Data": graph},
        "RootFS": {
            "Type": "layers",
            "Layers": r.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        },
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }))
}

fn history(images: &Images, name: &str) -> Result<Value, ApiError> {
    let r = resolve(images, name)?;
    let config = images.config(&r.id)?;
    let mut out = Vec::new();
    let mut layer = r.chain_ids.len();
    let n = config.history.len();
    for (i, h) in config.history.iter().enumerate().rev() {
        let empty = h.empty_layer.unwrap_or(false);
        let size = if empty || layer == 0 {
            0
        } else {
            layer -= 1;
            images
                .snapshots()
                .layer_usage(&r.chain_ids[layer])
                .map(|u| u.size)
                .unwrap_or(0)
        };
        out.push(json!({
            "Id": if i == n - 1 { r.id.to_string() } else { "<missing>".to_string() },
            "Created": secs(&h.created),
            "CreatedBy": h.created_by.clone().unwrap_or_default(),
            "Tags": if i == n - 1 { json!(r.familiar_repo_tags()) } else { Value::Null },
            "Size": size,
            "Comment": h.comment.clone().unwrap_or_default(),
        }));
    }
    Ok(Value::Array(out))
}

fn users(engine: &Engine) -> Result<Vec<ImageUser>, ApiError> {
    Ok(engine
        .list()?
        .into_iter()
        .filter_map(|c| {
            Some(ImageUser {
                image_id: c.image.parse().ok()?,
                running: c.state.running,
                container_id: c.id,
            })
        })
        .collect())
}

async fn remove(
    engine: &Arc<Engine>,
    images: &Arc<Images>,
    req: &Request,
    name: &str,
) -> Result<Response, ApiError> {
    let force = req.query_bool("force");
    let prune = !req.query_bool("noprune");
    let (e, i, name) = (engine.clone(), images.clone(), name.to_string());
    let items = blocking(move || {
        let users = users(&e)?;
        i.remove(&name, force, &users, prune)
            .map_err(|err| match err {
                ImageError::ImageNotFound(_) => not_found(&name),
                other => other.into(),
            })
    })
    .await?;
    let out: Vec<Value> = items
        .into_iter()
        .map(|item| match item {
            DeleteItem::Untagged(n) => {
                image_event(engine, "untag", &n, &n);
                json!({ "Untagged": n })
            }
            DeleteItem::Deleted(d) => {
                image_event(engine, "delete", &d.to_string(), &d.to_string());
                json!({ "Deleted": d.to_string() })
            }
        })
        .collect();
    Ok(Response::Json(200, Value::Array(out)))
}

/// `POST /images/prune`: unused dangling images, or every unused image with
/// `dangling=false` (`-a`); filters `until` and `label`. The space reclaimed is that
/// of the blobs and unpacked layers that went.
async fn prune(
    engine: &Arc<Engine>,
    images: &Arc<Images>,
    req: &Request,
) -> Result<Response, ApiError> {
    let mut dangling_only = true;
    let mut until = None;
    let mut label_filters = Vec::new();
    for (k, v) in parse_filters(req)? {
        match k.as_str() {
            "dangling" => {
                dangling_only = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "invalid filter 'dangling={v}'"
                        )))
                    }
                }
            }
            "until" => until = Some(crate::containers::parse_until(&v)?),
            "label" | "label!" => label_filters.push((k == "label!", v)),
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    let (e, i) = (engine.clone(), images.clone());
    let (deleted, reclaimed) = blocking(move || {
        let users = users(&e)?;
        // Layer sizes before, to count those the collection removes.
        let layer_sizes: std::collections::HashMap<String, u64> = i
            .snapshots()
            .layers()?
            .into_iter()
            .map(|c| {
                let size = crate::system::disk_bytes(&i.snapshots().layer_dir(&c));
                (c.to_string(), size)
            })
            .collect();
        let mut deleted = Vec::new();
        for r in i.list() {
            if users.iter().any(|u| u.image_id == r.id) {
                continue;
            }
            if dangling_only && !r.repo_tags.is_empty() {
                continue;
            }
            if until.is_some_and(|u| secs(&r.created) >= u) {
                continue;
            }
            let image_labels = labels(&i, &r);
            let label_ok = label_filters.iter().all(|(negate, l)| {
                let has = match l.split_once('=') {
                    Some((k, v)) => image_labels.get(k).and_then(|x| x.as_str()) == Some(v),
                    None => image_labels.get(l).is_some(),
                };
                has != *negate
            });
            if !label_ok {
                continue;
            }
            if let Ok(items) = i.remove(&r.id.to_string(), !dangling_only, &users, false) {
                deleted.extend(items);
            }
        }
        let report = i.gc()?;
        let layers: u64 = report
            .removed_layers
            .iter()
            .filter_map(|c| layer_sizes.get(&c.to_string()))
            .sum();
        Ok((deleted, report.reclaimed + layers))
    })
    .await?;
    let list: Vec<Value> = deleted
        .into_iter()
        .map(|item| match item {
            DeleteItem::Untagged(n) => json!({ "Untagged": n }),
            DeleteItem::Deleted(d) => json!({ "Deleted": d.to_string() }),
        })
        .collect();
    Ok(Response::Json(
        200,
        json!({"ImagesDeleted": if list.is_empty() { Value::Null } else { Value::Array(list) }, "SpaceReclaimed": reclaimed}),
    ))
}

/// One line of Docker's JSON progress stream.
pub fn message(v: Value) -> Bytes {
    let mut s = v.to_string();
    s.push_str("\r\n");
    Bytes::from(s)
}

async fn create(
    engine: &Arc<Engine>,
    images: &Arc<Images>,
    registry: &Arc<RegistrySettings>,
    req: &Request,
) -> Result<Response, ApiError> {
    if req.query.get("fromSrc").is_some_and(|s| !s.is_empty()) {
        return import(engine, images, req).await;
    }
    if req.query.get("fromImage").is_some_and(|s| !s.is_empty()) {
        return distribution::pull(engine, images, registry, req).await;
    }
    Err(ApiError::bad_request("fromImage or fromSrc is required"))
}

async fn import(
    engine: &Engine,
    images: &Arc<Images>,
    req: &Request,
) -> Result<Response, ApiError> {
    let src = req.query.get("fromSrc").cloned().unwrap_or_default();
    if src != "-" {
        return Err(ApiError::bad_request(format!(
            "import from {src:?}: only an uploaded tarball (fromSrc=-) is supported"
        )));
    }
    let repo = req.query.get("repo").cloned().unwrap_or_default();
    let tag = req.query.get("tag").cloned().unwrap_or_default();
    let reference = match (repo.is_empty(), tag.is_empty()) {
        (true, _) => None,
        (false, true) => Some(repo),
        (false, false) => Some(format!("{repo}:{tag}")),
    };
    if let Some(r) = &reference {
        berth_image::reference::Reference::parse(r)?;
    }
    let changes = req.query_all("changes");
    let config = berth_engine::changes::apply(&Default::default(), &changes)
        .map_err(ApiError::bad_request)?;
    let platform = match req.query.get("platform").filter(|p| !p.is_empty()) {
        Some(p) => Some(berth_image::model::Platform::parse(p)?),
        None => None,
    };
    let opts = ImportOptions {
        reference,
        config: Some(config),
        message: req.query.get("message").filter(|m| !m.is_empty()).cloned(),
        source: Some(src),
        platform,
    };
    let mut upload = req
        .take_upload()
        .ok_or_else(|| ApiError::bad_request("import needs a request body"))?;
    let i = images.clone();
    let record = blocking(move || Ok(i.import(&mut upload, &opts)?)).await?;
    let name = record.repo_tags.first().cloned().unwrap_or_default();
    image_event(engine, "import", &record.id.to_string(), &name);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let _ = tx.try_send(message(json!({"status": record.id.to_string()})));
    Ok(Response::Stream {
        status: 200,
        content_type: "application/json",
        body: rx,
    })
}
