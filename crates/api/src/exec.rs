//! `/containers/{id}/exec` and `/exec/{id}/...`: exec instances over the engine.

use std::sync::Arc;

use berth_engine::engine::Engine;
use berth_engine::exec::ExecConfig;
use serde::Deserialize;
use serde_json::json;

use crate::containers::{blocking, splice};
use crate::error::ApiError;
use crate::server::{Request, Response};

fn parse_body<T: for<'de> Deserialize<'de> + Default>(req: &Request) -> Result<T, ApiError> {
    if req.body.is_empty() {
        return Ok(T::default());
    }
    let mut de = serde_json::Deserializer::from_slice(&req.body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::bad_request(format!("invalid JSON at {path}: {}", e.inner()))
    })
}

/// `POST /containers/{id}/exec`.
pub async fn create(engine: &Arc<Engine>, req: &Request, id: &str) -> Result<Response, ApiError> {
    let config: ExecConfig = parse_body(req)?;
    let (e, key) = (engine.clone(), id.to_string());
    let exec_id = blocking(move || e.exec_create(&key, config)).await?;
    Ok(Response::Json(201, json!({ "Id": exec_id })))
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct StartBody {
    detach: bool,
    tty: Option<bool>,
}

/// `/exec/{id}/...`.
pub async fn handle(engine: &Arc<Engine>, req: &Request, rest: &str) -> Result<Response, ApiError> {
    let parts: Vec<&str> = rest.split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("POST", [id, "start"]) => {
            let body: StartBody = parse_body(req)?;
            let (e, key) = (engine.clone(), id.to_string());
            let tty = body.tty;
            let started = match blocking(move || e.exec_start(&key, tty)).await {
                Ok(s) => s,
                // As dockerd: the client has asked to hijack, so the failure is
                // written into the stream and inspect reports the exit code.
                Err(err) if !body.detach && err.status == 500 => {
                    let mut text = err.message.clone().into_bytes();
                    text.extend_from_slice(b"\r\n");
                    let framed = body.tty != Some(true);
                    return Ok(Response::Hijack {
                        content_type: "application/vnd.docker.multiplexed-stream",
                        handler: Box::new(move |mut conn| {
                            Box::pin(async move {
                                use tokio::io::AsyncWriteExt;
                                let out = if framed {
                                    crate::containers::frame(1, &text)
                                } else {
                                    text
                                };
                                let _ = conn.write_all(&out).await;
                                let _ = conn.shutdown().await;
                            })
                        }),
                    });
                }
                Err(err) => return Err(err),
            };
            if body.detach {
                return Ok(Response::Empty(200));
            }
            let content_type = if started.tty {
                "application/vnd.docker.raw-stream"
            } else {
                "application/vnd.docker.multiplexed-stream"
            };
            let stream = started.stream;
            let detach = if started.tty {
                Some(crate::containers::detach_keys(req)?)
            } else {
                None
            };
            Ok(Response::Hijack {
                content_type,
                handler: Box::new(move |conn| Box::pin(splice(conn, stream, detach))),
            })
        }
        ("POST", [id, "resize"]) => {
            let dim = |k: &str| -> Result<u16, ApiError> {
                req.query
                    .get(k)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| ApiError::bad_request(format!("invalid or missing {k}")))
            };
            let (h, w) = (dim("h")?, dim("w")?);
            let (e, key) = (engine.clone(), id.to_string());
            blocking(move || e.exec_resize(&key, h, w)).await?;
            Ok(Response::Empty(200))
        }
        ("GET", [id, "json"]) => {
            let (e, key) = (engine.clone(), id.to_string());
            Ok(Response::Json(
                200,
                blocking(move || e.exec_inspect(&key)).await?,
            ))
        }
        _ => Err(ApiError::not_found(format!(
            "page not found: {} /exec/{rest}",
            req.method
        ))),
    }
}
