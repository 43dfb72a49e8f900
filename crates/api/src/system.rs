//! `/events`: the engine's event log, streamed as Docker streams it.

use std::sync::Arc;
use std::time::Duration;

use berth_engine::engine::Engine;
use berth_engine::events::Event;
use bytes::Bytes;

use crate::error::ApiError;
use crate::server::{Request, Response};

const EVENT_FILTERS: &[&str] = &[
    "type",
    "event",
    "container",
    "image",
    "label",
    "daemon",
    "network",
    "volume",
    "scope",
];

fn event_matches(e: &Event, filters: &[(String, String)]) -> bool {
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort();
    keys.dedup();
    keys.iter().all(|key| {
        filters
            .iter()
            .filter(|(k, _)| k == key)
            .any(|(_, v)| match *key {
                "type" => e.kind == *v,
                "event" => e.action == *v || e.action.split(':').next() == Some(v.as_str()),
                "container" => {
                    e.kind == "container"
                        && (e.actor_id.starts_with(v.as_str())
                            || e.attributes.get("name").is_some_and(|n| n == v))
                }
                "image" => {
                    e.attributes
                        .get("image")
                        .is_some_and(|i| i == v || i.split(':').next() == Some(v.as_str()))
                        || (e.kind == "image" && e.actor_id.contains(v.as_str()))
                }
                "label" => match v.split_once('=') {
                    Some((k, val)) => e.attributes.get(k).is_some_and(|x| x == val),
                    None => e.attributes.contains_key(v),
                },
                "volume" => e.kind == "volume" && e.actor_id == *v,
                "scope" => v == "local",
                _ => false,
            })
    })
}

/// A `since`/`until` value: Unix seconds (with an optional fraction) or RFC 3339.
fn parse_time(v: &str) -> Result<i128, ApiError> {
    crate::timestamp::nanos(v)
        .ok_or_else(|| ApiError::bad_request(format!("invalid timestamp {v:?}")))
}

/// `GET /events?since=&until=&filters=`.
pub async fn events(engine: &Arc<Engine>, req: &Request) -> Result<Response, ApiError> {
    let filters = crate::images::parse_filters(req)?;
    for (k, _) in &filters {
        if !EVENT_FILTERS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    let since = match req.query.get("since").filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_time(s)?),
        None => None,
    };
    let until = match req.query.get("until").filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_time(s)?),
        None => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut seq = if since.is_some() {
            0
        } else {
            engine.events.next_seq()
        };
        loop {
            let (batch, next) = engine.events.read_from(seq, Duration::from_millis(500));
            seq = next;
            for e in batch {
                if since.is_some_and(|s| e.time_nano < s) {
                    continue;
                }
                if until.is_some_and(|u| e.time_nano > u) {
                    return;
                }
                if !event_matches(&e, &filters) {
                    continue;
                }
                let mut line = e.to_json().to_string();
                line.push('\n');
                if tx.blocking_send(Bytes::from(line)).is_err() {
                    return;
                }
            }
            if until.is_some_and(|u| crate::timestamp::now_nanos() > u) || tx.is_closed() {
                return;
            }
        }
    });
    Ok(Response::Stream {
        status: 200,
        content_type: "application/json",
        body: rx,
    })
}

/// Bytes used by the files under `dir` (not following symlinks; hard links once).
pub(crate) fn disk_bytes(dir: &std::path::Path) -> u64 {
    berth_engine::volumes::disk_bytes(dir)
}

/// `GET /system/df`: images (with the bytes they share with other images), the
/// containers' writable layers, volumes, and the build cache (none here yet).
pub async fn disk_usage(
    engine: &Arc<Engine>,
    images: &Arc<berth_image::Images>,
) -> Result<Response, ApiError> {
    let (e, i) = (engine.clone(), images.clone());
    let body = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, ApiError> {
        let containers = e.list()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let records = i.list();
        // Each layer's bytes, once, and how many images stand on it.
        let mut layer_users: std::collections::HashMap<String, (u64, usize)> =
            std::collections::HashMap::new();
        for r in &records {
            for chain in &r.chain_ids {
                let entry = layer_users
                    .entry(chain.to_string())
                    .or_insert_with(|| (disk_bytes(&i.snapshots().layer_dir(chain)), 0));
                entry.1 += 1;
            }
        }
        let layers: u64 = layer_users.values().map(|(size, _)| size).sum();
        let images: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                let mut s = crate::images::summary(&i, r);
                let users = containers
                    .iter()
                    .filter(|c| c.image == r.id.to_string())
                    .count();
                let size = s["Size"].as_u64().unwrap_or(0);
                let shared: u64 = r
                    .chain_ids
                    .iter()
                    .filter_map(|c| layer_users.get(&c.to_string()))
                    .filter(|(_, n)| *n > 1)
                    .map(|(size, _)| size)
                    .sum();
                s["Containers"] = serde_json::json!(users);
                s["SharedSize"] = serde_json::json!(shared.min(size));
                s
            })
            .collect();
        let containers_json: Vec<serde_json::Value> = containers
            .iter()
            .map(|c| {
                let mut v = crate::containers::list_entry(c, now);
                let rw = e.size_rw(c);
                v.size_rw = Some(rw);
                v.size_root_fs = Some(rw + i.resolve(&c.image).map(|r| r.size).unwrap_or(0));
                serde_json::to_value(v).unwrap_or_default()
            })
            .collect();
        let volumes: Vec<serde_json::Value> = e
            .volume_usage()?
            .into_iter()
            .map(|(v, size, refs)| v.to_json(Some((size, refs))))
            .collect();
        Ok(serde_json::json!({
            "LayersSize": layers,
            "Images": images,
            "Containers": containers_json,
            "Volumes": volumes,
            "BuildCache": [],
        }))
    })
    .await
    .map_err(|e| ApiError::internal(format!("task failed: {e}")))??;
    Ok(Response::Json(200, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn filters() {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), "web".to_string());
        attrs.insert("image".to_string(), "busybox:latest".to_string());
        let e = Event {
            kind: "container".into(),
            action: "start".into(),
            actor_id: "abcdef".into(),
            attributes: attrs,
            time_nano: 0,
        };
        let f = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(event_matches(&e, &[]));
        assert!(event_matches(
            &e,
            &f(&[("container", "web"), ("event", "start")])
        ));
        assert!(event_matches(
            &e,
            &f(&[("event", "die"), ("event", "start")])
        ));
        assert!(!event_matches(
            &e,
            &f(&[("container", "web"), ("event", "die")])
        ));
        assert!(event_matches(&e, &f(&[("image", "busybox")])));
        assert!(!event_matches(&e, &f(&[("type", "image")])));
        assert_eq!(
            parse_time("1700000000.5").ok(),
            Some(1_700_000_000_500_000_000)
        );
    }
}
