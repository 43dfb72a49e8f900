//! Volumes of the `local` driver: named and anonymous, each a directory
//! `<data-root>/volumes/<name>/_data` and a row in the metadata store. A volume created
//! with options (`type`, `device`, `o`) has that filesystem mounted on its `_data` while
//! a running container uses it, as Docker's local driver does.
//!
//! This module owns the volume records, their directories and their mounts; which
//! container mounts what, and where, is [`crate::mounts`]'.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::container::Container;
use crate::engine::{now, Engine, EngineError, Result};

/// The label Docker puts on the volumes it makes for a container (`-v /path`, an
/// image's VOLUME); `volume prune` without `all` removes only these.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The local driver's options.
const LOCAL_OPTIONS: &[&str] = &["type", "device", "o", "size"];

/// A volume, as `GET /volumes/{name}` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub scope: String,
}

impl Volume {
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// Whether the local driver mounts a filesystem of its own on `_data`.
    pub fn has_mount_options(&self) -> bool {
        self.options.contains_key("type") || self.options.contains_key("device")
    }

    /// The body of inspect and of one entry of `GET /volumes`; `usage` adds
    /// `UsageData` (size in bytes, number of containers), as `system df` shows it.
    pub fn to_json(&self, usage: Option<(u64, usize)>) -> serde_json::Value {
        let map = |m: &BTreeMap<String, String>| {
            if m.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::json!(m)
            }
        };
        let mut v = serde_json::json!({
            "CreatedAt": self.created_at,
            "Driver": self.driver,
            "Labels": map(&self.labels),
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": map(&self.options),
            "Scope": self.scope,
        });
        if let Some((size, refs)) = usage {
            v["UsageData"] = serde_json::json!({"Size": size, "RefCount": refs});
        }
        v
    }
}

/// What `POST /volumes/create` asks for.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeCreate {
    pub name: String,
    pub driver: String,
    #[serde(deserialize_with = "null_as_default")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Docker's message for a name the local driver refuses.
