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
            EngineError::NotModified => ApiError::new(304, ""),
            EngineError::Internal(m) => ApiError::internal(m),
        }
    }
}

/// Run a blocking engine call off the async threads.
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
            let force = req.query_bool("force");
            let (e, id) = (engine.clone(), id.to_string());
            blocking(move || e.remove(&id, force)).await?;
            Ok(Response::Empty(204))
        }
        ("GET", [id, "logs"]) => logs(engine, req, id).await,
        ("POST", [id, "attach"]) => attach(engine, req, id).await,
        ("POST", [id, "exec"]) => crate::exec::create(engine, req, id).await,
        _ => Err(ApiError::not_found(format!(
            "page not found: {} /containers/{}",
            m,
            parts.join("/")
        ))),
    }
}

async fn create(engine: &Arc<Engine>, req: &Request) -> Result<Response, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(&req.body);
    let body: CreateBody = serde::Deserialize::deserialize(&mut de)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let name = req.query.get("name").filter(|n| !n.is_empty()).cloned();
    let e = engine.clone();
    let c = blocking(move || e.create(name.as_deref(), body.config, body.host_config)).await?;
    Ok(Response::Json(201, json!({"Id": c.id, "Warnings": []})))
}

fn list_entry(c: &Container, now: i64) -> Value {
    let command = std::iter::once(c.path.clone())
        .chain(c.args.iter().map(|a| {
            if a.contains(' ') {
                format!("{a:?}")
            } else {
                a.clone()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ");
    json!({
        "Id": c.id,
        "Names": [c.name],
        "Image": c.config.image,
        "ImageID": c.image,
        "Command": command,
        "Created": berth_engine::container::parse_rfc3339_secs(&c.created).unwrap_or(0),
        "Ports": [],
        "Labels": c.config.labels,
        "State": c.state.status,
        "Status": c.status_text(now),
        "HostConfig": {"NetworkMode": if c.host_config.network_mode.is_empty() { "default" } else { &c.host_config.network_mode }},
        "NetworkSettings": {"Networks": {}},
        "Mounts": [],
    })
}

async fn list(engine: &Arc<Engine>, req: &Request) -> Result<Response, ApiError> {
    let all = req.query_bool("all");
    let limit = req
        .query
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .unwrap_or(-1);
    let e = engine.clone();
    let containers = blocking(move || e.list()).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut out: Vec<Value> = containers
        .iter()
        .filter(|c| all || limit > 0 || c.state.running)
        .map(|c| list_entry(c, now))
        .collect();
    if limit > 0 {
        out.truncate(limit as usize);
    }
    Ok(Response::Json(200, Value::Array(out)))
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
    tokio::task::spawn_blocking(move || {
        let render = |line: &LogLine| -> Option<Vec<u8>> {
            let is_err = line.stream == "stderr";
            if (is_err && !want_err) || (!is_err && !want_out) {
                return None;
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
        let Ok(mut file) = std::fs::File::open(&path) else {
            return;
        };
        let mut all = String::new();
        if file.read_to_string(&mut all).is_err() {
            return;
        }
        let lines: Vec<&str> = all.lines().collect();
        let start = tail.map(|n| lines.len().saturating_sub(n)).unwrap_or(0);
        for l in &lines[start..] {
            if let Ok(line) = serde_json::from_str::<LogLine>(l) {
                if let Some(b) = render(&line) {
                    if tx.blocking_send(Bytes::from(b)).is_err() {
                        return;
                    }
                }
            }
        }
        if !follow {
            return;
        }
        let mut pos = all.len() as u64;
        let mut partial = String::new();
        loop {
            let running = engine.get(&id).map(|c| c.state.running).unwrap_or(false);
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(_) => return,
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < pos {
                pos = 0; // rotated
            }
            if len > pos && f.seek(SeekFrom::Start(pos)).is_ok() {
                let mut reader = std::io::BufReader::new(f);
                loop {
                    let mut buf = String::new();
                    match reader.read_line(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            pos += n as u64;
                            partial.push_str(&buf);
                            if partial.ends_with('\n') {
                                if let Ok(line) =
                                    serde_json::from_str::<LogLine>(partial.trim_end())
                                {
                                    if let Some(b) = render(&line) {
                                        if tx.blocking_send(Bytes::from(b)).is_err() {
                                            return;
                                        }
                                    }
                                }
                                partial.clear();
                            }
                        }
                    }
                }
            }
            if !running {
                return;
            }
            if tx.is_closed() {
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
    let handler: crate::server::HijackHandler = Box::new(move |mut conn| {
        Box::pin(async move {
            // Attach may come before start (docker run): wait until the shim is up.
            let mut shim = None;
            for _ in 0..600 {
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
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(t) = ticket {
                engine.attach_settled(&id, t);
            }
            let Some(shim) = shim else {
                let _ = conn.shutdown().await;
                return;
            };
            splice(conn, shim).await;
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

/// Copies between a hijacked client connection and a shim stream until the shim
/// side ends (the process is gone and its output drained).
pub(crate) async fn splice(conn: crate::server::Hijacked, shim: std::os::unix::net::UnixStream) {
    if shim.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(shim) = tokio::net::UnixStream::from_std(shim) else {
        return;
    };
    let (mut shim_read, mut shim_write) = shim.into_split();
    let (mut conn_read, mut conn_write) = tokio::io::split(conn);
    let input = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match conn_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if shim_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = shim_write.shutdown().await;
    });
    let mut buf = vec![0u8; 8192];
    loop {
        match shim_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if conn_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                let _ = conn_write.flush().await;
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
    fn stdcopy_frames() {
        assert_eq!(frame(1, b"hi"), vec![1, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        assert_eq!(frame(2, b"").len(), 8);
    }
}
