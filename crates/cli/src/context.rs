//! Contexts, stored as Docker stores them so `berth context use` and `docker context
//! use` see the same ones: `$DOCKER_CONFIG` (or `~/.docker`)/config.json holds
//! `currentContext`; each context is `contexts/meta/<sha256 of name>/meta.json`.

use std::path::PathBuf;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::client::{CliError, Result, DEFAULT_HOST};

pub struct Store {
    pub dir: PathBuf,
}

pub struct Context {
    pub name: String,
    pub description: String,
    pub host: String,
    pub meta: Value,
}

impl Store {
    /// `--config`, then `DOCKER_CONFIG`, then `~/.docker`.
    pub fn new(flag: Option<&str>) -> Store {
        let dir = flag
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("DOCKER_CONFIG").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .unwrap_or_else(|| PathBuf::from("/root/.docker"));
        Store { dir }
    }

    fn config(&self) -> Value {
        std::fs::read(self.dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| json!({}))
    }

    /// The context named in config.json, "default" if none.
    pub fn current(&self) -> String {
        self.config()
            .get("currentContext")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string()
    }

    fn digest(name: &str) -> String {
        Sha256::digest(name.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn meta_dir(&self, name: &str) -> PathBuf {
        self.dir.join("contexts/meta").join(Self::digest(name))
    }

    pub fn tls_dir(&self, name: &str) -> PathBuf {
        self.dir.join("contexts/tls").join(Self::digest(name))
    }

    pub fn list(&self) -> Vec<Context> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.join("contexts/meta"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(bytes) = std::fs::read(entry.path().join("meta.json")) else {
                continue;
            };
            let Ok(meta) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            out.push(context_of(meta));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn get(&self, name: &str) -> Result<Context> {
        if name == "default" {
            return Ok(default_context());
        }
        let bytes = std::fs::read(self.meta_dir(name).join("meta.json"))
            .map_err(|_| CliError::other(format!("context \"{name}\" does not exist")))?;
        let meta = serde_json::from_slice(&bytes)
            .map_err(|e| CliError::other(format!("context \"{name}\": {e}")))?;
        Ok(context_of(meta))
    }

    pub fn create(&self, name: &str, description: &str, host: &str) -> Result<()> {
        if name == "default" || self.get(name).is_ok() {
            return Err(CliError::other(format!(
                "context \"{name}\" already exists"
            )));
        }
        let metadata = if description.is_empty() {
            json!({})
        } else {
            json!({"Description": description})
        };
        let meta = json!({
            "Name": name,
            "Metadata": metadata,
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}},
        });
        let dir = self.meta_dir(name);
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir.join("meta.json"), meta.to_string().as_bytes())
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        if name == "default" {
            return Err(CliError::other("default context cannot be removed"));
        }
        self.get(name)?;
        std::fs::remove_dir_all(self.meta_dir(name))?;
        if self.current() == name {
            self.set_current("default")?;
        }
        Ok(())
    }

    /// Writes `currentContext` into config.json, keeping every other key.
    pub fn set_current(&self, name: &str) -> Result<()> {
        let mut cfg = self.config();
        if let Some(obj) = cfg.as_object_mut() {
            if name == "default" {
                obj.remove("currentContext");
            } else {
                obj.insert("currentContext".into(), json!(name));
            }
        }
        std::fs::create_dir_all(&self.dir)?;
        let text = crate::commands::system::indent_json_tabs(&cfg);
        write_atomic(&self.dir.join("config.json"), text.as_bytes())
    }
}

fn write_atomic(path: &std::path::Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn context_of(meta: Value) -> Context {
    Context {
        name: meta
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        description: meta
            .pointer("/Metadata/Description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        host: meta
            .pointer("/Endpoints/docker/Host")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        meta,
    }
}

fn default_context() -> Context {
    Context {
        name: "default".into(),
        description: "Current DOCKER_HOST based configuration".into(),
        host: env_host().unwrap_or_else(|| DEFAULT_HOST.to_string()),
        meta: json!({"Name": "default", "Metadata": {},
            "Endpoints": {"docker": {"Host": env_host().unwrap_or_else(|| DEFAULT_HOST.to_string()), "SkipTLSVerify": false}}}),
    }
}

fn env_host() -> Option<String> {
    ["BERTH_HOST", "DOCKER_HOST"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
}

/// Docker's order: `-H`, then `--context`, then `BERTH_HOST`/`DOCKER_HOST`, then
/// `DOCKER_CONTEXT`, then config.json's current context, then berthd's socket.
pub fn select_host(host: Option<&str>, context: Option<&str>, store: &Store) -> Result<String> {
    if let Some(h) = host.filter(|h| !h.is_empty()) {
        return Ok(h.to_string());
    }
    if let Some(name) = context {
        return Ok(store.get(name)?.host);
    }
    if let Some(h) = env_host() {
        return Ok(h);
    }
    let name = std::env::var("DOCKER_CONTEXT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| store.current());
    Ok(store.get(&name)?.host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_use_and_resolve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store {
            dir: dir.path().to_path_buf(),
        };
        assert_eq!(store.current(), "default");
        store
            .create("dev", "a dev box", "unix:///tmp/dev.sock")
            .expect("create");
        store.set_current("dev").expect("use");
        assert_eq!(store.current(), "dev");
        let ctx = store.get("dev").expect("get");
        assert_eq!(ctx.host, "unix:///tmp/dev.sock");
        // Docker names the directory by the SHA-256 of the name.
        assert!(dir
            .path()
            .join("contexts/meta/ef260e9aa3c673af240d17a2660480361a8e081d1ffeca2a5ed0e3219fc18567/meta.json")
            .exists());
        assert_eq!(
            select_host(Some("unix:///x"), Some("dev"), &store).expect("host"),
            "unix:///x"
        );
        assert_eq!(
            select_host(None, Some("dev"), &store).expect("host"),
            "unix:///tmp/dev.sock"
        );
        assert!(store.create("dev", "", "unix:///y").is_err());
        store.remove("dev").expect("rm");
        assert_eq!(store.current(), "default");
    }
}
