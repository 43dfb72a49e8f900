//! What a container mounts, decided once at create as Docker's `MountPoints`: `-v`
//! binds and named volumes (`HostConfig.Binds`), `--mount` (`HostConfig.Mounts`),
//! `--volumes-from`, `-v /path` (`Config.Volumes`) and the image's VOLUMEs. At start
//! the points are made ready (host directories created, volumes mounted, image content
//! copied up into empty volumes) and rendered into the OCI spec's mounts.
//!
//! Parsing is pure and checks everything before anything is created; the volumes
//! themselves are [`crate::volumes`]'. `--tmpfs` stays with the spec renderer.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::container::Container;
use crate::engine::{Engine, EngineError, Result};
use crate::types::{ContainerConfig, HostConfig, Mount};
use crate::volumes::{invalid_name, validate_options, VolumeCreate};

/// One mount of a container, as `Mounts` of inspect shows it, plus how to set it up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountPoint {
    /// bind, volume or tmpfs.
    #[serde(rename = "Type")]
    pub typ: String,
    /// The volume's name (volumes only).
    pub name: String,
    /// The host path (binds, and volumes once created).
    pub source: String,
    pub destination: String,
    pub driver: String,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
    /// Copy the image's content at the destination into the volume when it is empty.
    pub copy_data: bool,
    /// `-v /host:/ctr`: a missing host path is made at start (`--mount` refuses it).
    pub create_source: bool,
    /// Bind without recursion (`bind-nonrecursive`).
    pub non_recursive: bool,
    /// tmpfs: size and mode options.
    pub tmpfs_options: Vec<String>,
    /// A volume to create with the container: its options and labels.
    pub volume_options: BTreeMap<String, String>,
    pub volume_labels: BTreeMap<String, String>,
}

impl MountPoint {
    /// The entry of inspect's `Mounts`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.typ,
            "Source": self.source,
            "Destination": self.destination,
            "Mode": self.mode,
            "RW": self.rw,
            "Propagation": self.propagation,
        });
        if self.typ == "volume" {
            v["Name"] = json!(self.name);
            v["Driver"] = json!(self.driver);
        }
        v
    }

    /// The OCI spec's mount.
    fn render(&self) -> Value {
        let rw = if self.rw { "rw" } else { "ro" };
        match self.typ.as_str() {
            "tmpfs" => {
                let mut options: Vec<String> =
                    vec!["nosuid".into(), "nodev".into(), "noexec".into()];
                options.extend(self.tmpfs_options.iter().cloned());
                options.push(rw.into());
                json!({"destination": self.destination, "type": "tmpfs", "source": "tmpfs", "options": options})
            }
            _ => {
                let bind = if self.non_recursive { "bind" } else { "rbind" };
                let propagation = if self.propagation.is_empty() {
                    "rprivate"
                } else {
                    self.propagation.as_str()
                };
                json!({"destination": self.destination, "type": "bind", "source": self.source,
                       "options": [bind, rw, propagation]})
            }
        }
    }
}

fn invalid(m: impl Into<String>) -> EngineError {
    EngineError::Invalid(m.into())
}

const PROPAGATIONS: &[&str] = &[
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];

/// Docker's checks of a destination inside the container.
fn check_destination(typ: &str, dest: &str, spec: Option<&str>) -> Result<()> {
    let wrap = |m: String| match spec {
        Some(s) => invalid(format!("invalid volume specification: '{s}': {m}")),
        None => invalid(m),
    };
    if !dest.starts_with('/') {
        return Err(wrap(format!(
            "invalid mount config for type \"{typ}\": invalid mount path: '{dest}' mount path must be absolute"
        )));
    }
    let clean = clean_path(dest);
    if clean == "/" {
        return Err(wrap(format!(
            "invalid mount config for type \"{typ}\": invalid specification: destination can't be '/'"
        )));
    }
    // What runc refuses at start, refused here before anything is made.
    if clean == "/proc" {
        return Err(invalid(format!(
            "invalid mount config for type \"{typ}\": \"/proc\" cannot be mounted because it is not of type proc"
        )));
    }
    if clean.starts_with("/proc/") {
        return Err(invalid(format!(
            "invalid mount config for type \"{typ}\": \"{clean}\" cannot be mounted because it is inside /proc"
        )));
    }
    Ok(())
}

