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
            let tty_asked = body.tty;
            if body.detach {
                let (e, key) = (engine.clone(), id.to_string());
                blocking(move || e.exec_start(&key, tty_asked)).await?;
                return Ok(Response::Empty(200));
            }
            // What can be refused is refused now, as an HTTP error; the process
            // itself starts once the connection is hijacked, as in dockerd: a client
            // that reads the 101 through a buffer (docker-py) would otherwise lose
            // output that arrived with it.
            let (e, key) = (engine.clone(), id.to_string());
            let tty = blocking(move || e.exec_check_startable(&key, tty_asked)).await?;
            let detach = if tty {
                Some(crate::containers::detach_keys(req)?)
            } else {
                None
            };
            let content_type = if tty {
                "application/vnd.docker.raw-stream"
            } else {
                "application/vnd.docker.multiplexed-stream"
            };
            let (e, key) = (engine.clone(), id.to_string());
            Ok(Response::Hijack {
                content_type,
                handler: Box::new(move |mut conn| {
                    Box::pin(async move {
                        let started =
                            tokio::task::spawn_blocking(move || e.exec_start(&key, tty_asked))
                                .await;
                        match started {
                            Ok(Ok(s)) => splice(conn, s.stream, detach).await,
                            Ok(Err(err)) => {
                                // The failure goes into the stream; inspect reports
                                // the exit code (126, or 127 for a missing command).
                                use tokio::io::AsyncWriteExt;
                                let mut text = err.to_string().into_bytes();
                                text.extend_from_slice(b"\r\n");
                                let out = if tty {
                                    text
                                } else {
                                    crate::containers::frame(1, &text)
                                };
                                let _ = conn.write_all(&out).await;
                                let _ = conn.shutdown().await;
                            }
                            Err(_) => {}
                        }
                    })
                }),
            })
        }
        ("POST", [id, "resize"]) => {
            let (h, w) = crate::containers::terminal_size(req)?;
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