pub fn invalid_name(name: &str) -> EngineError {
    EngineError::Invalid(format!(
        "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    ))
}

fn not_found(name: &str) -> EngineError {
    EngineError::NotFound(format!("get {name}: no such volume"))
}

/// The checks of the local driver's `validateOpts`, with its messages.
pub fn validate_options(name: &str, opts: &BTreeMap<String, String>) -> Result<()> {
    let bad = |m: String| EngineError::Invalid(format!("create {name}: {m}"));
    for k in opts.keys() {
        if !LOCAL_OPTIONS.contains(&k.as_str()) {
            return Err(bad(format!("invalid option: {k:?}")));
        }
    }
    if opts.contains_key("size") {
        return Err(bad("quota size requested but no quota support".to_string()));
    }
    for (opt, needs) in [
        ("device", &["type"][..]),
        ("type", &["device"][..]),
        ("o", &["device", "type"][..]),
    ] {
        if opts.contains_key(opt) {
            for need in needs {
                if !opts.contains_key(*need) {
                    return Err(bad(format!("missing required option: {need:?}")));
                }
            }
        }
    }
    Ok(())
}

/// A random name for an anonymous volume: 64 hex digits, as Docker makes them.
fn anonymous_name() -> Result<String> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .map_err(|e| EngineError::Internal(format!("read /dev/urandom: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Bytes used by the regular files under `dir`, each hard-linked file once (what
/// Docker's `directory.Size` counts; directories themselves count nothing).
pub fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.nlink() <= 1 || seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    total
}

/// Whether `dir` is a mount point (listed as one in our mountinfo).
fn is_mounted(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = dir.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.config.data_root.join("volumes")
    }

    /// `POST /volumes/create`; an existing volume of that name is returned as it is,
    /// as Docker does.
    pub fn volume_create(&self, req: VolumeCreate) -> Result<Volume> {
        self.volume_create_inner(req, false).map(|(v, _)| v)
    }

    /// A volume and whether this call made it (so that a failed container create can
    /// take back what it made).
    pub(crate) fn volume_create_inner(
        &self,
        req: VolumeCreate,
        anonymous: bool,
    ) -> Result<(Volume, bool)> {
        let name = if req.name.is_empty() {
            anonymous_name()?
        } else {
            req.name.clone()
        };
        if !crate::names::valid(&name) {
            return Err(invalid_name(&name));
        }
        let driver = if req.driver.is_empty() {
            "local".to_string()
        } else {
            req.driver.clone()
        };
        if driver != "local" {
            return Err(EngineError::NotFound(format!(
                "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        validate_options(&name, &req.driver_opts)?;
        if let Some(existing) = self.store().get_volume::<Volume>(&name)? {
            return Ok((existing, false));
        }
        let dir = self.volumes_dir().join(&name);
        let data = dir.join("_data");
        std::fs::create_dir_all(&data)
            .map_err(|e| EngineError::Internal(format!("create {}: {e}", data.display())))?;
        let mut labels = req.labels.clone();
        if anonymous || req.name.is_empty() {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
        }
        let volume = Volume {
            name: name.clone(),
            driver,
            mountpoint: data.display().to_string(),
            created_at: now(),
            labels,
            options: req.driver_opts,
            scope: "local".into(),
        };
        match self.store().insert_volume(&name, &volume) {
            Ok(true) => {}
            // Made by a concurrent create between our lookup and our insert.
            Ok(false) => return Ok((self.volume_get(&name)?, false)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
        }
        self.volume_event(&volume, "create", &[]);
        Ok((volume, true))
    }

    pub fn volume_get(&self, name: &str) -> Result<Volume> {
        self.store()
            .get_volume(name)?
            .ok_or_else(|| not_found(name))
    }

    pub fn volume_list(&self) -> Result<Vec<Volume>> {
        Ok(self.store().all_volumes()?)
    }

    /// The IDs of the containers (running or not) that mount the volume.
    pub fn volume_users(&self, name: &str, containers: &[Container]) -> Vec<String> {
        containers
            .iter()
            .filter(|c| {
                c.mount_points
                    .iter()
                    .any(|m| m.typ == "volume" && m.name == name)
            })
            .map(|c| c.id.clone())
            .collect()
    }

    /// The bytes a volume holds.
    pub fn volume_size(&self, v: &Volume) -> u64 {
        disk_bytes(Path::new(&v.mountpoint))
    }

    /// `DELETE /volumes/{name}`: refused (409) while a container uses it.
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let v = match self.store().get_volume::<Volume>(name)? {
            Some(v) => v,
            None if force => return Ok(()),
            None => return Err(not_found(name)),
        };
        let users = self.volume_users(name, &self.list()?);
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.volume_destroy(&v)
    }

    fn volume_destroy(&self, v: &Volume) -> Result<()> {
        let data = Path::new(&v.mountpoint);
        if is_mounted(data) {
            unmount(data)?;
        }
        self.store().remove_volume(&v.name)?;
        let dir = self.volumes_dir().join(&v.name);
        let _ = std::fs::remove_dir_all(&dir);
        self.volume_event(v, "destroy", &[]);
        Ok(())
    }

    /// `POST /volumes/prune`: the unused volumes, only anonymous ones unless `all`,
    /// that pass `keep` (the label filters); their names and the bytes they held.
    pub fn volume_prune(
        &self,
        all: bool,
        keep: impl Fn(&Volume) -> bool,
    ) -> Result<(Vec<String>, u64)> {
        let containers = self.list()?;
        let mut deleted = Vec::new();
        let mut reclaimed = 0;
        for v in self.volume_list()? {
            if (!all && !v.is_anonymous())
                || !keep(&v)
                || !self.volume_users(&v.name, &containers).is_empty()
            {
                continue;
            }
            let size = self.volume_size(&v);
            if self.volume_destroy(&v).is_ok() {
                reclaimed += size;
                deleted.push(v.name.clone());
            }
        }
        Ok((deleted, reclaimed))
    }

    /// A container's anonymous volumes that no other container uses (`rm -v`, `--rm`).
    pub(crate) fn remove_anonymous_volumes(&self, c: &Container) {
        let others: Vec<Container> = self
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.id != c.id)
            .collect();
        for m in &c.mount_points {
            if m.typ != "volume" {
                continue;
            }
            let Ok(Some(v)) = self.store().get_volume::<Volume>(&m.name) else {
                continue;
            };
            if v.is_anonymous() && self.volume_users(&v.name, &others).is_empty() {
                let _ = self.volume_destroy(&v);
            }
        }
    }

    /// Mounts the volume's own filesystem on `_data` when it has one and it is not
    /// mounted yet; the directory a container's mount binds.
    pub(crate) fn volume_mount(&self, name: &str) -> Result<Volume> {
        let v = self.volume_get(name)?;
        let data = Path::new(&v.mountpoint);
        std::fs::create_dir_all(data)
            .map_err(|e| EngineError::Internal(format!("create {}: {e}", data.display())))?;
        if v.has_mount_options() && !is_mounted(data) {
            let get = |k: &str| v.options.get(k).cloned().unwrap_or_default();
            // mount(8) rather than mount(2): it reads `o` as the local driver's users
            // write it (mount flags and filesystem data mixed, helpers for nfs/cifs).
            let mut cmd = Command::new("mount");
            cmd.arg("-t").arg(get("type"));
            let o = get("o");
            if !o.is_empty() {
                cmd.arg("-o").arg(&o);
            }
            cmd.arg(get("device")).arg(data);
            let out = cmd
                .output()
                .map_err(|e| EngineError::Internal(format!("run mount: {e}")))?;
            if !out.status.success() {
                return Err(EngineError::Internal(format!(
                    "error while mounting volume '{}': failed to mount local volume: mount {}:{}, flags: {}: {}",
                    data.display(),
                    get("device"),
                    data.display(),
                    o,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        Ok(v)
    }

    /// After a container stopped: unmount the filesystems of the volumes with options
    /// that no running container uses any more.
    pub(crate) fn release_volumes(&self) {
        let containers = self.list().unwrap_or_default();
        let in_use: std::collections::HashSet<&str> = containers
            .iter()
            .filter(|c| c.state.running)
            .flat_map(|c| c.mount_points.iter())
            .filter(|m| m.typ == "volume")
            .map(|m| m.name.as_str())
            .collect();
        for v in self.volume_list().unwrap_or_default() {
            let data = Path::new(&v.mountpoint);
            if v.has_mount_options() && !in_use.contains(v.name.as_str()) && is_mounted(data) {
                let _ = unmount(data);
            }
        }
    }

    /// At daemon start: what a crash left of volumes — directories without a record
    /// (a create or remove cut short) and filesystems mounted for containers that no
    /// longer run.
    pub(crate) fn reconcile_volumes(&self) {
        self.release_volumes();
        let Ok(known) = self.volume_list() else {
            return;
        };
        let names: std::collections::HashSet<&str> =
            known.iter().map(|v| v.name.as_str()).collect();
        for entry in std::fs::read_dir(self.volumes_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            let data = entry.path().join("_data");
            if !names.contains(name.as_str()) && !is_mounted(&data) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn volume_event(&self, v: &Volume, action: &str, extra: &[(&str, String)]) {
        let mut attrs: BTreeMap<String, String> = BTreeMap::new();
        attrs.insert("driver".into(), v.driver.clone());
        for (k, val) in extra {
            attrs.insert(k.to_string(), val.clone());
        }
        self.events.publish("volume", action, &v.name, attrs);
    }

    /// The `system df` figures of every volume: (volume, size, containers using it).
    pub fn volume_usage(&self) -> Result<Vec<(Volume, u64, usize)>> {
        let containers = self.list()?;
        let mut refs: HashMap<String, usize> = HashMap::new();
        for c in &containers {
            for m in c.mount_points.iter().filter(|m| m.typ == "volume") {
                *refs.entry(m.name.clone()).or_default() += 1;
            }
        }
        Ok(self
            .volume_list()?
            .into_iter()
            .map(|v| {
                let size = self.volume_size(&v);
                let n = refs.get(&v.name).copied().unwrap_or(0);
                (v, size, n)
            })
            .collect())
    }
}

impl Engine {
    /// The bytes of a container's writable layer (`SizeRw`).
    pub fn size_rw(&self, c: &Container) -> u64 {
        if c.rootfs.upper_dir.is_empty() {
            0
        } else {
            disk_bytes(Path::new(&c.rootfs.upper_dir))
        }
    }
}

fn unmount(dir: &Path) -> Result<()> {
    let out = Command::new("umount")
        .arg(dir)
        .output()
        .map_err(|e| EngineError::Internal(format!("run umount: {e}")))?;
    if !out.status.success() {
        return Err(EngineError::Internal(format!(
            "unmount {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn local_driver_options() {
        assert!(validate_options("v", &opts(&[])).is_ok());
        assert!(validate_options(
            "v",
            &opts(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")])
        )
        .is_ok());
        let e = validate_options("v", &opts(&[("foo", "1")]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("create v: invalid option: \"foo\""));
        let e = validate_options("v", &opts(&[("type", "tmpfs")]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("create v: missing required option: \"device\"")
        );
    }

    #[test]
    fn names() {
        assert!(crate::names::valid("data_1.x-y"));
        assert!(!crate::names::valid("a/b"));
        assert!(invalid_name("a/b")
            .to_string()
            .contains("\"a/b\" includes invalid characters"));
    }
}