/// `/a//b/../c/` → `/a/c`.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// One `-v` (`HostConfig.Binds`) entry: `name:/ctr[:mode]` or `/host:/ctr[:mode]`.
pub fn parse_bind(spec: &str) -> Result<MountPoint> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => {
            return Err(invalid(format!("invalid volume specification: '{spec}'")));
        }
    };
    if src.is_empty() {
        return Err(invalid(format!("invalid volume specification: '{spec}'")));
    }
    let typ = if src.starts_with('/') {
        "bind"
    } else {
        "volume"
    };
    check_destination(typ, dst, Some(spec))?;
    let mut m = MountPoint {
        typ: typ.into(),
        destination: clean_path(dst),
        mode: mode.to_string(),
        rw: true,
        ..Default::default()
    };
    let (mut rw_set, mut prop_set, mut label_set, mut copy_set) = (false, false, false, false);
    for o in mode.split(',').filter(|o| !o.is_empty()) {
        let repeated = match o {
            "ro" | "rw" => std::mem::replace(&mut rw_set, true),
            "z" | "Z" => std::mem::replace(&mut label_set, true),
            "nocopy" if typ == "volume" => std::mem::replace(&mut copy_set, true),
            p if PROPAGATIONS.contains(&p) && typ == "bind" => {
                std::mem::replace(&mut prop_set, true)
            }
            "consistent" | "cached" | "delegated" => false,
            _ => return Err(invalid(format!("invalid mode: {mode}"))),
        };
        if repeated {
            return Err(invalid(format!("invalid mode: {mode}")));
        }
        match o {
            "ro" => m.rw = false,
            p if PROPAGATIONS.contains(&p) => m.propagation = p.to_string(),
            _ => {}
        }
    }
    if typ == "bind" {
        m.source = clean_path(src);
        m.create_source = true;
        if m.propagation.is_empty() {
            m.propagation = "rprivate".into();
        }
    } else {
        if !crate::names::valid(src) {
            return Err(invalid_name(src));
        }
        m.name = src.to_string();
        m.driver = "local".into();
        m.copy_data = !copy_set;
        if m.mode.is_empty() {
            m.mode = "z".into();
        }
    }
    Ok(m)
}

