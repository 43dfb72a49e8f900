//! Routes of the container operations beyond the lifecycle: pause, unpause, rename,
//! update, top, stats, changes, export, archive (`docker cp`) and `POST /commit`.
//! Each handler parses the request, calls the engine's verb (crates/engine/src/ops)
//! off the async threads, and answers in Docker's shape.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use berth_engine::engine::Engine;
use berth_engine::ops::commit::CommitOptions;
use berth_engine::ops::update::UpdateConfig;
use berth_image::Images;
use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use crate::containers::blocking;
use crate::error::ApiError;
use crate::server::{Request, Response};

/// A blocking [`Write`] into a streamed response body, in chunks of up to 64 KiB.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 << 10;

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Bytes>) -> Self {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// The arms of `containers::handle` that land here; `None` when the route is not one
/// of these.
pub async fn handle(
    engine: &Arc<Engine>,
    req: &Request,
    parts: &[&str],
) -> Option<Result<Response, ApiError>> {
    let m = req.method.as_str();
    let (id, verb) = match parts {
        [id, verb] => (id.to_string(), *verb),
        _ => return None,
    };
    let e = engine.clone();
    Some(match (m, verb) {
        ("POST", "pause") => blocking(move || e.pause(&id))
            .await
            .map(|()| Response::Empty(204)),
        ("POST", "unpause") => blocking(move || e.unpause(&id))
            .await
            .map(|()| Response::Empty(204)),
        ("POST", "rename") => {
            let name = req.query.get("name").cloned().unwrap_or_default();
            blocking(move || e.rename(&id, &name))
                .await
                .map(|()| Response::Empty(204))
        }
        ("POST", "update") => update(e, req, id).await,
        ("GET", "top") => {
            let args = req.query.get("ps_args").cloned().unwrap_or_default();
            blocking(move || e.top(&id, &args))
                .await
                .and_then(|t| json_of(200, &t))
        }
        ("GET", "stats") => stats(e, req, id).await,
        ("GET", "changes") => blocking(move || e.changes(&id))
            .await
            .and_then(|c| json_of(200, &c)),
        ("GET", "export") => export(e, id).await,
        ("HEAD", "archive") => archive_head(e, req, id).await,
        ("GET", "archive") => archive_get(e, req, id).await,
        ("PUT", "archive") => archive_put(e, req, id).await,
        _ => return None,
    })
}

fn json_of<T: serde::Serialize>(status: u16, v: &T) -> Result<Response, ApiError> {
    serde_json::to_value(v)
        .map(|v| Response::Json(status, v))
        .map_err(|e| ApiError::internal(format!("encoding the answer: {e}")))
}

async fn update(e: Arc<Engine>, req: &Request, id: String) -> Result<Response, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(&req.body);
    let body: UpdateConfig = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        ApiError::bad_request(format!(
            "invalid JSON in field {}: {}",
            err.path(),
            err.inner()
        ))
    })?;
    let warnings = blocking(move || e.update(&id, &body)).await?;
    Ok(Response::Json(200, json!({ "Warnings": warnings })))
}

