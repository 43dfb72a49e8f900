//! `/containers/...` routes over the engine.

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use berth_engine::container::Container;
use berth_engine::engine::{signal_number, Engine, EngineError, WaitCondition};
use berth_engine::types::{ContainerConfig, HostConfig};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::ApiError;
use crate::server::{Request, Response};

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => ApiError::not_found(m),
            EngineError::Conflict(m) => ApiError::conflict(m),
            EngineError::Invalid(m) => ApiError::bad_request(m),
            EngineError::Forbidden(m) => ApiError::new(403, m),
            EngineError::NotModified => ApiError::new(304, ""),
            EngineError::Internal(m) => ApiError::internal(m),
        }
    }
}

/// Run a blocking engine call off the async threads.
/// `h` and `w` of a resize request (container or exec).
pub(crate) fn terminal_size(req: &Request) -> Result<(u16, u16), ApiError> {
    let dim = |k: &str| -> Result<u16, ApiError> {
        req.query
            .get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::bad_request(format!("invalid or missing {k}")))
    };
    Ok((dim("h")?, dim("w")?))
}

/// `since`/`until` of a logs request in nanoseconds (0 means unset).
fn log_bound(req: &Request, key: &str) -> Result<Option<i128>, ApiError> {
    let Some(v) = req.query.get(key).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let total = crate::timestamp::nanos(v)
        .ok_or_else(|| ApiError::bad_request(format!("invalid value for {key}: {v:?}")))?;
    Ok((total != 0).then_some(total))
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
        .map_err(ApiError::from)
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(flatten)]
    config: ContainerConfig,
    #[serde(rename = "HostConfig", default)]
    host_config: HostConfig,
    #[serde(rename = "NetworkingConfig", default)]
    networking_config: Option<Value>,
}

