//! `list`: the containers under the state root, as a table, ids, or JSON.

use serde::Serialize;

use super::Global;
use crate::error::{Result, RuntimeError};
use crate::state;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    oci_version: String,
    id: String,
    pid: i32,
    status: String,
    bundle: String,
    rootfs: String,
    created: String,
    owner: String,
}

pub fn list(global: &Global, format: &str, quiet: bool) -> Result<String> {
    let mut entries = Vec::new();
    for id in state::list_ids(&global.root)? {
        let Ok((dir, c)) = state::load(&global.root, &id) else {
            continue;
        };
        let status = c.status(&dir);
        entries.push(Entry {
            oci_version: c.config.version().clone(),
            pid: if status == state::Status::Stopped {
                0
            } else {
                c.pid
            },
            status: status.to_string(),
            bundle: c.bundle.display().to_string(),
            rootfs: c.rootfs.display().to_string(),
            created: c.created.clone(),
            owner: if c.owner.is_empty() {
                "root".into()
            } else {
                c.owner.clone()
            },
            id,
        });
    }
    if quiet {
        return Ok(entries.iter().map(|e| format!("{}\n", e.id)).collect());
    }
    match format {
        "json" => serde_json::to_string(&entries)
            .map(|s| s + "\n")
            .map_err(|e| RuntimeError::Other(e.to_string())),
        "table" | "" => {
            let mut rows = vec![[
                "ID".to_string(),
                "PID".into(),
                "STATUS".into(),
                "BUNDLE".into(),
                "CREATED".into(),
                "OWNER".into(),
            ]];
            for e in &entries {
                rows.push([
                    e.id.clone(),
                    e.pid.to_string(),
                    e.status.clone(),
                    e.bundle.clone(),
                    e.created.clone(),
                    e.owner.clone(),
                ]);
            }
            let mut widths = [0usize; 6];
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r.iter()) {
                    *w = (*w).max(c.len());
                }
            }
            let mut out = String::new();
            for r in &rows {
                let line: Vec<String> = r
                    .iter()
                    .zip(widths.iter())
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                out.push_str(line.join("   ").trim_end());
                out.push('\n');
            }
            Ok(out)
        }
        other => Err(RuntimeError::Other(format!(
            "invalid format option {other:?}: use table or json"
        ))),
    }
}
