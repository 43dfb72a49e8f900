//! `/networks/...` routes: create, list, inspect, remove, connect, disconnect, prune.

use std::sync::Arc;

use berth_engine::engine::{Engine, EngineError};
use berth_network::{network_json, CreateRequest, Network};
use serde_json::{json, Value};

use crate::containers::blocking;
use crate::error::ApiError;
use crate::images::parse_filters;
use crate::server::{Request, Response};

fn body_json(req: &Request) -> Result<Value, ApiError> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

fn label_matches(n: &Network, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => n.labels.get(k).is_some_and(|x| x == v),
        None => n.labels.contains_key(want),
    }
}

/// Docker's network filters: name (substring), id (prefix), driver, label, type, dangling.
fn matches(
    n: &Network,
    filters: &[(String, String)],
    users: &dyn Fn(&str) -> usize,
) -> Result<bool, ApiError> {
    let mut by_key: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (k, v) in filters {
        by_key.entry(k.as_str()).or_default().push(v.as_str());
    }
    for (k, vals) in by_key {
        let ok = match k {
            "name" => vals.iter().any(|v| n.name.contains(v)),
            "id" => vals.iter().any(|v| n.id.starts_with(v)),
            "driver" => vals.iter().any(|v| n.driver == *v),
            "label" => vals.iter().all(|v| label_matches(n, v)),
            "scope" => vals.contains(&"local"),
            "type" => vals.iter().any(|v| match *v {
                "custom" => !n.predefined(),
                "builtin" => n.predefined(),
                _ => false,
            }),
            "dangling" => vals.iter().any(|v| {
                let dangling = !n.predefined() && users(&n.id) == 0;
                (*v == "true" || *v == "1") == dangling
            }),
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The engine's network manager (berthd always gives it one).
fn networks_of(e: &Engine) -> Result<Arc<berth_network::Networks>, EngineError> {
    e.networks()
        .cloned()
        .ok_or_else(|| EngineError::Internal("networking is not available".into()))
}

pub async fn handle(engine: &Arc<Engine>, req: &Request, rest: &str) -> Result<Response, ApiError> {
    let nets = networks_of(engine)?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", []) => {
            let filters = parse_filters(req)?;
            let mut out = Vec::new();
            for n in nets.list() {
                let users = |id: &str| nets.users(id).len();
                if matches(&n, &filters, &users)? {
                    out.push(network_json(&n, None));
                }
            }
            Ok(Response::Json(200, Value::Array(out)))
        }
        ("POST", ["create"]) => {
            let mut de = serde_json::Deserializer::from_slice(&req.body);
            let body: CreateRequest = serde_path_to_error::deserialize(&mut de)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
            let e = engine.clone();
            let n = blocking(move || {
                let nets = networks_of(&e)?;
                let n = nets.create(body)?;
                e.network_event(&n, "create", "");
                Ok(n)
            })
            .await?;
            Ok(Response::Json(201, json!({"Id": n.id, "Warning": ""})))
        }
        ("POST", ["prune"]) => {
            let filters = parse_filters(req)?;
            let e = engine.clone();
            let deleted = blocking(move || {
                let nets = networks_of(&e)?;
                // Containers that are stopped but still name a network keep it.
                let named: std::collections::HashSet<String> = e
                    .list_shared()?
                    .iter()
                    .flat_map(|c| c.network.wanted.keys().cloned())
                    .collect();
                let mut deleted = Vec::new();
                for n in nets.list() {
                    if n.predefined() || !nets.users(&n.id).is_empty() {
                        continue;
                    }
                    let label_ok = filters.iter().all(|(k, v)| match k.as_str() {
                        "label" => label_matches(&n, v),
                        "label!" => !label_matches(&n, v),
                        _ => true,
                    });
                    if !label_ok || named.contains(&n.name) {
                        continue;
                    }
                    if nets.remove(&n.id).is_ok() {
                        e.network_event(&n, "destroy", "");
                        deleted.push(n.name.clone());
                    }
                }
                Ok(deleted)
            })
            .await?;
            Ok(Response::Json(200, json!({"NetworksDeleted": deleted})))
        }
        ("GET", [id]) => {
            let v = nets.inspect(id).map_err(EngineError::from)?;
            Ok(Response::Json(200, v))
        }
        ("DELETE", [id]) => {
            let (e, id) = (engine.clone(), id.to_string());
            blocking(move || {
                let nets = networks_of(&e)?;
                let n = nets.remove(&id)?;
                e.network_event(&n, "destroy", "");
                Ok(())
            })
            .await?;
            Ok(Response::Empty(204))
        }
        ("POST", [id, action @ ("connect" | "disconnect")]) => {
            let body = body_json(req)?;
            let container = body["Container"]
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ApiError::bad_request("no container given (Container)"))?
                .to_string();
            let (e, id, action) = (engine.clone(), id.to_string(), action.to_string());
            blocking(move || {
                if action == "connect" {
                    let cfg = body.get("EndpointConfig").filter(|v| !v.is_null());
                    e.connect_network(&id, &container, cfg)
                } else {
                    e.disconnect_network(&id, &container)
                }
            })
            .await?;
            Ok(Response::Empty(200))
        }
        _ => Err(ApiError::not_found(format!(
            "page not found: {} /networks/{rest}",
            req.method
        ))),
    }
}
