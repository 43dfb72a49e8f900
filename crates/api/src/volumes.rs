//! `/volumes`: create, list (filters dangling, name, label, driver), inspect, remove
//! and prune, shaped as the Engine API's volume routes.

use std::sync::Arc;

use berth_engine::engine::Engine;
use berth_engine::volumes::{Volume, VolumeCreate};
use serde_json::{json, Value};

use crate::containers::blocking;
use crate::error::ApiError;
use crate::server::{Request, Response};

pub async fn handle(engine: &Arc<Engine>, req: &Request, rest: &str) -> Result<Response, ApiError> {
    let e = engine.clone();
    match (req.method.as_str(), rest) {
        ("GET", "") => list(engine, req).await,
        ("POST", "create") => {
            let body: VolumeCreate = if req.body.is_empty() {
                VolumeCreate::default()
            } else {
                serde_json::from_slice(&req.body)
                    .map_err(|err| ApiError::bad_request(format!("invalid JSON: {err}")))?
            };
            let v = blocking(move || e.volume_create(body)).await?;
            Ok(Response::Json(201, v.to_json(None)))
        }
        ("POST", "prune") => prune(engine, req).await,
        ("GET", name) if !name.contains('/') => {
            let name = name.to_string();
            let v = blocking(move || e.volume_get(&name)).await?;
            Ok(Response::Json(200, v.to_json(None)))
        }
        ("DELETE", name) if !name.contains('/') => {
            let (name, force) = (name.to_string(), req.query_bool("force"));
            blocking(move || e.volume_remove(&name, force)).await?;
            Ok(Response::Empty(204))
        }
        _ => Err(ApiError::not_found(format!(
            "page not found: {} /volumes/{rest}",
            req.method
        ))),
    }
}

fn label_matches(v: &Volume, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
        None => v.labels.contains_key(filter),
    }
}

fn truthy(key: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!("invalid filter '{key}={v}'"))),
    }
}

/// `GET /volumes`.
async fn list(engine: &Arc<Engine>, req: &Request) -> Result<Response, ApiError> {
    let filters = crate::images::parse_filters(req)?;
    for (k, v) in &filters {
        match k.as_str() {
            "name" | "label" | "driver" => {}
            "dangling" => {
                truthy(k, v)?;
            }
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    let e = engine.clone();
    let volumes = api_blocking(move || {
        let containers = e.list()?;
        let mut out = Vec::new();
        for v in e.volume_list()? {
            let in_use = !e.volume_users(&v.name, &containers).is_empty();
            let keep = group_all(&filters, |k, val| {
                Ok(match k {
                    "name" => v.name.contains(val),
                    "label" => label_matches(&v, val),
                    "driver" => v.driver == val,
                    "dangling" => truthy(k, val)? != in_use,
                    _ => false,
                })
            })?;
            if keep {
                out.push(v.to_json(None));
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Response::Json(
        200,
        json!({"Volumes": volumes, "Warnings": Value::Null}),
    ))
}

async fn api_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
}

/// Docker's filter semantics: every key must match, by any of its values (labels: all
/// of them).
fn group_all(
    filters: &[(String, String)],
    mut matches: impl FnMut(&str, &str) -> Result<bool, ApiError>,
) -> Result<bool, ApiError> {
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let mut values = filters.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
        let ok = if key == "label" {
            let mut all = true;
            for v in values {
                all &= matches(key, v)?;
            }
            all
        } else {
            let mut any = false;
            for v in values.by_ref() {
                any |= matches(key, v)?;
            }
            any
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `POST /volumes/prune`: unused anonymous volumes, or every unused one with
/// `all=true` (and before API 1.42, when prune took them all).
async fn prune(engine: &Arc<Engine>, req: &Request) -> Result<Response, ApiError> {
    let filters = crate::images::parse_filters(req)?;
    let mut all = req.api_version < (1, 42);
    let mut labels = Vec::new();
    let mut until = None;
    for (k, v) in filters {
        match k.as_str() {
            "all" => all = truthy("all", &v)?,
            "until" => until = Some(crate::containers::parse_until(&v)?),
            "label" | "label!" => labels.push((k == "label!", v)),
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    let e = engine.clone();
    let (deleted, reclaimed) = blocking(move || {
        e.volume_prune(all, |v| {
            let created = berth_engine::container::parse_rfc3339_secs(&v.created_at).unwrap_or(0);
            until.is_none_or(|u| created < u)
                && labels
                    .iter()
                    .all(|(negate, l)| label_matches(v, l) != *negate)
        })
    })
    .await?;
    Ok(Response::Json(
        200,
        json!({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}