pub async fn handle(
    engine: &Arc<Engine>,
    req: &Request,
    parts: &[&str],
) -> Result<Response, ApiError> {
    let m = req.method.as_str();
    match (m, parts) {
        ("POST", ["create"]) => create(engine, req).await,
        ("GET", ["json"]) => list(engine, req).await,
        ("POST", ["prune"]) => prune(engine, req).await,
        ("GET", [id, "json"]) => {
            let (e, id) = (engine.clone(), id.to_string());
            let c = blocking(move || e.get(&id)).await?;
            Ok(Response::Json(200, c.inspect()))
        }
        ("POST", [id, "start"]) => {
            let (e, id) = (engine.clone(), id.to_string());
            blocking(move || e.start(&id)).await?;
            Ok(Response::Empty(204))
        }
        ("POST", [id, "stop"]) => {
            let (e, id) = (engine.clone(), id.to_string());
            let t = req.query.get("t").and_then(|t| t.parse::<i64>().ok());
            blocking(move || e.stop(&id, t)).await?;
            Ok(Response::Empty(204))
        }
        ("POST", [id, "restart"]) => {
            let (e, id) = (engine.clone(), id.to_string());
            let t = req.query.get("t").and_then(|t| t.parse::<i64>().ok());
            blocking(move || {
                match e.stop(&id, t) {
                    Ok(()) | Err(EngineError::NotModified) => {}
                    Err(err) => return Err(err),
                }
                e.start(&id)
            })
            .await?;
            Ok(Response::Empty(204))
        }
        ("POST", [id, "kill"]) => {
            let sig = match req.query.get("signal").map(String::as_str) {
                None | Some("") => libc::SIGKILL,
                Some(s) => signal_number(s)
                    .ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {s}")))?,
            };
            let (e, id) = (engine.clone(), id.to_string());
            blocking(move || e.kill(&id, sig)).await?;
            Ok(Response::Empty(204))
        }
        ("POST", [id, "wait"]) => {
            let cond =
                WaitCondition::parse(req.query.get("condition").map(String::as_str).unwrap_or(""))?;
            // Register the wait before answering: the client sends start only once it
            // has the headers, and the exit that follows must be counted. An unknown
            // container is a 404 here, not a stream.
            let (registered_tx, registered_rx) = tokio::sync::oneshot::channel();
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let (e, key) = (engine.clone(), id.to_string());
            tokio::task::spawn_blocking(move || {
                let waiter = match e.waiter(&key, cond) {
                    Ok(w) => {
                        let _ = registered_tx.send(Ok(()));
                        w
                    }
                    Err(err) => {
                        let _ = registered_tx.send(Err(err));
                        return;
                    }
                };
                let body = match waiter.wait() {
                    Ok(code) => json!({"StatusCode": code, "Error": null}),
                    Err(err) => json!({"StatusCode": -1, "Error": {"Message": err.to_string()}}),
                };
                let mut line = body.to_string();
                line.push('\n');
                let _ = tx.blocking_send(Bytes::from(line));
            });
            registered_rx
                .await
                .map_err(|_| ApiError::internal("wait task failed"))??;
            Ok(Response::Stream {
                status: 200,
                content_type: "application/json",
                body: rx,
            })
        }
        ("DELETE", [id]) => {
            let (force, volumes) = (req.query_bool("force"), req.query_bool("v"));
            let (e, id) = (engine.clone(), id.to_string());
            blocking(move || e.remove_with_volumes(&id, force, volumes)).await?;
            Ok(Response::Empty(204))
        }
        ("GET", [id, "logs"]) => logs(engine, req, id).await,
        ("POST", [id, "attach"]) => attach(engine, req, id).await,
        ("POST", [id, "exec"]) => crate::exec::create(engine, req, id).await,
        ("POST", [id, "resize"]) => {
            let (h, w) = terminal_size(req)?;
            let (e, id) = (engine.clone(), id.to_string());
            blocking(move || e.resize(&id, h, w)).await?;
            Ok(Response::Empty(200))
        }
        (
            _,
            [_, "pause" | "unpause" | "rename" | "update" | "top" | "stats" | "changes" | "export"
            | "archive"],
        ) => match crate::container_ops::handle(engine, req, parts).await {
            Some(r) => r,
            None => Err(ApiError::not_found(format!(
                "page not found: {} /containers/{}",
                m,
                parts.join("/")
            ))),
        },
        _ => Err(ApiError::not_found(format!(
            "page not found: {} /containers/{}",
            m,
            parts.join("/")
        ))),
    }
}

async fn create(engine: &Arc<Engine>, req: &Request) -> Result<Response, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(&req.body);
    let body: CreateBody = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path.is_empty() || path == "." {
            ApiError::bad_request(format!("invalid JSON: {}", e.inner()))
        } else {
            ApiError::bad_request(format!("invalid JSON at {path}: {}", e.inner()))
        }
    })?;
    let name = req.query.get("name").filter(|n| !n.is_empty()).cloned();
    let e = engine.clone();
    let c = blocking(move || {
        e.create_full(
            name.as_deref(),
            body.config,
            body.host_config,
            body.networking_config.as_ref(),
        )
    })
    .await?;
    Ok(Response::Json(201, json!({"Id": c.id, "Warnings": []})))
}

/// One row of `GET /containers/json`, in the field order of Docker's `Summary`,
/// serialized straight from the record: a thousand rows without a JSON tree first.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListEntry<'a> {
    id: &'a str,
    names: [&'a str; 1],
    image: &'a str,
    #[serde(rename = "ImageID")]
    image_id: &'a str,
    command: String,
    created: i64,
    ports: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<u64>,
    /// Sorted, as Go writes a map.
    labels: std::collections::BTreeMap<&'a str, &'a str>,
    state: &'a str,
    status: String,
    host_config: ListHostConfig<'a>,
    network_settings: ListNetworks,
    mounts: Value,
}

#[derive(serde::Serialize)]
pub(crate) struct ListHostConfig<'a> {
    #[serde(rename = "NetworkMode")]
    network_mode: &'a str,
}

#[derive(serde::Serialize)]
pub(crate) struct ListNetworks {
    #[serde(rename = "Networks")]
    networks: Value,
}