/// One `--mount` (`HostConfig.Mounts`) entry, with dockerd's checks and messages.
pub fn parse_api_mount(m: &Mount) -> Result<MountPoint> {
    let what = |msg: String| {
        invalid(format!(
            "invalid mount config for type \"{}\": {msg}",
            m.typ
        ))
    };
    if m.target.is_empty() {
        return Err(what("field Target must not be empty".into()));
    }
    check_destination(&m.typ, &m.target, None)?;
    let mut p = MountPoint {
        typ: m.typ.clone(),
        destination: clean_path(&m.target),
        rw: !m.read_only,
        ..Default::default()
    };
    match m.typ.as_str() {
        "bind" => {
            if m.volume_options.is_some() {
                return Err(what("field VolumeOptions must not be specified".into()));
            }
            if m.tmpfs_options.is_some() {
                return Err(what("field TmpfsOptions must not be specified".into()));
            }
            if m.source.is_empty() {
                return Err(what("field Source must not be empty".into()));
            }
            if !m.source.starts_with('/') {
                return Err(what(format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                )));
            }
            let b = m.bind_options.clone().unwrap_or_default();
            if !b.create_mountpoint && !Path::new(&m.source).exists() {
                return Err(what(format!(
                    "bind source path does not exist: {}",
                    m.source
                )));
            }
            if !b.propagation.is_empty() && !PROPAGATIONS.contains(&b.propagation.as_str()) {
                return Err(what(format!("invalid propagation mode: {}", b.propagation)));
            }
            p.source = clean_path(&m.source);
            p.create_source = b.create_mountpoint;
            p.non_recursive = b.non_recursive;
            p.propagation = if b.propagation.is_empty() {
                "rprivate".into()
            } else {
                b.propagation
            };
        }
        "volume" => {
            if m.bind_options.is_some() {
                return Err(what("field BindOptions must not be specified".into()));
            }
            if m.tmpfs_options.is_some() {
                return Err(what("field TmpfsOptions must not be specified".into()));
            }
            if !m.source.is_empty() && !crate::names::valid(&m.source) {
                return Err(invalid_name(&m.source));
            }
            let opts: VolumeMountOptions = match &m.volume_options {
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|e| what(format!("invalid VolumeOptions: {e}")))?,
                None => VolumeMountOptions::default(),
            };
            let driver = opts.driver_config.name.clone();
            if !driver.is_empty() && driver != "local" {
                return Err(EngineError::NotFound(format!(
                    "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
                )));
            }
            validate_options(&m.source, &opts.driver_config.options)?;
            p.name = m.source.clone();
            p.driver = "local".into();
            p.copy_data = !opts.no_copy;
            p.volume_options = opts.driver_config.options;
            p.volume_labels = opts.labels;
        }
        "tmpfs" => {
            if !m.source.is_empty() {
                return Err(what("field Source must not be specified".into()));
            }
            if m.bind_options.is_some() {
                return Err(what("field BindOptions must not be specified".into()));
            }
            if m.volume_options.is_some() {
                return Err(what("field VolumeOptions must not be specified".into()));
            }
            if let Some(t) = &m.tmpfs_options {
                if t.size_bytes < 0 {
                    return Err(what(format!("invalid tmpfs size: {}", t.size_bytes)));
                }
                if t.size_bytes > 0 {
                    p.tmpfs_options.push(format!("size={}", t.size_bytes));
                }
                if t.mode != 0 {
                    p.tmpfs_options.push(format!("mode={:o}", t.mode));
                }
            }
        }
        other => {
            return Err(invalid(format!("mount type unknown: {other:?}")));
        }
    }
    Ok(p)
}