async fn stats(e: Arc<Engine>, req: &Request, id: String) -> Result<Response, ApiError> {
    let stream = !matches!(
        req.query.get("stream").map(String::as_str),
        Some("0" | "false" | "False")
    );
    let one_shot = req.query_bool("one-shot");
    // A missing container is a 404 before any byte of the stream.
    let (probe, key) = (e.clone(), id.clone());
    blocking(move || probe.get(&key)).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::task::spawn_blocking(move || {
        let line = |v: serde_json::Value| {
            let mut s = v.to_string();
            s.push('\n');
            Bytes::from(s)
        };
        let mut previous = None;
        if !stream {
            let mut now = e.stats_sample(&id).ok().flatten();
            if !one_shot && now.is_some() {
                // Prime the CPU figures as dockerd does: the CLI's percentage is the
                // difference between two readings.
                std::thread::sleep(Duration::from_secs(1));
                previous = now;
                now = e.stats_sample(&id).ok().flatten();
            }
            if let Ok(v) = e.stats_json(&id, now.as_ref(), previous.as_ref()) {
                let _ = tx.blocking_send(line(v));
            }
            return;
        }
        loop {
            let now = match e.stats_sample(&id) {
                Ok(s) => s,
                Err(_) => return,
            };
            let running = now.is_some();
            let Ok(v) = e.stats_json(&id, now.as_ref(), previous.as_ref()) else {
                return;
            };
            if tx.blocking_send(line(v)).is_err() {
                return;
            }
            previous = now;
            if !running {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    Ok(Response::Stream {
        status: 200,
        content_type: "application/json",
        body: rx,
    })
}

async fn export(e: Arc<Engine>, id: String) -> Result<Response, ApiError> {
    let (probe, key) = (e.clone(), id.clone());
    blocking(move || probe.get(&key)).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::task::spawn_blocking(move || {
        // A failure midway can only cut the stream short: the headers are sent.
        let _ = e.export(&id, ChannelWriter::new(tx));
    });
    Ok(Response::Stream {
        status: 200,
        content_type: "application/x-tar",
        body: rx,
    })
}

fn archive_path(req: &Request) -> Result<String, ApiError> {
    match req.query.get("path") {
        Some(p) if !p.is_empty() => Ok(p.clone()),
        _ => Err(ApiError::bad_request(
            "Bad parameter: 'path' cannot be empty",
        )),
    }
}

fn stat_header(stat: &berth_engine::ops::archive::PathStat) -> (&'static str, String) {
    let json = serde_json::to_vec(stat).unwrap_or_default();
    ("X-Docker-Container-Path-Stat", base64(&json))
}

/// Standard base64 with padding (Go's `base64.StdEncoding`).
fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn archive_head(e: Arc<Engine>, req: &Request, id: String) -> Result<Response, ApiError> {
    let path = archive_path(req)?;
    let stat = blocking(move || e.archive_stat(&id, &path)).await?;
    Ok(Response::WithHeaders {
        status: 200,
        content_type: "application/json",
        headers: vec![stat_header(&stat)],
        body: None,
    })
}

async fn archive_get(e: Arc<Engine>, req: &Request, id: String) -> Result<Response, ApiError> {
    let path = archive_path(req)?;
    let (stat_tx, stat_rx) = tokio::sync::oneshot::channel();
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::task::spawn_blocking(move || {
        let mut stat_tx = Some(stat_tx);
        let result = e.archive_get(&id, &path, |stat| {
            if let Some(s) = stat_tx.take() {
                let _ = s.send(Ok(stat.clone()));
            }
            ChannelWriter::new(tx)
        });
        if let (Err(err), Some(s)) = (result, stat_tx.take()) {
            let _ = s.send(Err(err));
        }
    });
    let stat = stat_rx
        .await
        .map_err(|_| ApiError::internal("archive task failed"))?
        .map_err(ApiError::from)?;
    Ok(Response::WithHeaders {
        status: 200,
        content_type: "application/x-tar",
        headers: vec![stat_header(&stat)],
        body: Some(rx),
    })
}

async fn archive_put(e: Arc<Engine>, req: &Request, id: String) -> Result<Response, ApiError> {
    let path = archive_path(req)?;
    let copy_uid_gid = req.query_bool("copyUIDGID");
    let no_overwrite = req.query_bool("noOverwriteDirNonDir");
    let upload = req
        .take_upload()
        .ok_or_else(|| ApiError::bad_request("the archive must be the request body"))?;
    blocking(move || e.archive_put(&id, &path, upload, copy_uid_gid, no_overwrite)).await?;
    Ok(Response::Empty(200))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`.
pub async fn commit(
    engine: &Arc<Engine>,
    images: &Arc<Images>,
    req: &Request,
) -> Result<Response, ApiError> {
    let q = |k: &str| req.query.get(k).cloned().unwrap_or_default();
    let container = q("container");
    if container.is_empty() {
        return Err(ApiError::bad_request("No container specified"));
    }
    let opts = CommitOptions {
        repo: q("repo"),
        tag: q("tag"),
        comment: q("comment"),
        author: q("author"),
        changes: req.query_all("changes"),
        pause: !matches!(q("pause").as_str(), "0" | "false" | "False"),
    };
    let (e, images) = (engine.clone(), images.clone());
    let id = blocking(move || e.commit(&container, &images, &opts)).await?;
    Ok(Response::Json(201, json!({ "Id": id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_go_encodes() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"{\"name\":\"x\"}"), "eyJuYW1lIjoieCJ9");
    }
}