pub(crate) fn list_entry(c: &Container, now: i64) -> ListEntry<'_> {
    let mut command = c.path.clone();
    for a in &c.args {
        command.push(' ');
        if a.contains(' ') {
            command.push_str(&format!("{a:?}"));
        } else {
            command.push_str(a);
        }
    }
    ListEntry {
        id: &c.id,
        names: [&c.name],
        image: &c.config.image,
        image_id: &c.image,
        command,
        created: berth_engine::container::parse_rfc3339_secs(&c.created).unwrap_or(0),
        ports: berth_engine::net::ps_ports(c),
        size_rw: None,
        size_root_fs: None,
        labels: c
            .config
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        state: &c.state.status,
        status: c.status_text(now),
        host_config: ListHostConfig {
            network_mode: if c.host_config.network_mode.is_empty() {
                "default"
            } else {
                &c.host_config.network_mode
            },
        },
        network_settings: ListNetworks {
            networks: berth_engine::net::ps_networks(c, None),
        },
        mounts: c.mount_points(),
    }
}

async fn list(engine: &Arc<Engine>, req: &Request) -> Result<Response, ApiError> {
    let all = req.query_bool("all");
    let limit = req
        .query
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .unwrap_or(-1);
    let filters = crate::images::parse_filters(req)?;
    for (k, _) in &filters {
        if !LIST_FILTERS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    let e = engine.clone();
    let containers = blocking(move || e.list_shared()).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let with_size = req.query_bool("size");
    let image_sizes: std::collections::HashMap<String, u64> = if with_size {
        let e = engine.clone();
        blocking(move || Ok(e.image_sizes())).await?
    } else {
        Default::default()
    };
    // A status filter shows stopped containers without --all, as in Docker.
    let any_status = filters.iter().any(|(k, _)| k == "status" || k == "exited");
    let mut out: Vec<ListEntry> = Vec::new();
    for c in &containers {
        if !(all || limit > 0 || any_status || c.state.running || c.state.restarting) {
            continue;
        }
        if !matches_filters(c, &filters, &containers)? {
            continue;
        }
        let mut entry = list_entry(c, now);
        if with_size {
            // SizeRw: the container's own writes; SizeRootFs adds its image's layers.
            let rw = if c.rootfs.upper_dir.is_empty() {
                0
            } else {
                crate::system::disk_bytes(std::path::Path::new(&c.rootfs.upper_dir))
            };
            let image = image_sizes.get(&c.image).copied().unwrap_or(0);
            entry.size_rw = Some(rw);
            entry.size_root_fs = Some(rw + image);
        }
        out.push(entry);
    }
    if limit > 0 {
        out.truncate(limit as usize);
    }
    Response::json_of(200, &out)
}

const LIST_FILTERS: &[&str] = &[
    "id", "name", "label", "status", "ancestor", "exited", "before", "since", "health", "volume",
    "network", "publish", "expose", "is-task",
];

/// Docker's rule: values of one key are ORed, keys are ANDed.
fn matches_filters(
    c: &Container,
    filters: &[(String, String)],
    all: &[Arc<Container>],
) -> Result<bool, ApiError> {
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.dedup();
    for key in keys {
        let mut any = false;
        for (_, v) in filters.iter().filter(|(k, _)| k == key) {
            if matches_filter(c, key, v, all)? {
                any = true;
                break;
            }
        }
        if !any {
            return Ok(false);
        }
    }
    Ok(true)
}

fn created_secs(c: &Container) -> i64 {
    berth_engine::container::parse_rfc3339_secs(&c.created).unwrap_or(0)
}

fn matches_filter(
    c: &Container,
    key: &str,
    v: &str,
    all: &[Arc<Container>],
) -> Result<bool, ApiError> {
    let find = |name: &str| {
        all.iter()
            .find(|o| {
                o.id == name || o.name.trim_start_matches('/') == name.trim_start_matches('/')
            })
            .or_else(|| all.iter().find(|o| o.id.starts_with(name)))
            .ok_or_else(|| ApiError::not_found(format!("No such container: {name}")))
    };
    Ok(match key {
        "id" => c.id.starts_with(v),
        // A substring of the name, as Docker matches it (a regexp there).
        "name" => {
            let pattern = v.trim_start_matches('^').trim_start_matches('/');
            let name = c.name.trim_start_matches('/');
            if let Some(exact) = pattern.strip_suffix('$') {
                name == exact
                    || (v.starts_with('^') && name.starts_with(exact) && name.len() == exact.len())
            } else if v.starts_with('^') {
                name.starts_with(pattern)
            } else {
                name.contains(pattern)
            }
        }
        "label" => match v.split_once('=') {
            Some((k, val)) => c.config.labels.get(k).map(String::as_str) == Some(val),
            None => c.config.labels.contains_key(v),
        },
        "status" => {
            if ![
                "created",
                "restarting",
                "running",
                "removing",
                "paused",
                "exited",
                "dead",
            ]
            .contains(&v)
            {
                return Err(ApiError::bad_request(format!(
                    "invalid filter 'status={v}'"
                )));
            }
            let status = if c.state.paused {
                "paused"
            } else {
                c.state.status.as_str()
            };
            status == v
        }
        "exited" => {
            let code: i32 = v
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid filter 'exited={v}'")))?;
            c.state.status == "exited" && c.state.exit_code == code
        }
        "ancestor" => {
            let image = c.config.image.as_str();
            let with_latest = |s: &str| {
                if s.rsplit('/').next().is_some_and(|last| last.contains(':')) || s.contains('@') {
                    s.to_string()
                } else {
                    format!("{s}:latest")
                }
            };
            image == v
                || with_latest(image) == with_latest(v)
                || c.image == v
                || c.image
                    .trim_start_matches("sha256:")
                    .starts_with(v.trim_start_matches("sha256:"))
        }
        "before" => created_secs(c) < created_secs(find(v)?) && c.id != find(v)?.id,
        "since" => created_secs(c) > created_secs(find(v)?) && c.id != find(v)?.id,
        "health" => {
            let status = c
                .state
                .health
                .as_ref()
                .and_then(|h| h.get("Status"))
                .and_then(Value::as_str)
                .unwrap_or("none");
            status == v
        }
        // Features that do not exist here yet match nothing but their absence.
        "is-task" => v == "false",
        _ => false,
    })
}

/// `POST /containers/prune`: removes every stopped container (filters: until, label).
async fn prune(engine: &Arc<Engine>, req: &Request) -> Result<Response, ApiError> {
    let filters = crate::images::parse_filters(req)?;
    let mut until = None;
    let mut labels = Vec::new();
    for (k, v) in filters {
        match k.as_str() {
            "until" => until = Some(parse_until(&v)?),
            "label" | "label!" => labels.push((k == "label!", v)),
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    let e = engine.clone();
    let (deleted, reclaimed) = blocking(move || {
        let mut deleted = Vec::new();
        let mut reclaimed = 0u64;
        for c in e.list()? {
            if c.state.running || c.state.restarting || c.state.paused {
                continue;
            }
            if until.is_some_and(|u| created_secs(&c) >= u) {
                continue;
            }
            let label_ok = labels.iter().all(|(negate, l)| {
                let has = match l.split_once('=') {
                    Some((k, v)) => c.config.labels.get(k).map(String::as_str) == Some(v),
                    None => c.config.labels.contains_key(l),
                };
                has != *negate
            });
            if !label_ok {
                continue;
            }
            // The writable layer is what removing the container frees.
            let size = e.size_rw(&c);
            if e.remove(&c.id, false).is_ok() {
                reclaimed += size;
                deleted.push(c.id);
            }
        }
        Ok((deleted, reclaimed))
    })
    .await?;
    Ok(Response::Json(
        200,
        json!({"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}

/// `until` as Docker takes it: a Unix time, an RFC 3339 time, or a duration ago (`10m`).
pub(crate) fn parse_until(v: &str) -> Result<i64, ApiError> {
    if let Some(n) = crate::timestamp::nanos(v) {
        return Ok((n / 1_000_000_000) as i64);
    }
    let now = (crate::timestamp::now_nanos() / 1_000_000_000) as i64;
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid filter 'until={v}'")))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(ApiError::bad_request(format!("invalid filter 'until={v}'"))),
    };
    Ok(now - secs as i64)
}

/// Docker's stdcopy frame header: stream byte, three zeros, big-endian length.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[derive(Deserialize)]
struct LogLine {
    log: String,
    stream: String,
    time: String,
}

async fn logs(engine: &Arc<Engine>, req: &Request, id: &str) -> Result<Response, ApiError> {
    let (e, key) = (engine.clone(), id.to_string());
    let c = blocking(move || e.get(&key)).await?;
    let want_out = req.query_bool("stdout");
    let want_err = req.query_bool("stderr");
    if !want_out && !want_err {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let follow = req.query_bool("follow");
    let timestamps = req.query_bool("timestamps");
    let tail: Option<usize> = req.query.get("tail").and_then(|t| t.parse().ok());
    let tty = c.config.tty;
    let path = c.log_path.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let engine = engine.clone();
    let id = c.id.clone();
    let since = log_bound(req, "since")?;
    let until = log_bound(req, "until")?;
    tokio::task::spawn_blocking(move || {
        let render = |line: &LogLine| -> Option<Vec<u8>> {
            let is_err = line.stream == "stderr";
            if (is_err && !want_err) || (!is_err && !want_out) {
                return None;
            }
            if since.is_some() || until.is_some() {
                let at = crate::timestamp::nanos(&line.time)?;
                if since.is_some_and(|s| at < s) || until.is_some_and(|u| at > u) {
                    return None;
                }
            }
            let text = if timestamps {
                format!("{} {}", line.time, line.log)
            } else {
                line.log.clone()
            };
            Some(if tty {
                text.into_bytes()
            } else {
                frame(if is_err { 2 } else { 1 }, text.as_bytes())
            })
        };
        // The file is opened once and read from that handle to the container's end:
        // a `docker rm` right after the exit (docker-py's `run` removes before it
        // reads the stream) must not take the lines this follower has not sent yet.
        let mut reader = match std::fs::File::open(&path) {
            Ok(f) => Some(std::io::BufReader::new(f)),
            Err(_) if !follow => return,
            Err(_) => None, // the shim makes it as it starts
        };
        let mut send = |line: &str| -> bool {
            match serde_json::from_str::<LogLine>(line) {
                Ok(line) => match render(&line) {
                    Some(b) => tx.blocking_send(Bytes::from(b)).is_ok(),
                    None => true,
                },
                Err(_) => true,
            }
        };
        let mut pos = 0u64;
        if let Some(r) = reader.as_mut() {
            let mut all = String::new();
            if r.read_to_string(&mut all).is_err() {
                return;
            }
            // A partial last line stays for the follower to complete.
            let whole = all.rfind('\n').map(|i| i + 1).unwrap_or(0);
            let lines: Vec<&str> = all[..whole].lines().collect();
            let start = tail.map(|n| lines.len().saturating_sub(n)).unwrap_or(0);
            for l in &lines[start..] {
                if !send(l) {
                    return;
                }
            }
            if !follow {
                return;
            }
            if r.seek(SeekFrom::Start(whole as u64)).is_err() {
                return;
            }
            pos = whole as u64;
        }
        let mut partial = String::new();
        loop {
            let running = engine.get(&id).map(|c| c.state.running).unwrap_or(false);
            if reader.is_none() {
                reader = std::fs::File::open(&path).ok().map(std::io::BufReader::new);
            }
            if let Some(r) = reader.as_mut() {
                if !drain(r, &mut partial, &mut pos, &mut send) {
                    return;
                }
                match rotation(r.get_ref(), path.as_ref(), pos) {
                    Rotation::None => {}
                    Rotation::Truncated => {
                        if r.seek(SeekFrom::Start(0)).is_err() {
                            return;
                        }
                        pos = 0;
                        partial.clear();
                        continue;
                    }
                    Rotation::Renamed => {
                        // What the shim wrote before its rename, then the new file.
                        if !drain(r, &mut partial, &mut pos, &mut send) {
                            return;
                        }
                        reader = None;
                        pos = 0;
                        partial.clear();
                        continue;
                    }
                }
            }
            if !running || tx.is_closed() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok(Response::Stream {
        status: 200,
        content_type,
        body: rx,
    })
}

/// Send the whole lines `r` holds past `pos`, keeping a partial last one in
/// `partial`; false once the client has gone.
fn drain(
    r: &mut std::io::BufReader<std::fs::File>,
    partial: &mut String,
    pos: &mut u64,
    send: &mut dyn FnMut(&str) -> bool,
) -> bool {
    loop {
        match r.read_line(partial) {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                *pos += n as u64;
                if partial.ends_with('\n') {
                    if !send(partial.trim_end_matches('\n')) {
                        return false;
                    }
                    partial.clear();
                }
            }
        }
    }
}

enum Rotation {
    None,
    /// The shim truncated the one file it keeps (`max-file` 1).
    Truncated,
    /// The path names a new file; ours is now `<log>.1`.
    Renamed,
}

/// Has the shim rotated the log under a follower that has read `file` to `pos`?
/// A path that is gone (the container removed) is no rotation: the follower
/// keeps reading what it holds.
fn rotation(file: &std::fs::File, path: &std::path::Path, pos: u64) -> Rotation {
    use std::os::unix::fs::MetadataExt;
    let (Ok(ours), Ok(named)) = (file.metadata(), std::fs::metadata(path)) else {
        return Rotation::None;
    };
    if (ours.dev(), ours.ino()) != (named.dev(), named.ino()) {
        Rotation::Renamed
    } else if ours.len() < pos {
        Rotation::Truncated
    } else {
        Rotation::None
    }
}

async fn attach(engine: &Arc<Engine>, req: &Request, id: &str) -> Result<Response, ApiError> {
    let (e, key) = (engine.clone(), id.to_string());
    let c = blocking(move || e.get(&key)).await?;
    let stdin = req.query_bool("stdin");
    let stdout = req.query_bool("stdout");
    let stderr = req.query_bool("stderr");
    let tty = c.config.tty;
    let engine = engine.clone();
    let id = c.id.clone();
    // Attached before start: the start holds the program until we are connected.
    let ticket = (!c.state.running).then(|| engine.expect_attach(&id));
    engine.container_event(&c, "attach", &[]);
    let detach = if tty && stdin {
        Some(detach_keys(req)?)
    } else {
        None
    };
    let handler: crate::server::HijackHandler = Box::new(move |mut conn| {
        Box::pin(async move {
            // Attach may come before start (docker run): wait until the shim is up.
            let mut shim = None;
            // The start that follows waits for us (the shim holds the program until
            // we are connected): poll often at first, it is on the start's path.
            for round in 0..1100u32 {
                let state_dir = engine.config.state_dir(&id);
                let client = berth_engine::shim_client::ShimClient::new(&id, &state_dir);
                let attempt =
                    tokio::task::spawn_blocking(move || client.attach(stdin, stdout, stderr)).await;
                if let Ok(Ok(s)) = attempt {
                    shim = Some(s);
                    break;
                }
                // Before a start (docker run, start -a) the shim is not up yet: keep
                // trying while the container exists.
                let gone = engine
                    .get(&id)
                    .map(|c| ticket.is_none() && !c.state.running)
                    .unwrap_or(true);
                if gone {
                    break;
                }
                let pause = if round < 500 { 2 } else { 50 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            if let Some(t) = ticket {
                engine.attach_settled(&id, t);
            }
            let Some(shim) = shim else {
                let _ = conn.shutdown().await;
                return;
            };
            splice(conn, shim, detach).await;
        })
    });
    let _ = tty;
    Ok(Response::Hijack {
        content_type: if c.config.tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        },
        handler,
    })
}

/// Docker's `--detach-keys` (`ctrl-p,ctrl-q`, `a,ctrl-[`): the bytes, or an error.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    for key in spec.split(',') {
        let bad = || ApiError::bad_request(format!("Invalid detach keys ({spec}) provided"));
        match key.strip_prefix("ctrl-") {
            Some(k) if k.len() == 1 => {
                let c = k.as_bytes()[0].to_ascii_lowercase();
                let code = match c {
                    b'a'..=b'z' => c - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => return Err(bad()),
                };
                out.push(code);
            }
            None if key.len() == 1 => out.push(key.as_bytes()[0]),
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// The detach keys of a request (`detachKeys`), ctrl-p ctrl-q by default.
pub(crate) fn detach_keys(req: &Request) -> Result<Vec<u8>, ApiError> {
    match req.query.get("detachKeys").filter(|k| !k.is_empty()) {
        Some(spec) => parse_detach_keys(spec),
        None => Ok(vec![0x10, 0x11]),
    }
}

/// Finds a detach sequence in a stdin stream that arrives in pieces.
struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    /// The bytes to forward from `data`, and whether the sequence completed. Bytes
    /// that may start the sequence are held until it is clear they do not.
    fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                    if self.keys.len() == 1 {
                        return (out, true);
                    }
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

/// Copies between a hijacked client connection and a shim stream until the shim
/// side ends (the process is gone and its output drained), or the client types the
/// detach keys: then the client's connection ends, and the shim's is kept open and
/// drained until the process ends, so that its stdin does not see an EOF.
pub(crate) async fn splice(
    conn: crate::server::Hijacked,
    shim: std::os::unix::net::UnixStream,
    detach: Option<Vec<u8>>,
) {
    if shim.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(shim) = tokio::net::UnixStream::from_std(shim) else {
        return;
    };
    let (mut shim_read, mut shim_write) = shim.into_split();
    let (mut conn_read, mut conn_write) = tokio::io::split(conn);
    let (detached_tx, mut detached_rx) = tokio::sync::oneshot::channel::<()>();
    let mut detached_tx = Some(detached_tx);
    let input = tokio::spawn(async move {
        let mut scanner = detach
            .filter(|k| !k.is_empty())
            .map(|keys| DetachScanner { keys, matched: 0 });
        let mut buf = vec![0u8; 8192];
        loop {
            match conn_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let (data, detached) = match scanner.as_mut() {
                        Some(s) => s.feed(&buf[..n]),
                        None => (buf[..n].to_vec(), false),
                    };
                    if !data.is_empty() && shim_write.write_all(&data).await.is_err() {
                        break;
                    }
                    if detached {
                        if let Some(tx) = detached_tx.take() {
                            let _ = tx.send(());
                        }
                        // Keep the write half (and so the process's stdin) open.
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
        let _ = shim_write.shutdown().await;
    });
    let mut buf = vec![0u8; 8192];
    // Set once the input side has ended without a detach (the sender is dropped).
    let mut input_done = false;
    loop {
        tokio::select! {
            r = &mut detached_rx, if !input_done => {
                if r.is_err() {
                    input_done = true;
                    continue;
                }
                let _ = conn_write.shutdown().await;
                // Drain the shim's side until the process ends, then let go of stdin.
                while let Ok(n) = shim_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                input.abort();
                return;
            }
            r = shim_read.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if conn_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let _ = conn_write.flush().await;
                }
            }
        }
    }
    let _ = conn_write.shutdown().await;
    input.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parsed_and_found() {
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").ok(),
            Some(vec![0x10, 0x11])
        );
        assert_eq!(parse_detach_keys("a,ctrl-[").ok(), Some(vec![b'a', 27]));
        assert!(parse_detach_keys("ctrl-pp").is_err());
        let mut s = DetachScanner {
            keys: vec![0x10, 0x11],
            matched: 0,
        };
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(s.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(s.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(s.feed(b"\x11rest"), (Vec::new(), true));
    }

    #[test]
    fn stdcopy_frames() {
        assert_eq!(frame(1, b"hi"), vec![1, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        assert_eq!(frame(2, b"").len(), 8);
    }
}