/// `Mount.VolumeOptions` of the API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct VolumeMountOptions {
    no_copy: bool,
    #[serde(deserialize_with = "null_as_default")]
    labels: BTreeMap<String, String>,
    driver_config: DriverConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DriverConfig {
    name: String,
    #[serde(deserialize_with = "null_as_default")]
    options: BTreeMap<String, String>,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An anonymous volume at `dest` (`-v /path`, an image's VOLUME).
fn anonymous(dest: &str) -> Result<MountPoint> {
    check_destination("volume", dest, None)?;
    Ok(MountPoint {
        typ: "volume".into(),
        destination: clean_path(dest),
        driver: "local".into(),
        rw: true,
        copy_data: true,
        ..Default::default()
    })
}

/// `--volumes-from id[:ro|rw]`: the other container and the mode asked for.
fn parse_volumes_from(spec: &str) -> Result<(&str, Option<bool>)> {
    match spec.split_once(':') {
        None => Ok((spec, None)),
        Some((id, "ro")) => Ok((id, Some(false))),
        Some((id, "rw")) => Ok((id, Some(true))),
        Some((_, mode)) => Err(invalid(format!("invalid mode: {mode}"))),
    }
}

impl Engine {
    /// Every mount of a new container, checked; nothing is created yet. Explicit
    /// mounts win over `--volumes-from`, which wins over `-v /path` and the image.
    pub(crate) fn plan_mounts(
        &self,
        config: &ContainerConfig,
        host: &HostConfig,
        image_volumes: &[String],
    ) -> Result<Vec<MountPoint>> {
        let mut points: Vec<MountPoint> = Vec::new();
        let push = |points: &mut Vec<MountPoint>, m: MountPoint| -> Result<()> {
            if points.iter().any(|p| p.destination == m.destination) {
                return Err(invalid(format!("Duplicate mount point: {}", m.destination)));
            }
            points.push(m);
            Ok(())
        };
        for b in &host.binds {
            push(&mut points, parse_bind(b)?)?;
        }
        for m in &host.mounts {
            push(&mut points, parse_api_mount(m)?)?;
        }
        for spec in &host.volumes_from {
            let (key, rw) = parse_volumes_from(spec)?;
            let other = self.get(key)?;
            for m in &other.mount_points {
                if points.iter().any(|p| p.destination == m.destination) {
                    continue;
                }
                let mut m = m.clone();
                m.copy_data = false;
                m.volume_options.clear();
                m.volume_labels.clear();
                if let Some(rw) = rw {
                    m.rw = rw;
                }
                points.push(m);
            }
        }
        let mut implicit: Vec<&String> = config.volumes.iter().flat_map(|v| v.keys()).collect();
        implicit.sort();
        implicit.extend(image_volumes.iter());
        for dest in implicit {
            let clean = clean_path(dest);
            let taken = points.iter().any(|p| p.destination == clean)
                || host.tmpfs.keys().any(|t| clean_path(t) == clean);
            if !taken {
                points.push(anonymous(dest)?);
            }
        }
        Ok(points)
    }

    /// Creates the volumes the points name (named ones that do not exist yet, and the
    /// anonymous ones); the names of those made here, for [`Engine::undo_volumes`].
    pub(crate) fn create_volumes(&self, points: &mut [MountPoint]) -> Result<Vec<String>> {
        let mut made = Vec::new();
        for p in points.iter_mut().filter(|p| p.typ == "volume") {
            let anonymous = p.name.is_empty();
            let req = VolumeCreate {
                name: p.name.clone(),
                driver: "local".into(),
                driver_opts: std::mem::take(&mut p.volume_options),
                labels: std::mem::take(&mut p.volume_labels),
            };
            match self.volume_create_inner(req, anonymous) {
                Ok((v, created)) => {
                    if created {
                        made.push(v.name.clone());
                    }
                    p.name = v.name;
                    p.source = v.mountpoint;
                }
                Err(e) => {
                    self.undo_volumes(&made);
                    return Err(e);
                }
            }
        }
        Ok(made)
    }

    pub(crate) fn undo_volumes(&self, names: &[String]) {
        for n in names {
            let _ = self.volume_remove(n, true);
        }
    }

    /// At start, with the root filesystem mounted at `rootfs`: host directories made,
    /// volumes mounted and filled from the image, then the points added to the spec.
    pub(crate) fn attach_mounts(
        &self,
        c: &Container,
        rootfs: &Path,
        mut spec: Value,
    ) -> Result<Value> {
        let mut rendered = Vec::new();
        for p in &c.mount_points {
            match p.typ.as_str() {
                "bind" if p.create_source && !Path::new(&p.source).exists() => {
                    std::fs::create_dir_all(&p.source).map_err(|e| {
                        EngineError::Internal(format!(
                            "error while creating mount source path '{}': {e}",
                            p.source
                        ))
                    })?;
                }
                "volume" => {
                    let v = self.volume_mount(&p.name)?;
                    if p.copy_data {
                        copy_up(rootfs, &p.destination, Path::new(&v.mountpoint))?;
                    }
                }
                _ => {}
            }
            rendered.push(p.render());
        }
        if let Some(mounts) = spec["mounts"].as_array_mut() {
            mounts.extend(rendered);
            // Parents before children, as dockerd sorts them (stable: the order given
            // stays for equal depth).
            mounts.sort_by_key(|m| {
                m["destination"]
                    .as_str()
                    .map(|d| clean_path(d).matches('/').count())
                    .unwrap_or(0)
            });
        }
        Ok(spec)
    }
}

/// Docker's copy-up: an empty volume takes the image's content at its destination
/// (files, links, modes and owners), and the directory's own mode and owner.
fn copy_up(rootfs: &Path, dest: &str, volume: &Path) -> Result<()> {
    let src = match resolve_in_root(rootfs, dest) {
        Some(s) => s,
        None => return Ok(()),
    };
    let Ok(meta) = std::fs::symlink_metadata(&src) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Ok(());
    }
    let empty = std::fs::read_dir(volume)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty {
        return Ok(());
    }
    let err = |e: std::io::Error| EngineError::Internal(format!("copy up {dest}: {e}"));
    copy_tree(&src, volume).map_err(err)?;
    std::fs::set_permissions(
        volume,
        std::fs::Permissions::from_mode(meta.mode() & 0o7777),
    )
    .map_err(err)?;
    std::os::unix::fs::lchown(volume, Some(meta.uid()), Some(meta.gid())).map_err(err)?;
    Ok(())
}

/// `dest` inside `root`, following the image's symlinks without leaving the root.
fn resolve_in_root(root: &Path, dest: &str) -> Option<PathBuf> {
    let mut current = PathBuf::from("/");
    let mut todo: Vec<String> = clean_path(dest)
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            current.pop();
            continue;
        }
        let next = current.join(&part);
        let on_host = root.join(next.strip_prefix("/").ok()?);
        match std::fs::symlink_metadata(&on_host) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = std::fs::read_link(&on_host).ok()?;
                let t = target.to_string_lossy().to_string();
                if t.starts_with('/') {
                    current = PathBuf::from("/");
                }
                todo.extend(
                    t.split('/')
                        .filter(|s| !s.is_empty())
                        .rev()
                        .map(String::from),
                );
            }
            Ok(_) => current = next,
            Err(_) => return None,
        }
    }
    Some(root.join(current.strip_prefix("/").ok()?))
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            // Devices, fifos and sockets in an image's volume path are not copied.
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<MountPoint>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn binds_and_named_volumes() {
        let b = parse_bind("/tmp:/host-tmp:ro").expect("bind");
        assert_eq!(
            (b.typ.as_str(), b.rw, b.create_source),
            ("bind", false, true)
        );
        let v = parse_bind("data:/data:nocopy").expect("volume");
        assert_eq!(
            (v.typ.as_str(), v.name.as_str(), v.copy_data),
            ("volume", "data", false)
        );
        assert!(parse_bind("data:/data").expect("volume").copy_data);
        assert!(err(parse_bind("a/b:/x")).contains("includes invalid characters"));
        assert!(err(parse_bind("rel:x")).contains("must be absolute"));
        assert_eq!(err(parse_bind("/a:/b:bogus")), "invalid mode: bogus");
        assert_eq!(err(parse_bind("/a:/b:ro,rw")), "invalid mode: ro,rw");
        assert!(err(parse_bind("/a:/")).contains("destination can't be '/'"));
        assert!(err(parse_bind("/a:/proc")).contains("not of type proc"));
        assert!(err(parse_bind("/a:/proc/sys")).contains("inside /proc"));
        assert!(err(parse_bind("a:b:c:d")).contains("invalid volume specification"));
    }

    #[test]
    fn api_mounts() {
        let m = Mount {
            typ: "bind".into(),
            source: "/nonexistent-berth-x".into(),
            target: "/x".into(),
            ..Default::default()
        };
        assert_eq!(
            err(parse_api_mount(&m)),
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-berth-x"
        );
        let v = Mount {
            typ: "volume".into(),
            source: "cache".into(),
            target: "/cache".into(),
            volume_options: Some(
                json!({"NoCopy": true, "DriverConfig": {"Options": {"bogus": "1"}}}),
            ),
            ..Default::default()
        };
        assert_eq!(
            err(parse_api_mount(&v)),
            "create cache: invalid option: \"bogus\""
        );
        let t = Mount {
            typ: "tmpfs".into(),
            target: "/t".into(),
            tmpfs_options: Some(crate::types::TmpfsOptions {
                size_bytes: 1 << 20,
                mode: 0o1777,
            }),
            ..Default::default()
        };
        let p = parse_api_mount(&t).expect("tmpfs");
        assert_eq!(p.tmpfs_options, vec!["size=1048576", "mode=1777"]);
    }

    #[test]
    fn paths_resolve_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/data")).expect("mkdir");
        std::os::unix::fs::symlink("/real", root.join("link")).expect("symlink");
        std::os::unix::fs::symlink("../../..", root.join("real/up")).expect("symlink");
        assert_eq!(
            resolve_in_root(root, "/link/data"),
            Some(root.join("real/data"))
        );
        assert_eq!(
            resolve_in_root(root, "/real/up/real"),
            Some(root.join("real"))
        );
        assert_eq!(resolve_in_root(root, "/missing"), None);
        assert_eq!(clean_path("/a//b/../c/"), "/a/c");
    }
}
